#include "client/broker_client.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"

namespace runnel::client {

absl::Status FromGrpc(const grpc::Status& status) {
  // gRPC's and Abseil's codes share their numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

absl::Status WithContext(const absl::Status& status, absl::string_view what) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
}

void CallCanceller::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (current_ != nullptr) current_->TryCancel();
}

bool CallCanceller::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

void CallCanceller::Attach(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  current_ = context;
  if (cancelled_) context->TryCancel();
}

void CallCanceller::Detach(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (current_ == context) current_ = nullptr;
}

Subscription::~Subscription() {
  if (reader_ == nullptr || finished_) return;
  context_.TryCancel();
  v1::SubscribeToShardEvent event;
  while (reader_->Read(&event)) {
  }
  Finish().IgnoreError();
}

bool Subscription::Read(v1::SubscribeToShardEvent* event) {
  return !finished_ && reader_->Read(event);
}

absl::Status Subscription::Finish() {
  if (finished_) return absl::FailedPreconditionError("subscription already finished");
  finished_ = true;
  grpc::Status status = reader_->Finish();
  if (canceller_ != nullptr) canceller_->Detach(&context_);
  return FromGrpc(status);
}

BrokerClient::BrokerClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::StreamBroker::NewStub(std::move(channel))) {}

template <typename Request, typename Response>
absl::StatusOr<Response> BrokerClient::Unary(Method<Request, Response> method,
                                             const Request& request, const CallOptions& options) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  if (options.canceller != nullptr) options.canceller->Attach(&context);
  Response response;
  grpc::Status status = ((*stub_).*method)(&context, request, &response);
  if (options.canceller != nullptr) options.canceller->Detach(&context);
  if (!status.ok()) return FromGrpc(status);
  return response;
}

absl::StatusOr<v1::CreateStreamResponse> BrokerClient::CreateStream(
    const v1::CreateStreamRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::CreateStream, request, options);
}

absl::StatusOr<v1::DeleteStreamResponse> BrokerClient::DeleteStream(
    const v1::DeleteStreamRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::DeleteStream, request, options);
}

absl::StatusOr<v1::ListStreamsResponse> BrokerClient::ListStreams(
    const v1::ListStreamsRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::ListStreams, request, options);
}

absl::StatusOr<v1::DescribeStreamSummaryResponse> BrokerClient::DescribeStreamSummary(
    const v1::DescribeStreamSummaryRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::DescribeStreamSummary, request, options);
}

absl::StatusOr<v1::StreamDescriptionSummary> BrokerClient::DescribeStreamSummary(
    const std::string& stream, CallOptions options) {
  v1::DescribeStreamSummaryRequest request;
  request.set_stream_name(stream);
  auto response = DescribeStreamSummary(request, options);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_stream_description_summary());
}

absl::StatusOr<v1::ListShardsResponse> BrokerClient::ListShards(
    const v1::ListShardsRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::ListShards, request, options);
}

absl::StatusOr<std::vector<v1::Shard>> BrokerClient::ListAllShards(const std::string& stream,
                                                                   CallOptions options) {
  return ListAllShards(stream, 0, options);
}

absl::StatusOr<std::vector<v1::Shard>> BrokerClient::ListAllShards(const std::string& stream,
                                                                   uint64_t incarnation,
                                                                   CallOptions options) {
  std::vector<v1::Shard> shards;
  std::string next_token;
  do {
    // Kinesis refuses a stream name together with a next_token: the token names the stream.
    v1::ListShardsRequest request;
    if (next_token.empty()) {
      request.set_stream_name(stream);
      request.set_incarnation(incarnation);
    } else {
      request.set_next_token(next_token);
    }
    auto response = ListShards(request, options);
    if (!response.ok()) return response.status();
    for (auto& shard : *response->mutable_shards()) shards.push_back(std::move(shard));
    next_token = response->next_token();
  } while (!next_token.empty());
  return shards;
}

absl::StatusOr<v1::IncreaseStreamRetentionPeriodResponse>
BrokerClient::IncreaseStreamRetentionPeriod(const v1::IncreaseStreamRetentionPeriodRequest& request,
                                            CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::IncreaseStreamRetentionPeriod, request, options);
}

absl::StatusOr<v1::DecreaseStreamRetentionPeriodResponse>
BrokerClient::DecreaseStreamRetentionPeriod(const v1::DecreaseStreamRetentionPeriodRequest& request,
                                            CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::DecreaseStreamRetentionPeriod, request, options);
}

absl::StatusOr<v1::PutRecordResponse> BrokerClient::PutRecord(const v1::PutRecordRequest& request,
                                                              CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::PutRecord, request, options);
}

absl::StatusOr<v1::PutRecordsResponse> BrokerClient::PutRecords(
    const v1::PutRecordsRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::PutRecords, request, options);
}

absl::StatusOr<v1::GetShardIteratorResponse> BrokerClient::GetShardIterator(
    const v1::GetShardIteratorRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::GetShardIterator, request, options);
}

absl::StatusOr<v1::GetRecordsResponse> BrokerClient::GetRecords(
    const v1::GetRecordsRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::GetRecords, request, options);
}

std::unique_ptr<Subscription> BrokerClient::SubscribeToShard(
    const v1::SubscribeToShardRequest& request, CallCanceller* canceller) {
  std::unique_ptr<Subscription> subscription(new Subscription(canceller));
  if (canceller != nullptr) canceller->Attach(&subscription->context_);
  subscription->reader_ = stub_->SubscribeToShard(&subscription->context_, request);
  return subscription;
}

absl::StatusOr<v1::GetCheckpointResponse> BrokerClient::GetCheckpoint(
    const v1::GetCheckpointRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::GetCheckpoint, request, options);
}

absl::StatusOr<v1::ListCheckpointsResponse> BrokerClient::ListCheckpoints(
    const v1::ListCheckpointsRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::ListCheckpoints, request, options);
}

absl::StatusOr<v1::SetCheckpointResponse> BrokerClient::SetCheckpoint(
    const v1::SetCheckpointRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::SetCheckpoint, request, options);
}

absl::StatusOr<v1::DeleteCheckpointsResponse> BrokerClient::DeleteCheckpoints(
    const v1::DeleteCheckpointsRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::DeleteCheckpoints, request, options);
}

absl::StatusOr<v1::AcquireLeaseResponse> BrokerClient::AcquireLease(
    const v1::AcquireLeaseRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::AcquireLease, request, options);
}

absl::StatusOr<v1::RenewLeaseResponse> BrokerClient::RenewLease(
    const v1::RenewLeaseRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::RenewLease, request, options);
}

absl::StatusOr<v1::ReleaseLeaseResponse> BrokerClient::ReleaseLease(
    const v1::ReleaseLeaseRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::ReleaseLease, request, options);
}

absl::StatusOr<v1::ListLeasesResponse> BrokerClient::ListLeases(
    const v1::ListLeasesRequest& request, CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::ListLeases, request, options);
}

absl::StatusOr<v1::HeartbeatResponse> BrokerClient::Heartbeat(const v1::HeartbeatRequest& request,
                                                              CallOptions options) {
  return Unary(&v1::StreamBroker::Stub::Heartbeat, request, options);
}

}  // namespace runnel::client
