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

std::unique_ptr<client::BrokerClient> ConnectBroker(const ClientOptions& options) {
  return std::make_unique<client::BrokerClient>(broker::MakeBrokerChannel(options.broker));
}

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

int ReportRpcError(const absl::Status& status, const ClientOptions& options) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
      PrintError(absl::StrCat("cannot reach the broker at ", options.broker,
                              " (is `runnel broker` or `runnel up` running there? set --broker or "
                              "RUNNEL_BROKER): ",
                              status.message()));
      break;
    case absl::StatusCode::kDeadlineExceeded:
      PrintError(absl::StrCat("the broker at ", options.broker, " did not answer in time"));
      break;
    default:
      PrintError(std::string(status.message()));
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
