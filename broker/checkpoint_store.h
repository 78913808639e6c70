// Durable consumer checkpoints and leases (runnel's equivalent of KCL's lease table).
//
// Kept in memory and in an append-only log of CRC-framed entries (the shard log's framing), each
// fsynced before the call returns; replayed on open, with a torn tail cut off, and compacted into
// a fresh file (written aside, then renamed) when it holds many more entries than live
// checkpoints.
//
// Thread-safe. Writes are serialised: the poller checkpoints at most a few times per second per
// shard, so one fdatasync per write is cheaper than the complexity of group commit here.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runnel/v1/broker.pb.h"

namespace runnel::broker {

struct CheckpointStoreOptions {
  // Compaction waits for at least this many entries in the file (and four times more entries than
  // live checkpoints). Tests lower it to compact often.
  uint64_t compaction_min_entries = 4096;
};

class CheckpointStore {
 public:
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(const std::string& directory);
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(
      const std::string& directory, const CheckpointStoreOptions& options);
  ~CheckpointStore();

  // NOT_FOUND when the consumer has no checkpoint for the shard.
  absl::StatusOr<v1::Checkpoint> Get(const std::string& consumer, const std::string& stream,
                                     const std::string& shard_id) const;
  // Every checkpoint of `stream`, of one consumer or (consumer empty) all, ordered by
  // consumer then shard.
  std::vector<v1::Checkpoint> List(const std::string& consumer, const std::string& stream) const;
  // Stores a position and/or takes a lease (see SetCheckpointRequest). FAILED_PRECONDITION when
  // another owner holds an unexpired lease. Durable when it returns.
  absl::StatusOr<v1::Checkpoint> Set(const v1::SetCheckpointRequest& request, absl::Time now);
  // Deletes one shard's checkpoint, or all of the stream's (shard empty) for one consumer, or
  // for every consumer (consumer empty). Returns how many were deleted.
  absl::StatusOr<int> Delete(const std::string& consumer, const std::string& stream,
                             const std::string& shard_id);

 private:
  CheckpointStore(std::string directory, int fd, CheckpointStoreOptions options);
  absl::Status Replay();
  absl::Status AppendEntry(bool is_delete, const v1::Checkpoint& checkpoint)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MaybeCompact() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string directory_;
  const std::string path_;
  const CheckpointStoreOptions options_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  uint64_t file_size_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t entries_in_file_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  // Key: consumer \0 stream \0 shard.
  absl::flat_hash_map<std::string, v1::Checkpoint> checkpoints_ ABSL_GUARDED_BY(mu_);
};

}  // namespace runnel::broker
