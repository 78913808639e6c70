#include "cli/kinesis_endpoint.h"

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace runnel::cli {

void AddKinesisOptions(CLI::App& command, std::string* listen, std::string* ready_file) {
  command.add_option("--kinesis-listen", *listen,
                     "Also serve the Kinesis API (JSON and CBOR, HTTP/1.1 and HTTP/2 cleartext) "
                     "for the AWS CLI and SDKs on HOST:PORT (port 0: any free). Off by default");
  command.add_option("--kinesis-ready-file", *ready_file,
                     "Write the Kinesis endpoint's URL (http://HOST:PORT) to this file once "
                     "serving (needs --kinesis-listen)");
}

absl::StatusOr<std::unique_ptr<kinesis::KinesisHttpServer>> StartKinesisEndpoint(
    broker::Broker* broker, const kinesis::KinesisHttpOptions& options) {
  if (options.listen.empty()) return std::unique_ptr<kinesis::KinesisHttpServer>();
  return kinesis::KinesisHttpServer::Start(broker, options);
}

absl::Status WriteReadyFiles(const std::string& ready_file, const std::string& grpc_address,
                             const std::string& kinesis_ready_file,
                             const kinesis::KinesisHttpServer* kinesis) {
  if (!kinesis_ready_file.empty()) {
    if (kinesis == nullptr) {
      return absl::InvalidArgumentError("--kinesis-ready-file needs --kinesis-listen");
    }
    if (auto status = WriteFileAtomically(kinesis_ready_file, kinesis->endpoint() + "\n");
        !status.ok()) {
      return status;
    }
  }
  if (ready_file.empty()) return absl::OkStatus();
  return WriteFileAtomically(ready_file, grpc_address + "\n");
}

}  // namespace runnel::cli
