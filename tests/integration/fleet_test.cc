// A poller fleet end to end: one `runnel broker`, several `runnel poller` processes on one YAML
// (a 4-shard stream, parallelization factor 2, the echo handler appending every record to one
// file) with a short --lease-duration, and producers putting many keys continuously. Checks the
// split (2/1/1), that every acknowledged record is delivered in per-key order, none twice while
// nobody dies, and what kill -9, SIGSTOP past the lease, SIGTERM and a fourth poller joining do:
// shards move within the bounds, repeats only of records after the dead owner's last checkpoint,
// the paused owner's writes refused by the broker, clean hand-offs without duplicates.
//
// RUNNEL_FLEET_KILL_ROUNDS=N repeats the kill -9 scenario N times (scripts/fleet-kill-loop).
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/server.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/poller_support.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kShards = 4;
constexpr char kMapping[] = "events/echo";
// Short, so that the scenarios take seconds: a renewal every ~667 ms, a scan every 400 ms.
constexpr absl::Duration kLease = absl::Seconds(2);
constexpr absl::Duration kScan = absl::Milliseconds(400);
const absl::Duration kRenewal = kLease / 3;
// What issue 13 promises for a takeover after kill -9: within one lease duration plus one
// renewal interval of the kill. The dead owner's leases expire at most one lease duration after
// the kill (its last renewal came before it), and the survivors' scan (every 400 ms) takes them
// within one renewal interval after that. The allowance on top, 500 ms, is for the take RPCs,
// this test's polling of the lease table (WaitFor backs off to 50 ms) and a machine loaded by
// parallel tests.
const absl::Duration kTakeoverBound = kLease + kRenewal + absl::Milliseconds(500);

// The lease metrics of the mapping, per poller (poller/metrics.h).
constexpr char kHeld[] = "runnel_poller_leases_held";
constexpr char kAcquired[] = "runnel_poller_lease_acquisitions_total";
constexpr char kTakeovers[] = "runnel_poller_lease_takeovers_total";
constexpr char kHandoffs[] = "runnel_poller_lease_handoffs_total";
constexpr char kLost[] = "runnel_poller_leases_lost_total";
constexpr char kFenced[] = "runnel_poller_fenced_writes_total";

// The producers of these tests put one record per key every few milliseconds, and keep going
// while pollers come and go.
constexpr ProducerOptions kPacedProducer{.pause = std::chrono::milliseconds(20),
                                         .stop_on_error = false};

struct Lease {
  std::string owner;  // "" : free or expired
  int64_t epoch = 0;
  std::string checkpoint;
};

struct Delivery {
  size_t unique = 0;
  int duplicates = 0;
  std::vector<EchoLine> repeated;  // the second and later deliveries
};

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::make_unique<TempDir>(absl::StrCat("fleet-", info->name()));
    auto broker = BrokerProcess::Start(dir_->File("data"));
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = std::move(*broker);
    stub_ = broker_->Stub();
    ASSERT_TRUE(CreateStream(*stub_, "events", kShards).ok());
    echo_ = dir_->File("echo.out");
    std::ofstream(dir_->File("fleet.yaml")) << Yaml(
        kShards,
        {{.echo_file = echo_, .extra = "    batch_size: 50\n    parallelization_factor: 2\n"}});
  }

  // Starts `runnel poller --id NAME` on the shared YAML.
  void StartPoller(const std::string& name) {
    const std::string ready = dir_->File(name + ".ready");
    std::filesystem::remove(ready);
    auto process = ChildProcess::Start({RUNNEL_BINARY,
                                        "poller",
                                        "-f",
                                        dir_->File("fleet.yaml"),
                                        "--broker",
                                        broker_->address(),
                                        "--id",
                                        name,
                                        "--lease-duration",
                                        absl::FormatDuration(kLease),
                                        "--listen",
                                        "127.0.0.1:0",
                                        "--ready-file",
                                        ready,
                                        "--shutdown-timeout",
                                        "10s",
                                        "--metrics",
                                        "127.0.0.1:0",
                                        "--metrics-ready-file",
                                        dir_->File(name + ".metrics")},
                                       Log(name));
    ASSERT_TRUE(process.ok()) << process.status();
    pollers_[name] = std::move(*process);
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(ready); }, absl::Seconds(60)))
        << "poller " << name << " did not start; see " << Log(name);
    ASSERT_TRUE(WaitFor(
        [&] {
          std::ifstream in(dir_->File(name + ".metrics"));
          return std::getline(in, metrics_[name]) && !metrics_[name].empty();
        },
        absl::Seconds(10)));
  }
  // One lease metric of the mapping as a poller's /metrics shows it now (-1: no answer).
  double Metric(const std::string& poller, const std::string& name) {
    auto scrape = Scrape::From(metrics_[poller]);
    if (!scrape.ok()) return -1;
    return scrape->Sum(name, {{"mapping", kMapping}});
  }
  // The sum over `pollers`.
  double Metric(const std::set<std::string>& pollers, const std::string& name) {
    double sum = 0;
    for (const std::string& poller : pollers) sum += Metric(poller, name);
    return sum;
  }
  // Waits until the metric reads `value` (a counter may lag the broker's lease table by the
  // instant between the RPC's answer and the increment); says what it read last otherwise.
  void ExpectMetric(const std::set<std::string>& pollers, const std::string& name, double value) {
    double last = -1;
    EXPECT_TRUE(WaitFor(
        [&] {
          last = Metric(pollers, name);
          return last == value;
        },
        absl::Seconds(10)))
        << name << " of " << ::testing::PrintToString(pollers) << " is " << last << ", expected "
        << value;
  }
  // Every poller's leases_held gauge matches the broker's lease table.
  void ExpectHeldMatchesTheBroker(const std::set<std::string>& pollers) {
    for (const std::string& poller : pollers) {
      double held = -1;
      int in_broker = -1;
      EXPECT_TRUE(WaitFor(
          [&] {
            held = Metric(poller, kHeld);
            in_broker = Split()[poller];
            return held == in_broker;
          },
          absl::Seconds(10)))
          << poller << " says it holds " << held << ", the broker " << in_broker;
    }
  }
  std::string Log(const std::string& name) const { return dir_->File(name + ".log"); }

  // The lease table as the broker sees it: shard -> unexpired owner, epoch, checkpoint.
  std::map<std::string, Lease> Leases() {
    v1::ListLeasesRequest request;
    request.set_consumer_name(kMapping);
    request.set_stream_name("events");
    v1::ListLeasesResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    std::map<std::string, Lease> out;
    if (!stub_->ListLeases(&context, request, &response).ok()) return out;
    for (const v1::Checkpoint& c : response.leases()) {
      Lease& lease = out[c.shard_id()];
      lease.epoch = c.lease_epoch();
      lease.checkpoint = c.sequence_number();
      if (!c.lease_owner().empty() && c.lease_expiry() > response.now()) {
        lease.owner = c.lease_owner();
      }
    }
    return out;
  }
  // Shards held per poller.
  std::map<std::string, int> Split() {
    std::map<std::string, int> split;
    for (const auto& [shard, lease] : Leases()) {
      if (!lease.owner.empty()) ++split[lease.owner];
    }
    return split;
  }
  // Every shard held, by exactly these pollers, as evenly as 4 shards go.
  bool FairAmong(const std::set<std::string>& pollers) {
    std::map<std::string, int> split = Split();
    int held = 0, low = kShards, high = 0;
    for (const auto& [owner, count] : split) {
      if (!pollers.contains(owner)) return false;
      held += count;
    }
    for (const std::string& poller : pollers) {
      low = std::min(low, split[poller]);
      high = std::max(high, split[poller]);
    }
    return held == kShards && high - low <= 1;
  }
  std::set<std::string> ShardsOf(const std::string& poller) {
    std::set<std::string> shards;
    for (const auto& [shard, lease] : Leases()) {
      if (lease.owner == poller) shards.insert(shard);
    }
    return shards;
  }

  // Waits until every acknowledged record was delivered; checks per-key order of the first
  // deliveries and counts the repeats.
  Delivery Delivered(const std::set<std::string>& acknowledged) {
    std::set<std::string> missing;
    EXPECT_TRUE(WaitFor(
        [&] {
          std::set<std::string> data;
          for (const EchoLine& line : ReadEcho(echo_)) data.insert(line.data);
          missing.clear();
          for (const std::string& record : acknowledged) {
            if (!data.contains(record)) missing.insert(record);
          }
          return missing.empty();
        },
        absl::Seconds(60)))
        << missing.size() << " acknowledged records never delivered, e.g. " << *missing.begin();
    Delivery delivery;
    std::set<std::string> seen;
    std::map<std::string, int> last_n;
    for (const EchoLine& line : ReadEcho(echo_)) {
      if (!seen.insert(line.sequence_number).second) {
        ++delivery.duplicates;
        delivery.repeated.push_back(line);
        continue;
      }
      std::vector<std::string> parts = absl::StrSplit(line.data, '#');
      int n = -1;
      EXPECT_TRUE(parts.size() == 2 && absl::SimpleAtoi(parts[1], &n)) << line.data;
      auto [it, first] = last_n.emplace(line.key, n);
      if (!first) {
        EXPECT_LT(it->second, n) << "key " << line.key << " out of order";
        it->second = n;
      }
    }
    delivery.unique = seen.size();
    return delivery;
  }

  // How long until `condition` holds (or `timeout`, failing).
  absl::Duration TimeUntil(const std::function<bool()>& condition, absl::Duration timeout) {
    const absl::Time start = absl::Now();
    EXPECT_TRUE(WaitFor(condition, timeout));
    return absl::Now() - start;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<BrokerProcess> broker_;
  std::unique_ptr<v1::StreamBroker::Stub> stub_;
  std::string echo_;
  std::map<std::string, std::unique_ptr<ChildProcess>> pollers_;
  std::map<std::string, std::string> metrics_;  // poller -> its /metrics address
};

// The shard a sequence number belongs to (its last six digits are the shard index).
std::string ShardOf(const std::string& sequence_number) {
  int index = 0;
  (void)absl::SimpleAtoi(sequence_number.substr(sequence_number.size() - 6), &index);
  return absl::StrCat("shardId-", std::string(12 - std::to_string(index).size(), '0'), index);
}

TEST_F(FleetTest, ThreePollersSplitTheShardsAndHandOffCleanlyOnSigtermAndOnJoin) {
  StartPoller("p1");
  StartPoller("p2");
  StartPoller("p3");
  ASSERT_TRUE(WaitFor(
      [&] {
        return FairAmong({"p1", "p2", "p3"});
      },
      absl::Seconds(30)))
      << "split: " << ::testing::PrintToString(Split());
  BackgroundProducer producer(*stub_, 200, kPacedProducer);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo_) > 2000; }, absl::Seconds(60)));
  const std::set<std::string> first = {"p1", "p2", "p3"};
  ExpectHeldMatchesTheBroker(first);
  // Joining one by one, the split moved only by hand-offs: what each shed, another took.
  ExpectMetric(first, kAcquired, kShards + Metric(first, kHandoffs));
  ExpectMetric(first, kTakeovers, 0);

  // SIGTERM hands over: the others hold every shard within about one scan, no record twice.
  std::string leaving;
  for (const auto& [owner, count] : Split()) {
    if (count == 1) leaving = owner;
  }
  ASSERT_FALSE(leaving.empty());
  std::set<std::string> staying = {"p1", "p2", "p3"};
  staying.erase(leaving);
  const double acquired_before = Metric(staying, kAcquired);
  const double handoffs_before = Metric(staying, kHandoffs);
  pollers_[leaving]->Signal(SIGTERM);
  const absl::Time signalled = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return FairAmong(staying); }, absl::Seconds(30)))
      << ::testing::PrintToString(Split());
  const absl::Duration handoff = absl::Now() - signalled;
  auto exited = pollers_[leaving]->Wait(absl::Seconds(30));
  ASSERT_TRUE(exited.ok());
  EXPECT_TRUE(WIFEXITED(*exited) && WEXITSTATUS(*exited) == 0);
  // Draining and a scan (200 ms); generous for a loaded machine.
  EXPECT_LT(handoff, absl::Seconds(3)) << "hand-off took " << handoff;
  EXPECT_THAT(ReadText(Log(leaving)), ::testing::HasSubstr("(1 leases released)"));
  // Its shard came released, not expired: one acquisition among the others, no takeover, and
  // none of them shed anything for it.
  ExpectMetric(staying, kAcquired, acquired_before + 1);
  ExpectMetric(staying, kTakeovers, 0);
  ExpectMetric(staying, kHandoffs, handoffs_before);
  ExpectHeldMatchesTheBroker(staying);

  // A fourth joins: the two that hold two shed one each to it, gracefully.
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo_) > 4000; }, absl::Seconds(60)));
  const std::set<std::string> before_p4 = staying;
  StartPoller("p4");
  staying.insert("p4");
  ASSERT_TRUE(WaitFor([&] { return FairAmong(staying); }, absl::Seconds(30)))
      << ::testing::PrintToString(Split());
  // One of the two holding two shards handed one over to p4.
  ExpectMetric(before_p4, kHandoffs, handoffs_before + 1);
  ExpectMetric({"p4"}, kAcquired, 1);
  ExpectMetric(staying, kTakeovers, 0);
  ExpectHeldMatchesTheBroker(staying);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo_) > 6000; }, absl::Seconds(60)));
  const Delivery delivery = Delivered(producer.Acknowledged());
  EXPECT_EQ(delivery.duplicates, 0)
      << "while nobody died, e.g. "
      << (delivery.repeated.empty() ? "" : delivery.repeated[0].sequence_number);
  for (const std::string& poller : staying) {
    EXPECT_THAT(ReadText(Log(poller)), ::testing::Not(::testing::HasSubstr("lost the lease")));
  }
  ExpectMetric(staying, kLost, 0);
  ExpectMetric(staying, kFenced, 0);
  std::printf("hand-off after SIGTERM: %s\n", absl::FormatDuration(handoff).c_str());
}

// kill -9 of one poller: its shards move within one lease duration plus one renewal interval
// (kTakeoverBound), taken over by the others, and only records after its last checkpoint repeat.
TEST_F(FleetTest, KillNineMovesTheShardsWithinTheLeaseAndRepeatsOnlyWhatWasNotCheckpointed) {
  int rounds = 1;
  if (const char* env = std::getenv("RUNNEL_FLEET_KILL_ROUNDS"))
    (void)absl::SimpleAtoi(env, &rounds);
  std::set<std::string> live = {"p1", "p2", "p3"};
  for (const std::string& name : live) StartPoller(name);
  ASSERT_TRUE(WaitFor([&] { return FairAmong(live); }, absl::Seconds(30)));
  BackgroundProducer producer(*stub_, 200, kPacedProducer);
  std::mt19937 random(7);
  int next = 4;
  // Per shard, the checkpoints at which a dead owner stopped: repeats must come after one.
  std::map<std::string, std::vector<std::string>> kill_checkpoints;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const size_t before = UniqueLines(echo_);
    ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo_) > before + 1000; }, absl::Seconds(60)));
    std::vector<std::string> names(live.begin(), live.end());
    const std::string victim = names[random() % names.size()];
    const std::set<std::string> its_shards = ShardsOf(victim);
    pollers_[victim]->Signal(SIGKILL);
    ASSERT_TRUE(pollers_[victim]->Wait(absl::Seconds(10)).ok());
    const absl::Time killed = absl::Now();
    // Dead: its checkpoints cannot move any more.
    for (const auto& [shard, lease] : Leases()) {
      if (its_shards.contains(shard)) kill_checkpoints[shard].push_back(lease.checkpoint);
    }
    live.erase(victim);
    const double takeovers_before = Metric(live, kTakeovers);
    const absl::Duration moved = TimeUntil([&] { return FairAmong(live); }, absl::Seconds(30));
    EXPECT_LT(moved, kTakeoverBound) << "takeover took " << moved;
    // Every shard of the dead poller was taken over (expired), none merely acquired.
    ExpectMetric(live, kTakeovers, takeovers_before + static_cast<double>(its_shards.size()));
    ExpectHeldMatchesTheBroker(live);
    std::printf("round %d: killed %s (%zu shards), taken over in %s\n", round, victim.c_str(),
                its_shards.size(), absl::FormatDuration(moved).c_str());
    const std::string newcomer = absl::StrCat("p", next++);
    StartPoller(newcomer);
    live.insert(newcomer);
    ASSERT_TRUE(WaitFor([&] { return FairAmong(live); }, absl::Seconds(30)));
    (void)killed;
  }
  // Nobody paused: nobody lost a lease it still ran, and no write was refused.
  ExpectMetric(live, kLost, 0);
  ExpectMetric(live, kFenced, 0);
  const Delivery delivery = Delivered(producer.Acknowledged());
  for (const EchoLine& line : delivery.repeated) {
    const std::string shard = ShardOf(line.sequence_number);
    bool after_a_kill_checkpoint = false;
    for (const std::string& checkpoint : kill_checkpoints[shard]) {
      after_a_kill_checkpoint |= checkpoint.empty() || line.sequence_number > checkpoint;
    }
    EXPECT_TRUE(after_a_kill_checkpoint)
        << line.sequence_number << " of " << shard << " was repeated but was checkpointed";
  }
  std::printf("%d rounds, %d repeats of %zu records\n", rounds, delivery.duplicates,
              delivery.unique);
}

// SIGSTOP past the lease, then SIGCONT: the others take its shards; when it wakes it stops them
// at once, and the broker's refusal shows in its log.
TEST_F(FleetTest, APausedPollerLosesItsShardsAndTheBrokerRefusesItsWrites) {
  std::set<std::string> live = {"p1", "p2", "p3"};
  for (const std::string& name : live) StartPoller(name);
  ASSERT_TRUE(WaitFor([&] { return FairAmong(live); }, absl::Seconds(30)));
  BackgroundProducer producer(*stub_, 200, kPacedProducer);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo_) > 2000; }, absl::Seconds(60)));
  std::string paused;
  for (const auto& [owner, count] : Split()) {
    if (count == 2) paused = owner;
  }
  ASSERT_FALSE(paused.empty());
  const std::set<std::string> its_shards = ShardsOf(paused);
  std::map<std::string, int64_t> epochs;
  pollers_[paused]->Signal(SIGSTOP);
  live.erase(paused);
  const double takeovers_before = Metric(live, kTakeovers);
  ASSERT_TRUE(WaitFor([&] { return FairAmong(live); }, absl::Seconds(30)));
  ExpectMetric(live, kTakeovers, takeovers_before + static_cast<double>(its_shards.size()));
  for (const auto& [shard, lease] : Leases()) epochs[shard] = lease.epoch;
  // Let the new owners move the checkpoints past where the paused one stood.
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo_) > 4000; }, absl::Seconds(60)));
  pollers_[paused]->Signal(SIGCONT);
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string log = ReadText(Log(paused));
        return log.find("lost the lease") != std::string::npos &&
               log.find("is held by p") != std::string::npos;
      },
      absl::Seconds(30)))
      << ReadText(Log(paused));
  // It stopped both shards when it woke, each at its first refused write (its checkpoint
  // writer's, or the check it makes with the broker when it finds the lease past its local
  // deadline) or refused renewal (when the pause fell between the deadline check and the RPC);
  // the new owners had nothing refused.
  ExpectMetric({paused}, kLost, static_cast<double>(its_shards.size()));
  EXPECT_GE(Metric(paused, kFenced), 1);
  ExpectMetric(live, kFenced, 0);
  // It took nothing back by force: the shards stay with their new owners, at their epochs
  // (after a rebalance a shard may come back to it by hand-off, at a newer epoch).
  for (const auto& [shard, lease] : Leases()) {
    if (its_shards.contains(shard) && lease.owner == paused) {
      EXPECT_GT(lease.epoch, epochs[shard]);
    }
  }
  const Delivery delivery = Delivered(producer.Acknowledged());
  std::printf("paused poller: %d repeats of %zu records\n", delivery.duplicates, delivery.unique);
}

// `runnel mapping seek` sent to one poller of a fleet moves every shard's checkpoint, also those
// another poller holds: the seek frees their leases, so the owner cannot write its position over
// the seek's; it re-takes them and reads again from there.
TEST_F(FleetTest, ASeekThroughOnePollerMovesTheShardsOthersHold) {
  StartPoller("p1");
  StartPoller("p2");
  ASSERT_TRUE(WaitFor(
      [&] {
        return FairAmong({"p1", "p2"});
      },
      absl::Seconds(30)))
      << ::testing::PrintToString(Split());
  constexpr int kKeys = 40, kPerKey = 10, kRecords = kKeys * kPerKey;
  Produce(*stub_, kKeys, kPerKey);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo_) == kRecords; }, absl::Seconds(60)));
  const std::string admin = ReadText(dir_->File("p1.ready"));
  CommandResult seek =
      RunCommand({RUNNEL_BINARY, "mapping", "seek", "--poller", admin.substr(0, admin.find('\n')),
                  kMapping, "--all-shards", "--to", "TRIM_HORIZON"});
  ASSERT_EQ(seek.exit_code, 0) << seek.out << seek.err;
  // Every record is delivered again, whichever poller holds its shard.
  std::map<std::string, int> deliveries;
  const bool all_again = WaitFor(
      [&] {
        deliveries.clear();
        for (const EchoLine& line : ReadEcho(echo_)) ++deliveries[line.sequence_number];
        if (deliveries.size() != static_cast<size_t>(kRecords)) return false;
        for (const auto& [sequence, count] : deliveries) {
          if (count < 2) return false;
        }
        return true;
      },
      absl::Seconds(60));
  int once = 0;
  for (const auto& [sequence, count] : deliveries) once += count < 2;
  EXPECT_TRUE(all_again) << once << " of " << kRecords << " records were not delivered again";
  // And the checkpoints end where the records end, held by the fleet again.
  ASSERT_TRUE(WaitFor([&] { return FairAmong({"p1", "p2"}); }, absl::Seconds(30)));
}

}  // namespace
}  // namespace runnel::testing
