// In-memory stand-ins for what a MappingRunner talks to, for tests of its lease manager without a
// broker: a CheckpointClient that keeps checkpoints and leases by the broker's rules
// (broker/checkpoint_store.cc: owner, an epoch that grows on every change of owner, an expiry;
// fenced writes refused with FAILED_PRECONDITION once (owner, epoch) is no longer the lease;
// heartbeats with a ttl), with hooks to script failures and a log of every call; a StreamSource
// that serves records a test appends per shard; and a Function that runs a real handler plugin
// and records what it delivered.
//
// Every call and every delivery gets a stamp from one counter, so tests can check orders across
// them (the final checkpoint before the release, no delivery after a hand-off).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "poller/checkpoint_client.h"
#include "poller/record_source.h"
#include "runnel/runtime/function.h"

namespace runnel::poller::testing {

// The order of events across the fake store and the function.
uint64_t NextStamp();

// Sequence numbers of the fake source: 20 digits, so that string order is record order. A shard's
// first record is 1; "before the first" (TRIM_HORIZON) is 0.
std::string FakeSequence(uint64_t n);

class FakeLeaseStore : public CheckpointClient {
 public:
  enum class Op { kList, kGet, kSet, kSetAt, kTake, kRenew, kRelease, kListLeases, kHeartbeat };
  struct Call {
    Op op;
    std::string shard_id;
    std::string sequence_number;  // kSet: what was to be stored; kSetAt, kTake: what was returned
    std::string owner;            // the fence, the taker, or the lease renewed / released
    int64_t epoch = 0;            // of the same (kTake: the epoch granted)
    bool fenced = false;          // kSet
    absl::StatusCode code = absl::StatusCode::kOk;
    uint64_t stamp = 0;
    absl::Time at;  // when it was answered
  };
  struct Record {
    std::string sequence_number;
    std::string owner;
    int64_t epoch = 0;
    absl::Time expiry = absl::InfinitePast();
  };

  explicit FakeLeaseStore(std::string mapping) : mapping_(std::move(mapping)) {}

  // CheckpointClient.
  void SetStreamIncarnation(uint64_t incarnation) override { incarnation_ = incarnation; }
  absl::StatusOr<std::vector<StoredCheckpoint>> ListCheckpoints() override;
  absl::StatusOr<StoredCheckpoint> GetCheckpoint(const std::string& shard_id) override;
  absl::Status SetCheckpoint(const std::string& shard_id, const std::string& sequence_number,
                             const ShardLease* fence = nullptr) override;
  absl::StatusOr<StoredCheckpoint> SetCheckpointAt(const std::string& shard_id,
                                                   const StreamPosition& position,
                                                   const ShardLease* fence = nullptr) override;
  absl::StatusOr<StoredCheckpoint> TakeLease(const std::string& shard_id, const std::string& owner,
                                             absl::Duration duration) override;
  absl::StatusOr<ShardLease> RenewLease(const ShardLease& lease, absl::Duration duration) override;
  absl::Status ReleaseLease(const ShardLease& lease) override;
  absl::StatusOr<LeaseTable> ListLeases() override;
  absl::Status Heartbeat(const FleetMember& member, absl::Duration ttl) override;

  // Scripting.
  // Stores a record as if an earlier owner had left it.
  void Seed(const std::string& shard_id, Record record);
  // Another poller takes the lease by force (as after this one's lease expired): the next epoch.
  // Returns it.
  int64_t Steal(const std::string& shard_id, const std::string& owner, absl::Duration duration);
  // Every call answers UNAVAILABLE (the store is cut off) while set.
  void SetUnavailable(bool unavailable) { unavailable_ = unavailable; }
  // Renewals alone answer UNAVAILABLE while set.
  void FailRenewals(bool fail) { fail_renewals_ = fail; }
  // Runs at the start of every call, outside the store's lock: may block (a slow call) or change
  // the store. Set it before the runner starts or while no call can be in it.
  std::function<void(Op op, const std::string& shard_id)> before_call;

  // Observing.
  Record Get(const std::string& shard_id) const;
  std::vector<Call> Calls() const;
  // How many calls of `op` (answered or not) so far.
  int Count(Op op) const;

 private:
  absl::Status Conflict(const std::string& shard_id, const Record& record) const;
  void Log(Call call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Enter(Op op, const std::string& shard_id);

  const std::string mapping_;
  std::atomic<bool> unavailable_{false};
  std::atomic<bool> fail_renewals_{false};
  std::atomic<uint64_t> incarnation_{0};  // what the runner named (one stream here)
  mutable absl::Mutex mu_;
  std::map<std::string, Record> records_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Time> members_ ABSL_GUARDED_BY(mu_);  // id -> expiry
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::map<Op, int> counts_ ABSL_GUARDED_BY(mu_);
};

// Records a test appends per shard; sources read them in order, waiting a little for more.
class FakeStreamSource : public StreamSource {
 public:
  explicit FakeStreamSource(std::vector<std::string> shard_ids);

  // Appends `count` records to the shard (keys "key-0".."key-9" round-robin, data
  // "<shard>#<n>"); returns the last sequence number.
  std::string Append(const std::string& shard_id, int count);
  // Appends one record; returns its sequence number.
  std::string AppendRecord(const std::string& shard_id, std::string key, std::string data);
  std::vector<SourceRecord> Records(const std::string& shard_id) const;
  // How many records reads of the shard have returned, all sources together.
  size_t ReadCount(const std::string& shard_id) const;

  absl::StatusOr<StreamIdentity> Describe() override;
  absl::StatusOr<std::vector<SourceShard>> ListShards(uint64_t incarnation) override;
  std::unique_ptr<RecordSource> OpenShard(const std::string& shard_id,
                                          uint64_t incarnation) override;

 private:
  friend class FakeRecordSource;
  const std::vector<std::string> shard_ids_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::vector<SourceRecord>> records_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, size_t> read_ ABSL_GUARDED_BY(mu_);
};

// One record a handler was given and succeeded on.
struct Delivery {
  std::string shard_id;
  std::string sequence_number;
  uint64_t stamp = 0;  // when the invocation returned
};

// Runs a real plugin (loaded by runtime::Function::Load) and records every record of each
// invocation that succeeded. `before_invoke` runs first on the invoking thread (a test blocks an
// invocation there, or acts while it is in flight).
class RecordingFunction : public runtime::Function {
 public:
  explicit RecordingFunction(std::unique_ptr<runtime::Function> inner);
  runtime::InvokeResult Invoke(const runtime::InvokeRequest& request) override;

  std::function<void(const runtime::InvokeRequest& request)> before_invoke;

  std::vector<Delivery> Deliveries() const;
  std::vector<Delivery> DeliveriesOf(const std::string& shard_id) const;
  int invocations() const { return invocations_; }

 private:
  const std::unique_ptr<runtime::Function> inner_;
  std::atomic<int> invocations_{0};
  mutable absl::Mutex mu_;
  std::vector<Delivery> deliveries_ ABSL_GUARDED_BY(mu_);
};

// A gate an invocation waits at until the test opens it.
class Gate {
 public:
  // Blocks until Open; says it is waiting first.
  void Wait();
  void Open();
  // Waits until some thread is at the gate.
  bool WaitForWaiter(absl::Duration timeout);

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace runnel::poller::testing
