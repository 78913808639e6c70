#include "common/metrics_server.h"

#include <cstdlib>
#include <exception>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/listen_address.h"
#include "common/strings.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace runnel {
namespace {

struct HostPort {
  std::string host;  // without brackets
  int port = 0;
};

absl::StatusOr<HostPort> SplitHostPort(std::string_view value, std::string_view flag) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(flag), ": '", Sv(value), "' ", Sv(why),
                                                   " (expected HOST:PORT, e.g. 127.0.0.1:9567, "
                                                   "port 0 for any free port, or 'off')"));
  };
  const size_t colon = value.rfind(':');
  if (colon == std::string_view::npos) return bad("has no port");
  HostPort out;
  std::string_view host = value.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad("is an IPv6 address without brackets");
  }
  if (host.empty()) return bad("has no host");
  out.host = std::string(host);
  if (!absl::SimpleAtoi(Sv(value.substr(colon + 1)), &out.port) || out.port < 0 ||
      out.port > 65535) {
    return bad("has no valid port (0 to 65535)");
  }
  return out;
}

}  // namespace

std::string MetricsAddressOrDefault(const std::string& flag, std::string_view fallback) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv(kMetricsEnv); env != nullptr) return env;
  return std::string(fallback);
}

absl::StatusOr<std::optional<std::string>> ParseMetricsAddress(std::string_view value,
                                                               std::string_view flag) {
  const std::string lower = absl::AsciiStrToLower(Sv(value));
  if (lower.empty() || lower == "off" || lower == "none" || lower == "false") {
    return std::optional<std::string>();
  }
  auto parsed = SplitHostPort(value, flag);
  if (!parsed.ok()) return parsed.status();
  return std::optional<std::string>(std::string(value));
}

class MetricsServer::HookedCollectable : public prometheus::Collectable {
 public:
  explicit HookedCollectable(std::shared_ptr<prometheus::Registry> registry)
      : registry_(std::move(registry)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (hook_) hook_();
    }
    return registry_->Collect();
  }
  void SetHook(std::function<void()> hook) {
    std::lock_guard<std::mutex> lock(mu_);
    hook_ = std::move(hook);
  }

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex mu_;
  std::function<void()> hook_;
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry,
    std::string_view flag) {
  auto parsed = SplitHostPort(address, flag);
  if (!parsed.ok()) return parsed.status();
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->collectable_ = std::make_shared<HookedCollectable>(std::move(registry));
  try {
    // Two threads: scrapes are rare and short.
    server->exposer_ = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {
    // civetweb only says that it failed; the kernel's reason is asked again.
    std::string reason = BindFailureReason(address);
    if (reason.empty()) reason = e.what();
    return absl::UnavailableError(
        absl::StrCat(Sv(flag), " ", address, ": ", reason,
                     " (choose another HOST:PORT, port 0 for any free one, or --metrics off)"));
  }
  server->exposer_->RegisterCollectable(server->collectable_);
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  const int port = ports.empty() ? parsed->port : ports.front();
  server->address_ = parsed->host.find(':') == std::string::npos
                         ? absl::StrCat(parsed->host, ":", port)
                         : absl::StrCat("[", parsed->host, "]:", port);
  return server;
}

MetricsServer::~MetricsServer() {
  // Stop serving before the hook's targets can go away.
  exposer_.reset();
}

void MetricsServer::SetBeforeScrape(std::function<void()> hook) {
  collectable_->SetHook(std::move(hook));
}

}  // namespace runnel
