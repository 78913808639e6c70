// The Kinesis-compatible HTTP endpoint as `runnel broker` and `runnel up` offer it
// (--kinesis-listen, --kinesis-ready-file).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kinesis/server.h"

namespace CLI {
class App;
}
namespace runnel::broker {
class Broker;
}

namespace runnel::cli {

void AddKinesisOptions(CLI::App& command, std::string* listen, std::string* ready_file);

// Starts the endpoint on `options.listen`; nullptr (and OK) when it is empty (the default: off).
absl::StatusOr<std::unique_ptr<kinesis::KinesisHttpServer>> StartKinesisEndpoint(
    broker::Broker* broker, const kinesis::KinesisHttpOptions& options);

// Writes the Kinesis endpoint's URL to `kinesis_ready_file` (if set), then the gRPC address to
// `ready_file` (if set): whoever waits for the latter finds both. The gRPC ready file keeps its
// one-line format, which scripts read with $(cat FILE).
absl::Status WriteReadyFiles(const std::string& ready_file, const std::string& grpc_address,
                             const std::string& kinesis_ready_file,
                             const kinesis::KinesisHttpServer* kinesis);

}  // namespace runnel::cli
