// Durable consumer checkpoints and leases (runnel's equivalent of KCL's lease table).
//
// Kept in memory and in an append-only log of CRC-framed entries (broker/checkpoint_log.h), each
// written at the end of the last whole entry and fsynced before the call returns; replayed on
// open, with a torn tail cut off and damaged entries before the end skipped (the entries after
// them are kept, and the file stays appendable), and compacted into a fresh file (written aside,
// then renamed) when it holds many more entries than live checkpoints.
//
// Leases (a poller fleet's shard ownership, see proto/runnel/v1/broker.proto) live in the
// checkpoint's record: owner, epoch (one more on every change of owner), expiry. Every lease
// change is an entry like a checkpoint write, renewals included: a renewal costs one fdatasync
// (a poller renews each shard a few times per lease duration, so a fleet renews a few leases per
// second), and in exchange a restarted broker has exactly the owners, epochs and expiries it
// acknowledged, so live owners keep their shards without anyone waiting out a lease duration.
// Heartbeats (fleet membership) are kept in memory only: they are renewed every few hundred
// milliseconds and come back as fast after a restart; until then, owners of unexpired leases
// count as members.
//
// Stream identity: every record carries the incarnation of the stream it was written for (see
// proto/runnel/v1/broker.proto). Reads and lease operations name the stream's current
// incarnation, and a record of another one is as absent (the next write replaces it), so that a
// stream deleted and created again under its name never sees its predecessor's checkpoints or
// leases, whatever a crash left behind. An incarnation of 0 in a call matches every record
// (callers that do not track identity); a record of 0 (written before records carried it)
// belongs to whichever stream has the name, and is stamped with that one's at its next write or
// at Reconcile. Reconcile, run by the broker at start, deletes what belongs to no live stream.
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

  // NOT_FOUND when the consumer has no checkpoint for the shard (of that incarnation).
  absl::StatusOr<v1::Checkpoint> Get(const std::string& consumer, const std::string& stream,
                                     const std::string& shard_id, uint64_t incarnation = 0) const;
  // Every checkpoint of `stream` (of that incarnation), of one consumer or (consumer empty) all,
  // ordered by consumer then shard.
  std::vector<v1::Checkpoint> List(const std::string& consumer, const std::string& stream,
                                   uint64_t incarnation = 0) const;
  // Stores a position and/or takes a lease (see SetCheckpointRequest) for the request's
  // incarnation (a record of another one is replaced). FAILED_PRECONDITION when another owner
  // holds an unexpired lease. Durable when it returns.
  absl::StatusOr<v1::Checkpoint> Set(const v1::SetCheckpointRequest& request, absl::Time now);
  // Deletes one shard's checkpoint, or all of the stream's (shard empty) for one consumer, or
  // for every consumer (consumer empty), of every incarnation. Returns how many were deleted.
  absl::StatusOr<int> Delete(const std::string& consumer, const std::string& stream,
                             const std::string& shard_id);

  // Leases. `duration` <= 0 means the default (10s). All FAILED_PRECONDITION on a conflict, with
  // the message "lease for shard S of mapping M is held by P since epoch E".
  //
  // Takes the lease: refused while another owner holds it unexpired. The current owner of an
  // unexpired lease renews it at its epoch; anyone else (a released or expired lease, its old
  // owner included) gets the next epoch. Returns the record: lease and checkpoint together.
  absl::StatusOr<v1::Checkpoint> AcquireLease(const std::string& consumer,
                                              const std::string& stream,
                                              const std::string& shard_id, const std::string& owner,
                                              absl::Duration duration, absl::Time now,
                                              uint64_t incarnation = 0);
  // Extends the lease to now + duration while it is still (owner, epoch), expired or not.
  absl::StatusOr<v1::Checkpoint> RenewLease(const std::string& consumer, const std::string& stream,
                                            const std::string& shard_id, const std::string& owner,
                                            int64_t epoch, absl::Duration duration, absl::Time now,
                                            uint64_t incarnation = 0);
  // Frees the lease at once (the epoch stays; the next owner gets the one after it).
  absl::StatusOr<v1::Checkpoint> ReleaseLease(const std::string& consumer,
                                              const std::string& stream,
                                              const std::string& shard_id, const std::string& owner,
                                              int64_t epoch, absl::Time now,
                                              uint64_t incarnation = 0);
  // A poller's heartbeat for a consumer: a member until now + ttl (ttl <= 0: leaves at once).
  void Heartbeat(const std::string& consumer, const std::string& stream,
                 const v1::PollerMember& member, absl::Duration ttl, absl::Time now);
  // The unexpired heartbeats of a consumer, by poller id.
  std::vector<v1::PollerMember> Members(const std::string& consumer, const std::string& stream,
                                        absl::Time now) const;

  // Brings the records in line with the streams that exist, given by name with their current
  // incarnation: deletes (durably) every record of a stream that is not there or is another
  // incarnation (a DeleteStream interrupted between moving the stream away and deleting its
  // checkpoints leaves such records), and stamps records without an incarnation with their
  // stream's.
  struct ReconcileResult {
    int deleted = 0;
    int stamped = 0;
  };
  absl::StatusOr<ReconcileResult> Reconcile(
      const absl::flat_hash_map<std::string, uint64_t>& live_streams);

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
  // Stores `checkpoint` (durably) under its key and returns it.
  absl::StatusOr<v1::Checkpoint> Put(v1::Checkpoint checkpoint, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The stored record of a key if it belongs to `incarnation`, or a fresh one naming it; stamped
  // with `incarnation` (unless 0).
  v1::Checkpoint Record(const std::string& consumer, const std::string& stream,
                        const std::string& shard_id, uint64_t incarnation) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

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
  // Key: consumer \0 stream \0 poller id. In memory only (see above).
  absl::flat_hash_map<std::string, v1::PollerMember> members_ ABSL_GUARDED_BY(mu_);
};

}  // namespace runnel::broker
