// `runnel poller` (the event-source mappings of a YAML file, against a broker) and `runnel up`
// (broker and poller in one process, the poller reaching the broker through gRPC's in-process
// channel, so it cannot tell the difference).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "broker/server.h"
#include "cli/commands.h"
#include "cli/metrics_option.h"
#include "cli/shutdown.h"
#include "common/file_util.h"
#include "poller/config.h"
#include "poller/poller.h"
#include "prometheus/registry.h"
#include "spdlog/spdlog.h"

namespace runnel::cli {
namespace {

// How long in-flight invocations get to finish on shutdown.
constexpr absl::Duration kStopGrace = absl::Seconds(30);

struct PollerCommandOptions {
  ClientOptions client;
  std::string file;
  std::vector<std::string> plugin_dirs;
  MetricsOptions metrics;
};

struct UpOptions {
  std::string file;
  std::string data_dir = "./runnel-data";
  std::string listen = "127.0.0.1:4567";
  std::string fsync = "always";
  std::vector<std::string> plugin_dirs;
  std::string ready_file;
  MetricsOptions metrics;
};

void PrintBanner(const poller::Poller& poller) {
  for (const std::string& line : poller.Describe()) std::printf("  mapping %s\n", line.c_str());
  std::fflush(stdout);
}

int RunPoller(const PollerCommandOptions& options) {
  auto config = poller::LoadConfig(options.file);
  if (!config.ok()) {
    PrintError(std::string(config.status().message()));
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
  auto poller = poller::Poller::Start(std::move(poller_options));
  if (!poller.ok()) {
    PrintError(std::string(poller.status().message()));
    return kExitError;
  }
  std::printf("runnel poller: %s against the broker at %s\n", options.file.c_str(),
              options.client.broker.c_str());
  std::printf("runnel poller: metrics %s\n", *metrics ? (*metrics)->url().c_str() : "off");
  PrintBanner(**poller);
  if (auto status = WriteMetricsReadyFile(options.metrics, metrics->get()); !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitError;
  }
  spdlog::info("received {}, stopping (in-flight invocations get {} to finish)",
               WaitForShutdownSignal(signals), absl::FormatDuration(kStopGrace));
  (*poller)->Stop(kStopGrace);
  poller->reset();
  ExitAfterCleanShutdown();
}

int RunUp(const UpOptions& options) {
  std::optional<poller::Config> config;
  if (!options.file.empty()) {
    auto loaded = poller::LoadConfig(options.file);
    if (!loaded.ok()) {
      PrintError(std::string(loaded.status().message()));
      return kExitError;
    }
    config = std::move(*loaded);
  }
  sigset_t signals = BlockShutdownSignals();
  // One registry: broker and poller families on one /metrics.
  auto registry = std::make_shared<prometheus::Registry>();
  broker::BrokerOptions broker_options;
  broker_options.metrics = registry;
  broker_options.data_dir = options.data_dir;
  broker_options.default_fsync = options.fsync == "interval" ? v1::FSYNC_INTERVAL
                                 : options.fsync == "never"  ? v1::FSYNC_NEVER
                                                             : v1::FSYNC_ALWAYS;
  auto broker = broker::Broker::Open(broker_options);
  if (!broker.ok()) {
    PrintError(std::string(broker.status().message()));
    return kExitError;
  }
  // After the broker (the scrape hook reads it), destroyed before it.
  auto metrics = StartMetrics(options.metrics, kDefaultBrokerMetrics, registry);
  if (!metrics.ok()) {
    PrintError(std::string(metrics.status().message()));
    return kExitError;
  }
  if (*metrics) (*metrics)->SetBeforeScrape([b = broker->get()] { b->UpdateMetrics(); });
  broker::ServerOptions server_options;
  server_options.listen = options.listen;
  auto server = broker::BrokerServer::Start(broker->get(), server_options);
  if (!server.ok()) {
    PrintError(std::string(server.status().message()));
    return kExitError;
  }
  std::printf("runnel up: broker on %s (data directory %s, fsync %s)\n",
              (*server)->address().c_str(), options.data_dir.c_str(), options.fsync.c_str());
  std::printf("runnel up: metrics %s\n", *metrics ? (*metrics)->url().c_str() : "off");
  std::unique_ptr<poller::Poller> poller;
  if (config.has_value()) {
    poller::PollerOptions poller_options;
    poller_options.config = std::move(*config);
    poller_options.broker = (*server)->InProcessChannel();
    poller_options.plugin_dirs = options.plugin_dirs;
    poller_options.create_streams = true;
    poller_options.metrics = registry;
    auto started = poller::Poller::Start(std::move(poller_options));
    if (!started.ok()) {
      PrintError(std::string(started.status().message()));
      return kExitError;
    }
    poller = std::move(*started);
    std::printf("runnel up: running %s\n", options.file.c_str());
    PrintBanner(*poller);
  } else {
    std::printf("runnel up: no -f FILE, so no mappings (broker only)\n");
  }
  std::printf("runnel up: Ctrl-C stops\n");
  std::fflush(stdout);
  // Before --ready-file: whoever waits for that one may read this one at once.
  if (auto status = WriteMetricsReadyFile(options.metrics, metrics->get()); !status.ok()) {
    PrintError(std::string(status.message()));
    return kExitError;
  }
  if (!options.ready_file.empty()) {
    if (auto status = WriteFileAtomically(options.ready_file, (*server)->address() + "\n");
        !status.ok()) {
      PrintError(std::string(status.message()));
      return kExitError;
    }
  }
  spdlog::info("received {}, stopping", WaitForShutdownSignal(signals));
  if (poller) {
    poller->Stop(kStopGrace);
    poller.reset();
  }
  (*server)->Shutdown(absl::Milliseconds(500));
  server->reset();
  metrics->reset();
  broker->reset();
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
  AddBrokerOption(*poller_command, &poller->client);
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
  up_command->add_option("--listen", up->listen, "Broker address HOST:PORT (port 0: any free)")
      ->capture_default_str();
  up_command->add_option("--fsync", up->fsync, "always | interval | never (see runnel broker)")
      ->check(CLI::IsMember({"always", "interval", "never"}))
      ->capture_default_str();
  up_command->add_option("--plugin-dir", up->plugin_dirs,
                         "Folder to look up plugins named by file name (repeatable)");
  up_command->add_option("--ready-file", up->ready_file,
                         "Write the broker's address to this file once everything runs");
  AddMetricsOptions(*up_command, &up->metrics, kDefaultBrokerMetrics,
                    "runnel_broker_* and runnel_poller_* on one address");
  up_command->callback([up, exit_code] { *exit_code = RunUp(*up); });
}

}  // namespace runnel::cli
