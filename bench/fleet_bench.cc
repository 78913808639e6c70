// fleet_bench: a poller fleet as processes, `runnel broker` plus `runnel poller --id ...` on one
// YAML (4 shards, the no-op handler), measured from outside through the broker's lease table:
//   handoff   SIGTERM one of two pollers: time until the other holds every shard (p50, max)
//   takeover  kill -9 one of two pollers: time until the other holds every shard (p50, max);
//             bounded below by the lease duration (--lease-duration, default 1s here)
//   records/s a backlog read through the no-op handler by 1 and by 2 pollers (until every
//             shard's checkpoint reaches its end)
//   renewal   broker CPU (utime+stime from /proc) and latency per RenewLease, one client in a
//             loop (each renewal is a durable write: one fdatasync)
//
//   fleet_bench [--rounds 20] [--lease-duration 1s] [--records 200000] [--renewals 2000]
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "google/protobuf/util/time_util.h"
#include "runnel/v1/broker.grpc.pb.h"

extern char** environ;

namespace runnel::bench {
namespace {

namespace fs = std::filesystem;

struct Options {
  int rounds = 20;
  absl::Duration lease = absl::Seconds(1);
  int records = 200000;
  int renewals = 2000;
};

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) {
    std::perror("posix_spawn");
    std::exit(1);
  }
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

void Reap(pid_t pid) {
  int status;
  ::waitpid(pid, &status, 0);
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout,
             absl::Duration step = absl::Milliseconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(step);
  }
  return condition();
}

std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// CPU seconds (user + system) a process has used so far.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  std::vector<std::string> fields;
  std::string field;
  for (size_t i = close + 2; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ' ') {
      fields.push_back(field);
      field.clear();
    } else {
      field += text[i];
    }
  }
  // After the command: state is field 0; utime and stime are fields 11 and 12.
  double utime = 0, stime = 0;
  (void)absl::SimpleAtod(fields[11], &utime);
  (void)absl::SimpleAtod(fields[12], &stime);
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

class Fleet {
 public:
  Fleet(const Options& options) : options_(options) {
    dir_ = fs::temp_directory_path() / absl::StrCat("runnel-fleet-bench-", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string ready = (dir_ / "broker.ready").string();
    broker_ = Spawn({RUNNEL_BINARY, "broker", "--data-dir", (dir_ / "data").string(), "--listen",
                     "127.0.0.1:0", "--ready-file", ready, "--metrics", "off"},
                    (dir_ / "broker.log").string());
    if (!WaitFor([&] { return !ReadLine(ready).empty(); }, absl::Seconds(30))) {
      std::fprintf(stderr, "the broker did not start; see %s\n", (dir_ / "broker.log").c_str());
      std::exit(1);
    }
    address_ = ReadLine(ready);
    stub_ = v1::StreamBroker::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    std::ofstream(dir_ / "fleet.yaml")
        << "streams:\n  - name: events\n    shards: 4\nfunctions:\n  - name: noop\n    plugin: "
        << NOOP_PLUGIN
        << "\n    isolation: in_process\nevent_source_mappings:\n  - function: noop\n"
           "    stream: events\n    batch_size: 500\n    parallelization_factor: 2\n";
  }
  ~Fleet() {
    for (auto& [name, pid] : pollers_) {
      ::kill(pid, SIGKILL);
      Reap(pid);
    }
    ::kill(broker_, SIGTERM);
    Reap(broker_);
    fs::remove_all(dir_);
  }

  v1::StreamBroker::Stub& stub() { return *stub_; }
  pid_t broker_pid() const { return broker_; }

  void StartPoller(const std::string& name) {
    const std::string ready = (dir_ / (name + ".ready")).string();
    fs::remove(ready);
    pollers_[name] =
        Spawn({RUNNEL_BINARY, "poller", "-f", (dir_ / "fleet.yaml").string(), "--broker", address_,
               "--id", name, "--lease-duration", absl::FormatDuration(options_.lease), "--listen",
               "", "--metrics", "off", "--ready-file", ready},
              (dir_ / (name + ".log")).string());
    if (!WaitFor([&] { return fs::exists(ready); }, absl::Seconds(30))) {
      std::fprintf(stderr, "poller %s did not start\n", name.c_str());
      std::exit(1);
    }
  }
  void Signal(const std::string& name, int signal) {
    ::kill(pollers_[name], signal);
    Reap(pollers_[name]);
    pollers_.erase(name);
  }

  // Shard -> unexpired owner.
  std::map<std::string, std::string> Owners() {
    v1::ListLeasesRequest request;
    request.set_consumer_name("events/noop");
    request.set_stream_name("events");
    v1::ListLeasesResponse response;
    grpc::ClientContext context;
    std::map<std::string, std::string> out;
    if (!stub_->ListLeases(&context, request, &response).ok()) return out;
    for (const auto& c : response.leases()) {
      if (!c.lease_owner().empty() && c.lease_expiry() > response.now()) {
        out[c.shard_id()] = c.lease_owner();
      }
    }
    return out;
  }
  bool AllHeldBy(const std::set<std::string>& pollers, bool each_one = false) {
    auto owners = Owners();
    if (owners.size() != 4) return false;
    std::set<std::string> seen;
    for (const auto& [shard, owner] : owners) {
      if (!pollers.contains(owner)) return false;
      seen.insert(owner);
    }
    return !each_one || seen.size() == pollers.size();
  }
  // Checkpoint per shard.
  std::map<std::string, std::string> Checkpoints() {
    v1::ListCheckpointsRequest request;
    request.set_consumer_name("events/noop");
    request.set_stream_name("events");
    v1::ListCheckpointsResponse response;
    grpc::ClientContext context;
    std::map<std::string, std::string> out;
    if (!stub_->ListCheckpoints(&context, request, &response).ok()) return out;
    for (const auto& c : response.checkpoints()) out[c.shard_id()] = c.sequence_number();
    return out;
  }

 private:
  const Options options_;
  fs::path dir_;
  pid_t broker_ = 0;
  std::string address_;
  std::unique_ptr<v1::StreamBroker::Stub> stub_;
  std::map<std::string, pid_t> pollers_;
};

void Report(const char* what, std::vector<double> ms) {
  std::printf("%-34s p50 %7.1f ms  max %7.1f ms  (%zu rounds)\n", what, Percentile(ms, 50),
              Percentile(ms, 100), ms.size());
}

void HandOffsAndTakeovers(const Options& options) {
  Fleet fleet(options);
  CreateStream(fleet.stub(), "events", 4, v1::FSYNC_ALWAYS);
  fleet.StartPoller("a");
  fleet.StartPoller("b");
  std::vector<double> handoff, takeover;
  int generation = 0;
  for (int kill = 0; kill < 2; ++kill) {
    for (int round = 0; round < options.rounds; ++round) {
      const std::string leaving = generation % 2 == 0 ? "a" : "b";
      const std::string staying = generation % 2 == 0 ? "b" : "a";
      ++generation;
      if (!WaitFor([&] { return fleet.AllHeldBy({"a", "b"}, true); }, absl::Seconds(30))) {
        std::fprintf(stderr, "the fleet did not settle\n");
        std::exit(1);
      }
      absl::SleepFor(absl::Milliseconds(300));  // renewals under way, as in steady state
      const absl::Time start = absl::Now();
      fleet.Signal(leaving, kill ? SIGKILL : SIGTERM);
      if (!WaitFor([&] { return fleet.AllHeldBy({staying}); }, absl::Seconds(30),
                   absl::Milliseconds(2))) {
        std::fprintf(stderr, "no takeover\n");
        std::exit(1);
      }
      (kill ? takeover : handoff).push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
      fleet.StartPoller(leaving);
    }
  }
  Report("hand-off after SIGTERM", handoff);
  Report(absl::StrCat("takeover after kill -9 (lease ", absl::FormatDuration(options.lease), ")")
             .c_str(),
         takeover);
}

void Throughput(const Options& options, int pollers) {
  Fleet fleet(options);
  CreateStream(fleet.stub(), "events", 4, v1::FSYNC_ALWAYS);
  std::mt19937_64 rng(pollers);
  std::map<std::string, std::string> last;  // shard -> last sequence number put
  for (int done = 0; done < options.records;) {
    v1::PutRecordsRequest request;
    request.set_stream_name("events");
    for (int i = 0; i < 500 && done < options.records; ++i, ++done) {
      auto* entry = request.add_records();
      entry->set_partition_key(RandomKey(rng));
      entry->set_data(std::string(100, 'x'));
    }
    v1::PutRecordsResponse response;
    grpc::ClientContext context;
    Check(fleet.stub().PutRecords(&context, request, &response), "PutRecords");
    for (const auto& r : response.records()) {
      if (r.sequence_number() > last[r.shard_id()]) last[r.shard_id()] = r.sequence_number();
    }
  }
  const absl::Time start = absl::Now();
  for (int p = 0; p < pollers; ++p) fleet.StartPoller(absl::StrCat("p", p));
  if (!WaitFor([&] { return fleet.Checkpoints() == last; }, absl::Minutes(5),
               absl::Milliseconds(20))) {
    std::fprintf(stderr, "the backlog was not consumed\n");
    std::exit(1);
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "records/s, %d poller%s (no-op handler)   %9.0f  (%d records in %.2f s, start-up "
      "included)\n",
      pollers, pollers == 1 ? " " : "s", options.records / seconds, options.records, seconds);
}

void Renewals(const Options& options) {
  Fleet fleet(options);
  CreateStream(fleet.stub(), "events", 4, v1::FSYNC_ALWAYS);
  v1::AcquireLeaseRequest acquire;
  acquire.set_consumer_name("bench");
  acquire.set_stream_name("events");
  acquire.set_shard_id("shardId-000000000000");
  acquire.set_owner("bench");
  acquire.mutable_lease_duration()->set_seconds(60);
  v1::AcquireLeaseResponse acquired;
  grpc::ClientContext context;
  Check(fleet.stub().AcquireLease(&context, acquire, &acquired), "AcquireLease");
  v1::RenewLeaseRequest renew;
  renew.set_consumer_name("bench");
  renew.set_stream_name("events");
  renew.set_shard_id("shardId-000000000000");
  renew.set_owner("bench");
  renew.set_lease_epoch(acquired.checkpoint().lease_epoch());
  renew.mutable_lease_duration()->set_seconds(60);
  const double cpu_before = CpuSeconds(fleet.broker_pid());
  const absl::Time start = absl::Now();
  for (int i = 0; i < options.renewals; ++i) {
    v1::RenewLeaseResponse response;
    grpc::ClientContext renew_context;
    Check(fleet.stub().RenewLease(&renew_context, renew, &response), "RenewLease");
  }
  const double wall = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = CpuSeconds(fleet.broker_pid()) - cpu_before;
  std::printf(
      "RenewLease: broker CPU %.1f us per renewal, latency %.2f ms (%d renewals, each "
      "fdatasynced)\n",
      cpu / options.renewals * 1e6, wall / options.renewals * 1e3, options.renewals);
}

}  // namespace
}  // namespace runnel::bench

int main(int argc, char** argv) {
  runnel::bench::Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--rounds") (void)absl::SimpleAtoi(value, &options.rounds);
    if (flag == "--records") (void)absl::SimpleAtoi(value, &options.records);
    if (flag == "--renewals") (void)absl::SimpleAtoi(value, &options.renewals);
    if (flag == "--lease-duration") (void)absl::ParseDuration(value, &options.lease);
  }
  runnel::bench::HandOffsAndTakeovers(options);
  runnel::bench::Throughput(options, 1);
  runnel::bench::Throughput(options, 2);
  runnel::bench::Renewals(options);
  return 0;
}
