// The one typed client of the StreamBroker service. Every caller of a broker (the poller's shard
// readers, checkpoint writer, destinations and mapping control; the `runnel` client commands) goes
// through it, so that what each raw stub call used to repeat is written once here: a deadline on
// every unary call, cancellation from another thread (a stopping reader must not wait out a long
// poll), and the conversion of gRPC's status to absl::Status with the same code and message (the
// broker's messages already carry the Kinesis exception name).
//
// Each method takes the request message and returns the response message (or the failed status):
// the messages are the wire contract, and wrapping every field would only hide it.
//
// Thread-safe: one client may be shared by any number of threads (as gRPC's stub is).
#pragma once

#include <memory>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
// The generated Stub is a nested class, which a forward declaration cannot name.
#include "runnel/v1/broker.grpc.pb.h"

namespace runnel::client {

// How long one unary broker call may take before it fails with DEADLINE_EXCEEDED.
inline constexpr absl::Duration kDefaultRpcTimeout = absl::Seconds(30);

// The same code and message as an absl::Status.
absl::Status FromGrpc(const grpc::Status& status);
// The same code; the message prefixed with "`what`: ".
absl::Status FromGrpc(const grpc::Status& status, absl::string_view what);
// `status` with its message prefixed by "`what`: " (the caller's context); OK stays OK.
absl::Status WithContext(const absl::Status& status, absl::string_view what);

// Cancels the calls made with it from any thread: the call under way ends at once with
// CANCELLED, and every later call made with it fails CANCELLED without being sent. Used by a
// reader that must stop while a long poll or a subscription is open.
class CallCanceller {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class BrokerClient;
  friend class Subscription;
  // Registers the call about to start; cancels it at once when Cancel() came first.
  void Attach(grpc::ClientContext* context);
  void Detach(grpc::ClientContext* context);

  mutable absl::Mutex mu_;
  grpc::ClientContext* current_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// An open SubscribeToShard: events until the broker ends it or the canceller cancels it.
class Subscription {
 public:
  ~Subscription();
  // The next pushed event; false when the subscription ended (then call Finish).
  bool Read(v1::SubscribeToShardEvent* event);
  // Why it ended (OK, CANCELLED after a cancel, or the broker's error).
  absl::Status Finish();

 private:
  friend class BrokerClient;
  Subscription(CallCanceller* canceller) : canceller_(canceller) {}

  CallCanceller* const canceller_;  // may be null
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::SubscribeToShardEvent>> reader_;
  bool finished_ = false;
};

// Per-call options: the deadline, and a canceller (null: none).
struct CallOptions {
  absl::Duration timeout = kDefaultRpcTimeout;
  CallCanceller* canceller = nullptr;
};

class BrokerClient {
 public:
  explicit BrokerClient(std::shared_ptr<grpc::Channel> channel);

  absl::StatusOr<v1::CreateStreamResponse> CreateStream(const v1::CreateStreamRequest& request,
                                                        CallOptions options = {});
  absl::StatusOr<v1::DeleteStreamResponse> DeleteStream(const v1::DeleteStreamRequest& request,
                                                        CallOptions options = {});
  absl::StatusOr<v1::ListStreamsResponse> ListStreams(const v1::ListStreamsRequest& request,
                                                      CallOptions options = {});
  absl::StatusOr<v1::DescribeStreamSummaryResponse> DescribeStreamSummary(
      const v1::DescribeStreamSummaryRequest& request, CallOptions options = {});
  // The summary of `stream` (the common case of the call above).
  absl::StatusOr<v1::StreamDescriptionSummary> DescribeStreamSummary(const std::string& stream,
                                                                     CallOptions options = {});
  absl::StatusOr<v1::ListShardsResponse> ListShards(const v1::ListShardsRequest& request,
                                                    CallOptions options = {});
  // Every shard of `stream` (of `incarnation`, unless 0), following next_token across pages;
  // each page's call gets the options' timeout.
  absl::StatusOr<std::vector<v1::Shard>> ListAllShards(const std::string& stream,
                                                       CallOptions options = {});
  absl::StatusOr<std::vector<v1::Shard>> ListAllShards(const std::string& stream,
                                                       uint64_t incarnation,
                                                       CallOptions options = {});
  absl::StatusOr<v1::IncreaseStreamRetentionPeriodResponse> IncreaseStreamRetentionPeriod(
      const v1::IncreaseStreamRetentionPeriodRequest& request, CallOptions options = {});
  absl::StatusOr<v1::DecreaseStreamRetentionPeriodResponse> DecreaseStreamRetentionPeriod(
      const v1::DecreaseStreamRetentionPeriodRequest& request, CallOptions options = {});

  absl::StatusOr<v1::PutRecordResponse> PutRecord(const v1::PutRecordRequest& request,
                                                  CallOptions options = {});
  absl::StatusOr<v1::PutRecordsResponse> PutRecords(const v1::PutRecordsRequest& request,
                                                    CallOptions options = {});
  absl::StatusOr<v1::GetShardIteratorResponse> GetShardIterator(
      const v1::GetShardIteratorRequest& request, CallOptions options = {});
  absl::StatusOr<v1::GetRecordsResponse> GetRecords(const v1::GetRecordsRequest& request,
                                                    CallOptions options = {});
  // Opens a subscription. It has no deadline (it lasts until ended); `canceller` ends it.
  std::unique_ptr<Subscription> SubscribeToShard(const v1::SubscribeToShardRequest& request,
                                                 CallCanceller* canceller = nullptr);

  absl::StatusOr<v1::GetCheckpointResponse> GetCheckpoint(const v1::GetCheckpointRequest& request,
                                                          CallOptions options = {});
  absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(
      const v1::ListCheckpointsRequest& request, CallOptions options = {});
  absl::StatusOr<v1::SetCheckpointResponse> SetCheckpoint(const v1::SetCheckpointRequest& request,
                                                          CallOptions options = {});
  absl::StatusOr<v1::DeleteCheckpointsResponse> DeleteCheckpoints(
      const v1::DeleteCheckpointsRequest& request, CallOptions options = {});
  absl::StatusOr<v1::AcquireLeaseResponse> AcquireLease(const v1::AcquireLeaseRequest& request,
                                                        CallOptions options = {});
  absl::StatusOr<v1::RenewLeaseResponse> RenewLease(const v1::RenewLeaseRequest& request,
                                                    CallOptions options = {});
  absl::StatusOr<v1::ReleaseLeaseResponse> ReleaseLease(const v1::ReleaseLeaseRequest& request,
                                                        CallOptions options = {});
  absl::StatusOr<v1::ListLeasesResponse> ListLeases(const v1::ListLeasesRequest& request,
                                                    CallOptions options = {});
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request,
                                                  CallOptions options = {});

 private:
  template <typename Request, typename Response>
  using Method = grpc::Status (v1::StreamBroker::Stub::*)(grpc::ClientContext*, const Request&,
                                                          Response*);
  template <typename Request, typename Response>
  absl::StatusOr<Response> Unary(Method<Request, Response> method, const Request& request,
                                 const CallOptions& options);

  const std::unique_ptr<v1::StreamBroker::Stub> stub_;
};

}  // namespace runnel::client
