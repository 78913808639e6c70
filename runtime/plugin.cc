// Plugin loading and the host side of the C ABI: the callbacks through which a plugin logs and
// reports its result.
#include "runtime/plugin.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <time.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace runnel::runtime {
namespace {

std::string_view View(runnel_bytes bytes) {
  return bytes.size == 0 || bytes.data == nullptr ? std::string_view()
                                                  : std::string_view(bytes.data, bytes.size);
}
runnel_bytes Bytes(std::string_view view) { return runnel_bytes{view.data(), view.size()}; }

// host_data for create: where the refusal reason lands.
struct InitHost {
  std::string_view function_name;
  LogSinkFn log;
  bool error_set = false;
  std::string error_type;
  std::string error_message;
};

void InitLog(void* host_data, int32_t level, runnel_bytes message) {
  auto* host = static_cast<InitHost*>(host_data);
  host->log(level, host->function_name, "", View(message));
}

void InitSetError(void* host_data, runnel_bytes type, runnel_bytes message) {
  auto* host = static_cast<InitHost*>(host_data);
  host->error_set = true;
  host->error_type.assign(View(type));
  host->error_message.assign(View(message));
}

// host_data for handle: one per call, on the caller's stack.
struct HandleHost {
  std::string_view function_name;
  std::string_view request_id;
  LogSinkFn log;
  HandleOutcome* outcome;
};

void HandleLog(void* host_data, int32_t level, runnel_bytes message) {
  auto* host = static_cast<HandleHost*>(host_data);
  host->log(level, host->function_name, host->request_id, View(message));
}

void HandleSetError(void* host_data, runnel_bytes type, runnel_bytes message) {
  auto* host = static_cast<HandleHost*>(host_data);
  host->outcome->error_type.assign(View(type));
  host->outcome->error_message.assign(View(message));
}

void HandleAddItemFailure(void* host_data, runnel_bytes identifier) {
  // A NULL identifier is kept as "", which the poller treats like Lambda treats null: the whole
  // batch failed.
  static_cast<HandleHost*>(host_data)->outcome->batch_item_failures.emplace_back(View(identifier));
}

}  // namespace

int64_t MonotonicNanos() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

absl::StatusOr<std::shared_ptr<const Plugin>> Plugin::Open(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat("plugin ", path, ": no such file"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("plugin ", path, ": cannot read it: ", std::strerror(error)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("plugin ", path, ": not a regular file"));
  }
  // RTLD_NOW: an unresolved symbol fails here, at start-up, not at the first record.
  // RTLD_LOCAL: two plugins may define the same symbols without clashing.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return absl::InvalidArgumentError(
        absl::StrCat("plugin ", path,
                     ": not a loadable shared library: ", why != nullptr ? why : "dlopen failed"));
  }
  ::dlerror();
  void* symbol = ::dlsym(handle, RUNNEL_HANDLER_ENTRY_SYMBOL);
  if (symbol == nullptr) {
    ::dlclose(handle);
    return absl::InvalidArgumentError(absl::StrCat(
        "plugin ", path, ": not a runnel handler: it does not export ", RUNNEL_HANDLER_ENTRY_SYMBOL,
        " (define the entry point with RUNNEL_HANDLER(YourClass))"));
  }
  auto entry = reinterpret_cast<runnel_handler_entry_fn>(symbol);
  const runnel_handler_api* api = entry();
  if (api == nullptr) {
    ::dlclose(handle);
    return absl::InvalidArgumentError(
        absl::StrCat("plugin ", path, ": ", RUNNEL_HANDLER_ENTRY_SYMBOL, " returned NULL"));
  }
  // abi_version is the first member in every ABI version, so reading it is always safe.
  if (api->abi_version != RUNNEL_HANDLER_ABI_VERSION) {
    ::dlclose(handle);
    return absl::FailedPreconditionError(
        absl::StrCat("plugin ", path, ": built for handler ABI version ", api->abi_version,
                     ", but this runnel speaks version ", RUNNEL_HANDLER_ABI_VERSION,
                     "; rebuild the plugin against this runnel's runnel/handler.h"));
  }
  if (api->struct_size < sizeof(runnel_handler_api) || api->create == nullptr ||
      api->destroy == nullptr || api->handle == nullptr) {
    ::dlclose(handle);
    return absl::InvalidArgumentError(
        absl::StrCat("plugin ", path, ": malformed entry table (struct_size ", api->struct_size,
                     ", create/destroy/handle must all be set)"));
  }
  return std::shared_ptr<const Plugin>(new Plugin(path, handle, api));
}

absl::StatusOr<std::unique_ptr<PluginInstance>> PluginInstance::Create(
    std::shared_ptr<const Plugin> plugin, const InitParams& params, LogSinkFn log) {
  std::vector<runnel_env_entry> environment;
  environment.reserve(params.environment.size());
  for (const auto& [key, value] : params.environment) {
    environment.push_back(runnel_env_entry{Bytes(key), Bytes(value)});
  }
  InitHost host{params.function_name, log, false, {}, {}};
  runnel_init_config config;
  std::memset(&config, 0, sizeof(config));
  config.function_name = Bytes(params.function_name);
  config.environment = environment.data();
  config.environment_count = environment.size();
  config.timeout_ms = params.timeout_ms;
  config.memory_size_mb = params.memory_size_mb;
  config.host_data = &host;
  config.log = &InitLog;
  config.set_error = &InitSetError;

  void* instance = plugin->api().create(&config);
  if (instance == nullptr) {
    std::string reason = host.error_set
                             ? absl::StrCat(host.error_type.empty() ? "error" : host.error_type,
                                            ": ", host.error_message)
                             : "no reason given";
    return absl::FailedPreconditionError(
        absl::StrCat("plugin ", plugin->path(), ": Init failed: ", reason));
  }
  std::unique_ptr<PluginInstance> result(
      new PluginInstance(std::move(plugin), params.function_name, log));
  result->instance_ = instance;
  return result;
}

PluginInstance::~PluginInstance() {
  if (instance_ != nullptr) plugin_->api().destroy(instance_);
}

void PluginInstance::Handle(const runnel_event& event, std::string_view request_id,
                            int64_t deadline_monotonic_ns, uint32_t attempt,
                            HandleOutcome* outcome) {
  outcome->Clear();
  HandleHost host{function_name_, request_id, log_, outcome};
  runnel_context context;
  context.function_name = Bytes(function_name_);
  context.request_id = Bytes(request_id);
  context.deadline_monotonic_ns = deadline_monotonic_ns;
  context.attempt = attempt;
  context.host_data = &host;
  context.log = &HandleLog;
  context.set_error = &HandleSetError;
  context.add_batch_item_failure = &HandleAddItemFailure;
  outcome->outcome = plugin_->api().handle(instance_, &event, &context);
}

}  // namespace runnel::runtime
