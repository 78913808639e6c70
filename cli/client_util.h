// Helpers shared by the client commands: a broker client (client/broker_client.h) with the
// broker's message limits, deadlines, one-line error reports, and JSON output.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "client/broker_client.h"
#include "runnel/v1/broker.grpc.pb.h"

namespace runnel::cli {

// The typed client of the broker at --broker.
std::unique_ptr<client::BrokerClient> ConnectBroker(const ClientOptions& options);

// Sets a deadline `timeout` from now (for the calls of other services, e.g. `runnel mapping`).
void SetDeadline(grpc::ClientContext& context, absl::Duration timeout);

// Prints the failure of a call to the broker as one line and returns kExitError.
int ReportRpcError(const absl::Status& status, const ClientOptions& options);

// "1718000000.123": epoch seconds with milliseconds, as Kinesis's JSON carries timestamps.
std::string EpochSecondsText(const google::protobuf::Timestamp& timestamp);

// Escapes `text` as a JSON string, quotes included.
std::string JsonString(std::string_view text);

// Base64 (standard alphabet, padded) as Kinesis's JSON carries data.
std::string Base64(std::string_view bytes);

}  // namespace runnel::cli
