// Durable consumer checkpoints and leases (runnel's equivalent of KCL's lease table).
//
// Kept in memory and in an append-only log of CRC-framed entries (broker/checkpoint_log.h), each
// written at the end of the last whole entry and fsynced before the call returns; replayed on
// open, with a torn tail cut off and damaged entries before the end skipped (the entries after
// them are kept, and the file stays appendable), and compacted into a fresh file (written aside,
// then renamed) when it holds many more entries than live checkpoints.
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

  // What the replay at Open found besides whole entries.
  struct Recovery {
    uint64_t corrupt_regions = 0;  // damaged ranges skipped, each with whole entries after it
    uint64_t corrupt_bytes = 0;
    uint64_t torn_bytes = 0;  // an incomplete last write, cut off
  };
  Recovery recovery() const {
    absl::MutexLock lock(&mu_);
    return recovery_;
  }

 private:
  CheckpointStore(std::string directory, int fd, CheckpointStoreOptions options);
  absl::Status Replay();
  // Appends one entry of `kind` per checkpoint in one write, fdatasynced.
  absl::Status AppendEntries(char kind, const std::vector<const v1::Checkpoint*>& checkpoints)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rewrites the log from memory when it holds many more entries than live checkpoints. A
  // failure is logged and leaves the old log in use.
  void MaybeCompact() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string directory_;
  const std::string path_;
  const CheckpointStoreOptions options_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  uint64_t file_size_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t entries_in_file_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  Recovery recovery_ ABSL_GUARDED_BY(mu_);
  // Key: consumer \0 stream \0 shard.
  absl::flat_hash_map<std::string, v1::Checkpoint> checkpoints_ ABSL_GUARDED_BY(mu_);
};

}  // namespace runnel::broker
