// The bookkeeping one shard's reader and lanes share: which records were handed out and which are
// done (the CompletionTracker, and so the checkpoint to write), how many are read but not done
// (the read-ahead the reader waits on), the batches in flight and the last error (for Status()).
// The reader, the lanes and the runner's checkpoint writer each run on their own thread and meet
// only here, under one lock.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "poller/completion_tracker.h"
#include "poller/record_source.h"
#include "poller/run_status.h"

namespace runnel::poller {

// A record taken from the stream, owned by its lane until its batch is done.
struct QueuedRecord {
  SourceRecord record;
  uint64_t ordinal;  // dispatch order within the shard (see CompletionTracker)
};

class ShardProgress {
 public:
  // `checkpoint` is where the shard starts (what Status() shows before anything is done);
  // `checkpoint_moved` is called (under no lock of ours) whenever the checkpoint may have moved.
  ShardProgress(std::string shard_id, std::string checkpoint, size_t max_buffered,
                std::function<void()> checkpoint_moved);

  // The records of one read were handed out, with the ordinals first_ordinal, first_ordinal+1,
  // ...; those whose lane is -1 (no filter let them through) are done at once.
  void Dispatched(uint64_t first_ordinal, const std::vector<SourceRecord>& records,
                  const std::vector<int>& lane_of);
  // Records of a batch are done (processed, or discarded and recorded).
  void Completed(std::span<const QueuedRecord> records);

  // Waits up to `timeout` for the read-ahead to fall below its bound; the room left, or 0 when
  // there is none yet or a stop was requested.
  size_t WaitForRoom(absl::Duration timeout);
  // Wakes WaitForRoom for good.
  void RequestStop();

  // The checkpoint to write, if it moved since the last write.
  bool PendingCheckpoint(std::string* sequence_number, uint64_t* version);
  void CheckpointWritten(uint64_t version);

  void SetMillisBehindLatest(int64_t millis);
  // Remembers the last failure seen on this shard.
  void NoteError(std::string error);

  // A batch is in flight from now (keyed by its first ordinal) until BatchEnded.
  void BatchStarted(uint64_t key, InFlightBatchStatus status);
  void BatchAttempt(uint64_t key, int attempt);
  void BatchEnded(uint64_t key);

  ShardRunStatus Status() const;
  const std::string& shard_id() const { return shard_id_; }

 private:
  const std::string shard_id_;
  const std::string initial_checkpoint_;
  const size_t max_buffered_;
  const std::function<void()> checkpoint_moved_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  CompletionTracker tracker_ ABSL_GUARDED_BY(mu_);
  size_t buffered_ ABSL_GUARDED_BY(mu_) = 0;  // handed to lanes, not yet done
  uint64_t written_version_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t millis_behind_latest_ ABSL_GUARDED_BY(mu_) = -1;
  std::map<uint64_t, InFlightBatchStatus> in_flight_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  absl::Time last_error_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace runnel::poller
