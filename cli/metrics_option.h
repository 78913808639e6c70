// --metrics and --metrics-ready-file, shared by `runnel broker`, `runnel poller` and `runnel up`.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/metrics_server.h"

namespace CLI {
class App;
}

namespace runnel::cli {

struct MetricsOptions {
  std::string address;  // "" : $RUNNEL_METRICS, else the command's default
  std::string ready_file;
};

// Adds --metrics (described with `default_address`) and --metrics-ready-file.
void AddMetricsOptions(CLI::App& command, MetricsOptions* options, std::string_view default_address,
                       std::string_view what);

// Serves `registry` as the options say: nullptr when metrics are off.
absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetrics(
    const MetricsOptions& options, std::string_view default_address,
    std::shared_ptr<prometheus::Registry> registry);

// Writes the bound metrics address ("off" when disabled) to --metrics-ready-file, if given.
absl::Status WriteMetricsReadyFile(const MetricsOptions& options, const MetricsServer* server);

}  // namespace runnel::cli
