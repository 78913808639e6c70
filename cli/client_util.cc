#include "cli/client_util.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/server.h"
#include "common/strings.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace runnel::cli {

std::unique_ptr<v1::StreamBroker::Stub> ConnectBroker(const ClientOptions& options) {
  return v1::StreamBroker::NewStub(broker::MakeBrokerChannel(options.broker));
}

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

int ReportRpcError(const grpc::Status& status, const ClientOptions& options) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      PrintError(absl::StrCat("cannot reach the broker at ", options.broker,
                              " (is `runnel broker` or `runnel up` running there? set --broker or "
                              "RUNNEL_BROKER): ",
                              status.error_message()));
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      PrintError(absl::StrCat("the broker at ", options.broker, " did not answer in time"));
      break;
    default:
      PrintError(status.error_message());
  }
  return kExitError;
}

std::string EpochSecondsText(const google::protobuf::Timestamp& timestamp) {
  return absl::StrFormat("%d.%03d", timestamp.seconds(), timestamp.nanos() / 1'000'000);
}

std::string JsonString(std::string_view text) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string Base64(std::string_view bytes) {
  std::string out;
  absl::Base64Escape(Sv(bytes), &out);
  return out;
}

}  // namespace runnel::cli
