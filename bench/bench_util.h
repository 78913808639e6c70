// What the benchmarks share: statistics over runs, random partition keys, and the broker calls
// that set a run up. Header-only; included by the bench programs alone.
#pragma once

#include <errno.h>  // program_invocation_short_name
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "runnel/v1/broker.grpc.pb.h"

namespace runnel::bench {

// The median of `values` (0 when empty): what the benchmarks report over repeated runs.
inline double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Nearest-rank percentile of `values` (sorted in place).
inline double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

// 16 hex digits: partition keys that spread evenly over the shards.
inline std::string RandomKey(std::mt19937_64& rng) {
  static const char kHex[] = "0123456789abcdef";
  std::string key(16, '0');
  uint64_t bits = rng();
  for (char& c : key) {
    c = kHex[bits & 15];
    bits >>= 4;
  }
  return key;
}

// A failed setup call ends the benchmark: its figures would mean nothing.
inline void Check(const grpc::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s failed: %s\n", program_invocation_short_name, what,
                 status.error_message().c_str());
    std::exit(1);
  }
}

inline void CreateStream(v1::StreamBroker::Stub& stub, const std::string& name, int shards,
                         v1::FsyncPolicy fsync) {
  grpc::ClientContext context;
  v1::CreateStreamRequest request;
  request.set_stream_name(name);
  request.set_shard_count(shards);
  request.set_fsync_policy(fsync);
  v1::CreateStreamResponse response;
  Check(stub.CreateStream(&context, request, &response), "CreateStream");
}

inline void DeleteStream(v1::StreamBroker::Stub& stub, const std::string& name) {
  grpc::ClientContext context;
  v1::DeleteStreamRequest request;
  request.set_stream_name(name);
  v1::DeleteStreamResponse response;
  Check(stub.DeleteStream(&context, request, &response), "DeleteStream");
}

}  // namespace runnel::bench
