// The poller: everything one YAML file declares, running. It loads the functions (so a bad
// plugin stops start-up, not the first record), checks or creates the streams, and runs a
// MappingRunner for each enabled mapping against a broker reached through a gRPC channel (the
// network for `runnel poller`, the in-process channel for `runnel up`).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "poller/config.h"

namespace grpc {
class Channel;
}

namespace prometheus {
class Registry;
}

namespace runnel::poller {

class MappingController;

struct PollerOptions {
  Config config;
  std::shared_ptr<grpc::Channel> broker;
  // Folders searched for plugins named by file name (--plugin-dir; see PluginSearchPath in
  // poller/plugins.h for the rest of the search path).
  std::vector<std::string> plugin_dirs;
  // Create the declared streams that do not exist (runnel up); otherwise they must exist.
  bool create_streams = false;
  std::string region = "us-east-1";
  // The `runnel` binary for worker processes; empty: this executable.
  std::string worker_binary;
  // Where the mappings' runnel_poller_* metrics go; null: not exposed.
  std::shared_ptr<prometheus::Registry> metrics;
  // This poller in a fleet sharing the mappings' shards by lease (`--id`, `--lease-duration`);
  // empty id: host:pid:random.
  std::string poller_id;
  absl::Duration lease_duration = absl::Seconds(10);
};

class Poller {
 public:
  static absl::StatusOr<std::unique_ptr<Poller>> Start(PollerOptions options);
  // Stops every mapping (see MappingRunner::Stop): all stop reading at once, then each waits for
  // its invocations in flight and writes its final checkpoints.
  void Stop(absl::Duration grace);
  // Writes every mapping's moved checkpoints now; safe while Stop runs on another thread (see
  // MappingRunner::FlushCheckpoints). False if a write failed.
  bool FlushCheckpoints();
  ~Poller();

  // One line per running mapping, for the start-up banner.
  std::vector<std::string> Describe() const;
  // Live control of the mappings (enable, disable, update, seek), for the admin service.
  MappingController* controller();

  class Impl;

 private:
  explicit Poller(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace runnel::poller
