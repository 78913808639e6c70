#include "poller/metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace runnel::poller {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using runtime::InvokeStatus;

std::string_view OutcomeLabel(InvokeStatus status) {
  switch (status) {
    case InvokeStatus::kSuccess:
      return "ok";
    case InvokeStatus::kFunctionError:
      return "error";
    case InvokeStatus::kBatchItemFailures:
      return "partial";
    case InvokeStatus::kTimeout:
      return "timeout";
    case InvokeStatus::kCrash:
      return "crash";
    case InvokeStatus::kMemoryExceeded:
      return "memory_exceeded";
    case InvokeStatus::kInvalidResponse:
      return "invalid_response";
    case InvokeStatus::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

namespace {

size_t OutcomeIndex(InvokeStatus status) {
  const auto index = static_cast<size_t>(status);
  return index < kInvokeOutcomes ? index : static_cast<size_t>(InvokeStatus::kInvalidResponse);
}

}  // namespace

std::optional<uint64_t> SequenceOffset(std::string_view sequence_number) {
  if (sequence_number.size() != 27 || sequence_number[0] != '1') return std::nullopt;
  for (char c : sequence_number) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  // SimpleAtoi refuses offsets past uint64 (20 digits can hold more).
  uint64_t offset = 0;
  if (!absl::SimpleAtoi(Sv(sequence_number.substr(1, 20)), &offset)) return std::nullopt;
  return offset;
}

void ShardMetrics::Invoked(InvokeStatus status, absl::Duration duration, int attempt) {
  invocations[OutcomeIndex(status)]->Increment();
  invocation_duration->Observe(absl::ToDoubleSeconds(duration));
  if (attempt > 1) retries->Increment();
}

void ShardMetrics::Checkpointed(std::string_view sequence_number) {
  if (auto offset = SequenceOffset(sequence_number)) {
    checkpoint_offset->Set(static_cast<double>(*offset));
  }
}

prometheus::Histogram::BucketBoundaries MappingMetrics::DurationBuckets() {
  // Lambda's timeouts go up to 15 minutes.
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
          0.5,    1,     2.5,    5,     10,   30,    60,   300, 900};
}

prometheus::Histogram::BucketBoundaries MappingMetrics::BatchSizeBuckets() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
}

namespace {

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                       const char* name, const char* help) {
  return BuildCounter().Name(name).Help(help).Register(registry);
}
prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& registry, const char* name,
                                                   const char* help) {
  return BuildGauge().Name(name).Help(help).Register(registry);
}

}  // namespace

MappingMetrics::MappingMetrics(std::shared_ptr<prometheus::Registry> registry,
                               const MappingSpec& spec)
    : registry_(registry ? std::move(registry) : std::make_shared<prometheus::Registry>()),
      mapping_(spec.Id()),
      function_(spec.function),
      stream_(spec.stream) {
  invocation_duration_ =
      &BuildHistogram()
           .Name("runnel_poller_invocation_duration_seconds")
           .Help("Duration of each invocation of the function, as the poller saw it")
           .Register(*registry_)
           .Add({{"mapping", mapping_}, {"function", function_}}, DurationBuckets());
  batch_size_ = &BuildHistogram()
                     .Name("runnel_poller_batch_size_records")
                     .Help("Records in each batch the batcher hands out (before bisecting)")
                     .Register(*registry_)
                     .Add({{"mapping", mapping_}, {"function", function_}}, BatchSizeBuckets());
  concurrent_executions_ =
      &GaugeFamily(*registry_, "runnel_poller_concurrent_executions",
                   "Invocations of the function in progress (waiting for an execution "
                   "environment included), all mappings together")
           .Add({{"function", function_}});
  const prometheus::Labels labels{{"mapping", mapping_}, {"function", function_}};
  prometheus::Registry& r = *registry_;
  leases_.held = &GaugeFamily(r, "runnel_poller_leases_held",
                              "Shard leases of the mapping this poller holds (poller fleet)")
                      .Add(labels);
  leases_.acquired = &CounterFamily(r, "runnel_poller_lease_acquisitions_total",
                                    "Free or released shard leases this poller took")
                          .Add(labels);
  leases_.takeovers = &CounterFamily(r, "runnel_poller_lease_takeovers_total",
                                     "Expired leases of another poller taken over (it stopped "
                                     "renewing: crashed, paused or cut off)")
                           .Add(labels);
  leases_.handoffs = &CounterFamily(r, "runnel_poller_lease_handoffs_total",
                                    "Leases handed over gracefully: reading stopped, the "
                                    "batches in flight finished, checkpoint written, released")
                          .Add(labels);
  leases_.lost = &CounterFamily(r, "runnel_poller_leases_lost_total",
                                "Shards stopped at once because their lease was lost or could "
                                "not be renewed in time")
                      .Add(labels);
  leases_.fenced_writes = &CounterFamily(r, "runnel_poller_fenced_writes_total",
                                         "Checkpoint writes the broker refused because the "
                                         "lease epoch was stale")
                               .Add(labels);
}

ShardMetrics* MappingMetrics::ForShard(const std::string& shard_id) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, metrics] : shards_) {
    if (id == shard_id) return &metrics;
  }
  const prometheus::Labels labels{
      {"mapping", mapping_}, {"function", function_}, {"stream", stream_}, {"shard", shard_id}};
  prometheus::Registry& r = *registry_;
  ShardMetrics m;
  m.records_polled =
      &CounterFamily(r, "runnel_poller_records_polled_total", "Records read from the shard")
           .Add(labels);
  m.records_filtered = &CounterFamily(r, "runnel_poller_records_filtered_total",
                                      "Records no filter matched (not invoked, count as done)")
                            .Add(labels);
  m.records_processed = &CounterFamily(r, "runnel_poller_records_processed_total",
                                       "Records the function processed successfully")
                             .Add(labels);
  m.records_failed = &CounterFamily(r, "runnel_poller_records_failed_total",
                                    "Records given up on after the retry attempts ran out "
                                    "(RetryAttemptsExhausted)")
                          .Add(labels);
  m.records_dropped_for_age =
      &CounterFamily(r, "runnel_poller_records_dropped_for_age_total",
                     "Records given up on for being older than max_record_age "
                     "(RecordAgeExceeded)")
           .Add(labels);
  m.records_to_destination = &CounterFamily(r, "runnel_poller_records_sent_to_destination_total",
                                            "Given-up records written to the on_failure "
                                            "destination")
                                  .Add(labels);
  m.retries = &CounterFamily(r, "runnel_poller_retries_total",
                             "Invocations of a range that had failed before (attempt > 1)")
                   .Add(labels);
  m.bisects = &CounterFamily(r, "runnel_poller_bisects_total",
                             "Failed ranges split in two by bisect_batch_on_error")
                   .Add(labels);
  auto& invocations = CounterFamily(r, "runnel_poller_invocations_total",
                                    "Invocations of the function, by outcome");
  for (size_t i = 0; i < kInvokeOutcomes; ++i) {
    prometheus::Labels with_outcome = labels;
    with_outcome["outcome"] = std::string(OutcomeLabel(static_cast<InvokeStatus>(i)));
    m.invocations[i] = &invocations.Add(with_outcome);
  }
  m.iterator_age_seconds =
      &GaugeFamily(r, "runnel_poller_iterator_age_seconds",
                   "Age of the last record of the latest invoked batch when it was invoked "
                   "(Lambda's IteratorAge)")
           .Add(labels);
  m.in_flight_batches = &GaugeFamily(r, "runnel_poller_in_flight_batches",
                                     "Batches taken by the shard's lanes and not yet finished")
                             .Add(labels);
  m.checkpoint_offset =
      &GaugeFamily(r, "runnel_poller_checkpoint_offset",
                   "Offset within the shard of the stored checkpoint (the record at and below "
                   "which everything is done)")
           .Add(labels);
  m.invocation_duration = invocation_duration_;
  m.batch_size = batch_size_;
  m.concurrent_executions = concurrent_executions_;
  shards_.emplace_back(shard_id, m);
  return &shards_.back().second;
}

}  // namespace runnel::poller
