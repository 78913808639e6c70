#include "cli/metrics_option.h"

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/strings.h"

namespace runnel::cli {

void AddMetricsOptions(CLI::App& command, MetricsOptions* options, std::string_view default_address,
                       std::string_view what) {
  command.add_option("--metrics", options->address,
                     absl::StrCat("Serve Prometheus metrics (", Sv(what),
                                  ") on http://HOST:PORT/metrics; port 0 "
                                  "picks a free one, 'off' disables. Default: $",
                                  kMetricsEnv, " if set, else ", Sv(default_address)));
  command.add_option("--metrics-ready-file", options->ready_file,
                     "Write the bound metrics address (or 'off') to this file once serving");
}

absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetrics(
    const MetricsOptions& options, std::string_view default_address,
    std::shared_ptr<prometheus::Registry> registry) {
  const std::string value = MetricsAddressOrDefault(options.address, default_address);
  auto address = ParseMetricsAddress(value, "--metrics");
  if (!address.ok()) return address.status();
  if (!address->has_value()) return std::unique_ptr<MetricsServer>();
  return MetricsServer::Start(**address, std::move(registry), "--metrics");
}

absl::Status WriteMetricsReadyFile(const MetricsOptions& options, const MetricsServer* server) {
  if (options.ready_file.empty()) return absl::OkStatus();
  return WriteFileAtomically(options.ready_file,
                             (server != nullptr ? server->address() : std::string("off")) + "\n");
}

}  // namespace runnel::cli
