// poller_bench: measures the event-source-mapping poller end to end, the way `runnel up` runs it.
// In this one process it opens a real broker on a temporary data directory, serves it on
// 127.0.0.1:0, and starts a poller::Poller (reaching the broker through the server's in-process
// gRPC channel, as `runnel up` does; --poller-channel loopback uses TCP instead) whose function is
// the in_process probe handler (poller_bench_probe.cc). Producers put over TCP loopback, as a
// client would. Client, broker, poller and handler share the machine's cores.
//   1. latency: put -> handler invoked, maximum_batching_window 0, single-record PutRecords paced
//      at 1,000/s over 4 shards (parallelization 1, batch 100); the record carries its send time
//      (steady clock) and the handler stores now - send time in shared memory. p50/p99/max, per
//      consumer type (polling, fan_out).
//   2. throughput: 4 shards x parallelization 4, batch 1,000, 100-byte records, producers putting
//      PutRecords of 500 as fast as they can (several calls in flight); records/s handled and,
//      every 0.5 s, the iterator age (now - arrival time of the newest record handled) and the lag
//      (records acknowledged to producers - records handled). --phases ingest runs the same
//      producers without a poller, for comparison.
// Every figure is measured --runs times (default 3) and the median is printed.
//
//   poller_bench [--seconds S] [--runs N] [--producers N] [--phases latency,ingest,throughput]
//                [--consumers polling,fan_out] [--fsync always|never]
//                [--poller-channel inprocess|loopback] [--rate R] [--quick]
// Figures and the commands used are in bench/README.md.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "bench/bench_util.h"
#include "bench/poller_bench_probe.h"
#include "broker/broker.h"
#include "broker/server.h"
#include "poller/config.h"
#include "poller/poller.h"
#include "runnel/v1/broker.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace runnel::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kShards = 4;
constexpr int kPutBatch = 500;
constexpr size_t kRecordBytes = 100;
constexpr int kLatencyRate = 1'000;  // records/s in the latency phase
constexpr size_t kRequestsPerProducer = 8;

struct Options {
  double seconds = 10;
  int runs = 3;
  int producers = 16;
  std::string phases = "latency,throughput";  // also: ingest
  std::string consumers = "polling,fan_out";
  v1::FsyncPolicy fsync = v1::FSYNC_ALWAYS;
  bool loopback_poller = false;
  double rate = 0;  // throughput phase: records/s the producers aim at; 0 = as fast as they can
};

[[noreturn]] void Usage(const char* message) {
  std::fprintf(
      stderr,
      "poller_bench: %s\n"
      "usage: poller_bench [--seconds S] [--runs N] [--producers N]\n"
      "                    [--phases latency,ingest,throughput] [--consumers polling,fan_out]\n"
      "                    [--fsync always|never] [--poller-channel inprocess|loopback]\n"
      "                    [--rate R] [--quick]\n",
      message);
  std::exit(2);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  bool seconds_set = false, runs_set = false;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(absl::StrCat(arg, " needs a value").c_str());
      return argv[++i];
    };
    if (arg == "--seconds") {
      if (!absl::SimpleAtod(value(), &options.seconds) || options.seconds <= 0 ||
          options.seconds > 30) {
        Usage("--seconds must be in (0, 30]");
      }
      seconds_set = true;
    } else if (arg == "--runs") {
      if (!absl::SimpleAtoi(value(), &options.runs) || options.runs < 1) Usage("bad --runs");
      runs_set = true;
    } else if (arg == "--producers") {
      if (!absl::SimpleAtoi(value(), &options.producers) || options.producers < 1 ||
          options.producers > 256) {
        Usage("bad --producers");
      }
    } else if (arg == "--phases") {
      options.phases = value();
    } else if (arg == "--consumers") {
      options.consumers = value();
    } else if (arg == "--fsync") {
      const std::string fsync = value();
      if (fsync == "always") {
        options.fsync = v1::FSYNC_ALWAYS;
      } else if (fsync == "never") {
        options.fsync = v1::FSYNC_NEVER;
      } else {
        Usage("--fsync must be always or never");
      }
    } else if (arg == "--poller-channel") {
      const std::string channel = value();
      if (channel != "inprocess" && channel != "loopback") Usage("bad --poller-channel");
      options.loopback_poller = channel == "loopback";
    } else if (arg == "--rate") {
      if (!absl::SimpleAtod(value(), &options.rate) || options.rate < 0) Usage("bad --rate");
    } else if (arg == "--quick") {
      quick = true;
    } else if (arg == "--help" || arg == "-h") {
      Usage("benchmarks the poller against an in-process broker");
    } else {
      Usage(absl::StrCat("unknown argument ", arg).c_str());
    }
  }
  if (quick) {
    if (!seconds_set) options.seconds = 2;
    if (!runs_set) options.runs = 1;
  }
  return options;
}

Clock::duration FromSeconds(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "poller_bench: %s\n", message.c_str());
  std::exit(1);
}

// The probe handler's shared-memory report (see poller_bench_probe.h).
class Probe {
 public:
  Probe() {
    path_ = absl::StrCat("/dev/shm/poller_bench.", ::getpid());
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ::ftruncate(fd, sizeof(ProbeShm)) != 0) Die("cannot create " + path_);
    void* mapped = ::mmap(nullptr, sizeof(ProbeShm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (mapped == MAP_FAILED) Die("cannot map " + path_);
    shm_ = static_cast<ProbeShm*>(mapped);
  }
  ~Probe() {
    ::munmap(shm_, sizeof(ProbeShm));
    ::unlink(path_.c_str());
  }
  // Call with no mapping running.
  void Reset() {
    shm_->records = 0;
    shm_->batches = 0;
    shm_->max_arrival_ms = 0;
    shm_->samples_next = 0;
  }
  uint64_t records() const { return shm_->records.load(std::memory_order_acquire); }
  uint64_t batches() const { return shm_->batches.load(); }
  int64_t max_arrival_ms() const { return shm_->max_arrival_ms.load(); }
  std::vector<double> SamplesUs() const {
    const size_t n = std::min<size_t>(shm_->samples_next.load(), kMaxProbeSamples);
    std::vector<double> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) out.push_back(static_cast<double>(shm_->samples_ns[i]) / 1e3);
    return out;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  ProbeShm* shm_;
};

// The broker under test, the producers' channel to it, and the channel the poller uses.
class Harness {
 public:
  explicit Harness(const std::string& data_dir, bool loopback_poller) {
    broker::BrokerOptions options;
    options.data_dir = data_dir;
    auto opened = broker::Broker::Open(options);
    if (!opened.ok()) Die(opened.status().ToString());
    broker_ = std::move(*opened);
    broker::ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    auto started = broker::BrokerServer::Start(broker_.get(), server_options);
    if (!started.ok()) Die(started.status().ToString());
    server_ = std::move(*started);
    channel_ = broker::MakeBrokerChannel(server_->address());
    stub_ = v1::StreamBroker::NewStub(channel_);
    if (loopback_poller) {
      // A connection of its own, so the poller's reads do not queue behind the producers' puts.
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(broker::kMaxGrpcMessageBytes);
      args.SetMaxSendMessageSize(broker::kMaxGrpcMessageBytes);
      args.SetInt("runnel.bench.poller", 1);
      poller_channel_ =
          grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args);
    } else {
      poller_channel_ = server_->InProcessChannel();
    }
  }
  ~Harness() {
    stub_.reset();
    channel_.reset();
    poller_channel_.reset();
    server_.reset();
    broker_.reset();
  }

  v1::StreamBroker::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> poller_channel() { return poller_channel_; }

  void CreateStream(const std::string& name, v1::FsyncPolicy fsync) {
    bench::CreateStream(stub(), name, kShards, fsync);
  }
  void DeleteStream(const std::string& name) { bench::DeleteStream(stub(), name); }

 private:
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::BrokerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<grpc::Channel> poller_channel_;
  std::unique_ptr<v1::StreamBroker::Stub> stub_;
};

struct MappingKnobs {
  std::string consumer = "polling";
  int batch_size = 100;
  int parallelization = 1;
};

// Starts a poller with one mapping of `stream` to the probe handler, from a YAML text.
std::unique_ptr<poller::Poller> StartPoller(Harness& harness, const Probe& probe,
                                            const std::string& stream, const MappingKnobs& knobs) {
  const std::string yaml = absl::StrFormat(
      "streams:\n"
      "  - name: %s\n"
      "    shards: %d\n"
      "functions:\n"
      "  - name: probe\n"
      "    plugin: %s\n"
      "    isolation: in_process\n"
      "    environment:\n"
      "      PROBE_SHM: %s\n"
      "event_source_mappings:\n"
      "  - function: probe\n"
      "    stream: %s\n"
      "    consumer: %s\n"
      "    starting_position: TRIM_HORIZON\n"
      "    batch_size: %d\n"
      "    maximum_batching_window: 0s\n"
      "    parallelization_factor: %d\n",
      stream, kShards, PROBE_PLUGIN, probe.path(), stream, knobs.consumer, knobs.batch_size,
      knobs.parallelization);
  auto config = poller::ParseConfig(yaml, "/tmp/poller_bench.yaml");
  if (!config.ok()) Die(config.status().ToString());
  poller::PollerOptions options;
  options.config = std::move(*config);
  options.broker = harness.poller_channel();
  auto started = poller::Poller::Start(std::move(options));
  if (!started.ok()) Die(started.status().ToString());
  return std::move(*started);
}

// ---- 1. Put -> handler latency ---------------------------------------------------------------

struct LatencyResult {
  double p50_us = 0, p99_us = 0, max_us = 0;
  uint64_t sent = 0, received = 0;
};

LatencyResult RunLatency(Harness& harness, Probe& probe, const std::string& stream,
                         const std::string& consumer, double seconds) {
  probe.Reset();
  MappingKnobs knobs;
  knobs.consumer = consumer;
  auto poller = StartPoller(harness, probe, stream, knobs);
  // Let the readers reach their long polls (or subscriptions) before the first record.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  struct Call {
    grpc::ClientContext context;
    v1::PutRecordsRequest request;
    v1::PutRecordsResponse response;
  };
  std::atomic<int> in_flight{0};
  std::atomic<uint64_t> failures{0};
  std::mt19937_64 rng(7);
  const int warmup = kLatencyRate;  // the first second is not recorded (fan_out switches over)
  const int total = warmup + static_cast<int>(seconds * kLatencyRate);
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < total; ++i) {
    std::this_thread::sleep_until(start +
                                  std::chrono::microseconds(i * 1'000'000LL / kLatencyRate));
    auto* call = new Call;
    call->request.set_stream_name(stream);
    auto* entry = call->request.add_records();
    entry->set_partition_key(RandomKey(rng));
    std::string data(kRecordBytes, 'l');
    std::memcpy(data.data(), kProbeMagic, sizeof(kProbeMagic));
    data[sizeof(kProbeMagic) + sizeof(int64_t)] = i >= warmup ? 1 : 0;
    const int64_t sent_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
            .count();
    std::memcpy(data.data() + sizeof(kProbeMagic), &sent_ns, sizeof(sent_ns));
    entry->set_data(std::move(data));
    in_flight++;
    harness.stub().async()->PutRecords(
        &call->context, &call->request, &call->response,
        [call, &in_flight, &failures](grpc::Status status) {
          if (!status.ok() || call->response.failed_record_count() != 0) failures++;
          delete call;
          in_flight--;
        });
  }
  while (in_flight.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // The last records: wait until every record put has reached the handler (at most 5 s).
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(5);
  while (probe.records() < static_cast<uint64_t>(total) && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  poller->Stop(absl::Seconds(5));
  poller.reset();
  if (failures.load() != 0) {
    std::fprintf(stderr, "poller_bench: %llu puts failed in the latency run\n",
                 static_cast<unsigned long long>(failures.load()));
  }
  std::vector<double> samples = probe.SamplesUs();
  LatencyResult result;
  result.sent = static_cast<uint64_t>(total - warmup);
  result.received = samples.size();
  result.p50_us = Percentile(samples, 50);
  result.p99_us = Percentile(samples, 99);
  result.max_us = samples.empty() ? 0 : samples.back();
  return result;
}

// ---- 2. Sustained throughput -----------------------------------------------------------------

struct ThroughputResult {
  double handled_per_second = 0;  // records the handler got, per second of the measured window
  double put_per_second = 0;      // records acknowledged to producers, same window
  std::vector<double> ages_s;     // iterator age every 0.5 s
  std::vector<int64_t> lags;      // records put - records handled, every 0.5 s
  double mean_batch = 0;
  double cores = 0;  // CPU time of this process (all threads) per second of the window
  bool flat = false;
};

double ProcessCpuSeconds() {
  rusage usage;
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// `producers` PutRecords calls of kPutBatch records kept in flight with the callback API (each
// finished call starts the next), optionally paced to `rate` records/s. Requests are prebuilt.
class Producers {
 public:
  Producers(Harness& harness, const std::string& stream, int producers, double rate)
      : harness_(harness), slots_(static_cast<size_t>(producers)), rate_(rate) {
    std::mt19937_64 rng(42);
    std::string text(4096 + kRecordBytes, 'x');
    for (char& c : text) c = static_cast<char>('a' + rng() % 26);
    for (Slot& slot : slots_) {
      slot.requests.resize(kRequestsPerProducer);
      for (auto& request : slot.requests) {
        request.set_stream_name(stream);
        for (int i = 0; i < kPutBatch; ++i) {
          auto* entry = request.add_records();
          entry->set_data(text.substr(rng() % 4096, kRecordBytes));
          entry->set_partition_key(RandomKey(rng));
        }
      }
    }
  }

  void Start() {
    start_ = Clock::now();
    in_flight_ = static_cast<int>(slots_.size());
    for (Slot& slot : slots_) Issue(slot);
  }
  void Stop() {
    stopping_ = true;
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return in_flight_ == 0; });
  }
  uint64_t acknowledged() const { return acknowledged_.load(); }
  uint64_t failed() const { return failed_.load(); }

 private:
  struct Slot {
    std::vector<v1::PutRecordsRequest> requests;
    size_t next_request = 0;
    std::unique_ptr<grpc::ClientContext> context;
    v1::PutRecordsResponse response;
  };

  void Issue(Slot& slot) {
    if (rate_ > 0) {
      // Paced: call number n may start at n * kPutBatch / rate seconds.
      const uint64_t n = issued_++;
      std::this_thread::sleep_until(start_ +
                                    FromSeconds(static_cast<double>(n) * kPutBatch / rate_));
    }
    slot.context = std::make_unique<grpc::ClientContext>();
    slot.response.Clear();
    const v1::PutRecordsRequest& request =
        slot.requests[slot.next_request++ % kRequestsPerProducer];
    harness_.stub().async()->PutRecords(slot.context.get(), &request, &slot.response,
                                        [this, &slot](grpc::Status status) { Done(slot, status); });
  }

  void Done(Slot& slot, const grpc::Status& status) {
    Check(status, "PutRecords");
    const int failed = slot.response.failed_record_count();
    acknowledged_ += static_cast<uint64_t>(slot.response.records_size() - failed);
    failed_ += static_cast<uint64_t>(failed);
    if (!stopping_) return Issue(slot);
    std::lock_guard lock(mu_);
    if (--in_flight_ == 0) cv_.notify_all();
  }

  Harness& harness_;
  std::vector<Slot> slots_;
  const double rate_;
  Clock::time_point start_;
  std::atomic<uint64_t> issued_{0};
  std::atomic<uint64_t> acknowledged_{0}, failed_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;
};

// With `with_poller` false, only the producers run (the ingest the poller has to keep up with).
ThroughputResult RunThroughput(Harness& harness, Probe& probe, const std::string& stream,
                               const Options& options, bool with_poller) {
  probe.Reset();
  MappingKnobs knobs;
  knobs.consumer = "polling";
  knobs.batch_size = 1'000;
  knobs.parallelization = 4;
  std::unique_ptr<poller::Poller> poller;
  if (with_poller) poller = StartPoller(harness, probe, stream, knobs);
  Producers producers(harness, stream, options.producers, options.rate);
  const double warmup = std::min(2.0, options.seconds / 4);
  producers.Start();
  const Clock::time_point start = Clock::now();
  std::this_thread::sleep_until(start + FromSeconds(warmup));
  const uint64_t handled0 = probe.records();
  const uint64_t put0 = producers.acknowledged();
  const double cpu0 = ProcessCpuSeconds();
  const Clock::time_point from = Clock::now();
  ThroughputResult result;
  const int samples = static_cast<int>(options.seconds * 2);
  for (int i = 1; i <= samples; ++i) {
    std::this_thread::sleep_until(from + FromSeconds(0.5 * i));
    const uint64_t handled = probe.records();
    const uint64_t put = producers.acknowledged();
    const int64_t newest = probe.max_arrival_ms();
    result.ages_s.push_back(newest == 0 ? 0 : static_cast<double>(WallMs() - newest) / 1e3);
    result.lags.push_back(static_cast<int64_t>(put) - static_cast<int64_t>(handled));
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - from).count();
  result.cores = (ProcessCpuSeconds() - cpu0) / elapsed;
  const uint64_t handled1 = probe.records();
  const uint64_t put1 = producers.acknowledged();
  const uint64_t batches = probe.batches();
  producers.Stop();
  if (poller != nullptr) poller->Stop(absl::Seconds(5));
  poller.reset();
  if (producers.failed() != 0) {
    std::fprintf(stderr, "poller_bench: %llu records failed to put\n",
                 static_cast<unsigned long long>(producers.failed()));
  }
  result.handled_per_second = static_cast<double>(handled1 - handled0) / elapsed;
  result.put_per_second = static_cast<double>(put1 - put0) / elapsed;
  result.mean_batch =
      batches == 0 ? 0 : static_cast<double>(handled1) / static_cast<double>(batches);
  // Flat: the age over the last quarter of the window is not above the first quarter's by more
  // than 0.5 s (a growing backlog adds (put - handled) / handled seconds of age per second).
  const size_t q = std::max<size_t>(1, result.ages_s.size() / 4);
  double first = 0, last = 0;
  for (size_t i = 0; i < q; ++i) {
    first += result.ages_s[i];
    last += result.ages_s[result.ages_s.size() - 1 - i];
  }
  result.flat = (last - first) / static_cast<double>(q) <= 0.5;
  return result;
}

// ---- Driver ----------------------------------------------------------------------------------

bool Wants(const std::string& list, std::string_view item) {
  for (absl::string_view p : absl::StrSplit(list, ',')) {
    if (std::string_view(p.data(), p.size()) == item) return true;
  }
  return false;
}

int Main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);
  spdlog::set_level(spdlog::level::warn);

  const char* tmp = std::getenv("TMPDIR");
  std::string data_dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/poller_bench.XXXXXX");
  if (::mkdtemp(data_dir.data()) == nullptr) {
    std::perror("poller_bench: mkdtemp");
    return 1;
  }
  std::printf(
      "poller_bench: data dir %s, fsync %s, poller over the %s channel, %d runs per figure "
      "(median), %.1f s measured per run\n",
      data_dir.c_str(), options.fsync == v1::FSYNC_ALWAYS ? "always" : "never",
      options.loopback_poller ? "TCP loopback" : "in-process", options.runs, options.seconds);
  std::fflush(stdout);

  std::vector<std::string> summary;
  {
    Probe probe;
    Harness harness(data_dir, options.loopback_poller);
    int stream_counter = 0;

    if (Wants(options.phases, "latency")) {
      std::printf(
          "\n1. Put -> handler latency at %d records/s (PutRecords of 1), %d shards, "
          "window 0, batch 100, parallelization 1\n",
          kLatencyRate, kShards);
      std::printf("%-8s %10s %10s %10s %14s\n", "consumer", "p50 ms", "p99 ms", "max ms",
                  "received");
      for (const std::string consumer : {"polling", "fan_out"}) {
        if (!Wants(options.consumers, consumer)) continue;
        std::vector<double> p50s, p99s, maxes;
        for (int run = 0; run < options.runs; ++run) {
          const std::string stream = absl::StrCat("latency-", stream_counter++);
          harness.CreateStream(stream, options.fsync);
          LatencyResult r = RunLatency(harness, probe, stream, consumer, options.seconds);
          harness.DeleteStream(stream);
          std::printf("%-8s %10.3f %10.3f %10.3f %7llu/%llu\n", consumer.c_str(), r.p50_us / 1000,
                      r.p99_us / 1000, r.max_us / 1000, static_cast<unsigned long long>(r.received),
                      static_cast<unsigned long long>(r.sent));
          std::fflush(stdout);
          p50s.push_back(r.p50_us / 1000);
          p99s.push_back(r.p99_us / 1000);
          maxes.push_back(r.max_us / 1000);
        }
        const double p50 = Median(p50s), p99 = Median(p99s);
        summary.push_back(absl::StrFormat(
            "put->handler, %-8s p50 %.3f ms (target 1 ms: %.2fx), p99 %.3f ms (target 5 ms: "
            "%.2fx), max %.3f ms",
            consumer, p50, p50 / 1.0, p99, p99 / 5.0, Median(maxes)));
      }
    }

    for (const std::string phase : {"ingest", "throughput"}) {
      if (!Wants(options.phases, phase)) continue;
      const bool with_poller = phase == "throughput";
      std::printf("\n2. %s: %d shards%s, %zu-byte records, %d producers of PutRecords(%d)%s\n",
                  with_poller ? "Throughput" : "Ingest alone (no poller)", kShards,
                  with_poller ? " x parallelization 4, batch 1000" : "", kRecordBytes,
                  options.producers, kPutBatch,
                  options.rate > 0
                      ? absl::StrFormat(" paced at %.0f records/s", options.rate).c_str()
                      : " as fast as they can");
      std::vector<double> rates, put_rates, end_ages, cores;
      int flat_runs = 0;
      for (int run = 0; run < options.runs; ++run) {
        const std::string stream = absl::StrCat("throughput-", stream_counter++);
        harness.CreateStream(stream, options.fsync);
        ThroughputResult r = RunThroughput(harness, probe, stream, options, with_poller);
        harness.DeleteStream(stream);
        std::string ages, lags;
        for (size_t i = 0; i < r.ages_s.size(); ++i) {
          absl::StrAppend(&ages, i == 0 ? "" : " ", absl::StrFormat("%.2f", r.ages_s[i]));
          absl::StrAppend(&lags, i == 0 ? "" : " ", r.lags[i]);
        }
        if (!with_poller) {
          std::printf("run %d: put %.0f records/s, %.2f cores busy\n", run + 1, r.put_per_second,
                      r.cores);
        } else {
          std::printf(
              "run %d: handled %.0f records/s, put %.0f records/s, mean batch %.0f, %.2f cores "
              "busy, iterator age %s\n  age s (every 0.5 s): %s\n  lag records (put - handled): "
              "%s\n",
              run + 1, r.handled_per_second, r.put_per_second, r.mean_batch, r.cores,
              r.flat ? "flat" : "GROWING", ages.c_str(), lags.c_str());
        }
        std::fflush(stdout);
        rates.push_back(r.handled_per_second);
        put_rates.push_back(r.put_per_second);
        end_ages.push_back(r.ages_s.empty() ? 0 : r.ages_s.back());
        flat_runs += r.flat ? 1 : 0;
        cores.push_back(r.cores);
      }
      const double rate = Median(rates);
      if (!with_poller) {
        summary.push_back(absl::StrFormat("ingest alone %.0f records/s put, %.2f cores busy",
                                          Median(put_rates), Median(cores)));
        continue;
      }
      summary.push_back(absl::StrFormat(
          "throughput %.0f records/s handled (target 1,000,000: %.2fx), put %.0f records/s, "
          "%.2f cores busy, iterator age at the end %.2f s, flat in %d of %d runs",
          rate, rate / 1e6, Median(put_rates), Median(cores), Median(end_ages), flat_runs,
          options.runs));
    }
  }

  std::printf("\nSummary (median of %d runs)\n", options.runs);
  for (const std::string& line : summary) std::printf("  %s\n", line.c_str());
  std::fflush(stdout);
  std::error_code ec;
  fs::remove_all(data_dir, ec);
  return 0;
}

}  // namespace
}  // namespace runnel::bench

int main(int argc, char** argv) { return runnel::bench::Main(argc, argv); }
