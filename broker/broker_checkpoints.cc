// Consumer checkpoints and leases, kept in the CheckpointStore.
#include "broker/broker.h"

#include "absl/strings/str_cat.h"
#include "broker/broker_internal.h"
#include "broker/checkpoint_store.h"
#include "broker/sequence_number.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace runnel::broker {

absl::StatusOr<v1::GetCheckpointResponse> Broker::GetCheckpoint(
    const v1::GetCheckpointRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream,
                   FindStream(request.stream_name(), request.incarnation()));
  RETURN_IF_ERROR(FindShard(*stream, request.shard_id()).status());
  v1::GetCheckpointResponse response;
  ASSIGN_OR_RETURN(*response.mutable_checkpoint(),
                   checkpoints_->Get(request.consumer_name(), request.stream_name(),
                                     request.shard_id(), stream->incarnation));
  return response;
}

absl::StatusOr<v1::ListCheckpointsResponse> Broker::ListCheckpoints(
    const v1::ListCheckpointsRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream,
                   FindStream(request.stream_name(), request.incarnation()));
  v1::ListCheckpointsResponse response;
  for (auto& checkpoint :
       checkpoints_->List(request.consumer_name(), request.stream_name(), stream->incarnation)) {
    *response.add_checkpoints() = std::move(checkpoint);
  }
  return response;
}

absl::StatusOr<v1::SetCheckpointResponse> Broker::SetCheckpoint(
    const v1::SetCheckpointRequest& request) {
  if (request.consumer_name().empty() || request.consumer_name().size() > 256) {
    return ValidationError("consumerName", request.consumer_name(),
                           "Member must have length between 1 and 256");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream,
                   FindStream(request.stream_name(), request.incarnation()));
  ASSIGN_OR_RETURN(ShardState * shard, FindShard(*stream, request.shard_id()));
  if (request.has_position()) {
    if (!request.sequence_number().empty()) {
      return absl::InvalidArgumentError(
          "InvalidArgumentException: set sequenceNumber or position, not both");
    }
    const v1::StartingPosition& position = request.position();
    ASSIGN_OR_RETURN(uint64_t offset,
                     ResolvePosition(*stream, *shard, position.type(), position.sequence_number(),
                                     position.timestamp(), "position.sequenceNumber"));
    // The checkpoint names the last record done: the one before the next to read (offset 0 is
    // the position before a shard's first record).
    v1::SetCheckpointRequest resolved = request;
    resolved.clear_position();
    resolved.set_sequence_number(FormatSequenceNumber(offset > 0 ? offset - 1 : 0, shard->index));
    return SetCheckpoint(resolved);
  }
  if (!request.sequence_number().empty()) {
    ASSIGN_OR_RETURN(SequencePosition position,
                     ParseSequenceNumber(request.sequence_number(), "sequenceNumber"));
    if (position.shard_index != shard->index || position.offset >= shard->log->EndOffset()) {
      return absl::InvalidArgumentError(
          absl::StrCat("InvalidArgumentException: sequenceNumber ", request.sequence_number(),
                       " is not a record of ", stream->name, "/", shard->id));
    }
  }
  if (request.sequence_number().empty() && request.lease_owner().empty()) {
    return absl::InvalidArgumentError(
        "InvalidArgumentException: set sequenceNumber, leaseOwner or both");
  }
  // Written for the incarnation found, so its successor never reads it (also when a delete
  // overtakes this write).
  v1::SetCheckpointRequest stamped = request;
  stamped.set_incarnation(stream->incarnation);
  v1::SetCheckpointResponse response;
  ASSIGN_OR_RETURN(*response.mutable_checkpoint(), checkpoints_->Set(stamped, CheckpointClock()));
  return response;
}

absl::StatusOr<v1::DeleteCheckpointsResponse> Broker::DeleteCheckpoints(
    const v1::DeleteCheckpointsRequest& request) {
  RETURN_IF_ERROR(FindStream(request.stream_name(), request.incarnation()).status());
  v1::DeleteCheckpointsResponse response;
  ASSIGN_OR_RETURN(int deleted, checkpoints_->Delete(request.consumer_name(), request.stream_name(),
                                                     request.shard_id()));
  response.set_deleted_count(deleted);
  return response;
}

namespace {

absl::Duration DurationOf(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

absl::Status CheckLeaseNames(const std::string& consumer, const std::string& owner) {
  if (consumer.empty() || consumer.size() > 256) {
    return ValidationError("consumerName", consumer, "Member must have length between 1 and 256");
  }
  if (owner.empty() || owner.size() > 256) {
    return ValidationError("owner", owner, "Member must have length between 1 and 256");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Time Broker::CheckpointClock() const {
  return options_.clock ? options_.clock() : absl::Now();
}

absl::StatusOr<v1::AcquireLeaseResponse> Broker::AcquireLease(
    const v1::AcquireLeaseRequest& request) {
  RETURN_IF_ERROR(CheckLeaseNames(request.consumer_name(), request.owner()));
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream,
                   FindStream(request.stream_name(), request.incarnation()));
  RETURN_IF_ERROR(FindShard(*stream, request.shard_id()).status());
  v1::AcquireLeaseResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_checkpoint(),
      checkpoints_->AcquireLease(request.consumer_name(), request.stream_name(), request.shard_id(),
                                 request.owner(), DurationOf(request.lease_duration()),
                                 CheckpointClock(), stream->incarnation));
  return response;
}

absl::StatusOr<v1::RenewLeaseResponse> Broker::RenewLease(const v1::RenewLeaseRequest& request) {
  RETURN_IF_ERROR(CheckLeaseNames(request.consumer_name(), request.owner()));
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream,
                   FindStream(request.stream_name(), request.incarnation()));
  RETURN_IF_ERROR(FindShard(*stream, request.shard_id()).status());
  v1::RenewLeaseResponse response;
  ASSIGN_OR_RETURN(*response.mutable_checkpoint(),
                   checkpoints_->RenewLease(
                       request.consumer_name(), request.stream_name(), request.shard_id(),
                       request.owner(), request.lease_epoch(), DurationOf(request.lease_duration()),
                       CheckpointClock(), stream->incarnation));
  return response;
}

absl::StatusOr<v1::ReleaseLeaseResponse> Broker::ReleaseLease(
    const v1::ReleaseLeaseRequest& request) {
  RETURN_IF_ERROR(CheckLeaseNames(request.consumer_name(), request.owner()));
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream,
                   FindStream(request.stream_name(), request.incarnation()));
  RETURN_IF_ERROR(FindShard(*stream, request.shard_id()).status());
  v1::ReleaseLeaseResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_checkpoint(),
      checkpoints_->ReleaseLease(request.consumer_name(), request.stream_name(), request.shard_id(),
                                 request.owner(), request.lease_epoch(), CheckpointClock(),
                                 stream->incarnation));
  return response;
}

absl::StatusOr<v1::ListLeasesResponse> Broker::ListLeases(const v1::ListLeasesRequest& request) {
  if (request.consumer_name().empty()) {
    return ValidationError("consumerName", request.consumer_name(),
                           "Member must have length between 1 and 256");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream,
                   FindStream(request.stream_name(), request.incarnation()));
  const absl::Time now = CheckpointClock();
  v1::ListLeasesResponse response;
  for (auto& checkpoint :
       checkpoints_->List(request.consumer_name(), request.stream_name(), stream->incarnation)) {
    *response.add_leases() = std::move(checkpoint);
  }
  for (auto& member : checkpoints_->Members(request.consumer_name(), request.stream_name(), now)) {
    *response.add_members() = std::move(member);
  }
  *response.mutable_now() =
      google::protobuf::util::TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(now));
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> Broker::Heartbeat(const v1::HeartbeatRequest& request) {
  RETURN_IF_ERROR(CheckLeaseNames(request.consumer_name(), request.member().poller_id()));
  RETURN_IF_ERROR(FindStream(request.stream_name(), request.incarnation()).status());
  checkpoints_->Heartbeat(request.consumer_name(), request.stream_name(), request.member(),
                          DurationOf(request.ttl()), CheckpointClock());
  return v1::HeartbeatResponse();
}

}  // namespace runnel::broker
