#include "cli/broker_stack.h"

#include <CLI/CLI.hpp>

#include "cli/kinesis_endpoint.h"
#include "common/listen_address.h"
#include "common/status_macros.h"

namespace runnel::cli {

void AddFsyncOption(CLI::App& command, std::string* fsync, const std::string& help) {
  command.add_option("--fsync", *fsync, help)
      ->check(CLI::IsMember({"always", "interval", "never"}))
      ->capture_default_str();
}

v1::FsyncPolicy FsyncPolicyNamed(const std::string& fsync) {
  return fsync == "interval" ? v1::FSYNC_INTERVAL
         : fsync == "never"  ? v1::FSYNC_NEVER
                             : v1::FSYNC_ALWAYS;
}

absl::Status CheckListenersFree(const BrokerStackOptions& options) {
  RETURN_IF_ERROR(CheckListenAddressFree("--listen", options.server.listen));
  auto metrics = ParseMetricsAddress(
      MetricsAddressOrDefault(options.metrics.address, kDefaultBrokerMetrics), "--metrics");
  RETURN_IF_ERROR(metrics.status());
  if (metrics->has_value()) RETURN_IF_ERROR(CheckListenAddressFree("--metrics", **metrics));
  if (!options.kinesis_listen.empty()) {
    RETURN_IF_ERROR(CheckListenAddressFree("--kinesis-listen", options.kinesis_listen));
  }
  return absl::OkStatus();
}

absl::StatusOr<BrokerStack> BrokerStack::Start(const BrokerStackOptions& options) {
  // Before the broker creates or locks its data directory.
  RETURN_IF_ERROR(CheckListenersFree(options));
  BrokerStack stack;
  stack.metrics_options_ = options.metrics;
  stack.kinesis_options_ = options.kinesis;
  stack.kinesis_options_.listen = options.kinesis_listen;
  auto broker = broker::Broker::Open(options.broker);
  if (!broker.ok()) return broker.status();
  stack.broker_ = std::move(*broker);
  // After the broker (the scrape hook reads it), destroyed before it.
  auto metrics = StartMetrics(options.metrics, kDefaultBrokerMetrics, options.broker.metrics);
  if (!metrics.ok()) return metrics.status();
  stack.metrics_ = std::move(*metrics);
  if (stack.metrics_ != nullptr) {
    stack.metrics_->SetBeforeScrape([b = stack.broker_.get()] { b->UpdateMetrics(); });
  }
  auto server = broker::BrokerServer::Start(stack.broker_.get(), options.server);
  if (!server.ok()) return server.status();
  stack.server_ = std::move(*server);
  return stack;
}

absl::Status BrokerStack::StartKinesis() {
  auto kinesis = StartKinesisEndpoint(broker_.get(), kinesis_options_);
  if (!kinesis.ok()) return kinesis.status();
  kinesis_ = std::move(*kinesis);
  return absl::OkStatus();
}

absl::Status BrokerStack::WriteReadyFiles(const std::string& ready_file,
                                          const std::string& kinesis_ready_file) const {
  if (auto status = WriteMetricsReadyFile(metrics_options_, metrics_.get()); !status.ok()) {
    return status;
  }
  return cli::WriteReadyFiles(ready_file, server_->address(), kinesis_ready_file, kinesis_.get());
}

void BrokerStack::StopServing() {
  if (kinesis_ != nullptr) kinesis_->Shutdown(absl::Milliseconds(500));
  kinesis_.reset();
  if (server_ != nullptr) server_->Shutdown(absl::Milliseconds(500));  // a second call: no-op
}

void BrokerStack::Shutdown() {
  StopServing();
  server_.reset();
  metrics_.reset();
  broker_.reset();
}

}  // namespace runnel::cli
