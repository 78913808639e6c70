// Serves Prometheus metrics over HTTP (`GET /metrics`, prometheus-cpp's pull exposer), for
// `runnel broker`, `runnel poller` and `runnel up`'s --metrics flag.
//
// Kept apart from the broker and the poller: they only fill a prometheus::Registry, so neither
// pulls in an HTTP server, and a test can read their registries without one.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace runnel {

// Where the metrics are served when the command line does not say (RUNNEL_METRICS overrides
// these for every command; tests set it to 127.0.0.1:0 so parallel processes never collide).
// The broker and the poller get different ports so both can run on one machine; `runnel up`
// serves both families on the broker's.
inline constexpr std::string_view kDefaultBrokerMetrics = "127.0.0.1:9567";
inline constexpr std::string_view kDefaultPollerMetrics = "127.0.0.1:9568";
inline constexpr const char* kMetricsEnv = "RUNNEL_METRICS";

// The --metrics value to use: `flag` when given, else $RUNNEL_METRICS when set, else `fallback`.
std::string MetricsAddressOrDefault(const std::string& flag, std::string_view fallback);

// Parses a --metrics value: "off", "none", "false" or "" disable metrics (nullopt); otherwise
// HOST:PORT ([v6]:PORT for IPv6), port 0 meaning any free port. `flag` names the option in
// errors.
absl::StatusOr<std::optional<std::string>> ParseMetricsAddress(std::string_view value,
                                                               std::string_view flag);

class MetricsServer {
 public:
  // Serves `registry` on `address` (see ParseMetricsAddress). Fails with a message naming
  // `flag`, the address and the reason (e.g. the port is in use).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry,
      std::string_view flag = "--metrics");
  ~MetricsServer();

  // Runs `hook` before every scrape (for gauges that are cheapest to read when asked, e.g. bytes
  // on disk). Whatever it touches must outlive this server.
  void SetBeforeScrape(std::function<void()> hook);

  // The address actually bound, e.g. "127.0.0.1:40123".
  const std::string& address() const { return address_; }
  // http://ADDRESS/metrics
  std::string url() const { return "http://" + address_ + "/metrics"; }

 private:
  class HookedCollectable;
  MetricsServer() = default;
  std::shared_ptr<HookedCollectable> collectable_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
};

}  // namespace runnel
