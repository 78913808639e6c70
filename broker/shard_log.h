// One shard's durable, ordered log: a folder of segment files holding CRC-framed records
// (broker/log_format.h), with a sparse offset and timestamp index per segment.
//
// Appends are group-committed: callers frame their records into a pending buffer and return at
// once; one writer thread per shard writes everything pending in one write() and, under
// FsyncMode::kAlways, one fdatasync(), then completes every caller whose records it carried.
// Readers only ever see records that are durable under the log's fsync mode, so a record a
// consumer has seen can never vanish in a crash and have its sequence number reused.
//
// Recovery (Open): the last segment is scanned; a torn tail (a truncated or garbled last frame
// with nothing valid after it) is cut off. A bad frame followed by valid ones is corruption: it
// is kept, logged, and reported as DATA_LOSS to any reader that reaches it, never returned as
// data.
//
// Thread-safe: any number of readers and appenders.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "broker/log_format.h"

namespace runnel::broker {

enum class FsyncMode {
  kAlways,    // acknowledge after fdatasync; concurrent appends share one
  kInterval,  // acknowledge after write(); fdatasync every `fsync_interval`
  kNever,     // acknowledge after write(); fdatasync when a segment is sealed or on close
};

struct ShardLogOptions {
  std::string directory;  // created when missing
  std::string name;       // e.g. "orders/shardId-000000000001", used in errors and logs
  FsyncMode fsync = FsyncMode::kAlways;
  absl::Duration fsync_interval = absl::Seconds(1);
  uint64_t segment_bytes = 64ull << 20;  // roll to a new segment file past this size
  std::function<int64_t()> now_ms;       // clock for arrival times; wall clock when empty
};

struct AppendRecord {
  std::string_view partition_key;
  std::string_view data;
};

// Records read from the log. The views point into `buffers`, which this object owns.
struct ReadBatch {
  std::vector<RecordView> records;
  uint64_t next_offset = 0;  // where the following read continues
  std::vector<std::shared_ptr<const std::string>> buffers;
};

struct ReadLimits {
  size_t max_records = 10'000;
  size_t max_bytes = 10u << 20;  // key + data bytes; at least one record is always returned
  // Records that arrived before this are skipped as expired (retention).
  int64_t min_arrival_ms = INT64_MIN;
};

class ShardLog {
 public:
  struct Segment;  // defined in shard_log.cc

  static absl::StatusOr<std::unique_ptr<ShardLog>> Open(ShardLogOptions options);
  // Completes everything pending, syncs, and stops the writer.
  ~ShardLog();
  ShardLog(const ShardLog&) = delete;
  ShardLog& operator=(const ShardLog&) = delete;

  // Called once the records are durable (OK) or could not be written (the error). Runs on the
  // shard's writer thread: keep it short.
  using AppendDone = std::function<void(const absl::Status&)>;
  struct AppendTicket {
    uint64_t first_offset;  // records get first_offset, first_offset + 1, ...
    int64_t arrival_ms;     // the arrival time all of them carry
  };
  // Frames `records` (copying them) and queues them for the writer. Fails at once, without
  // calling `done`, when the log is closed, `records` is empty or a record is too large to frame.
  absl::StatusOr<AppendTicket> Append(std::span<const AppendRecord> records, AppendDone done);

  // Reads durable records from `offset` on (an offset below the first kept record reads from
  // the first kept record). At a corrupt frame it returns the records before it, with
  // next_offset at the damaged record; DATA_LOSS when the damaged record is the first to read.
  absl::StatusOr<ReadBatch> Read(uint64_t offset, const ReadLimits& limits) const;

  // Offset of the first record that arrived at or after `arrival_ms`, or EndOffset() if none.
  absl::StatusOr<uint64_t> OffsetAtTimestamp(int64_t arrival_ms) const;

  // The offset the next durable record will have: every offset below it is readable (or trimmed).
  uint64_t EndOffset() const { return end_offset_.load(std::memory_order_acquire); }
  // The offset of the oldest record still kept on disk (EndOffset() when the log is empty).
  uint64_t FirstOffset() const;
  // Arrival time of the newest durable record, or 0 when there is none.
  int64_t LastArrivalMs() const { return last_arrival_ms_.load(std::memory_order_acquire); }

  // Deletes whole sealed segments whose newest record arrived before `cutoff_ms`. Returns how
  // many were deleted. Readers that still hold a deleted segment finish their read.
  absl::StatusOr<int> DeleteSegmentsBefore(int64_t cutoff_ms);

  // Runs `callback` once, on the writer thread, the next time EndOffset() advances (or when the
  // log closes). Returns an id for RemoveWaiter.
  uint64_t AddWaiter(std::function<void()> callback);
  // True when the waiter was removed before it ran.
  bool RemoveWaiter(uint64_t id);

  // Bytes in all segment files.
  uint64_t DiskBytes() const;
  const std::string& name() const { return options_.name; }

 private:
  struct PendingAppend {
    AppendDone done;
  };
  struct IndexHint {
    uint64_t offset;
    uint64_t position_in_batch;
    int64_t arrival_ms;
  };

  explicit ShardLog(ShardLogOptions options);
  absl::Status Recover();
  absl::Status CreateSegment(uint64_t base_offset);
  absl::Status SealActiveSegment();
  void WriterLoop();
  // Writes one batch. On failure the file is cut back to its durable size.
  absl::Status WriteBatch(const std::string& batch, const std::vector<IndexHint>& hints,
                          uint64_t first_offset, uint64_t last_offset, int64_t last_arrival_ms);
  std::vector<std::shared_ptr<Segment>> SegmentsSnapshot() const;
  int64_t NowMs() const;

  const ShardLogOptions options_;

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Segment>> segments_ ABSL_GUARDED_BY(mu_);  // by base offset
  // Appends framed but not yet taken by the writer.
  std::string pending_ ABSL_GUARDED_BY(mu_);
  std::vector<PendingAppend> pending_done_ ABSL_GUARDED_BY(mu_);
  std::vector<IndexHint> pending_hints_ ABSL_GUARDED_BY(mu_);
  uint64_t pending_first_offset_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_hint_position_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_offset_ ABSL_GUARDED_BY(mu_) = 1;  // offset the next Append gets
  int64_t last_assigned_arrival_ms_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set when the log cannot be brought back to a known state after a failed write.
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  uint64_t next_waiter_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, std::function<void()>> waiters_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> end_offset_{1};
  std::atomic<int64_t> last_arrival_ms_{0};
  std::string spare_buffer_;            // writer thread only: reused so batches do not reallocate
  absl::Time last_sync_ = absl::Now();  // writer thread only
  bool dirty_ = false;                  // writer thread only: written but not yet synced
  std::thread writer_;
};

}  // namespace runnel::broker
