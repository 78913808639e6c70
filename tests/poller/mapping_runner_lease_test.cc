// The runner's lease manager (poller/mapping_runner.cc: takes, renewals, sheds, losses, fencing)
// against an in-memory lease store that keeps the broker's rules and lets each test script a
// failure (tests/poller/fake_lease_store.h), a fake stream, and the real echo plugin run in this
// process. Each test checks what was delivered, what was checkpointed (and with which lease), and
// the runnel_poller_lease* metrics.
//
// Leases are short (300 ms: a scan every 60 ms, a renewal every 100 ms), except where a test parks
// the lease thread in a slow call to order events exactly; there a lease of 2 s keeps the other
// shards' deadlines far away while it is parked.
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "poller/config.h"
#include "poller/mapping_runner.h"
#include "prometheus/registry.h"
#include "runnel/runtime/function.h"
#include "tests/poller/fake_lease_store.h"
#include "tests/runtime/test_util.h"

namespace runnel::poller::testing {
namespace {

using ::runnel::testing::LogCapture;
using ::runnel::testing::ReadFile;
using ::runnel::testing::TempDir;
using ::runnel::testing::WaitFor;
using Op = FakeLeaseStore::Op;
using Call = FakeLeaseStore::Call;

constexpr char kMapping[] = "events/echo";
constexpr char kRunner[] = "runner";
constexpr absl::Duration kShortLease = absl::Milliseconds(300);
constexpr absl::Duration kParkedLease = absl::Seconds(2);
constexpr absl::Duration kWait = absl::Seconds(20);

std::string Shard(int i) { return absl::StrCat("shardId-00000000000", i); }

// The lease metrics of the mapping, as a scrape would read them.
struct LeaseMetricValues {
  double held = 0, acquired = 0, takeovers = 0, handoffs = 0, lost = 0, fenced = 0;
};

double Value(prometheus::Registry& registry, const std::string& name) {
  double sum = 0;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      bool ours = false;
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        ours |= label.name == "mapping" && label.value == kMapping;
      }
      if (!ours) continue;
      sum +=
          family.type == prometheus::MetricType::Gauge ? metric.gauge.value : metric.counter.value;
    }
  }
  return sum;
}

LeaseMetricValues LeaseMetrics(prometheus::Registry& registry) {
  return {Value(registry, "runnel_poller_leases_held"),
          Value(registry, "runnel_poller_lease_acquisitions_total"),
          Value(registry, "runnel_poller_lease_takeovers_total"),
          Value(registry, "runnel_poller_lease_handoffs_total"),
          Value(registry, "runnel_poller_leases_lost_total"),
          Value(registry, "runnel_poller_fenced_writes_total")};
}

class MappingRunnerLeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime::FunctionConfig config =
        ::runnel::testing::TestConfig("echo", ECHO_PLUGIN, runtime::Isolation::kInProcess);
    config.environment["ECHO_FILE"] = dir_.File("echo.out");
    config.environment["ECHO_FAIL_ON"] = "POISON";
    auto loaded = runtime::Function::Load(config);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    function_ = std::make_unique<RecordingFunction>(std::move(*loaded));
    // A slow heartbeat on demand: it parks the lease thread (each round starts with one), so that
    // a test can change the store while no renewal can notice.
    store_->before_call = [this](Op op, const std::string& shard_id) {
      if (op == Op::kHeartbeat && park_lease_thread_) heartbeat_gate_.Wait();
      if (on_call_) on_call_(op, shard_id);
    };
    spec_.function = "echo";
    spec_.stream = "events";
    spec_.batch_size = 5;
    spec_.parallelization_factor = 1;
  }
  void TearDown() override {
    heartbeat_gate_.Open();
    invoke_gate_.Open();
    second_gate_.Open();
    if (runner_ != nullptr) runner_->Stop(absl::Seconds(1));
    runner_.reset();
  }

  void UseShards(int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) ids.push_back(Shard(i));
    source_ = std::make_shared<FakeStreamSource>(ids);
  }

  void StartRunner(absl::Duration lease) {
    MappingRunnerOptions options;
    options.spec = spec_;
    options.function = function_.get();
    options.source = source_;
    options.checkpoints = store_;
    options.metrics = registry_;
    options.poller_id = kRunner;
    options.lease_duration = lease;
    options.read_ahead_batches = read_ahead_batches_;
    auto runner = MappingRunner::Start(std::move(options));
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
  }

  LeaseMetricValues Metrics() { return LeaseMetrics(*registry_); }

  // Every record of the shard up to `last` delivered and checkpointed.
  bool CaughtUp(const std::string& shard_id, uint64_t last) {
    std::set<std::string> delivered;
    for (const Delivery& d : function_->DeliveriesOf(shard_id)) delivered.insert(d.sequence_number);
    for (uint64_t n = 1; n <= last; ++n) {
      if (!delivered.contains(FakeSequence(n))) return false;
    }
    return store_->Get(shard_id).sequence_number == FakeSequence(last);
  }

  // How often each record of the shard was delivered, by sequence number.
  std::map<std::string, int> DeliveryCounts(const std::string& shard_id) {
    std::map<std::string, int> counts;
    for (const Delivery& d : function_->DeliveriesOf(shard_id)) ++counts[d.sequence_number];
    return counts;
  }

  // The store's calls of `op` on `shard_id` (any shard when empty).
  std::vector<Call> CallsOf(Op op, const std::string& shard_id = "") {
    std::vector<Call> out;
    for (const Call& call : store_->Calls()) {
      if (call.op == op && (shard_id.empty() || call.shard_id == shard_id)) out.push_back(call);
    }
    return out;
  }

  // Waits for `rounds` more lease rounds of the runner (each sends one heartbeat): how a test
  // gives the runner time to do something it must not do, without a fixed sleep.
  bool WaitForLeaseRounds(int rounds) {
    const int seen = store_->Count(Op::kHeartbeat);
    return WaitFor([&] { return store_->Count(Op::kHeartbeat) >= seen + rounds; }, kWait);
  }

  TempDir dir_;
  std::shared_ptr<FakeLeaseStore> store_ = std::make_shared<FakeLeaseStore>(kMapping);
  std::shared_ptr<FakeStreamSource> source_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  MappingSpec spec_;
  std::atomic<bool> park_lease_thread_{false};
  // More of the store's before_call, set before the runner starts.
  std::function<void(Op op, const std::string& shard_id)> on_call_;
  Gate heartbeat_gate_;
  Gate invoke_gate_;
  Gate second_gate_;
  int read_ahead_batches_ = 2;
  std::unique_ptr<RecordingFunction> function_;
  std::unique_ptr<MappingRunner> runner_;
};

TEST_F(MappingRunnerLeaseTest, ALoneRunnerTakesEveryShardAndFencesEveryWriteWithItsEpoch) {
  UseShards(3);
  // Shard 1 was leased before (released at epoch 4): the runner's lease there is epoch 5.
  store_->Seed(Shard(1), {.sequence_number = FakeSequence(0), .owner = "", .epoch = 4});
  for (int i = 0; i < 3; ++i) source_->Append(Shard(i), 23);
  StartRunner(kShortLease);
  // The first round runs before Start returns: every shard is held at once.
  EXPECT_EQ(Metrics().held, 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(store_->Get(Shard(i)).owner, kRunner) << Shard(i);
    ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(i), 23); }, kWait)) << Shard(i);
  }
  for (int i = 0; i < 3; ++i) {
    for (const auto& [sequence, count] : DeliveryCounts(Shard(i))) {
      EXPECT_EQ(count, 1) << Shard(i) << " " << sequence;
    }
    EXPECT_EQ(store_->Get(Shard(i)).epoch, i == 1 ? 5 : 1);
  }
  // The starting positions were pinned under the leases just taken (an unfenced write would free
  // them again).
  const std::vector<Call> pins = CallsOf(Op::kSetAt);
  EXPECT_EQ(pins.size(), 2u);
  for (const Call& pin : pins) {
    EXPECT_TRUE(pin.fenced && pin.owner == kRunner && pin.epoch == 1) << pin.shard_id;
  }
  const std::vector<Call> writes = CallsOf(Op::kSet);
  ASSERT_FALSE(writes.empty());
  for (const Call& write : writes) {
    EXPECT_TRUE(write.fenced) << write.shard_id << " " << write.sequence_number;
    EXPECT_EQ(write.owner, kRunner);
    EXPECT_EQ(write.epoch, write.shard_id == Shard(1) ? 5 : 1) << write.shard_id;
    EXPECT_EQ(write.code, absl::StatusCode::kOk);
  }
  LeaseMetricValues m = Metrics();
  EXPECT_EQ(m.held, 3);
  EXPECT_EQ(m.acquired, 3);
  EXPECT_EQ(m.takeovers, 0);
  EXPECT_EQ(m.handoffs, 0);
  EXPECT_EQ(m.lost, 0);
  EXPECT_EQ(m.fenced, 0);

  // A stop hands every lease over.
  runner_->Stop(absl::Seconds(1));
  m = Metrics();
  EXPECT_EQ(m.held, 0);
  EXPECT_EQ(m.handoffs, 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(store_->Get(Shard(i)).owner, "") << Shard(i);
    EXPECT_EQ(store_->Get(Shard(i)).sequence_number, FakeSequence(23)) << Shard(i);
  }
}

TEST_F(MappingRunnerLeaseTest, ShedsToAJoiningPollerWithTheFinalCheckpointBeforeTheRelease) {
  UseShards(4);
  // Records keep arriving while the runner sheds, so a shard read after its hand-off would show.
  std::atomic<bool> producing{true};
  std::thread producer([&] {
    while (producing) {
      for (int i = 0; i < 4; ++i) source_->Append(Shard(i), 1);
      absl::SleepFor(absl::Milliseconds(3));  // pacing, not a wait
    }
  });
  struct StopProducer {
    std::atomic<bool>& producing;
    std::thread& thread;
    ~StopProducer() {
      producing = false;
      if (thread.joinable()) thread.join();
    }
  } stop_producer{producing, producer};
  StartRunner(kShortLease);
  ASSERT_TRUE(WaitFor([&] { return function_->Deliveries().size() > 200; }, kWait));
  EXPECT_EQ(Metrics().held, 4);

  // A peer joins: its heartbeat makes it a member, so the runner's share is 2 of 4.
  ASSERT_TRUE(store_->Heartbeat({"peer", "test", 0, absl::InfinitePast()}, absl::Minutes(5)).ok());
  ASSERT_TRUE(WaitFor([&] { return CallsOf(Op::kRelease).size() >= 2; }, kWait));
  std::vector<Call> releases = CallsOf(Op::kRelease);
  ASSERT_EQ(releases.size(), 2u);
  // The peer takes what was handed over, at the checkpoint the runner left.
  for (const Call& release : releases) {
    EXPECT_EQ(release.code, absl::StatusCode::kOk);
    auto taken = store_->TakeLease(release.shard_id, "peer", absl::Minutes(5));
    ASSERT_TRUE(taken.ok()) << taken.status();
  }
  // The runner goes on with the rest; the shed shards get records it must no longer read.
  const size_t delivered = function_->Deliveries().size();
  ASSERT_TRUE(WaitFor([&] { return function_->Deliveries().size() > delivered + 200; }, kWait));
  ASSERT_TRUE(WaitForLeaseRounds(3));
  producing = false;
  producer.join();

  std::set<std::string> shed;
  for (const Call& release : releases) {
    SCOPED_TRACE(release.shard_id);
    shed.insert(release.shard_id);
    // The final checkpoint was written before the release, and is what the lease passes on.
    const std::vector<Call> writes = CallsOf(Op::kSet, release.shard_id);
    const Call* last_ok = nullptr;
    for (const Call& write : writes) {
      EXPECT_TRUE(write.stamp < release.stamp)
          << "a write after the release: " << write.sequence_number;
      if (write.code == absl::StatusCode::kOk) last_ok = &write;
    }
    ASSERT_NE(last_ok, nullptr);
    EXPECT_EQ(last_ok->sequence_number, release.sequence_number);
    // Delivered: exactly the records up to that checkpoint, once each, all before the release.
    const std::vector<Delivery> deliveries = function_->DeliveriesOf(release.shard_id);
    std::set<std::string> unique;
    for (const Delivery& d : deliveries) {
      EXPECT_LT(d.stamp, release.stamp) << "delivered after the hand-off: " << d.sequence_number;
      EXPECT_TRUE(unique.insert(d.sequence_number).second) << "twice: " << d.sequence_number;
      EXPECT_LE(d.sequence_number, release.sequence_number);
    }
    ASSERT_FALSE(unique.empty());
    EXPECT_EQ(*unique.rbegin(), release.sequence_number);
    EXPECT_EQ(unique.size(), std::stoull(release.sequence_number)) << "a gap";
    EXPECT_EQ(store_->Get(release.shard_id).owner, "peer");
  }
  for (int i = 0; i < 4; ++i) {
    if (!shed.contains(Shard(i))) {
      EXPECT_EQ(store_->Get(Shard(i)).owner, kRunner) << Shard(i);
    }
  }
  const LeaseMetricValues m = Metrics();
  EXPECT_EQ(m.held, 2);
  EXPECT_EQ(m.acquired, 4);
  EXPECT_EQ(m.handoffs, 2);
  EXPECT_EQ(m.takeovers, 0);
  EXPECT_EQ(m.lost, 0);
  EXPECT_EQ(m.fenced, 0);
}

TEST_F(MappingRunnerLeaseTest, AStolenLeaseRefusesTheNextWriteAndStopsTheShardAtOnce) {
  LogCapture log;
  UseShards(2);
  read_ahead_batches_ = 3;
  source_->Append(Shard(0), 10);
  source_->Append(Shard(1), 10);
  // After the catch-up, shard 0's batch 11..15 waits at one gate, 16..20 at another.
  function_->before_invoke = [&](const runtime::InvokeRequest& request) {
    if (request.shard_id != Shard(0)) return;
    if (request.records.front().sequence_number == FakeSequence(11)) invoke_gate_.Wait();
    if (request.records.front().sequence_number == FakeSequence(16)) second_gate_.Wait();
  };
  // Once the lease is stolen, shard 0's next checkpoint write waits until 16..20 is in flight.
  std::atomic<bool> stolen{false};
  on_call_ = [&](Op op, const std::string& shard_id) {
    if (op == Op::kSet && shard_id == Shard(0) && stolen) second_gate_.WaitForWaiter(kWait);
  };
  StartRunner(kParkedLease);
  ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(0), 10) && CaughtUp(Shard(1), 10); }, kWait));

  // 11..15 in flight, 16..25 read ahead; the lease thread parked; then another poller takes the
  // lease by force, as after an expiry this runner slept through.
  source_->Append(Shard(0), 15);
  ASSERT_TRUE(invoke_gate_.WaitForWaiter(kWait));
  ASSERT_TRUE(WaitFor([&] { return source_->ReadCount(Shard(0)) == 25; }, kWait));
  park_lease_thread_ = true;
  ASSERT_TRUE(heartbeat_gate_.WaitForWaiter(kWait));
  const int64_t thief_epoch = store_->Steal(Shard(0), "thief", absl::Minutes(5));
  stolen = true;
  const size_t writes_before = CallsOf(Op::kSet, Shard(0)).size();
  // 11..15 finishes; its checkpoint write is the first to meet the new lease, while 16..20 is
  // in flight.
  invoke_gate_.Open();
  ASSERT_TRUE(WaitFor([&] { return Metrics().fenced == 1; }, kWait));
  ASSERT_TRUE(log.WaitForLine("lost the lease"));
  EXPECT_TRUE(log.Contains(absl::StrCat("is held by thief since epoch ", thief_epoch)));
  second_gate_.Open();
  park_lease_thread_ = false;
  heartbeat_gate_.Open();

  // The runner goes on with shard 1 and leaves shard 0 alone.
  source_->Append(Shard(1), 10);
  ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(1), 20); }, kWait));
  ASSERT_TRUE(WaitForLeaseRounds(3));
  const std::vector<Call> writes = CallsOf(Op::kSet, Shard(0));
  ASSERT_EQ(writes.size(), writes_before + 1) << "written again after the refusal";
  EXPECT_EQ(writes.back().code, absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writes.back().sequence_number, FakeSequence(15));
  EXPECT_EQ(store_->Get(Shard(0)).sequence_number, FakeSequence(10));
  EXPECT_EQ(store_->Get(Shard(0)).owner, "thief");
  EXPECT_EQ(store_->Get(Shard(0)).epoch, thief_epoch);
  // What was in flight finished (16..20); what was read ahead (21..25) was not invoked.
  const std::map<std::string, int> counts = DeliveryCounts(Shard(0));
  EXPECT_EQ(counts.size(), 20u) << "invoked after the lease was lost";
  EXPECT_FALSE(counts.contains(FakeSequence(21)));
  const LeaseMetricValues m = Metrics();
  EXPECT_EQ(m.held, 1);
  EXPECT_EQ(m.acquired, 2);
  EXPECT_EQ(m.lost, 1);
  EXPECT_EQ(m.fenced, 1);
  EXPECT_EQ(m.handoffs, 0);
  EXPECT_EQ(m.takeovers, 0);
}

TEST_F(MappingRunnerLeaseTest, RenewalsFailingPastTheDeadlineStopTheShardUntilTheStoreAnswers) {
  LogCapture log;
  UseShards(1);
  source_->Append(Shard(0), 10);
  std::atomic<bool> hold{false};
  function_->before_invoke = [&](const runtime::InvokeRequest&) {
    if (hold) invoke_gate_.Wait();
  };
  StartRunner(kShortLease);
  ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(0), 10); }, kWait));

  // A batch in flight (11..15) when the store stops answering.
  hold = true;
  source_->Append(Shard(0), 10);
  ASSERT_TRUE(invoke_gate_.WaitForWaiter(kWait));
  ASSERT_TRUE(WaitFor([&] { return source_->ReadCount(Shard(0)) == 20; }, kWait));
  const size_t writes_before = CallsOf(Op::kSet, Shard(0)).size();
  store_->SetUnavailable(true);
  ASSERT_TRUE(WaitFor([&] { return Metrics().lost == 1; }, kWait));
  EXPECT_TRUE(log.Contains("was not renewed before it expired"));
  EXPECT_EQ(Metrics().held, 0);
  // Its one fenced write to learn whether the lease is still its own gets no answer either.
  ASSERT_TRUE(WaitFor([&] { return CallsOf(Op::kSet, Shard(0)).size() > writes_before; }, kWait));
  // The batch finishes, but a lost shard's results are not checkpointed.
  hold = false;
  invoke_gate_.Open();
  const absl::Time expiry = store_->Get(Shard(0)).expiry;
  ASSERT_TRUE(WaitFor([&] { return absl::Now() > expiry; }, kWait));
  const size_t calls_while_cut_off = store_->Calls().size();
  store_->SetUnavailable(false);

  // The store answers again: the runner takes the shard back (a new epoch) and resumes at the
  // checkpoint, so only what was not checkpointed repeats.
  ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(0), 20); }, kWait));
  EXPECT_EQ(store_->Get(Shard(0)).epoch, 2);
  EXPECT_EQ(store_->Get(Shard(0)).owner, kRunner);
  const std::vector<Call> calls = store_->Calls();
  bool resumed_at_checkpoint = false;
  for (size_t i = calls_while_cut_off; i < calls.size(); ++i) {
    const Call& call = calls[i];
    if (call.code != absl::StatusCode::kOk) continue;  // sent while cut off
    if (call.op == Op::kTake && call.shard_id == Shard(0)) {
      EXPECT_EQ(call.sequence_number, FakeSequence(10)) << "the checkpoint moved while lost";
      resumed_at_checkpoint = true;
    }
    if (call.op == Op::kSet) {
      EXPECT_EQ(call.epoch, 2) << call.sequence_number;
    }
  }
  EXPECT_TRUE(resumed_at_checkpoint);
  for (const auto& [sequence, count] : DeliveryCounts(Shard(0))) {
    // 11..15 were in flight at the loss; nothing else, in particular nothing checkpointed.
    const bool was_in_flight = sequence > FakeSequence(10) && sequence <= FakeSequence(15);
    EXPECT_EQ(count, was_in_flight ? 2 : 1) << sequence;
  }
  const LeaseMetricValues m = Metrics();
  EXPECT_EQ(m.held, 1);
  EXPECT_EQ(m.acquired, 2);
  EXPECT_EQ(m.lost, 1);
  EXPECT_EQ(m.takeovers, 0);
  EXPECT_EQ(m.handoffs, 0);
  EXPECT_EQ(m.fenced, 0);
}

// A round that waits on a slow renewal of one shard still stops another whose local deadline
// passed meanwhile, instead of renewing it by a clock read before the wait.
TEST_F(MappingRunnerLeaseTest, ASlowRenewalDoesNotCarryAnotherShardPastItsDeadline) {
  UseShards(2);
  source_->Append(Shard(0), 5);
  source_->Append(Shard(1), 5);
  std::atomic<bool> slow_renewal{false};
  absl::Mutex mu;
  absl::Time slow_since;
  on_call_ = [&](Op op, const std::string& shard_id) {
    if (op == Op::kRenew && shard_id == Shard(0) && slow_renewal) {
      {
        absl::MutexLock lock(&mu);
        slow_since = absl::Now();
      }
      second_gate_.Wait();
    }
  };
  StartRunner(kShortLease);
  ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(0), 5) && CaughtUp(Shard(1), 5); }, kWait));
  slow_renewal = true;
  ASSERT_TRUE(second_gate_.WaitForWaiter(kWait));
  // Both leases run out meanwhile: shard 1's last renewal, and the one of shard 0 under way,
  // were sent before the slow call began.
  const absl::Time expiry = store_->Get(Shard(1)).expiry;
  absl::Time both_expired;
  {
    absl::MutexLock lock(&mu);
    both_expired = std::max(expiry, slow_since + kShortLease);
  }
  ASSERT_TRUE(WaitFor([&] { return absl::Now() > both_expired; }, kWait));
  slow_renewal = false;
  second_gate_.Open();
  // Both stop: shard 1 in this round (checked after the slow call, by a clock read then), shard
  // 0 in the next (its renewal came back, but was sent a lease ago); then both are taken again.
  ASSERT_TRUE(WaitFor([&] { return Metrics().lost == 2; }, kWait));
  for (const Call& renewal : CallsOf(Op::kRenew, Shard(1))) {
    EXPECT_FALSE(renewal.code == absl::StatusCode::kOk && renewal.at > expiry)
        << "renewed after its lease ran out";
  }
  source_->Append(Shard(0), 5);
  source_->Append(Shard(1), 5);
  ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(0), 10) && CaughtUp(Shard(1), 10); }, kWait));
  const LeaseMetricValues m = Metrics();
  EXPECT_EQ(m.held, 2);
  EXPECT_EQ(m.acquired, 4);
  EXPECT_EQ(m.lost, 2);
  EXPECT_EQ(m.fenced, 0);
}

// An operator's seek (`runnel mapping seek`: an unfenced write) frees the lease: the runner's
// next renewal is refused, the shard stops, and it is taken again at the seek's position.
TEST_F(MappingRunnerLeaseTest, AnOperatorsSeekStopsTheShardAndItResumesAtTheSeek) {
  LogCapture log;
  UseShards(1);
  source_->Append(Shard(0), 10);
  StartRunner(kShortLease);
  ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(0), 10); }, kWait));
  ASSERT_TRUE(store_->SetCheckpoint(Shard(0), FakeSequence(3)).ok());
  EXPECT_EQ(store_->Get(Shard(0)).owner, "");
  ASSERT_TRUE(WaitFor([&] { return Metrics().lost == 1; }, kWait));
  EXPECT_TRUE(log.Contains("is held by nobody since epoch 1"));
  ASSERT_TRUE(WaitFor(
      [&] {
        return store_->Get(Shard(0)).epoch == 2 &&
               store_->Get(Shard(0)).sequence_number == FakeSequence(10);
      },
      kWait));
  EXPECT_EQ(store_->Get(Shard(0)).owner, kRunner);
  for (const auto& [sequence, count] : DeliveryCounts(Shard(0))) {
    EXPECT_EQ(count, sequence > FakeSequence(3) ? 2 : 1) << sequence;
  }
  const LeaseMetricValues m = Metrics();
  EXPECT_EQ(m.held, 1);
  EXPECT_EQ(m.acquired, 2);
  EXPECT_EQ(m.lost, 1);
  EXPECT_EQ(m.takeovers, 0);
  EXPECT_EQ(m.handoffs, 0);
}

TEST_F(MappingRunnerLeaseTest, NoDeadLetterIsWrittenForAShardWhoseLeaseWasLost) {
  LogCapture log;
  UseShards(2);
  const std::string dlq = dir_.File("dlq.jsonl");
  spec_.retry_attempts = 0;
  spec_.on_failure = {OnFailureDestination::Kind::kFile, dlq};
  source_->Append(Shard(0), 5);
  source_->Append(Shard(1), 5);
  // The failing invocation of shard 0 runs while another poller takes its lease by force.
  std::atomic<int64_t> thief_epoch{0};
  function_->before_invoke = [&](const runtime::InvokeRequest& request) {
    bool poison = false;
    for (const runtime::RecordView& record : request.records) {
      poison |= record.data.find("POISON") != std::string_view::npos;
    }
    if (poison && request.shard_id == Shard(0)) {
      thief_epoch = store_->Steal(Shard(0), "thief", absl::Minutes(5));
    }
  };
  StartRunner(kParkedLease);
  ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(0), 5) && CaughtUp(Shard(1), 5); }, kWait));
  // Parked: no renewal finds the theft first; the check before the dead letter does.
  park_lease_thread_ = true;
  ASSERT_TRUE(heartbeat_gate_.WaitForWaiter(kWait));
  source_->AppendRecord(Shard(0), "key-p", "POISON 0");
  source_->AppendRecord(Shard(1), "key-p", "POISON 1");
  ASSERT_TRUE(WaitFor([&] { return Metrics().lost == 1; }, kWait));
  ASSERT_TRUE(log.WaitForLine("not writing 1 discarded records"));
  // Shard 1 still holds its lease: its dead letter is written, and the checkpoint passes it.
  ASSERT_TRUE(
      WaitFor([&] { return store_->Get(Shard(1)).sequence_number == FakeSequence(6); }, kWait));
  park_lease_thread_ = false;
  heartbeat_gate_.Open();
  ASSERT_TRUE(WaitForLeaseRounds(3));

  const std::string letters = ReadFile(dlq);
  EXPECT_THAT(letters, ::testing::HasSubstr(Shard(1)));
  EXPECT_THAT(letters, ::testing::Not(::testing::HasSubstr(Shard(0))));
  EXPECT_EQ(std::count(letters.begin(), letters.end(), '\n'), 1) << letters;
  EXPECT_TRUE(log.Contains(absl::StrCat("is held by thief since epoch ", thief_epoch.load())));
  EXPECT_EQ(store_->Get(Shard(0)).sequence_number, FakeSequence(5));
  for (const Call& write : CallsOf(Op::kSet, Shard(0))) {
    EXPECT_NE(write.sequence_number, FakeSequence(6)) << "the discarded record was checkpointed";
  }
  const LeaseMetricValues m = Metrics();
  EXPECT_EQ(m.held, 1);
  EXPECT_EQ(m.lost, 1);
  EXPECT_EQ(m.fenced, 1);
  EXPECT_EQ(m.handoffs, 0);
  EXPECT_EQ(m.takeovers, 0);
}

TEST_F(MappingRunnerLeaseTest, TakesOverTheExpiredLeaseOfADeadOwnerAfterItsCheckpoint) {
  LogCapture log;
  UseShards(2);
  source_->Append(Shard(0), 15);
  source_->Append(Shard(1), 15);
  // A poller that died (it renews no more) held shard 1 at epoch 3, checkpointed up to 7.
  const absl::Time dead_expiry = absl::Now() + kShortLease;
  store_->Seed(
      Shard(1),
      {.sequence_number = FakeSequence(7), .owner = "dead", .epoch = 3, .expiry = dead_expiry});
  StartRunner(kShortLease);
  // Until its lease expires the dead owner counts as a member: the runner takes its share, 1.
  ASSERT_TRUE(WaitFor([&] { return CaughtUp(Shard(0), 15); }, kWait));
  ASSERT_TRUE(
      WaitFor([&] { return store_->Get(Shard(1)).sequence_number == FakeSequence(15); }, kWait));

  std::vector<Call> takes;
  for (const Call& take : CallsOf(Op::kTake, Shard(1))) {
    if (take.code == absl::StatusCode::kOk) takes.push_back(take);
  }
  ASSERT_EQ(takes.size(), 1u);
  // At the first scan after the expiry: within one renewal interval (lease / 3) of it, plus
  // 200 ms for a loaded machine.
  EXPECT_LT(takes[0].at - dead_expiry, kShortLease / 3 + absl::Milliseconds(200));
  EXPECT_EQ(takes[0].epoch, 4);
  EXPECT_EQ(takes[0].sequence_number, FakeSequence(7));
  // Nothing the dead owner checkpointed is delivered again.
  const std::map<std::string, int> counts = DeliveryCounts(Shard(1));
  ASSERT_FALSE(counts.empty());
  EXPECT_EQ(counts.begin()->first, FakeSequence(8));
  EXPECT_EQ(counts.size(), 8u);
  for (const auto& [sequence, count] : counts) EXPECT_EQ(count, 1) << sequence;
  for (const Call& write : CallsOf(Op::kSet, Shard(1))) {
    EXPECT_EQ(write.epoch, 4);
    EXPECT_EQ(write.owner, kRunner);
  }
  EXPECT_TRUE(log.Contains("took over the expired lease of dead at epoch 4"));
  const LeaseMetricValues m = Metrics();
  EXPECT_EQ(m.held, 2);
  EXPECT_EQ(m.acquired, 1);
  EXPECT_EQ(m.takeovers, 1);
  EXPECT_EQ(m.lost, 0);
  EXPECT_EQ(m.handoffs, 0);
  EXPECT_EQ(m.fenced, 0);
}

}  // namespace
}  // namespace runnel::poller::testing
