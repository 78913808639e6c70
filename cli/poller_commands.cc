// `runnel poller` (the event-source mappings of a YAML file, against a broker) and `runnel up`
// (broker and poller in one process, the poller reaching the broker through gRPC's in-process
// channel, so it cannot tell the difference).
#include <grpcpp/impl/codegen/service_type.h>  // grpc::Service, owned here
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "broker/server.h"
#include "cli/broker_stack.h"
#include "cli/commands.h"
#include "cli/kinesis_endpoint.h"
#include "cli/limit_options.h"
#include "cli/metrics_option.h"
#include "cli/shutdown.h"
#include "common/file_util.h"
#include "common/grpc_server.h"
#include "common/listen_address.h"
#include "common/status_macros.h"
#include "poller/admin_service.h"
#include "poller/config.h"
#include "poller/mapping_runner.h"
#include "poller/plugins.h"
#include "poller/poller.h"
#include "prometheus/registry.h"
#include "spdlog/spdlog.h"

namespace runnel::cli {
namespace {

// How long in-flight invocations get to finish on shutdown, unless --shutdown-timeout says.
constexpr char kDefaultShutdownTimeout[] = "30s";

struct PollerCommandOptions {
  ClientOptions client;
  LogOptions log;
  std::string file;
  std::vector<std::string> plugin_dirs;
  std::string shutdown_timeout = kDefaultShutdownTimeout;
  MetricsOptions metrics;
  // The EventSourceMappings admin service (`runnel mapping --poller`); empty: not served.
  std::string listen = "127.0.0.1:4568";
  std::string ready_file;
  std::string id;  // empty: host:pid:random
  std::string lease_duration = "10s";
};

struct UpOptions {
  std::string file;
  std::string data_dir = "./runnel-data";
  std::string listen = "127.0.0.1:4567";
  std::string fsync = "always";
  std::vector<std::string> plugin_dirs;
  std::string ready_file;
  LogOptions log;
  std::string shutdown_timeout = kDefaultShutdownTimeout;
  std::string kinesis_listen;  // empty: no Kinesis HTTP endpoint
  std::string kinesis_ready_file;
  MetricsOptions metrics;
  std::string id;  // empty: up:host:data directory
  std::string lease_duration = "10s";
  LimitOptions limits;
};

absl::StatusOr<absl::Duration> ParseLeaseDuration(const std::string& text) {
  absl::Duration duration;
  if (!absl::ParseDuration(text, &duration) || duration < absl::Milliseconds(100)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--lease-duration: '", text, "' is not a duration of at least 100ms, like 10s or 500ms"));
  }
  return duration;
}

void AddFleetOptions(CLI::App& command, std::string* id, std::string* lease_duration,
                     const char* id_default) {
  command.add_option("--id", *id,
                     absl::StrCat("This poller's id in a fleet sharing the mappings' shards by "
                                  "lease (unique per running poller; default ",
                                  id_default, ")"));
  command
      .add_option("--lease-duration", *lease_duration,
                  "How long a shard's lease lasts without a renewal (renewed every third of it): "
                  "how soon the fleet takes over the shards of a poller that died")
      ->capture_default_str();
}

// `runnel up` is one poller per data directory: a stable id lets it take back its own leases at
// once after a crash, instead of waiting for them to expire.
std::string UpPollerId(const std::string& data_dir) {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::weakly_canonical(data_dir, ec);
  return absl::StrCat("up:", host, ":", ec ? data_dir : dir.string());
}

absl::StatusOr<absl::Duration> ParseShutdownTimeout(const std::string& text) {
  absl::Duration timeout;
  if (!absl::ParseDuration(text, &timeout) || timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shutdown-timeout: '", text, "' is not a duration like 30s, 2m or 0s (0s: do not wait)"));
  }
  return timeout;
}

void AddShutdownTimeoutOption(CLI::App& command, std::string* timeout) {
  command
      .add_option("--shutdown-timeout", *timeout,
                  "On SIGTERM or Ctrl-C: how long invocations in flight get to finish. Past it the "
                  "process writes the checkpoints of everything that finished and exits; the "
                  "unfinished batches are delivered again after a restart. A second signal exits "
                  "at once.")
      ->capture_default_str();
}

// Stops the poller: no new batches at once, in-flight invocations get `timeout`, then the final
// checkpoints. Past the deadline, records what finished and leaves the rest running for the
// process exit to end (returns false).
bool StopPoller(poller::Poller& poller, const char* signal, absl::Duration timeout) {
  spdlog::info(
      "received {}: stopping; invocations in flight get up to {} to finish (a second signal "
      "exits at once)",
      signal, absl::FormatDuration(timeout));
  if (StopWithin([&poller, timeout] { poller.Stop(timeout); }, timeout)) return true;
  const bool flushed = poller.FlushCheckpoints();
  spdlog::warn(
      "shutdown timeout ({}) passed with invocations still running: checkpoints of what finished "
      "{}; the unfinished batches will be delivered again after a restart",
      absl::FormatDuration(timeout), flushed ? "are written" : "could NOT all be written");
  return false;
}

// Finds and checks every function's plugin (what `runnel validate` checks), before anything is
// started or created: a bad plugin costs no data directory, no port and no worker.
bool PluginsReady(poller::Config& config, const std::vector<std::string>& plugin_dirs) {
  std::vector<std::string> problems =
      poller::ResolveAndCheckPlugins(config, {.plugin_dirs = plugin_dirs, .worker_binary = ""});
  for (const std::string& problem : problems) PrintError(problem);
  return problems.empty();
}

void PrintBanner(const poller::Poller& poller) {
  for (const std::string& line : poller.Describe()) std::printf("  mapping %s\n", line.c_str());
  std::fflush(stdout);
}

absl::Status CheckPollerListenersFree(const PollerCommandOptions& options) {
  if (!options.listen.empty()) {
    RETURN_IF_ERROR(CheckListenAddressFree("--listen", options.listen));
  }
  auto metrics = ParseMetricsAddress(
      MetricsAddressOrDefault(options.metrics.address, kDefaultPollerMetrics), "--metrics");
  RETURN_IF_ERROR(metrics.status());
  if (metrics->has_value()) RETURN_IF_ERROR(CheckListenAddressFree("--metrics", **metrics));
  return absl::OkStatus();
}

int RunPoller(const PollerCommandOptions& options) {
  if (!ApplyLogOptions(options.log, "poller")) return kExitUsage;
  auto shutdown_timeout = ParseShutdownTimeout(options.shutdown_timeout);
  if (!shutdown_timeout.ok()) {
    PrintError(std::string(shutdown_timeout.status().message()));
    return kExitUsage;
  }
  auto lease_duration = ParseLeaseDuration(options.lease_duration);
  if (!lease_duration.ok()) {
    PrintError(std::string(lease_duration.status().message()));
    return kExitUsage;
  }
  auto config = poller::LoadConfig(options.file);
  if (!config.ok()) {
    PrintError(std::string(config.status().message()));
    return kExitError;
  }
  if (!PluginsReady(*config, options.plugin_dirs)) return kExitError;
  // Before the poller starts (it takes shards and checkpoints): a second poller on a taken
  // --listen or --metrics port exits here.
  if (auto status = CheckPollerListenersFree(options); !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitError;
  }
  sigset_t signals = BlockShutdownSignals();
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = StartMetrics(options.metrics, kDefaultPollerMetrics, registry);
  if (!metrics.ok()) {
    PrintError(std::string(metrics.status().message()));
    return kExitError;
  }
  poller::PollerOptions poller_options;
  poller_options.config = std::move(*config);
  poller_options.broker = broker::MakeBrokerChannel(options.client.broker);
  poller_options.plugin_dirs = options.plugin_dirs;
  poller_options.metrics = registry;
  poller_options.poller_id = options.id.empty() ? poller::DefaultPollerId() : options.id;
  poller_options.lease_duration = *lease_duration;
  const std::string poller_id = poller_options.poller_id;
  auto poller = poller::Poller::Start(std::move(poller_options));
  if (!poller.ok()) {
    PrintError(std::string(poller.status().message()));
    return kExitError;
  }
  std::printf("runnel poller: %s against the broker at %s\n", options.file.c_str(),
              options.client.broker.c_str());
  std::printf("runnel poller: id %s, lease %s\n", poller_id.c_str(),
              absl::FormatDuration(*lease_duration).c_str());
  std::printf("runnel poller: metrics %s\n", *metrics ? (*metrics)->url().c_str() : "off");
  PrintBanner(**poller);
  if (auto status = WriteMetricsReadyFile(options.metrics, metrics->get()); !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitError;
  }
  poller::MappingController* controller = (*poller)->controller();
  std::unique_ptr<grpc::Service> admin =
      poller::MakeEventSourceMappingsService([controller] { return controller; });
  std::unique_ptr<GrpcServer> admin_server;
  if (!options.listen.empty()) {
    auto started = GrpcServer::Start(options.listen, {admin.get()}, broker::kMaxGrpcMessageBytes);
    if (!started.ok()) {
      PrintError(std::string(started.status().message()));
      return kExitError;
    }
    admin_server = std::move(*started);
    std::printf("runnel poller: mapping control (runnel mapping --poller) on %s\n",
                admin_server->address().c_str());
  }
  std::fflush(stdout);
  if (!options.ready_file.empty()) {
    const std::string address = admin_server ? admin_server->address() : "";
    if (auto status = WriteFileAtomically(options.ready_file, address + "\n"); !status.ok()) {
      PrintError(std::string(status.message()));
      return kExitError;
    }
  }
  // Past the deadline, the poller (still running an invocation) and the admin service (which
  // may be waiting on it) are left for the process exit.
  if (StopPoller(**poller, WaitForShutdownSignal(signals), *shutdown_timeout)) {
    if (admin_server) admin_server->Shutdown(absl::Milliseconds(500));  // before the controller
    poller->reset();
  }
  ExitAfterCleanShutdown();
}

int RunUp(const UpOptions& options) {
  if (!ApplyLogOptions(options.log, "up")) return kExitUsage;
  auto shutdown_timeout = ParseShutdownTimeout(options.shutdown_timeout);
  if (!shutdown_timeout.ok()) {
    PrintError(std::string(shutdown_timeout.status().message()));
    return kExitUsage;
  }
  auto lease_duration = ParseLeaseDuration(options.lease_duration);
  if (!lease_duration.ok()) {
    PrintError(std::string(lease_duration.status().message()));
    return kExitUsage;
  }
  std::optional<poller::Config> config;
  if (!options.file.empty()) {
    auto loaded = poller::LoadConfig(options.file);
    if (!loaded.ok()) {
      PrintError(std::string(loaded.status().message()));
      return kExitError;
    }
    if (!PluginsReady(*loaded, options.plugin_dirs)) return kExitError;
    config = std::move(*loaded);
  }
  sigset_t signals = BlockShutdownSignals();
  // The mapping control service shares the broker's port; it answers once the poller runs.
  auto controller = std::make_shared<std::atomic<poller::MappingController*>>(nullptr);
  std::unique_ptr<grpc::Service> admin =
      poller::MakeEventSourceMappingsService([controller] { return controller->load(); });
  BrokerStackOptions stack_options;
  // One registry: broker and poller families on one /metrics.
  auto registry = std::make_shared<prometheus::Registry>();
  stack_options.broker.metrics = registry;
  stack_options.broker.data_dir = options.data_dir;
  stack_options.broker.default_fsync = FsyncPolicyNamed(options.fsync);
  stack_options.metrics = options.metrics;
  stack_options.server.listen = options.listen;
  stack_options.server.extra_services.push_back(admin.get());
  stack_options.kinesis_listen = options.kinesis_listen;
  if (auto status =
          ApplyLimitOptions(options.limits, &stack_options.broker, &stack_options.kinesis);
      !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitUsage;
  }
  auto stack = BrokerStack::Start(stack_options);
  if (!stack.ok()) {
    PrintError(std::string(stack.status().message()));
    return kExitError;
  }
  std::printf("runnel up: broker on %s (data directory %s, fsync %s)\n",
              stack->server().address().c_str(), options.data_dir.c_str(), options.fsync.c_str());
  std::printf("runnel up: metrics %s\n",
              stack->metrics() != nullptr ? stack->metrics()->url().c_str() : "off");
  if (auto status = stack->StartKinesis(); !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitError;
  }
  if (const kinesis::KinesisHttpServer* kinesis = stack->kinesis(); kinesis != nullptr) {
    std::printf("runnel up: Kinesis API on %s (HTTP/1.1 and h2c; AWS CLI: --endpoint-url %s)\n",
                kinesis->endpoint().c_str(), kinesis->endpoint().c_str());
  }
  std::unique_ptr<poller::Poller> poller;
  if (config.has_value()) {
    poller::PollerOptions poller_options;
    poller_options.config = std::move(*config);
    poller_options.broker = stack->server().InProcessChannel();
    poller_options.plugin_dirs = options.plugin_dirs;
    poller_options.create_streams = true;
    poller_options.metrics = registry;
    poller_options.poller_id = options.id.empty() ? UpPollerId(options.data_dir) : options.id;
    poller_options.lease_duration = *lease_duration;
    auto started = poller::Poller::Start(std::move(poller_options));
    if (!started.ok()) {
      PrintError(std::string(started.status().message()));
      return kExitError;
    }
    poller = std::move(*started);
    controller->store(poller->controller());
    std::printf("runnel up: running %s\n", options.file.c_str());
    PrintBanner(*poller);
  } else {
    std::printf("runnel up: no -f FILE, so no mappings (broker only)\n");
  }
  std::printf("runnel up: Ctrl-C stops\n");
  std::fflush(stdout);
  if (auto status = stack->WriteReadyFiles(options.ready_file, options.kinesis_ready_file);
      !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitError;
  }
  const char* signal = WaitForShutdownSignal(signals);
  if (poller == nullptr) {
    spdlog::info("received {}: stopping", signal);
  } else if (!StopPoller(*poller, signal, *shutdown_timeout)) {
    // Past the deadline what finished is checkpointed; the invocation still running, and a
    // mapping call that may wait on it, end with the process. Acknowledged puts are on disk (or,
    // under --fsync never or interval, in the page cache, which the exit does not lose).
    ExitAfterCleanShutdown();
  }
  stack->StopServing();
  controller->store(nullptr);
  poller.reset();  // after the server: no mapping call can still be using it
  stack->Shutdown();
  ExitAfterCleanShutdown();
}

}  // namespace

void AddPollerCommands(CLI::App& app, int* exit_code) {
  auto poller = std::make_shared<PollerCommandOptions>();
  CLI::App* poller_command = app.add_subcommand(
      "poller",
      "Run the event-source mappings of a YAML file against a broker: read every shard, batch, "
      "invoke the functions, checkpoint in the broker. Stops cleanly on SIGINT or SIGTERM.");
  poller_command->add_option("-f,--file", poller->file, "The YAML file")->required();
  poller_command->add_option("--plugin-dir", poller->plugin_dirs,
                             "Folder to look up plugins named by file name (repeatable; also "
                             "RUNNEL_PLUGIN_PATH)");
  poller_command
      ->add_option("--listen", poller->listen,
                   "Address HOST:PORT of the mapping control API (`runnel mapping --poller`); "
                   "port 0: any free; \"\": none")
      ->capture_default_str();
  poller_command->add_option("--ready-file", poller->ready_file,
                             "Write the --listen address to this file once everything runs");
  AddBrokerOption(*poller_command, &poller->client);
  AddFleetOptions(*poller_command, &poller->id, &poller->lease_duration, "host:pid:random");
  AddShutdownTimeoutOption(*poller_command, &poller->shutdown_timeout);
  AddLogOptions(*poller_command, &poller->log);
  AddMetricsOptions(*poller_command, &poller->metrics, kDefaultPollerMetrics,
                    "runnel_poller_*: iterator age, invocations, errors, retries, checkpoints");
  poller_command->callback([poller, exit_code] { *exit_code = RunPoller(*poller); });

  auto up = std::make_shared<UpOptions>();
  CLI::App* up_command = app.add_subcommand(
      "up",
      "Run broker and poller in one process: create the streams the file declares, run its "
      "mappings, serve the broker API. Stops cleanly on Ctrl-C.");
  up_command->add_option("-f,--file", up->file, "The YAML file (e.g. deploy/order-events.yaml)");
  up_command->add_option("--data-dir", up->data_dir, "Folder holding streams and checkpoints")
      ->capture_default_str();
  up_command
      ->add_option("--listen", up->listen,
                   "Broker address HOST:PORT (port 0: any free); it serves the mapping control "
                   "API (`runnel mapping`) too")
      ->capture_default_str();
  AddFsyncOption(*up_command, &up->fsync, "always | interval | never (see runnel broker)");
  up_command->add_option("--plugin-dir", up->plugin_dirs,
                         "Folder to look up plugins named by file name (repeatable)");
  up_command->add_option("--ready-file", up->ready_file,
                         "Write the broker's address to this file once everything runs");
  AddShutdownTimeoutOption(*up_command, &up->shutdown_timeout);
  AddFleetOptions(*up_command, &up->id, &up->lease_duration, "up:host:DATA_DIR");
  AddLogOptions(*up_command, &up->log);
  AddKinesisOptions(*up_command, &up->kinesis_listen, &up->kinesis_ready_file);
  AddLimitOptions(*up_command, &up->limits);
  AddMetricsOptions(*up_command, &up->metrics, kDefaultBrokerMetrics,
                    "runnel_broker_* and runnel_poller_* on one address");
  up_command->callback([up, exit_code] { *exit_code = RunUp(*up); });
}

}  // namespace runnel::cli
