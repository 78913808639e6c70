// Loading a handler plugin (dlopen + the ABI checks) and calling it through the C ABI. Used by
// in_process functions and by the `runnel worker` process; the poller never sees these types.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runnel/handler.h"

namespace runnel::runtime {

// An opened plugin whose entry table passed the checks. Thread-safe (immutable). The library is
// opened with RTLD_NODELETE: unloading code that may have left threads or thread_locals behind is
// not worth the risk, and a second Open of the same file shares the loaded copy.
class Plugin {
 public:
  // Every error names `path` and says what is wrong: no such file, not a loadable shared
  // library, no runnel_handler_entry symbol, a different ABI version, a malformed entry table.
  static absl::StatusOr<std::shared_ptr<const Plugin>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  const runnel_handler_api& api() const { return *api_; }

 private:
  Plugin(std::string path, void* handle, const runnel_handler_api* api)
      : path_(std::move(path)), handle_(handle), api_(api) {}
  std::string path_;
  void* handle_;
  const runnel_handler_api* api_;
};

// Where a plugin's log lines go: (level, function name, request id or "", message).
using LogSinkFn = void (*)(int32_t level, std::string_view function_name,
                           std::string_view request_id, std::string_view message);

// The function configuration a plugin's Init sees.
struct InitParams {
  std::string function_name;
  std::map<std::string, std::string> environment;
  int64_t timeout_ms = 3000;
  int32_t memory_size_mb = 128;
};

// What one `handle` call returned, collected through the host callbacks.
struct HandleOutcome {
  int32_t outcome = RUNNEL_OUTCOME_SUCCESS;
  std::string error_type;
  std::string error_message;
  std::vector<std::string> batch_item_failures;

  void Clear() {
    outcome = RUNNEL_OUTCOME_SUCCESS;
    error_type.clear();
    error_message.clear();
    batch_item_failures.clear();
  }
};

// One handler instance (one execution environment). Not thread-safe: one Handle at a time.
class PluginInstance {
 public:
  // Calls the plugin's create (its Init). A refusal becomes an error naming the plugin file and
  // carrying the plugin's error type and message.
  static absl::StatusOr<std::unique_ptr<PluginInstance>> Create(
      std::shared_ptr<const Plugin> plugin, const InitParams& params, LogSinkFn log);
  ~PluginInstance();
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  // Runs one batch. `event` and everything it points to belong to the caller.
  void Handle(const runnel_event& event, std::string_view request_id, int64_t deadline_monotonic_ns,
              uint32_t attempt, HandleOutcome* outcome);

  const Plugin& plugin() const { return *plugin_; }

 private:
  PluginInstance(std::shared_ptr<const Plugin> plugin, std::string function_name, LogSinkFn log)
      : plugin_(std::move(plugin)), function_name_(std::move(function_name)), log_(log) {}

  std::shared_ptr<const Plugin> plugin_;
  std::string function_name_;
  LogSinkFn log_;
  void* instance_ = nullptr;
};

// CLOCK_MONOTONIC in nanoseconds: the clock deadlines use across processes.
int64_t MonotonicNanos();

}  // namespace runnel::runtime
