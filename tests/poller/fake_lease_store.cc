#include "tests/poller/fake_lease_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace runnel::poller::testing {

uint64_t NextStamp() {
  static std::atomic<uint64_t> stamp{0};
  return ++stamp;
}

std::string FakeSequence(uint64_t n) { return absl::StrFormat("%020d", n); }

namespace {
FakeLeaseStore::Call NewCall(FakeLeaseStore::Op op, std::string shard_id,
                             const std::string& owner = "", int64_t epoch = 0) {
  FakeLeaseStore::Call call;
  call.op = op;
  call.shard_id = std::move(shard_id);
  call.owner = owner;
  call.epoch = epoch;
  return call;
}

bool HeldBy(const FakeLeaseStore::Record& record, const std::string& owner, int64_t epoch) {
  return !owner.empty() && record.owner == owner && record.epoch == epoch;
}
}  // namespace

absl::Status FakeLeaseStore::Enter(Op op, const std::string& shard_id) {
  if (before_call) before_call(op, shard_id);
  if (unavailable_) {
    absl::MutexLock lock(&mu_);
    ++counts_[op];
    Call call = NewCall(op, shard_id);
    call.code = absl::StatusCode::kUnavailable;
    call.stamp = NextStamp();
    call.at = absl::Now();
    calls_.push_back(std::move(call));
    return absl::UnavailableError("fake store: cut off");
  }
  return absl::OkStatus();
}

void FakeLeaseStore::Log(Call call) {
  ++counts_[call.op];
  call.stamp = NextStamp();
  call.at = absl::Now();
  calls_.push_back(std::move(call));
}

absl::Status FakeLeaseStore::Conflict(const std::string& shard_id, const Record& record) const {
  // The broker's words (broker/checkpoint_store.cc LeaseConflict).
  return absl::FailedPreconditionError(absl::StrCat(
      "LeaseHeldException: lease for shard ", shard_id, " of mapping ", mapping_, " is held by ",
      record.owner.empty() ? "nobody" : record.owner, " since epoch ", record.epoch));
}

absl::StatusOr<std::vector<StoredCheckpoint>> FakeLeaseStore::ListCheckpoints() {
  auto table = ListLeases();
  if (!table.ok()) return table.status();
  return table->shards;
}

absl::StatusOr<StoredCheckpoint> FakeLeaseStore::GetCheckpoint(const std::string& shard_id) {
  if (absl::Status status = Enter(Op::kGet, shard_id); !status.ok()) return status;
  absl::MutexLock lock(&mu_);
  Log(NewCall(Op::kGet, shard_id));
  auto it = records_.find(shard_id);
  if (it == records_.end()) return absl::NotFoundError("no checkpoint");
  const Record& r = it->second;
  return StoredCheckpoint{shard_id, r.sequence_number, absl::Now(),
                          ShardLease{shard_id, r.owner, r.epoch, r.expiry}};
}

absl::Status FakeLeaseStore::SetCheckpoint(const std::string& shard_id,
                                           const std::string& sequence_number,
                                           const ShardLease* fence) {
  if (absl::Status status = Enter(Op::kSet, shard_id); !status.ok()) return status;
  absl::MutexLock lock(&mu_);
  Call call = NewCall(Op::kSet, shard_id, fence != nullptr ? fence->owner : "",
                      fence != nullptr ? fence->epoch : 0);
  call.sequence_number = sequence_number;
  call.fenced = fence != nullptr;
  Record& record = records_[shard_id];
  // A fenced write only while the lease is still (owner, epoch), expired or not (as the broker).
  if (fence != nullptr && !HeldBy(record, fence->owner, fence->epoch)) {
    call.code = absl::StatusCode::kFailedPrecondition;
    Log(call);
    return Conflict(shard_id, record);
  }
  // An unfenced write is an operator's: it frees the lease, keeping the epoch (as the broker).
  if (fence == nullptr) {
    record.owner.clear();
    record.expiry = absl::InfinitePast();
  }
  if (!sequence_number.empty()) record.sequence_number = sequence_number;
  Log(call);
  return absl::OkStatus();
}

absl::StatusOr<StoredCheckpoint> FakeLeaseStore::SetCheckpointAt(const std::string& shard_id,
                                                                 const StreamPosition& position,
                                                                 const ShardLease* fence) {
  if (absl::Status status = Enter(Op::kSetAt, shard_id); !status.ok()) return status;
  // The fake source's records are numbered from 1 in every shard; these tests start at
  // TRIM_HORIZON, just before record 1.
  if (position.kind != StreamPosition::Kind::kTrimHorizon) {
    return absl::UnimplementedError("fake store: only TRIM_HORIZON");
  }
  absl::MutexLock lock(&mu_);
  Record& record = records_[shard_id];
  Call call = NewCall(Op::kSetAt, shard_id, fence != nullptr ? fence->owner : "",
                      fence != nullptr ? fence->epoch : 0);
  call.fenced = fence != nullptr;
  if (fence != nullptr && !HeldBy(record, fence->owner, fence->epoch)) {
    call.code = absl::StatusCode::kFailedPrecondition;
    Log(call);
    return Conflict(shard_id, record);
  }
  if (fence == nullptr) {
    record.owner.clear();
    record.expiry = absl::InfinitePast();
  }
  record.sequence_number = FakeSequence(0);
  call.sequence_number = record.sequence_number;
  Log(std::move(call));
  return StoredCheckpoint{shard_id, record.sequence_number, absl::Now(),
                          ShardLease{shard_id, record.owner, record.epoch, record.expiry}};
}

absl::StatusOr<StoredCheckpoint> FakeLeaseStore::TakeLease(const std::string& shard_id,
                                                           const std::string& owner,
                                                           absl::Duration duration) {
  if (absl::Status status = Enter(Op::kTake, shard_id); !status.ok()) return status;
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  Record& record = records_[shard_id];
  const bool live = !record.owner.empty() && record.expiry > now;
  Call call = NewCall(Op::kTake, shard_id, owner);
  if (live && record.owner != owner) {
    call.code = absl::StatusCode::kFailedPrecondition;
    Log(call);
    return Conflict(shard_id, record);
  }
  if (!live) {
    ++record.epoch;
    record.owner = owner;
  }
  record.expiry = now + duration;
  call.epoch = record.epoch;
  call.sequence_number = record.sequence_number;
  Log(call);
  return StoredCheckpoint{shard_id, record.sequence_number, now,
                          ShardLease{shard_id, record.owner, record.epoch, record.expiry}};
}

absl::StatusOr<ShardLease> FakeLeaseStore::RenewLease(const ShardLease& lease,
                                                      absl::Duration duration) {
  if (absl::Status status = Enter(Op::kRenew, lease.shard_id); !status.ok()) return status;
  absl::MutexLock lock(&mu_);
  Call call = NewCall(Op::kRenew, lease.shard_id, lease.owner, lease.epoch);
  if (fail_renewals_) {
    call.code = absl::StatusCode::kUnavailable;
    Log(call);
    return absl::UnavailableError("fake store: renewals fail");
  }
  Record& record = records_[lease.shard_id];
  if (!HeldBy(record, lease.owner, lease.epoch)) {
    call.code = absl::StatusCode::kFailedPrecondition;
    Log(call);
    return Conflict(lease.shard_id, record);
  }
  record.expiry = absl::Now() + duration;
  Log(call);
  return ShardLease{lease.shard_id, record.owner, record.epoch, record.expiry};
}

absl::Status FakeLeaseStore::ReleaseLease(const ShardLease& lease) {
  if (absl::Status status = Enter(Op::kRelease, lease.shard_id); !status.ok()) return status;
  absl::MutexLock lock(&mu_);
  Call call = NewCall(Op::kRelease, lease.shard_id, lease.owner, lease.epoch);
  Record& record = records_[lease.shard_id];
  if (!HeldBy(record, lease.owner, lease.epoch)) {
    call.code = absl::StatusCode::kFailedPrecondition;
    Log(call);
    return Conflict(lease.shard_id, record);
  }
  // The epoch stays: the next owner gets the one after it.
  record.owner.clear();
  record.expiry = absl::InfinitePast();
  call.sequence_number = record.sequence_number;
  Log(call);
  return absl::OkStatus();
}

absl::StatusOr<LeaseTable> FakeLeaseStore::ListLeases() {
  if (absl::Status status = Enter(Op::kListLeases, ""); !status.ok()) return status;
  LeaseTable table;
  table.now = absl::Now();
  absl::MutexLock lock(&mu_);
  Log(NewCall(Op::kListLeases, ""));
  for (const auto& [shard_id, r] : records_) {
    table.shards.push_back(
        {shard_id, r.sequence_number, table.now, ShardLease{shard_id, r.owner, r.epoch, r.expiry}});
  }
  for (const auto& [id, expiry] : members_) {
    if (expiry > table.now) table.members.push_back({id, "test", 0, expiry});
  }
  return table;
}

absl::Status FakeLeaseStore::Heartbeat(const FleetMember& member, absl::Duration ttl) {
  if (absl::Status status = Enter(Op::kHeartbeat, ""); !status.ok()) return status;
  absl::MutexLock lock(&mu_);
  Log(NewCall(Op::kHeartbeat, "", member.id));
  if (ttl <= absl::ZeroDuration()) {
    members_.erase(member.id);
  } else {
    members_[member.id] = absl::Now() + ttl;
  }
  return absl::OkStatus();
}

void FakeLeaseStore::Seed(const std::string& shard_id, Record record) {
  absl::MutexLock lock(&mu_);
  records_[shard_id] = std::move(record);
}

int64_t FakeLeaseStore::Steal(const std::string& shard_id, const std::string& owner,
                              absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  Record& record = records_[shard_id];
  ++record.epoch;
  record.owner = owner;
  record.expiry = absl::Now() + duration;
  return record.epoch;
}

FakeLeaseStore::Record FakeLeaseStore::Get(const std::string& shard_id) const {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(shard_id);
  return it == records_.end() ? Record{} : it->second;
}

std::vector<FakeLeaseStore::Call> FakeLeaseStore::Calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

int FakeLeaseStore::Count(Op op) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(op);
  return it == counts_.end() ? 0 : it->second;
}

// The source of one shard: a position in the shard's records.
class FakeRecordSource : public RecordSource {
 public:
  FakeRecordSource(FakeStreamSource* stream, std::string shard_id)
      : stream_(stream), shard_id_(std::move(shard_id)) {}

  absl::Status Seek(const StreamPosition& position) override {
    if (cancelled_) return absl::CancelledError("Seek: cancelled");
    absl::MutexLock lock(&stream_->mu_);
    const std::vector<SourceRecord>& records = stream_->records_[shard_id_];
    switch (position.kind) {
      case StreamPosition::Kind::kTrimHorizon:
        next_ = 0;
        break;
      case StreamPosition::Kind::kAfterSequenceNumber:
        next_ = static_cast<size_t>(
            std::upper_bound(records.begin(), records.end(), position.sequence_number,
                             [](const std::string& seq, const SourceRecord& record) {
                               return seq < record.sequence_number;
                             }) -
            records.begin());
        break;
      default:
        return absl::UnimplementedError("Seek: the fake source knows TRIM_HORIZON and AFTER");
    }
    positioned_ = true;
    return absl::OkStatus();
  }

  absl::StatusOr<SourceRead> Read(size_t max_records) override {
    if (!positioned_) return absl::FailedPreconditionError("Read: not positioned");
    SourceRead read;
    absl::MutexLock lock(&stream_->mu_);
    // A long poll, short: wait a little for records, or a cancel.
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(stream_->mu_) {
      return cancelled_ || stream_->records_[shard_id_].size() > next_;
    };
    stream_->mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(50));
    if (cancelled_) return absl::CancelledError("Read: cancelled");
    const std::vector<SourceRecord>& records = stream_->records_[shard_id_];
    while (next_ < records.size() && read.records.size() < max_records) {
      read.records.push_back(records[next_++]);
    }
    stream_->read_[shard_id_] += read.records.size();
    read.millis_behind_latest = 0;
    return read;
  }

  void Cancel() override {
    absl::MutexLock lock(&stream_->mu_);
    cancelled_ = true;
  }

 private:
  FakeStreamSource* const stream_;
  const std::string shard_id_;
  std::atomic<bool> cancelled_{false};
  bool positioned_ = false;
  size_t next_ = 0;
};

FakeStreamSource::FakeStreamSource(std::vector<std::string> shard_ids)
    : shard_ids_(std::move(shard_ids)) {}

std::string FakeStreamSource::Append(const std::string& shard_id, int count) {
  absl::MutexLock lock(&mu_);
  std::vector<SourceRecord>& records = records_[shard_id];
  for (int i = 0; i < count; ++i) {
    const uint64_t n = records.size() + 1;
    records.push_back({absl::StrCat("key-", n % 10), FakeSequence(n),
                       absl::StrCat(shard_id, "#", n), absl::ToUnixMillis(absl::Now())});
  }
  return records.empty() ? FakeSequence(0) : records.back().sequence_number;
}

std::string FakeStreamSource::AppendRecord(const std::string& shard_id, std::string key,
                                           std::string data) {
  absl::MutexLock lock(&mu_);
  std::vector<SourceRecord>& records = records_[shard_id];
  records.push_back({std::move(key), FakeSequence(records.size() + 1), std::move(data),
                     absl::ToUnixMillis(absl::Now())});
  return records.back().sequence_number;
}

std::vector<SourceRecord> FakeStreamSource::Records(const std::string& shard_id) const {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(shard_id);
  return it == records_.end() ? std::vector<SourceRecord>{} : it->second;
}

size_t FakeStreamSource::ReadCount(const std::string& shard_id) const {
  absl::MutexLock lock(&mu_);
  auto it = read_.find(shard_id);
  return it == read_.end() ? 0 : it->second;
}

// One stream, never deleted: incarnation 1.
absl::StatusOr<StreamIdentity> FakeStreamSource::Describe() {
  return StreamIdentity{"arn:aws:kinesis:us-east-1:000000000000:stream/events", 1};
}

absl::StatusOr<std::vector<SourceShard>> FakeStreamSource::ListShards(uint64_t) {
  std::vector<SourceShard> shards;
  for (const std::string& id : shard_ids_) shards.push_back({id, "", ""});
  return shards;
}

std::unique_ptr<RecordSource> FakeStreamSource::OpenShard(const std::string& shard_id, uint64_t) {
  return std::make_unique<FakeRecordSource>(this, shard_id);
}

RecordingFunction::RecordingFunction(std::unique_ptr<runtime::Function> inner)
    : runtime::Function(inner->config()), inner_(std::move(inner)) {}

runtime::InvokeResult RecordingFunction::Invoke(const runtime::InvokeRequest& request) {
  ++invocations_;
  if (before_invoke) before_invoke(request);
  runtime::InvokeResult result = inner_->Invoke(request);
  if (result.ok()) {
    absl::MutexLock lock(&mu_);
    const uint64_t stamp = NextStamp();
    for (const runtime::RecordView& record : request.records) {
      deliveries_.push_back(
          {std::string(request.shard_id), std::string(record.sequence_number), stamp});
    }
  }
  return result;
}

std::vector<Delivery> RecordingFunction::Deliveries() const {
  absl::MutexLock lock(&mu_);
  return deliveries_;
}

std::vector<Delivery> RecordingFunction::DeliveriesOf(const std::string& shard_id) const {
  std::vector<Delivery> out;
  for (const Delivery& delivery : Deliveries()) {
    if (delivery.shard_id == shard_id) out.push_back(delivery);
  }
  return out;
}

void Gate::Wait() {
  absl::MutexLock lock(&mu_);
  ++waiting_;
  mu_.Await(absl::Condition(&open_));
  --waiting_;
}

void Gate::Open() {
  absl::MutexLock lock(&mu_);
  open_ = true;
}

bool Gate::WaitForWaiter(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto waiter = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return waiting_ > 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&waiter), timeout);
}

}  // namespace runnel::poller::testing
