// `runnel broker`: runs the stream broker until SIGINT or SIGTERM.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "cli/broker_stack.h"
#include "cli/commands.h"
#include "cli/kinesis_endpoint.h"
#include "cli/limit_options.h"
#include "cli/metrics_option.h"
#include "cli/shutdown.h"
#include "common/file_util.h"
#include "prometheus/registry.h"
#include "spdlog/spdlog.h"

namespace runnel::cli {
namespace {

struct BrokerCommandOptions {
  std::string listen = "127.0.0.1:4567";
  std::string data_dir = "./runnel-data";
  std::string fsync = "always";
  std::string fsync_interval = "1s";
  bool throughput_limits = false;
  int segment_mib = 64;
  std::string ready_file;
  std::string kinesis_listen;  // empty: no Kinesis HTTP endpoint
  std::string kinesis_ready_file;
  std::string region = "us-east-1";
  std::string account_id = "000000000000";
  LogOptions log;
  MetricsOptions metrics;
  LimitOptions limits;
};

absl::StatusOr<broker::BrokerOptions> ToBrokerOptions(const BrokerCommandOptions& in) {
  broker::BrokerOptions out;
  out.data_dir = in.data_dir;
  out.default_fsync = FsyncPolicyNamed(in.fsync);
  if (!absl::ParseDuration(in.fsync_interval, &out.fsync_interval) ||
      out.fsync_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--fsync-interval: '", in.fsync_interval, "' is not a positive duration like 1s or 200ms"));
  }
  out.enforce_throughput_limits = in.throughput_limits;
  out.segment_bytes = static_cast<uint64_t>(in.segment_mib) << 20;
  out.region = in.region;
  out.account_id = in.account_id;
  return out;
}

int RunBroker(const BrokerCommandOptions& options) {
  if (!ApplyLogOptions(options.log, "broker")) return kExitUsage;
  auto broker_options = ToBrokerOptions(options);
  if (!broker_options.ok()) {
    PrintError(std::string(broker_options.status().message()));
    return kExitUsage;
  }
  BrokerStackOptions stack_options;
  stack_options.broker = std::move(*broker_options);
  if (auto status =
          ApplyLimitOptions(options.limits, &stack_options.broker, &stack_options.kinesis);
      !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitUsage;
  }
  sigset_t signals = BlockShutdownSignals();
  stack_options.broker.metrics = std::make_shared<prometheus::Registry>();
  stack_options.metrics = options.metrics;
  stack_options.server.listen = options.listen;
  stack_options.kinesis_listen = options.kinesis_listen;
  auto stack = BrokerStack::Start(stack_options);
  if (!stack.ok()) {
    PrintError(std::string(stack.status().message()));
    return kExitError;
  }
  spdlog::info("runnel broker listening on {} (data directory {}, fsync {}, metrics {})",
               stack->server().address(), options.data_dir, options.fsync,
               stack->metrics() != nullptr ? stack->metrics()->url() : "off");
  if (auto status = stack->StartKinesis(); !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitError;
  }
  if (stack->kinesis() != nullptr) {
    spdlog::info("runnel broker: Kinesis API on {} (HTTP/1.1 and h2c)",
                 stack->kinesis()->endpoint());
  }
  if (auto status = stack->WriteReadyFiles(options.ready_file, options.kinesis_ready_file);
      !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitError;
  }
  spdlog::info("received {}, shutting down", WaitForShutdownSignal(signals));
  stack->Shutdown();
  ExitAfterCleanShutdown();
}

}  // namespace

void AddBrokerCommand(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<BrokerCommandOptions>();
  CLI::App* command = app.add_subcommand(
      "broker",
      "Run the stream broker: sharded, durable, ordered streams over gRPC (service "
      "runnel.v1.StreamBroker). Stops cleanly on SIGINT or SIGTERM.");
  command
      ->add_option("--listen", options->listen,
                   "Address to serve on, HOST:PORT (port 0 picks a free one). Only loopback "
                   "unless you name another address.")
      ->capture_default_str();
  command->add_option("--data-dir", options->data_dir, "Folder holding streams and checkpoints")
      ->capture_default_str();
  AddFsyncOption(*command, &options->fsync,
                 "When a put is acknowledged: always (after fsync; concurrent puts share one), "
                 "interval (after write, fsync every --fsync-interval), never (after write)");
  command
      ->add_option("--fsync-interval", options->fsync_interval,
                   "Background fsync period for --fsync interval")
      ->capture_default_str();
  command->add_flag("--throughput-limits", options->throughput_limits,
                    "Enforce Kinesis's per-shard limits on every stream (1 MiB/s and 1,000 "
                    "records/s in, 2 MiB/s and 5 reads/s out)");
  command
      ->add_option("--segment-size", options->segment_mib,
                   "Segment file size in MiB (retention deletes whole segments)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  command->add_option("--ready-file", options->ready_file,
                      "Write the bound address to this file once serving (for scripts and tests)");
  AddKinesisOptions(*command, &options->kinesis_listen, &options->kinesis_ready_file);
  AddLimitOptions(*command, &options->limits);
  AddMetricsOptions(*command, &options->metrics, kDefaultBrokerMetrics,
                    "runnel_broker_*: throughput, latency, iterator age, throttling, disk");
  command->add_option("--region", options->region, "Region in stream ARNs")->capture_default_str();
  command->add_option("--account-id", options->account_id, "Account in stream ARNs")
      ->capture_default_str();
  AddLogOptions(*command, &options->log);
  command->callback([options, exit_code] { *exit_code = RunBroker(*options); });
}

}  // namespace runnel::cli
