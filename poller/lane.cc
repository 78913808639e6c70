#include "poller/lane.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "poller/backoff.h"
#include "poller/destination.h"
#include "poller/failure_record.h"
#include "poller/metrics.h"
#include "runnel/runtime/function.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {
namespace {

// Marks a batch in flight (for Status()) for as long as it lives.
class InFlight {
 public:
  InFlight(ShardProgress* progress, const std::vector<QueuedRecord>& batch)
      : progress_(progress), key_(batch.front().ordinal) {
    InFlightBatchStatus status;
    status.first_sequence_number = batch.front().record.sequence_number;
    status.last_sequence_number = batch.back().record.sequence_number;
    status.records = static_cast<int>(batch.size());
    status.started = absl::Now();
    progress_->BatchStarted(key_, std::move(status));
  }
  ~InFlight() { progress_->BatchEnded(key_); }
  void Attempt(int attempt) { progress_->BatchAttempt(key_, attempt); }

 private:
  ShardProgress* const progress_;
  const uint64_t key_;
};

}  // namespace

Lane::Lane(const LaneContext* context, int index, BatchingRules rules)
    : context_(*context), index_(index), batcher_(rules) {}

void Lane::Add(std::vector<QueuedRecord> records, absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (QueuedRecord& queued : records) {
    const SourceRecord& record = queued.record;
    batcher_.Add(
        EventBytes(record.partition_key.size(), record.data.size(), record.sequence_number.size()),
        now);
    records_.push_back(std::move(queued));
  }
}

void Lane::RequestStop() {
  stop_requested_ = true;
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

void Lane::Abandon() {
  abandoned_ = true;
  RequestStop();
}

void Lane::Run() {
  for (;;) {
    std::vector<QueuedRecord> batch;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (abandoned_) return;
        // Stopping drains what was already read, without waiting for batching windows: a
        // record left behind would hold the checkpoint below records other lanes finished,
        // and those would be delivered again after a restart.
        if (stopping_ && batcher_.empty()) return;
        const absl::Time now = stopping_ ? absl::InfiniteFuture() : absl::Now();
        const size_t ready = batcher_.Ready(now);
        if (ready > 0) {
          batcher_.Take(ready);
          batch.reserve(ready);
          for (size_t i = 0; i < ready; ++i) {
            batch.push_back(std::move(records_.front()));
            records_.pop_front();
          }
          break;
        }
        // Sleep until the window closes, a record arrives, or we are stopped.
        const size_t queued = batcher_.size();
        auto changed = [this, queued]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || batcher_.size() != queued;
        };
        mu_.AwaitWithDeadline(absl::Condition(&changed), batcher_.Deadline());
      }
    }
    // Process marks records done as the failure policy settles them; when stopped first,
    // the rest stays unfinished and is read again after a restart.
    if (!Process(batch)) return;
  }
}

void Lane::MarkDone(const std::vector<QueuedRecord>& batch, size_t begin, size_t end) {
  context_.progress->Completed(index_,
                               std::span<const QueuedRecord>(batch).subspan(begin, end - begin));
}

bool Lane::SleepUntil(int64_t until_ms) {
  while (absl::ToUnixMillis(absl::Now()) < until_ms) {
    if (stop_requested_) return false;
    absl::SleepFor(std::min(absl::Milliseconds(20),
                            absl::Milliseconds(until_ms - absl::ToUnixMillis(absl::Now()))));
  }
  return true;
}

// The checkpoint must not pass records that are neither processed nor recorded, hence the
// retries until the destination takes the record.
bool Lane::RecordDiscard(const FailurePolicy::Action& discard,
                         std::span<const runtime::RecordView> records) {
  const MappingSpec& spec = *context_.spec;
  const std::string function_arn =
      absl::StrCat("arn:aws:lambda:", context_.region, ":000000000000:function:", spec.function);
  const std::string& role = context_.function->config().role;
  FailureRecordContext failure_context{function_arn, context_.shard_id, context_.stream_arn,
                                       context_.region,
                                       role.empty() ? runtime::kDefaultRoleArn : role};
  const FailureRecord record =
      MakeFailureRecord(discard, records.subspan(discard.begin, discard.size()), failure_context,
                        absl::ToUnixMillis(absl::Now()), discard.request_id);
  FailureDestination* destination = context_.destination;
  if (destination == nullptr) {
    // As Lambda without a destination: the records are dropped, but not silently.
    spdlog::error(
        "discarded {} records {}..{} ({}, {} invocations, last error {}: {}{}); no "
        "on_failure destination is set",
        discard.size(), record.start_sequence_number, record.end_sequence_number, record.condition,
        discard.approximate_invoke_count, discard.error_type, discard.error_message,
        discard.ReportedFailedNote());
    return true;
  }
  absl::Duration backoff = absl::ZeroDuration();
  for (;;) {
    if (context_.before_dead_letter) {
      if (absl::Status fence = context_.before_dead_letter(); !fence.ok()) {
        spdlog::error("not writing {} discarded records {}..{} to {}: {}", discard.size(),
                      record.start_sequence_number, record.end_sequence_number,
                      destination->Describe(), std::string(fence.message()));
        return false;
      }
    }
    absl::Status status = destination->Write(record);
    if (status.ok()) break;
    backoff = NextBackoff(backoff);
    context_.progress->NoteError(
        absl::StrCat("on-failure destination ", destination->Describe(), ": ", status.ToString()));
    spdlog::error("cannot write {} discarded records to {} ({}); the shard waits and retries in {}",
                  discard.size(), destination->Describe(), status.ToString(),
                  absl::FormatDuration(backoff));
    if (!SleepUntil(absl::ToUnixMillis(absl::Now() + backoff))) return false;
  }
  context_.metrics->records_to_destination->Increment(static_cast<double>(discard.size()));
  spdlog::warn("discarded {} records {}..{} to {} ({}, {} invocations, last error {}: {}{})",
               discard.size(), record.start_sequence_number, record.end_sequence_number,
               destination->Describe(), record.condition, discard.approximate_invoke_count,
               discard.error_type, discard.error_message, discard.ReportedFailedNote());
  return true;
}

bool Lane::Process(const std::vector<QueuedRecord>& batch) {
  ShardMetrics& metrics = *context_.metrics;
  std::vector<runtime::RecordView> views;
  std::vector<PolicyRecord> policy_records;
  views.reserve(batch.size());
  policy_records.reserve(batch.size());
  for (const QueuedRecord& queued : batch) {
    const SourceRecord& record = queued.record;
    views.push_back(
        {record.partition_key, record.sequence_number, record.data, record.approximate_arrival_ms});
    policy_records.push_back({record.sequence_number, record.approximate_arrival_ms});
  }
  FailurePolicy policy(FailurePolicyOptions::FromSpec(*context_.spec), std::move(policy_records));
  metrics.batch_size->Observe(static_cast<double>(batch.size()));
  metrics.in_flight_batches->Increment();
  struct InFlightGauge {
    prometheus::Gauge* gauge;
    ~InFlightGauge() { gauge->Decrement(); }
  } in_flight_gauge{metrics.in_flight_batches};
  runtime::InvokeRequest request;
  request.shard_id = context_.shard_id;
  request.event_source_arn = context_.stream_arn;
  request.aws_region = context_.region;
  const std::span<const runtime::RecordView> records(views);
  InFlight in_flight(context_.progress, batch);
  for (;;) {
    const FailurePolicy::Action action = policy.Next(absl::ToUnixMillis(absl::Now()));
    switch (action.kind) {
      case FailurePolicy::Action::Kind::kFinished:
        return true;
      case FailurePolicy::Action::Kind::kDone:
        metrics.records_processed->Increment(static_cast<double>(action.size()));
        MarkDone(batch, action.begin, action.end);
        break;
      case FailurePolicy::Action::Kind::kWait:
        if (!SleepUntil(action.until_ms)) return false;
        break;
      case FailurePolicy::Action::Kind::kDiscard:
        if (abandoned_ || !RecordDiscard(action, records)) return false;
        (action.condition == DiscardCondition::kRecordAgeExceeded ? metrics.records_dropped_for_age
                                                                  : metrics.records_failed)
            ->Increment(static_cast<double>(action.size()));
        MarkDone(batch, action.begin, action.end);
        break;
      case FailurePolicy::Action::Kind::kInvoke: {
        if (stop_requested_ && action.attempt > 1) return false;  // no new retries while stopping
        if (abandoned_) return false;                             // the shard is another poller's
        request.records = records.subspan(action.begin, action.size());
        request.attempt = action.attempt;
        in_flight.Attempt(action.attempt);
        // Lambda's IteratorAge: how old the batch's last record is when it is invoked.
        metrics.iterator_age_seconds->Set(
            static_cast<double>(absl::ToUnixMillis(absl::Now()) -
                                records[action.end - 1].approximate_arrival_ms) /
            1000.0);
        metrics.concurrent_executions->Increment();
        runtime::InvokeResult result = context_.function->Invoke(request);
        metrics.concurrent_executions->Decrement();
        metrics.Invoked(result.status, result.duration, action.attempt);
        const bool partial = result.status == runtime::InvokeStatus::kBatchItemFailures;
        context_.invocation_finished(result.ok() || partial);
        if (partial) {
          context_.progress->NoteError(absl::StrCat(
              "invocation #", action.attempt, " of ", action.size(), " records reported ",
              result.batch_item_failures.size(), " batch item failures"));
        } else if (!result.ok()) {
          context_.progress->NoteError(absl::StrCat("invocation #", action.attempt, " of ",
                                                    action.size(), " records: ", result.error_type,
                                                    ": ", result.error_message));
        }
        if (!result.ok() && !partial) {
          ScopedLogTags invocation{{kTagRequestId, result.request_id}};
          spdlog::warn("invocation #{} of {} records failed ({}: {})", action.attempt,
                       action.size(), result.error_type, result.error_message);
        }
        const int bisections = policy.bisections();
        policy.OnResult(result);
        if (policy.bisections() > bisections) metrics.bisects->Increment();
        break;
      }
    }
  }
}

}  // namespace runnel::poller
