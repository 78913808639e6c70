// runtime_bench: what the function runtime costs. Records/s through a no-op handler in batches of
// 100 and 1,000 records of 100 bytes, in_process and process isolation, from one caller (one
// poller lane); then the per-invocation overhead (1-record batches) as p50/p99 latency.
// Figures and how to read them: bench/README.md ("Runtime").
//
//   runtime_bench [--seconds S]   (default 2 s per measurement)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "runnel/runtime/function.h"

namespace runnel::runtime {
namespace {

struct Batch {
  std::vector<std::string> keys, seqs, data;
  std::vector<RecordView> views;
  explicit Batch(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      keys.push_back(absl::StrFormat("pk-%d", i));
      seqs.push_back(absl::StrFormat("4965%052d", i + 1));
      data.push_back(std::string(100, static_cast<char>('a' + i % 26)));
    }
    for (size_t i = 0; i < n; ++i) views.push_back(RecordView{keys[i], seqs[i], data[i], 0});
  }
  InvokeRequest Request() const {
    InvokeRequest request;
    request.shard_id = "shardId-000000000000";
    request.event_source_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/bench";
    request.aws_region = "us-east-1";
    request.request_id = "bench";  // skip generating a UUID per call: not the runtime's cost
    request.records = views;
    return request;
  }
};

std::unique_ptr<Function> Load(Isolation isolation) {
  FunctionConfig config;
  config.name = "noop";
  config.plugin = NOOP_PLUGIN;
  config.isolation = isolation;
  config.worker_binary = RUNNEL_BINARY;
  auto function = Function::Load(config);
  if (!function.ok()) {
    std::fprintf(stderr, "runtime_bench: %s\n", std::string(function.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(function);
}

void Check(const InvokeResult& result) {
  if (!result.ok()) {
    std::fprintf(stderr, "runtime_bench: invocation failed: %s: %s\n", result.error_type.c_str(),
                 result.error_message.c_str());
    std::exit(1);
  }
}

void Throughput(Function& function, Isolation isolation, size_t batch_size, absl::Duration period) {
  Batch batch(batch_size);
  InvokeRequest request = batch.Request();
  for (int i = 0; i < 200; ++i) Check(function.Invoke(request));  // warm up
  int64_t invocations = 0;
  absl::Time start = absl::Now();
  absl::Time end = start + period;
  absl::Time now = start;
  while (now < end) {
    for (int i = 0; i < 50; ++i) Check(function.Invoke(request));
    invocations += 50;
    now = absl::Now();
  }
  double seconds = absl::ToDoubleSeconds(now - start);
  double records_per_s = static_cast<double>(invocations) * batch_size / seconds;
  std::printf("%-10s  batch %5zu  %12.0f records/s  %9.0f invocations/s  %7.2f MB/s of data\n",
              std::string(IsolationName(isolation)).c_str(), batch_size, records_per_s,
              invocations / seconds, records_per_s * 100 / 1e6);
}

void Overhead(Function& function, Isolation isolation, int samples) {
  Batch batch(1);
  InvokeRequest request = batch.Request();
  for (int i = 0; i < 500; ++i) Check(function.Invoke(request));
  std::vector<double> micros;
  micros.reserve(samples);
  for (int i = 0; i < samples; ++i) {
    absl::Time start = absl::Now();
    Check(function.Invoke(request));
    micros.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
  }
  std::sort(micros.begin(), micros.end());
  auto at = [&](double q) { return micros[static_cast<size_t>(q * (micros.size() - 1))]; };
  std::printf(
      "%-10s  1-record invocation: p50 %7.1f us  p90 %7.1f us  p99 %7.1f us  max %8.1f us\n",
      std::string(IsolationName(isolation)).c_str(), at(0.50), at(0.90), at(0.99), micros.back());
}

}  // namespace
}  // namespace runnel::runtime

int main(int argc, char** argv) {
  using namespace runnel::runtime;
  absl::Duration period = absl::Seconds(2);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      period = absl::Seconds(std::atof(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: runtime_bench [--seconds S]\n");
      return 2;
    }
  }
  for (Isolation isolation : {Isolation::kInProcess, Isolation::kProcess}) {
    auto function = Load(isolation);
    for (size_t batch : {100, 1000}) Throughput(*function, isolation, batch, period);
  }
  for (Isolation isolation : {Isolation::kInProcess, Isolation::kProcess}) {
    auto function = Load(isolation);
    Overhead(*function, isolation, 20000);
  }
  return 0;
}
