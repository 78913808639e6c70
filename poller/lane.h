// One lane of a shard (a shard has `parallelization_factor` of them; a partition key always maps
// to the same lane, so a key's records stay in order): a queue of records read ahead, Lambda's
// batching rules over it, and the failure-policy driver that runs each batch through invocations,
// retries, bisection, partial responses, record age and discards (the decisions are
// FailurePolicy's, a pure unit; this file does the I/O they ask for), marking records done in the
// shard's progress as they are settled. At most one batch per lane is in flight.
//
// A stop lets the lane finish what it was handed: its read-ahead is bounded (see
// poller/shard_progress.h), so that costs about one batch after the one in flight. An abandon
// (the shard's lease is lost: it is another poller's now) starts nothing more: the invocation in
// flight finishes, and every other record stays unfinished for the new owner.
//
// Add, RequestStop and Abandon are thread-safe; Run is the lane's own thread.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "poller/batcher.h"
#include "poller/config.h"
#include "poller/failure_policy.h"
#include "poller/shard_progress.h"

namespace runnel::runtime {
class Function;
struct RecordView;
}  // namespace runnel::runtime

namespace runnel::poller {

class FailureDestination;
struct ShardMetrics;

// What the lanes of one shard need from their mapping and shard. Everything pointed to outlives
// the lanes.
struct LaneContext {
  const MappingSpec* spec = nullptr;
  std::string shard_id;
  runtime::Function* function = nullptr;
  std::string region;
  std::string stream_arn;
  FailureDestination* destination = nullptr;  // null: none configured
  ShardMetrics* metrics = nullptr;
  ShardProgress* progress = nullptr;
  // The outcome of each invocation (ok, or a partial response), for LastProcessingResult.
  std::function<void(bool ok)> invocation_finished;
  // Asked right before each on-failure record is written: OK while this poller still holds the
  // shard's lease (checked with the broker, at the lease's epoch). Otherwise the dead letter is
  // not written and the lane stops: the shard's new owner records it. Empty: always OK.
  std::function<absl::Status()> before_dead_letter;
};

class Lane {
 public:
  // `index`: the lane's number within its shard (what ShardProgress counts its read-ahead by).
  Lane(const LaneContext* context, int index, BatchingRules rules);

  // Records of this lane, in shard order, joined the queue at `now`.
  void Add(std::vector<QueuedRecord> records, absl::Time now);

  // Batches and processes records until stopped. On a stop it drains what was already read
  // (without waiting for batching windows), except a batch that needs a retry.
  void Run();
  // Stops starting retries and waiting for windows; Run returns once the queue is drained.
  void RequestStop();
  // Stops at once: no more invocations, retries or discards; Run returns when the invocation in
  // flight (if any) does.
  void Abandon();

 private:
  // Runs one batch through the failure policy. False when stopped first (the rest of the batch
  // stays unfinished and is read again after a restart).
  bool Process(const std::vector<QueuedRecord>& batch);
  // Writes the on-failure record of a discarded range, retrying until it is stored. False when
  // stopped first.
  bool RecordDiscard(const FailurePolicy::Action& discard,
                     std::span<const runtime::RecordView> records);
  // Sleeps until `until_ms` (Unix milliseconds); false when stopped first.
  bool SleepUntil(int64_t until_ms);
  void MarkDone(const std::vector<QueuedRecord>& batch, size_t begin, size_t end);

  const LaneContext& context_;
  const int index_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> abandoned_{false};
  absl::Mutex mu_;
  Batcher batcher_ ABSL_GUARDED_BY(mu_);
  std::deque<QueuedRecord> records_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace runnel::poller
