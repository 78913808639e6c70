// The poller's Prometheus metrics (runnel_poller_*, listed in deploy/README.md "Metrics"), per
// mapping and, where it applies, per shard. Included by .cc files only: mapping_runner.h and
// poller.h forward-declare prometheus::Registry.
//
// A shard consumer resolves its label children once (ShardMetrics) and counts through the
// cached pointers, so no event builds a string or looks up a map.
//
// Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "poller/config.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "runnel/runtime/function.h"

namespace runnel::poller {

// The `outcome` label of runnel_poller_invocations_total for each runtime::InvokeStatus:
// ok, error, partial, timeout, crash, memory_exceeded, invalid_response, unavailable.
inline constexpr size_t kInvokeOutcomes = 8;
std::string_view OutcomeLabel(runtime::InvokeStatus status);

// The offset within its shard of a runnel sequence number ("1" + 20-digit offset + 6-digit
// shard index, see broker/sequence_number.h); nullopt for any other form (e.g. a real Kinesis
// sequence number), which leaves the checkpoint gauge alone.
std::optional<uint64_t> SequenceOffset(std::string_view sequence_number);

// One shard of one mapping.
struct ShardMetrics {
  prometheus::Counter* records_polled = nullptr;
  prometheus::Counter* records_filtered = nullptr;
  prometheus::Counter* records_processed = nullptr;
  prometheus::Counter* records_failed = nullptr;           // retries exhausted
  prometheus::Counter* records_dropped_for_age = nullptr;  // record age exceeded
  prometheus::Counter* records_to_destination = nullptr;
  prometheus::Counter* retries = nullptr;
  prometheus::Counter* bisects = nullptr;
  std::array<prometheus::Counter*, kInvokeOutcomes> invocations{};
  prometheus::Gauge* iterator_age_seconds = nullptr;
  prometheus::Gauge* in_flight_batches = nullptr;
  prometheus::Gauge* checkpoint_offset = nullptr;
  // Shared by the mapping's shards (histograms per mapping keep the series count down).
  prometheus::Histogram* invocation_duration = nullptr;
  prometheus::Histogram* batch_size = nullptr;
  // Shared by every mapping of the function.
  prometheus::Gauge* concurrent_executions = nullptr;

  // One invocation ended: its outcome, its duration, and whether it retried a range that had
  // failed before (attempt > 1).
  void Invoked(runtime::InvokeStatus status, absl::Duration duration, int attempt);
  // The checkpoint was stored at `sequence_number`.
  void Checkpointed(std::string_view sequence_number);
};

// The mapping's leases in a poller fleet (per mapping, not per shard: shards come and go).
struct LeaseMetrics {
  prometheus::Gauge* held = nullptr;         // leases this poller holds now
  prometheus::Counter* acquired = nullptr;   // free or released leases taken
  prometheus::Counter* takeovers = nullptr;  // expired leases of another poller taken
  prometheus::Counter* handoffs = nullptr;   // leases shed: drained, checkpointed, released
  prometheus::Counter* lost = nullptr;       // shards stopped at once: lease lost or not renewed
  prometheus::Counter* fenced_writes = nullptr;  // checkpoint writes the broker refused (stale)
};

class MappingMetrics {
 public:
  // Registers (or joins) the poller's families in `registry`; a null registry keeps the
  // metrics in a private one nobody reads, so callers never test for "metrics off".
  MappingMetrics(std::shared_ptr<prometheus::Registry> registry, const MappingSpec& spec);

  // The shard's children, created on first use; the pointer stays valid as long as this object.
  ShardMetrics* ForShard(const std::string& shard_id);
  const LeaseMetrics& leases() const { return leases_; }

  // Histogram buckets.
  static prometheus::Histogram::BucketBoundaries DurationBuckets();   // seconds
  static prometheus::Histogram::BucketBoundaries BatchSizeBuckets();  // records

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  const std::string mapping_;
  const std::string function_;
  const std::string stream_;
  prometheus::Histogram* invocation_duration_;
  prometheus::Histogram* batch_size_;
  prometheus::Gauge* concurrent_executions_;
  LeaseMetrics leases_;

  absl::Mutex mu_;
  std::deque<std::pair<std::string, ShardMetrics>> shards_ ABSL_GUARDED_BY(mu_);
};

}  // namespace runnel::poller
