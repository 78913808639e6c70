#include "poller/broker_calls.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"

namespace runnel::poller {

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status FromGrpc(const grpc::Status& status, const std::string& what) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

absl::StatusOr<std::vector<v1::Shard>> ListAllShards(v1::StreamBroker::Stub& stub,
                                                     const std::string& stream,
                                                     absl::Duration timeout) {
  std::vector<v1::Shard> shards;
  std::string next_token;
  do {
    // Kinesis refuses a stream name together with a next_token: the token names the stream.
    v1::ListShardsRequest request;
    if (next_token.empty()) {
      request.set_stream_name(stream);
    } else {
      request.set_next_token(next_token);
    }
    v1::ListShardsResponse response;
    grpc::ClientContext context;
    SetDeadline(context, timeout);
    grpc::Status status = stub.ListShards(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    for (auto& shard : *response.mutable_shards()) shards.push_back(std::move(shard));
    next_token = response.next_token();
  } while (!next_token.empty());
  return shards;
}

}  // namespace runnel::poller
