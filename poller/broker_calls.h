#pragma once

// The boilerplate of the poller's StreamBroker calls, written once: the deadline every call
// carries, the gRPC-to-absl status conversion, and the ListShards paging loop.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
// The generated Stub is a nested class, which a forward declaration cannot name; this header is
// poller-internal and only included by sources that make broker calls anyway.
#include "runnel/v1/broker.grpc.pb.h"

namespace runnel::poller {

// How long one broker call may take before it fails with DEADLINE_EXCEEDED.
inline constexpr absl::Duration kBrokerRpcTimeout = absl::Seconds(30);

// Sets `context` to expire `timeout` from now.
void SetDeadline(grpc::ClientContext& context, absl::Duration timeout);

// The same code and message as an absl::Status.
absl::Status FromGrpc(const grpc::Status& status);
// The same code; the message prefixed with "`what`: ".
absl::Status FromGrpc(const grpc::Status& status, const std::string& what);

// Every shard of `stream`, following next_token across pages; each page's call gets `timeout`.
// A failed call's status is returned as FromGrpc(status), for the caller to add its context.
absl::StatusOr<std::vector<v1::Shard>> ListAllShards(v1::StreamBroker::Stub& stub,
                                                     const std::string& stream,
                                                     absl::Duration timeout);

}  // namespace runnel::poller
