// `runnel poller` (the event-source mappings of a YAML file, against a broker) and `runnel up`
// (broker and poller in one process, the poller reaching the broker through gRPC's in-process
// channel, so it cannot tell the difference).
#include <grpcpp/impl/codegen/service_type.h>  // grpc::Service, owned here
#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "broker/server.h"
#include "cli/commands.h"
#include "cli/shutdown.h"
#include "common/file_util.h"
#include "common/grpc_server.h"
#include "poller/admin_service.h"
#include "poller/config.h"
#include "poller/poller.h"
#include "spdlog/spdlog.h"

namespace runnel::cli {
namespace {

// How long in-flight invocations get to finish on shutdown.
constexpr absl::Duration kStopGrace = absl::Seconds(30);

struct PollerCommandOptions {
  ClientOptions client;
  std::string file;
  std::vector<std::string> plugin_dirs;
  // The EventSourceMappings admin service (`runnel mapping --poller`); empty: not served.
  std::string listen = "127.0.0.1:4568";
  std::string ready_file;
};

struct UpOptions {
  std::string file;
  std::string data_dir = "./runnel-data";
  std::string listen = "127.0.0.1:4567";
  std::string fsync = "always";
  std::vector<std::string> plugin_dirs;
  std::string ready_file;
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
  poller::PollerOptions poller_options;
  poller_options.config = std::move(*config);
  poller_options.broker = broker::MakeBrokerChannel(options.client.broker);
  poller_options.plugin_dirs = options.plugin_dirs;
  auto poller = poller::Poller::Start(std::move(poller_options));
  if (!poller.ok()) {
    PrintError(std::string(poller.status().message()));
    return kExitError;
  }
  std::printf("runnel poller: %s against the broker at %s\n", options.file.c_str(),
              options.client.broker.c_str());
  PrintBanner(**poller);
  poller::MappingController* controller = (*poller)->controller();
  std::unique_ptr<grpc::Service> admin =
      poller::MakeEventSourceMappingsService([controller] { return controller; });
  std::unique_ptr<GrpcServer> admin_server;
  if (!options.listen.empty()) {
    auto started = GrpcServer::Start(options.listen, {admin.get()}, broker::kMaxGrpcMessageBytes);
    if (!started.ok()) {
      PrintError(absl::StrCat("--listen: ", started.status().message()));
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
  spdlog::info("received {}, stopping (in-flight invocations get {} to finish)",
               WaitForShutdownSignal(signals), absl::FormatDuration(kStopGrace));
  (*poller)->Stop(kStopGrace);
  if (admin_server) admin_server->Shutdown(absl::Milliseconds(500));  // before the controller goes
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
  broker::BrokerOptions broker_options;
  broker_options.data_dir = options.data_dir;
  broker_options.default_fsync = options.fsync == "interval" ? v1::FSYNC_INTERVAL
                                 : options.fsync == "never"  ? v1::FSYNC_NEVER
                                                             : v1::FSYNC_ALWAYS;
  auto broker = broker::Broker::Open(broker_options);
  if (!broker.ok()) {
    PrintError(std::string(broker.status().message()));
    return kExitError;
  }
  // The mapping control service shares the broker's port; it answers once the poller runs.
  auto controller = std::make_shared<std::atomic<poller::MappingController*>>(nullptr);
  std::unique_ptr<grpc::Service> admin =
      poller::MakeEventSourceMappingsService([controller] { return controller->load(); });
  broker::ServerOptions server_options;
  server_options.listen = options.listen;
  server_options.extra_services.push_back(admin.get());
  auto server = broker::BrokerServer::Start(broker->get(), server_options);
  if (!server.ok()) {
    PrintError(std::string(server.status().message()));
    return kExitError;
  }
  std::printf("runnel up: broker on %s (data directory %s, fsync %s)\n",
              (*server)->address().c_str(), options.data_dir.c_str(), options.fsync.c_str());
  std::unique_ptr<poller::Poller> poller;
  if (config.has_value()) {
    poller::PollerOptions poller_options;
    poller_options.config = std::move(*config);
    poller_options.broker = (*server)->InProcessChannel();
    poller_options.plugin_dirs = options.plugin_dirs;
    poller_options.create_streams = true;
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
  if (!options.ready_file.empty()) {
    if (auto status = WriteFileAtomically(options.ready_file, (*server)->address() + "\n");
        !status.ok()) {
      PrintError(std::string(status.message()));
      return kExitError;
    }
  }
  spdlog::info("received {}, stopping", WaitForShutdownSignal(signals));
  if (poller) poller->Stop(kStopGrace);
  (*server)->Shutdown(absl::Milliseconds(500));
  controller->store(nullptr);
  poller.reset();  // after the server: no mapping call can still be using it
  server->reset();
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
  poller_command
      ->add_option("--listen", poller->listen,
                   "Address HOST:PORT of the mapping control API (`runnel mapping --poller`); "
                   "port 0: any free; \"\": none")
      ->capture_default_str();
  poller_command->add_option("--ready-file", poller->ready_file,
                             "Write the --listen address to this file once everything runs");
  AddBrokerOption(*poller_command, &poller->client);
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
  up_command->add_option("--fsync", up->fsync, "always | interval | never (see runnel broker)")
      ->check(CLI::IsMember({"always", "interval", "never"}))
      ->capture_default_str();
  up_command->add_option("--plugin-dir", up->plugin_dirs,
                         "Folder to look up plugins named by file name (repeatable)");
  up_command->add_option("--ready-file", up->ready_file,
                         "Write the broker's address to this file once everything runs");
  up_command->callback([up, exit_code] { *exit_code = RunUp(*up); });
}

}  // namespace runnel::cli
