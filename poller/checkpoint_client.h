// Where one mapping's checkpoints and shard leases are stored, as the poller sees it: the only
// way the runner reads or moves a checkpoint, and (for a poller fleet) takes, renews and releases
// the lease that makes one poller the owner of a shard. Checkpoints and leases live in the
// broker (like the KCL's lease table), also when the records come from elsewhere, so this is an
// interface of its own beside the record source: the broker-backed implementation below speaks
// gRPC, and tests use a scripted fake to enumerate failures, orders and restarts.
//
// A lease is (owner, epoch, expiry) per shard; the epoch grows on every change of owner, and a
// checkpoint write fenced by a lease is refused (FAILED_PRECONDITION) once that lease is no
// longer the shard's current one, so that a poller that lost a shard cannot move its
// checkpoint.
//
// Checkpoints and leases belong to one incarnation of the stream (see StreamIdentity in
// poller/record_source.h): every call names the one set by SetStreamIncarnation, and fails
// NOT_FOUND once that stream is gone, also when another of the same name replaced it; the
// checkpoints of an earlier stream of the name are never returned.
//
// Implementations are thread-safe: the runner's checkpoint writer and its start-up call them
// from different threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "poller/record_source.h"

namespace runnel::client {
class BrokerClient;
}

namespace runnel::poller {

// Who may process a shard until when.
struct ShardLease {
  std::string shard_id;
  std::string owner;  // "" : nobody
  int64_t epoch = 0;  // grows on every change of owner
  absl::Time expiry = absl::InfinitePast();
};

// A shard's stored checkpoint: every record up to and including `sequence_number` is done.
struct StoredCheckpoint {
  std::string shard_id;
  std::string sequence_number;  // "" : no position yet (only a lease)
  absl::Time update_time = absl::InfinitePast();
  ShardLease lease;
};

// One poller of the fleet, as its heartbeat names it.
struct FleetMember {
  std::string id;
  std::string host;
  int64_t pid = 0;
  absl::Time expiry = absl::InfinitePast();
};

// The mapping's lease table as the store sees it, judged by the store's clock.
struct LeaseTable {
  std::vector<StoredCheckpoint> shards;  // shards without a record are absent (free)
  std::vector<FleetMember> members;      // unexpired heartbeats
  absl::Time now;                        // the store's clock
};

class CheckpointClient {
 public:
  virtual ~CheckpointClient() = default;

  // The stream incarnation later calls name (0, the default: whichever stream has the name).
  virtual void SetStreamIncarnation(uint64_t incarnation) = 0;

  // Every stored checkpoint of the mapping on its stream (shards without one are absent).
  virtual absl::StatusOr<std::vector<StoredCheckpoint>> ListCheckpoints() = 0;
  // NOT_FOUND when the shard has none.
  virtual absl::StatusOr<StoredCheckpoint> GetCheckpoint(const std::string& shard_id) = 0;

  // Stores `sequence_number` as the shard's checkpoint. With `fence`, only while that lease
  // (owner and epoch) is still the shard's: FAILED_PRECONDITION otherwise, and nothing moves.
  // Without one the write is an operator's: it also frees the shard's lease (keeping the epoch),
  // so that the owner's next fenced write or renewal is refused.
  virtual absl::Status SetCheckpoint(const std::string& shard_id,
                                     const std::string& sequence_number,
                                     const ShardLease* fence = nullptr) = 0;
  // Stores the checkpoint just before `position` as the store resolves it at the moment of the
  // write (LATEST: the next record to be put), so that reading after the stored checkpoint reads
  // from exactly `position`; `fence` as above. Returns what was stored.
  virtual absl::StatusOr<StoredCheckpoint> SetCheckpointAt(const std::string& shard_id,
                                                           const StreamPosition& position,
                                                           const ShardLease* fence = nullptr) = 0;

  // Takes the shard's lease for `owner` for `duration`: FAILED_PRECONDITION while another owner
  // holds an unexpired one. A new owner gets the next epoch. Returns the lease with the shard's
  // checkpoint at that moment (where the new owner starts).
  virtual absl::StatusOr<StoredCheckpoint> TakeLease(const std::string& shard_id,
                                                     const std::string& owner,
                                                     absl::Duration duration) = 0;
  // Extends a held lease to `duration` from now: FAILED_PRECONDITION when it was lost.
  virtual absl::StatusOr<ShardLease> RenewLease(const ShardLease& lease,
                                                absl::Duration duration) = 0;
  // Gives a held lease up, so another owner may take the shard at once.
  virtual absl::Status ReleaseLease(const ShardLease& lease) = 0;

  // Every lease of the mapping and the fleet's live members.
  virtual absl::StatusOr<LeaseTable> ListLeases() = 0;
  // Says `member` runs the mapping for `ttl` more (ttl 0: leaves the fleet at once).
  virtual absl::Status Heartbeat(const FleetMember& member, absl::Duration ttl) = 0;
};

// The checkpoints and leases of consumer `consumer_name` (a mapping's id) on `stream`, stored in
// the broker behind `broker`.
std::unique_ptr<CheckpointClient> MakeBrokerCheckpointClient(
    std::shared_ptr<client::BrokerClient> broker, std::string consumer_name, std::string stream);

}  // namespace runnel::poller
