// The shared-memory layout through which poller_bench's probe handler (poller_bench_probe.cc)
// reports to the benchmark: a file in /dev/shm that both map, so reporting costs a few atomic
// adds per batch and one clock read per latency-probe record, and works in either isolation mode.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

namespace runnel::bench {

// Latency-probe records start with this tag, then the send time (steady clock, ns since its
// epoch), then one byte: 1 to record a sample, 0 for warm-up records.
inline constexpr char kProbeMagic[8] = {'R', 'N', 'L', 'P', 'R', 'O', 'B', 'E'};
inline constexpr size_t kProbeHeaderBytes = sizeof(kProbeMagic) + sizeof(int64_t) + 1;
inline constexpr size_t kMaxProbeSamples = 1 << 17;

struct ProbeShm {
  std::atomic<uint64_t> records;         // records the handler was given
  std::atomic<uint64_t> batches;         // invocations
  std::atomic<int64_t> max_arrival_ms;   // newest approximate arrival time seen (wall clock)
  std::atomic<uint64_t> samples_next;    // next free slot of samples_ns
  int64_t samples_ns[kMaxProbeSamples];  // handler-entry time - send time, per probe record
};

}  // namespace runnel::bench
