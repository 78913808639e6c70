// The bookkeeping one shard's reader and lanes share: which records were handed out and which are
// done (the CompletionTracker, and so the checkpoint to write), how many each lane holds read but
// not done (its read-ahead, which the reader waits on), the batches in flight and the last error
// (for Status()).
//
// Each lane's read-ahead is bounded (about two batches: the one in flight and the next), so that
// memory is bounded and a stop, which lets the lanes finish what they were handed (see
// poller/lane.h), costs about one batch per lane. The reader hands records out strictly in shard
// order and stops at the first one whose lane is full until that lane has room, so what was handed
// out is always a prefix of what was read: a stop never leaves a record behind one that finished.
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
#include "poller/batcher.h"
#include "poller/completion_tracker.h"
#include "poller/config.h"
#include "poller/record_source.h"
#include "poller/run_status.h"

namespace runnel::poller {

// A record taken from the stream, owned by its lane until its batch is done.
struct QueuedRecord {
  SourceRecord record;
  uint64_t ordinal;  // dispatch order within the shard (see CompletionTracker)
};

// How much one lane may hold: records handed to it and not yet done, its batch in flight
// included. A lane below both bounds takes one more record (so one record larger than the byte
// bound still goes through).
struct ReadAheadLimit {
  size_t records = 200;
  size_t bytes = 2 * kMaxInvokePayloadBytes + 1;
};

// Two batches of `spec`, and two invocation payloads (+1 byte, so that a lane full by bytes holds
// more than one payload behind its batch in flight and the batcher invokes it without waiting for
// the window).
ReadAheadLimit LaneReadAhead(const MappingSpec& spec, int batches = 2);

class ShardProgress {
 public:
  // `checkpoint` is where the shard starts (what Status() shows before anything is done);
  // `checkpoint_moved` is called (under no lock of ours) whenever the checkpoint may have moved.
  ShardProgress(std::string shard_id, std::string checkpoint, int lanes, ReadAheadLimit per_lane,
                std::function<void()> checkpoint_moved);

  // Hands out records[begin], records[begin+1], ... of one read (record i has the ordinal
  // first_ordinal + i and goes to lane lane_of[i]) for as long as each one's lane has room; a
  // record whose lane is -1 (no filter let it through) is done at once. Returns the end of the run
  // handed out: `begin` when the lane of records[begin] is full.
  size_t Admit(uint64_t first_ordinal, const std::vector<SourceRecord>& records,
               const std::vector<int>& lane_of, size_t begin);
  // Records a lane was handed are done (processed, or discarded and recorded).
  void Completed(int lane, std::span<const QueuedRecord> records);

  // Waits up to `timeout` for some lane to have room; the records the lanes can take together
  // (what the next read may ask for), or 0 when none has room yet or a stop was requested.
  size_t WaitForRoom(absl::Duration timeout);
  // Waits up to `timeout` for `lane` to have room; false on a timeout or a stop.
  bool WaitForLaneRoom(int lane, absl::Duration timeout);
  // Wakes the waits above for good.
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
  struct LaneLoad {
    size_t records = 0;
    size_t bytes = 0;
  };
  bool HasRoom(const LaneLoad& load) const {
    return load.records < per_lane_.records && load.bytes < per_lane_.bytes;
  }

  const std::string shard_id_;
  const std::string initial_checkpoint_;
  const ReadAheadLimit per_lane_;
  const std::function<void()> checkpoint_moved_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  CompletionTracker tracker_ ABSL_GUARDED_BY(mu_);
  std::vector<LaneLoad> lanes_ ABSL_GUARDED_BY(mu_);  // handed to each lane, not yet done
  size_t buffered_ ABSL_GUARDED_BY(mu_) = 0;          // the sum over the lanes
  uint64_t written_version_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t millis_behind_latest_ ABSL_GUARDED_BY(mu_) = -1;
  std::map<uint64_t, InFlightBatchStatus> in_flight_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  absl::Time last_error_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace runnel::poller
