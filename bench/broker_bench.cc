// broker_bench: measures the broker end to end, the way a user meets it. It opens a real broker
// on a temporary data directory, serves it on 127.0.0.1:0 and drives it over gRPC loopback with
// the generated stubs, in this one process (client and server share the machine's cores):
//   1. ingest: 100-byte records in PutRecords batches of 500 to a 4-shard stream with random
//      partition keys, fsync `always` and `never`, several PutRecords calls in flight; records/s
//      and PutRecords latency p50/p99, for each concurrency tried;
//   2. read: GetRecords (limit 10,000) over what the ingest wrote, one reader per shard;
//   3. push latency: a producer puts single records at a paced 1,000/s, one SubscribeToShard
//      stream per shard receives them; latency = receive time - send time (carried in the data).
// Every figure is measured --runs times (default 3) and the median is printed.
//
//   broker_bench [--seconds S] [--producers 8,16,32] [--runs N] [--connections N]
//                [--phases ingest,read,latency] [--data-dir DIR] [--quick] [--metrics]
// Figures and the commands used are in bench/README.md.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
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
#include "bench/bench_util.h"
#include "broker/broker.h"
#include "broker/server.h"
#include "prometheus/registry.h"
#include "runnel/v1/broker.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace runnel::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kShards = 4;
constexpr int kBatchRecords = 500;
constexpr size_t kRecordBytes = 100;
constexpr int kGetRecordsLimit = 10'000;
constexpr int kLatencyRate = 1'000;         // records/s in the push-latency phase
constexpr size_t kRequestsPerProducer = 8;  // prebuilt PutRecords requests each producer cycles

struct Options {
  double seconds = 5;  // measured window of each run
  std::vector<int> producers = {8, 16, 32, 64};
  int runs = 3;
  int connections = 1;
  std::string phases = "ingest,read,latency";
  std::string data_dir;
  bool quick = false;
  bool metrics = false;  // keep the broker's Prometheus metrics, as `runnel broker` does by default
};

[[noreturn]] void Usage(const char* message) {
  std::fprintf(stderr,
               "broker_bench: %s\n"
               "usage: broker_bench [--seconds S] [--producers N[,N...]] [--runs N]\n"
               "                    [--connections N] [--phases ingest,read,latency]\n"
               "                    [--data-dir DIR] [--quick] [--metrics]\n",
               message);
  std::exit(2);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  bool seconds_set = false, producers_set = false, runs_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(absl::StrCat(arg, " needs a value").c_str());
      return argv[++i];
    };
    if (arg == "--seconds") {
      if (!absl::SimpleAtod(value(), &options.seconds) || options.seconds <= 0 ||
          options.seconds > 15) {
        Usage("--seconds must be in (0, 15]");
      }
      seconds_set = true;
    } else if (arg == "--producers") {
      options.producers.clear();
      for (absl::string_view part : absl::StrSplit(value(), ',')) {
        int n;
        if (!absl::SimpleAtoi(part, &n) || n < 1 || n > 1024) Usage("bad --producers");
        options.producers.push_back(n);
      }
      producers_set = true;
    } else if (arg == "--runs") {
      if (!absl::SimpleAtoi(value(), &options.runs) || options.runs < 1) Usage("bad --runs");
      runs_set = true;
    } else if (arg == "--connections") {
      if (!absl::SimpleAtoi(value(), &options.connections) || options.connections < 1) {
        Usage("bad --connections");
      }
    } else if (arg == "--phases") {
      options.phases = value();
    } else if (arg == "--data-dir") {
      options.data_dir = value();
    } else if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--metrics") {
      options.metrics = true;
    } else if (arg == "--help" || arg == "-h") {
      Usage("benchmarks a broker over gRPC loopback");
    } else {
      Usage(absl::StrCat("unknown argument ", arg).c_str());
    }
  }
  if (options.quick) {
    if (!seconds_set) options.seconds = 1;
    if (!producers_set) options.producers = {32};
    if (!runs_set) options.runs = 1;
  }
  return options;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// The broker under test and the client channels to it.
class Harness {
 public:
  Harness(const std::string& data_dir, int connections, bool metrics) {
    broker::BrokerOptions options;
    options.data_dir = data_dir;
    if (metrics) options.metrics = std::make_shared<prometheus::Registry>();
    auto opened = broker::Broker::Open(options);
    if (!opened.ok()) {
      std::fprintf(stderr, "broker_bench: %s\n", opened.status().ToString().c_str());
      std::exit(1);
    }
    broker_ = std::move(*opened);
    broker::ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    auto started = broker::BrokerServer::Start(broker_.get(), server_options);
    if (!started.ok()) {
      std::fprintf(stderr, "broker_bench: %s\n", started.status().ToString().c_str());
      std::exit(1);
    }
    server_ = std::move(*started);
    // The first channel is the one every client gets; more (--connections) differ only in an
    // argument that makes gRPC open a connection of their own.
    channels_.push_back(broker::MakeBrokerChannel(server_->address()));
    for (int i = 1; i < connections; ++i) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(broker::kMaxGrpcMessageBytes);
      args.SetMaxSendMessageSize(broker::kMaxGrpcMessageBytes);
      args.SetInt("runnel.bench.connection", i);
      channels_.push_back(
          grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args));
    }
    for (auto& channel : channels_) stubs_.push_back(v1::StreamBroker::NewStub(channel));
  }
  ~Harness() {
    stubs_.clear();
    channels_.clear();
    server_.reset();
    broker_.reset();
  }

  v1::StreamBroker::Stub& stub(size_t i = 0) { return *stubs_[i % stubs_.size()]; }
  size_t connections() const { return stubs_.size(); }

  void CreateStream(const std::string& name, v1::FsyncPolicy fsync) {
    bench::CreateStream(stub(), name, kShards, fsync);
  }
  void DeleteStream(const std::string& name) { bench::DeleteStream(stub(), name); }

 private:
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::BrokerServer> server_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::StreamBroker::Stub>> stubs_;
};

// ---- 1. Ingest -------------------------------------------------------------------------------

struct IngestResult {
  double records_per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  uint64_t records = 0;
  uint64_t failed = 0;
};

// `producers` PutRecords calls kept in flight with the callback API: each finished call starts
// the next one at once. Requests are built before the clock starts (kRequestsPerProducer per
// producer, each with its own random keys), so the client's work is what any gRPC client does:
// serialise, parse.
class IngestRun {
 public:
  IngestRun(Harness& harness, const std::string& stream, int producers)
      : harness_(harness), slots_(static_cast<size_t>(producers)) {
    std::mt19937_64 rng(42);
    // Record data: 100-byte windows of one random text (content does not matter to the broker).
    std::string text(4096 + kRecordBytes, 'x');
    for (char& c : text) c = static_cast<char>('a' + rng() % 26);
    for (size_t s = 0; s < slots_.size(); ++s) {
      Slot& slot = slots_[s];
      slot.index = s;
      slot.requests.resize(kRequestsPerProducer);
      for (auto& request : slot.requests) {
        request.set_stream_name(stream);
        for (int i = 0; i < kBatchRecords; ++i) {
          auto* entry = request.add_records();
          entry->set_data(text.substr(rng() % 4096, kRecordBytes));
          entry->set_partition_key(RandomKey(rng));
        }
      }
    }
  }

  IngestResult Run(double warmup_seconds, double seconds) {
    start_ = Clock::now();
    measure_from_ = start_ + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(warmup_seconds));
    measure_to_ = measure_from_ + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(seconds));
    in_flight_ = static_cast<int>(slots_.size());
    for (Slot& slot : slots_) Issue(slot);
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return in_flight_ == 0; });
    }
    IngestResult result;
    std::vector<double> latencies;
    for (Slot& slot : slots_) {
      result.records += slot.records;
      result.failed += slot.failed;
      latencies.insert(latencies.end(), slot.latencies_us.begin(), slot.latencies_us.end());
    }
    result.records_per_second = static_cast<double>(result.records) / seconds;
    result.p50_us = Percentile(latencies, 50);
    result.p99_us = Percentile(latencies, 99);
    return result;
  }

 private:
  struct Slot {
    size_t index = 0;
    std::vector<v1::PutRecordsRequest> requests;
    size_t next_request = 0;
    std::unique_ptr<grpc::ClientContext> context;
    v1::PutRecordsResponse response;  // reused: Clear() keeps its allocations
    Clock::time_point sent;
    uint64_t records = 0, failed = 0;
    std::vector<double> latencies_us;
  };

  void Issue(Slot& slot) {
    slot.context = std::make_unique<grpc::ClientContext>();
    slot.response.Clear();
    const v1::PutRecordsRequest& request =
        slot.requests[slot.next_request++ % kRequestsPerProducer];
    slot.sent = Clock::now();
    harness_.stub(slot.index)
        .async()
        ->PutRecords(slot.context.get(), &request, &slot.response,
                     [this, &slot](grpc::Status status) { Done(slot, status); });
  }

  void Done(Slot& slot, const grpc::Status& status) {
    const Clock::time_point now = Clock::now();
    Check(status, "PutRecords");
    if (now >= measure_from_ && now < measure_to_) {
      slot.records +=
          static_cast<uint64_t>(slot.response.records_size() - slot.response.failed_record_count());
      slot.failed += static_cast<uint64_t>(slot.response.failed_record_count());
      slot.latencies_us.push_back(Micros(now - slot.sent));
    }
    if (now < measure_to_) return Issue(slot);
    std::lock_guard lock(mu_);
    if (--in_flight_ == 0) cv_.notify_all();
  }

  Harness& harness_;
  std::vector<Slot> slots_;
  Clock::time_point start_, measure_from_, measure_to_;
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;
};

// ---- 2. Read ---------------------------------------------------------------------------------

struct ReadResult {
  double records_per_second = 0;
  uint64_t records = 0;
  double seconds = 0;
};

// One reader thread per shard: GetShardIterator(TRIM_HORIZON), then GetRecords(limit 10,000)
// until it is caught up or `max_seconds` pass.
ReadResult ReadAll(Harness& harness, const std::string& stream, double max_seconds) {
  std::atomic<uint64_t> total{0};
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop_at = start + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(max_seconds));
  std::vector<std::thread> readers;
  for (int shard = 0; shard < kShards; ++shard) {
    readers.emplace_back([&, shard] {
      v1::StreamBroker::Stub& stub = harness.stub(static_cast<size_t>(shard));
      v1::GetShardIteratorRequest iterator_request;
      iterator_request.set_stream_name(stream);
      iterator_request.set_shard_id(absl::StrFormat("shardId-%012d", shard));
      iterator_request.set_shard_iterator_type(v1::TRIM_HORIZON);
      v1::GetShardIteratorResponse iterator;
      {
        grpc::ClientContext context;
        Check(stub.GetShardIterator(&context, iterator_request, &iterator), "GetShardIterator");
      }
      v1::GetRecordsRequest request;
      request.set_shard_iterator(iterator.shard_iterator());
      request.set_limit(kGetRecordsLimit);
      v1::GetRecordsResponse response;  // reused: parsing into it keeps its allocations
      uint64_t count = 0;
      while (Clock::now() < stop_at) {
        grpc::ClientContext context;
        Check(stub.GetRecords(&context, request, &response), "GetRecords");
        count += static_cast<uint64_t>(response.records_size());
        if (response.records_size() == 0 || response.millis_behind_latest() == 0) break;
        request.set_shard_iterator(response.next_shard_iterator());
      }
      total += count;
    });
  }
  for (auto& reader : readers) reader.join();
  ReadResult result;
  result.seconds = Seconds(Clock::now() - start);
  result.records = total.load();
  result.records_per_second = static_cast<double>(result.records) / result.seconds;
  return result;
}

// ---- 3. Put -> SubscribeToShard latency ------------------------------------------------------

struct LatencyResult {
  double p50_us = 0;
  double p99_us = 0;
  double max_us = 0;
  uint64_t sent = 0;
  uint64_t received = 0;
};

// One subscriber per shard (a ClientReadReactor each) from LATEST; a producer thread puts one
// record (PutRecords of 1) every millisecond without waiting for the answer. The record's data
// starts with the send time (steady clock, nanoseconds), so the latency needs no clock sync.
class LatencyRun {
 public:
  class Subscriber : public grpc::ClientReadReactor<v1::SubscribeToShardEvent> {
   public:
    Subscriber(v1::StreamBroker::Stub& stub, const std::string& stream, int shard) {
      request_.set_stream_name(stream);
      request_.set_shard_id(absl::StrFormat("shardId-%012d", shard));
      request_.mutable_starting_position()->set_type(v1::LATEST);
      stub.async()->SubscribeToShard(&context_, &request_, this);
      StartRead(&event_);
      StartCall();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;
      const Clock::time_point now = Clock::now();
      {
        std::lock_guard lock(mu_);
        for (const auto& record : event_.records()) {
          int64_t sent_ns;
          if (record.data().size() < sizeof(sent_ns)) continue;
          std::memcpy(&sent_ns, record.data().data(), sizeof(sent_ns));
          const Clock::time_point sent{std::chrono::nanoseconds(sent_ns)};
          if (record_) latencies_us_.push_back(Micros(now - sent));
        }
      }
      StartRead(&event_);
    }
    void OnDone(const grpc::Status&) override {
      std::lock_guard lock(mu_);
      done_ = true;
      cv_.notify_all();
    }
    void Cancel() { context_.TryCancel(); }
    void Wait() {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return done_; });
    }
    void SetRecording(bool on) {
      std::lock_guard lock(mu_);
      record_ = on;
    }
    std::vector<double> TakeLatencies() {
      std::lock_guard lock(mu_);
      return std::move(latencies_us_);
    }

   private:
    grpc::ClientContext context_;
    v1::SubscribeToShardRequest request_;
    v1::SubscribeToShardEvent event_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    bool record_ = false;
    std::vector<double> latencies_us_;
  };

  static LatencyResult Run(Harness& harness, const std::string& stream, double seconds) {
    std::vector<std::unique_ptr<Subscriber>> subscribers;
    for (int shard = 0; shard < kShards; ++shard) {
      subscribers.push_back(
          std::make_unique<Subscriber>(harness.stub(static_cast<size_t>(shard)), stream, shard));
    }
    // Let the subscriptions reach the broker (LATEST is resolved when the call arrives).
    std::this_thread::sleep_for(std::chrono::milliseconds(300));

    struct Call {
      grpc::ClientContext context;
      v1::PutRecordsRequest request;
      v1::PutRecordsResponse response;
    };
    std::atomic<int> in_flight{0};
    std::atomic<uint64_t> failures{0};
    std::mt19937_64 rng(7);
    const int warmup = kLatencyRate / 2;  // the first 0.5 s is not recorded
    const int total = warmup + static_cast<int>(seconds * kLatencyRate);
    const Clock::time_point start = Clock::now();
    for (int i = 0; i < total; ++i) {
      if (i == warmup) {
        // Records sent before this point may still arrive: a little over-counting at the edge
        // only adds warm-up samples, which are slower, so the figure errs on the safe side.
        for (auto& s : subscribers) s->SetRecording(true);
      }
      std::this_thread::sleep_until(start +
                                    std::chrono::microseconds(i * 1'000'000LL / kLatencyRate));
      auto* call = new Call;
      call->request.set_stream_name(stream);
      auto* entry = call->request.add_records();
      entry->set_partition_key(RandomKey(rng));
      std::string data(kRecordBytes, 'l');
      const int64_t sent_ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
              .count();
      std::memcpy(data.data(), &sent_ns, sizeof(sent_ns));
      entry->set_data(std::move(data));
      in_flight++;
      harness.stub(static_cast<size_t>(i))
          .async()
          ->PutRecords(&call->context, &call->request, &call->response,
                       [call, &in_flight, &failures](grpc::Status status) {
                         if (!status.ok() || call->response.failed_record_count() != 0) failures++;
                         delete call;
                         in_flight--;
                       });
    }
    while (in_flight.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the last pushes
    LatencyResult result;
    std::vector<double> latencies;
    for (auto& s : subscribers) {
      s->Cancel();
      s->Wait();
      auto part = s->TakeLatencies();
      latencies.insert(latencies.end(), part.begin(), part.end());
    }
    if (failures.load() != 0) {
      std::fprintf(stderr, "broker_bench: %llu puts failed in the latency run\n",
                   static_cast<unsigned long long>(failures.load()));
    }
    result.sent = static_cast<uint64_t>(total - warmup);
    result.received = latencies.size();
    result.p50_us = Percentile(latencies, 50);
    result.p99_us = Percentile(latencies, 99);
    result.max_us = latencies.empty() ? 0 : latencies.back();
    return result;
  }
};

// ---- Driver ----------------------------------------------------------------------------------

const char* FsyncName(v1::FsyncPolicy policy) {
  return policy == v1::FSYNC_ALWAYS ? "always" : "never";
}

bool Wants(const Options& options, std::string_view phase) {
  for (absl::string_view p : absl::StrSplit(options.phases, ',')) {
    if (std::string_view(p.data(), p.size()) == phase) return true;
  }
  return false;
}

int Main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);
  spdlog::set_level(spdlog::level::warn);

  std::string data_dir = options.data_dir;
  bool remove_data_dir = false;
  if (data_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/broker_bench.XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("broker_bench: mkdtemp");
      return 1;
    }
    data_dir = pattern;
    remove_data_dir = true;
  }
  const double warmup = std::min(1.0, options.seconds / 4);
  std::printf(
      "broker_bench: data dir %s, %d runs per figure (median), %.1f s measured per run, metrics "
      "%s\n",
      data_dir.c_str(), options.runs, options.seconds, options.metrics ? "on" : "off");
  std::fflush(stdout);

  int exit_code = 0;
  {
    Harness harness(data_dir, options.connections, options.metrics);
    std::string read_stream;  // the last ingest stream, kept for the read phase
    int stream_counter = 0;

    std::vector<std::string> summary;

    if (Wants(options, "ingest") || Wants(options, "read")) {
      std::printf(
          "\n1. Ingest: PutRecords of %d x %zu-byte records, %d shards, %zu connection(s)\n",
          kBatchRecords, kRecordBytes, kShards, harness.connections());
      std::printf("%-7s %9s %14s %12s %12s %s\n", "fsync", "in-flight", "records/s", "p50 ms",
                  "p99 ms", "(runs: records/s)");
      const std::vector<int> producers =
          Wants(options, "ingest") ? options.producers : std::vector<int>{options.producers.back()};
      for (v1::FsyncPolicy fsync : {v1::FSYNC_ALWAYS, v1::FSYNC_NEVER}) {
        double best_rate = 0, best_p50 = 0, best_p99 = 0;
        int best_producers = 0;
        for (int n : producers) {
          std::vector<double> rates, p50s, p99s;
          std::string runs_text;
          for (int run = 0; run < options.runs; ++run) {
            const std::string stream = absl::StrCat("ingest-", stream_counter++);
            harness.CreateStream(stream, fsync);
            IngestResult r;
            {
              IngestRun ingest(harness, stream, n);
              r = ingest.Run(warmup, options.seconds);
            }
            if (r.failed != 0) {
              std::fprintf(stderr, "broker_bench: %llu records failed\n",
                           static_cast<unsigned long long>(r.failed));
              exit_code = 1;
            }
            rates.push_back(r.records_per_second);
            p50s.push_back(r.p50_us / 1000);
            p99s.push_back(r.p99_us / 1000);
            absl::StrAppend(&runs_text, run == 0 ? "" : " ",
                            static_cast<int64_t>(r.records_per_second));
            if (!read_stream.empty()) harness.DeleteStream(read_stream);
            read_stream = stream;
          }
          const double rate = Median(rates);
          std::printf("%-7s %9d %14.0f %12.2f %12.2f (%s)\n", FsyncName(fsync), n, rate,
                      Median(p50s), Median(p99s), runs_text.c_str());
          std::fflush(stdout);
          if (rate > best_rate) {
            best_rate = rate;
            best_producers = n;
            best_p50 = Median(p50s);
            best_p99 = Median(p99s);
          }
        }
        summary.push_back(absl::StrFormat(
            "ingest, fsync %-6s  %12.0f records/s   (%d in flight; PutRecords p50 %.2f ms, p99 "
            "%.2f ms)",
            FsyncName(fsync), best_rate, best_producers, best_p50, best_p99));
      }
    }

    if (Wants(options, "read") && !read_stream.empty()) {
      std::printf(
          "\n2. Read: GetRecords (limit %d) from TRIM_HORIZON, one reader per shard, "
          "stream %s\n",
          kGetRecordsLimit, read_stream.c_str());
      std::vector<double> rates;
      for (int run = 0; run < options.runs; ++run) {
        ReadResult r = ReadAll(harness, read_stream, 15);
        std::printf("run %d: %llu records in %.2f s = %.0f records/s\n", run + 1,
                    static_cast<unsigned long long>(r.records), r.seconds, r.records_per_second);
        std::fflush(stdout);
        rates.push_back(r.records_per_second);
      }
      summary.push_back(absl::StrFormat("read (GetRecords)     %12.0f records/s", Median(rates)));
    }

    if (Wants(options, "latency")) {
      std::printf("\n3. Put -> SubscribeToShard latency at %d records/s, %d subscribers\n",
                  kLatencyRate, kShards);
      std::printf("%-7s %10s %10s %10s %10s\n", "fsync", "p50 ms", "p99 ms", "max ms", "received");
      for (v1::FsyncPolicy fsync : {v1::FSYNC_ALWAYS, v1::FSYNC_NEVER}) {
        std::vector<double> p50s, p99s, maxes;
        for (int run = 0; run < options.runs; ++run) {
          const std::string stream = absl::StrCat("latency-", stream_counter++);
          harness.CreateStream(stream, fsync);
          LatencyResult r = LatencyRun::Run(harness, stream, options.seconds);
          harness.DeleteStream(stream);
          std::printf("%-7s %10.3f %10.3f %10.3f %6llu/%llu\n", FsyncName(fsync), r.p50_us / 1000,
                      r.p99_us / 1000, r.max_us / 1000, static_cast<unsigned long long>(r.received),
                      static_cast<unsigned long long>(r.sent));
          std::fflush(stdout);
          p50s.push_back(r.p50_us / 1000);
          p99s.push_back(r.p99_us / 1000);
          maxes.push_back(r.max_us / 1000);
        }
        summary.push_back(
            absl::StrFormat("put->subscriber, fsync %-6s p50 %.3f ms, p99 %.3f ms (max %.3f ms)",
                            FsyncName(fsync), Median(p50s), Median(p99s), Median(maxes)));
      }
    }

    std::printf("\nSummary (median of %d runs)\n", options.runs);
    for (const std::string& line : summary) std::printf("  %s\n", line.c_str());
    std::fflush(stdout);
  }
  if (remove_data_dir) {
    std::error_code ec;
    fs::remove_all(data_dir, ec);
  }
  return exit_code;
}

}  // namespace
}  // namespace runnel::bench

int main(int argc, char** argv) { return runnel::bench::Main(argc, argv); }
