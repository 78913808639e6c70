#include "poller/checkpoint_client.h"

#include <atomic>

#include "client/broker_client.h"
#include "google/protobuf/util/time_util.h"
#include "poller/broker_record_source.h"

namespace runnel::poller {
namespace {

using google::protobuf::util::TimeUtil;

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(t));
}

google::protobuf::Duration ToProto(absl::Duration d) {
  return TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(d));
}

StoredCheckpoint FromProto(const v1::Checkpoint& checkpoint) {
  StoredCheckpoint out;
  out.shard_id = checkpoint.shard_id();
  out.sequence_number = checkpoint.sequence_number();
  out.update_time = FromProto(checkpoint.update_time());
  out.lease.shard_id = checkpoint.shard_id();
  out.lease.owner = checkpoint.lease_owner();
  out.lease.epoch = checkpoint.lease_epoch();
  if (!checkpoint.lease_owner().empty()) out.lease.expiry = FromProto(checkpoint.lease_expiry());
  return out;
}

// A lease call that outlasts a third of the lease is of no use: the lease thread must get back to
// its other leases and to the local deadlines.
client::CallOptions LeaseCall(absl::Duration duration) {
  return {.timeout = std::max(duration / 3, absl::Milliseconds(100))};
}

class BrokerCheckpointClient : public CheckpointClient {
 public:
  BrokerCheckpointClient(std::shared_ptr<client::BrokerClient> broker, std::string consumer_name,
                         std::string stream)
      : broker_(std::move(broker)),
        consumer_name_(std::move(consumer_name)),
        stream_(std::move(stream)) {}

  void SetStreamIncarnation(uint64_t incarnation) override { incarnation_ = incarnation; }

  absl::StatusOr<std::vector<StoredCheckpoint>> ListCheckpoints() override {
    v1::ListCheckpointsRequest request;
    request.set_consumer_name(consumer_name_);
    request.set_stream_name(stream_);
    request.set_incarnation(incarnation_);
    auto response = broker_->ListCheckpoints(request);
    if (!response.ok()) return response.status();
    std::vector<StoredCheckpoint> out;
    for (const v1::Checkpoint& checkpoint : response->checkpoints()) {
      out.push_back(FromProto(checkpoint));
    }
    return out;
  }

  absl::StatusOr<StoredCheckpoint> GetCheckpoint(const std::string& shard_id) override {
    v1::GetCheckpointRequest request;
    request.set_consumer_name(consumer_name_);
    request.set_stream_name(stream_);
    request.set_incarnation(incarnation_);
    request.set_shard_id(shard_id);
    auto response = broker_->GetCheckpoint(request);
    if (!response.ok()) return response.status();
    return FromProto(response->checkpoint());
  }

  absl::Status SetCheckpoint(const std::string& shard_id, const std::string& sequence_number,
                             const ShardLease* fence) override {
    v1::SetCheckpointRequest request = FencedRequest(shard_id, fence);
    request.set_sequence_number(sequence_number);
    return broker_->SetCheckpoint(request).status();
  }

  absl::StatusOr<StoredCheckpoint> SetCheckpointAt(const std::string& shard_id,
                                                   const StreamPosition& position,
                                                   const ShardLease* fence) override {
    v1::SetCheckpointRequest request = FencedRequest(shard_id, fence);
    request.mutable_position()->set_type(ShardIteratorTypeOf(position.kind));
    request.mutable_position()->set_sequence_number(position.sequence_number);
    if (position.kind == StreamPosition::Kind::kAtTimestamp) {
      *request.mutable_position()->mutable_timestamp() =
          TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(position.timestamp));
    }
    auto response = broker_->SetCheckpoint(request);
    if (!response.ok()) return response.status();
    return FromProto(response->checkpoint());
  }

  absl::StatusOr<StoredCheckpoint> TakeLease(const std::string& shard_id, const std::string& owner,
                                             absl::Duration duration) override {
    v1::AcquireLeaseRequest request;
    request.set_consumer_name(consumer_name_);
    request.set_stream_name(stream_);
    request.set_incarnation(incarnation_);
    request.set_shard_id(shard_id);
    request.set_owner(owner);
    *request.mutable_lease_duration() = ToProto(duration);
    auto response = broker_->AcquireLease(request, LeaseCall(duration));
    if (!response.ok()) return response.status();
    return FromProto(response->checkpoint());
  }

  absl::StatusOr<ShardLease> RenewLease(const ShardLease& lease, absl::Duration duration) override {
    auto request = LeaseRequest<v1::RenewLeaseRequest>(lease);
    *request.mutable_lease_duration() = ToProto(duration);
    auto response = broker_->RenewLease(request, LeaseCall(duration));
    if (!response.ok()) return response.status();
    return FromProto(response->checkpoint()).lease;
  }

  absl::Status ReleaseLease(const ShardLease& lease) override {
    auto request = LeaseRequest<v1::ReleaseLeaseRequest>(lease);
    return broker_->ReleaseLease(request, {.timeout = absl::Seconds(2)}).status();
  }

  absl::StatusOr<LeaseTable> ListLeases() override {
    v1::ListLeasesRequest request;
    request.set_consumer_name(consumer_name_);
    request.set_stream_name(stream_);
    request.set_incarnation(incarnation_);
    auto response = broker_->ListLeases(request, {.timeout = absl::Seconds(5)});
    if (!response.ok()) return response.status();
    LeaseTable table;
    for (const v1::Checkpoint& checkpoint : response->leases()) {
      table.shards.push_back(FromProto(checkpoint));
    }
    for (const v1::PollerMember& member : response->members()) {
      table.members.push_back(
          {member.poller_id(), member.host(), member.pid(), FromProto(member.expiry())});
    }
    table.now = FromProto(response->now());
    return table;
  }

  absl::Status Heartbeat(const FleetMember& member, absl::Duration ttl) override {
    v1::HeartbeatRequest request;
    request.set_consumer_name(consumer_name_);
    request.set_stream_name(stream_);
    request.set_incarnation(incarnation_);
    request.mutable_member()->set_poller_id(member.id);
    request.mutable_member()->set_host(member.host);
    request.mutable_member()->set_pid(member.pid);
    *request.mutable_ttl() = ToProto(ttl);
    return broker_->Heartbeat(request, {.timeout = absl::Seconds(5)}).status();
  }

 private:
  // A renew or release request naming this mapping's shard, owner and epoch of `lease`.
  template <typename LeaseRequestProto>
  LeaseRequestProto LeaseRequest(const ShardLease& lease) const {
    LeaseRequestProto request;
    request.set_consumer_name(consumer_name_);
    request.set_stream_name(stream_);
    request.set_incarnation(incarnation_);
    request.set_shard_id(lease.shard_id);
    request.set_owner(lease.owner);
    request.set_lease_epoch(lease.epoch);
    return request;
  }

  v1::SetCheckpointRequest Request(const std::string& shard_id) const {
    v1::SetCheckpointRequest request;
    request.set_consumer_name(consumer_name_);
    request.set_stream_name(stream_);
    request.set_incarnation(incarnation_);
    request.set_shard_id(shard_id);
    return request;
  }

  // A write refused unless the lease is still (owner, epoch); it leaves the lease as it is.
  // Without a fence the broker takes the write for an operator's and frees the lease.
  v1::SetCheckpointRequest FencedRequest(const std::string& shard_id,
                                         const ShardLease* fence) const {
    v1::SetCheckpointRequest request = Request(shard_id);
    if (fence != nullptr) {
      request.set_lease_owner(fence->owner);
      request.set_lease_epoch(fence->epoch);
    }
    return request;
  }

  const std::shared_ptr<client::BrokerClient> broker_;
  const std::string consumer_name_;
  const std::string stream_;
  std::atomic<uint64_t> incarnation_{0};
};

}  // namespace

std::unique_ptr<CheckpointClient> MakeBrokerCheckpointClient(
    std::shared_ptr<client::BrokerClient> broker, std::string consumer_name, std::string stream) {
  return std::make_unique<BrokerCheckpointClient>(std::move(broker), std::move(consumer_name),
                                                  std::move(stream));
}

}  // namespace runnel::poller
