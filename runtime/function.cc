// Function::Load and the two invocation modes: InProcessFunction calls the plugin directly,
// ProcessFunction keeps a pool of `runnel worker` processes.
#include "runnel/runtime/function.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <random>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "runtime/in_process_crash.h"
#include "runtime/invoke_outcome.h"
#include "runtime/plugin.h"
#include "runtime/worker_process.h"

namespace runnel::runtime {
namespace {

std::string_view RoleOf(const FunctionConfig& config) {
  return config.role.empty() ? kDefaultRoleArn : std::string_view(config.role);
}

void SpdlogSink(int32_t level, std::string_view function_name, std::string_view request_id,
                std::string_view message) {
  auto spd_level = spdlog::level::info;
  switch (level) {
    case RUNNEL_LOG_DEBUG:
      spd_level = spdlog::level::debug;
      break;
    case RUNNEL_LOG_WARN:
      spd_level = spdlog::level::warn;
      break;
    case RUNNEL_LOG_ERROR:
      spd_level = spdlog::level::err;
      break;
  }
  LogInvocationLine(spd_level, function_name, request_id, message);
}

// The bookkeeping both modes share: a pool of execution environments (a worker process, or a
// handler instance in this process), one per concurrent invocation and at most max_concurrency,
// idle ones reused (the most recently used first: its caches are warm); the request id; and the
// result when no environment could be made.
template <typename Environment>
class PooledFunction : public Function {
 public:
  ~PooledFunction() override {
    absl::MutexLock lock(&mu_);
    idle_.clear();  // a worker's destructor kills and reaps it
  }

  // Makes the first environment now, so that a bad plugin is reported at start-up.
  absl::Status Start() {
    absl::StatusOr<std::unique_ptr<Environment>> first = NewEnvironment();
    if (!first.ok()) return first.status();
    absl::MutexLock lock(&mu_);
    idle_.push_back(*std::move(first));
    live_ = 1;
    return absl::OkStatus();
  }

  InvokeResult Invoke(const InvokeRequest& request) final {
    std::string request_id =
        request.request_id.empty() ? NewRequestId() : std::string(request.request_id);
    std::unique_ptr<Environment> environment = Acquire();
    // An environment that died while idle is replaced before the batch is sent, so its death is
    // not charged to this batch.
    if (environment != nullptr && !Healthy(*environment)) environment.reset();
    if (environment == nullptr) {
      absl::StatusOr<std::unique_ptr<Environment>> made = NewEnvironment();
      if (!made.ok()) {
        Release(nullptr);
        InvokeResult result;
        result.request_id = std::move(request_id);
        result.status = InvokeStatus::kUnavailable;
        result.error_type = "Runtime.Unavailable";
        result.error_message = std::string(made.status().message());
        LogInvocationLine(spdlog::level::err, config().name, result.request_id,
                          result.error_message);
        return result;
      }
      environment = *std::move(made);
    }
    InvokeResult result = Run(*environment, request, std::move(request_id));
    // One that is gone is not returned: the next invocation gets a fresh one.
    Release(Alive(*environment) ? std::move(environment) : nullptr);
    return result;
  }

 protected:
  explicit PooledFunction(FunctionConfig config) : Function(std::move(config)) {}

  virtual absl::StatusOr<std::unique_ptr<Environment>> NewEnvironment() = 0;
  virtual InvokeResult Run(Environment& environment, const InvokeRequest& request,
                           std::string request_id) = 0;
  // Before an invocation: false for an idle environment that has died meanwhile (a worker
  // process; it is reaped). After one: false when the result left it unusable.
  virtual bool Healthy(Environment& environment) = 0;
  virtual bool Alive(Environment& environment) = 0;

 private:
  // An idle environment, or nullptr with a reservation to make a new one (see Release).
  std::unique_ptr<Environment> Acquire() {
    absl::MutexLock lock(&mu_);
    int max = config().max_concurrency;
    auto available = [this, max]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || max == 0 || live_ < max;
    };
    mu_.Await(absl::Condition(&available));
    if (!idle_.empty()) {
      std::unique_ptr<Environment> environment = std::move(idle_.back());
      idle_.pop_back();
      return environment;
    }
    ++live_;
    return nullptr;
  }

  // Returns an environment to the pool; nullptr frees the slot of one that is gone (or of a
  // reservation that made none).
  void Release(std::unique_ptr<Environment> environment) {
    absl::MutexLock lock(&mu_);
    if (environment == nullptr) {
      --live_;
    } else {
      idle_.push_back(std::move(environment));
    }
  }

  absl::Mutex mu_;
  std::vector<std::unique_ptr<Environment>> idle_ ABSL_GUARDED_BY(mu_);
  int live_ ABSL_GUARDED_BY(mu_) = 0;  // environments idle or busy, plus reservations
};

// One handler instance in this process, with the buffers its invocations reuse.
struct InProcessSlot {
  std::unique_ptr<PluginInstance> instance;
  std::vector<runnel_record> records;  // reused: no allocation per invocation
  HandleOutcome outcome;
};

runnel_bytes Bytes(std::string_view view) { return runnel_bytes{view.data(), view.size()}; }

// in_process: handler instances called directly.
class InProcessFunction : public PooledFunction<InProcessSlot> {
 public:
  InProcessFunction(FunctionConfig config, std::shared_ptr<const Plugin> plugin)
      : PooledFunction(std::move(config)), plugin_(std::move(plugin)) {}

 private:
  absl::StatusOr<std::unique_ptr<InProcessSlot>> NewEnvironment() override {
    InitParams params{config().name, config().environment,
                      absl::ToInt64Milliseconds(config().timeout), config().memory_size_mb};
    absl::StatusOr<std::unique_ptr<PluginInstance>> instance;
    {
      CrashNoteScope crash_note(config().name, CurrentLogTag(kTagMapping), CurrentLogTag(kTagShard),
                                /*request_id=*/"");
      instance = PluginInstance::Create(plugin_, params, &SpdlogSink);
    }
    if (!instance.ok()) {
      return absl::Status(instance.status().code(), absl::StrCat("function ", config().name, ": ",
                                                                 instance.status().message()));
    }
    auto slot = std::make_unique<InProcessSlot>();
    slot->instance = *std::move(instance);
    return slot;
  }

  bool Healthy(InProcessSlot&) override { return true; }
  bool Alive(InProcessSlot&) override { return true; }

  InvokeResult Run(InProcessSlot& slot, const InvokeRequest& request,
                   std::string request_id) override {
    InvokeResult result;
    result.request_id = std::move(request_id);
    slot.records.resize(request.records.size());
    for (size_t i = 0; i < request.records.size(); ++i) {
      const RecordView& r = request.records[i];
      slot.records[i] = runnel_record{Bytes(r.partition_key), Bytes(r.sequence_number),
                                      Bytes(r.data), r.approximate_arrival_ms};
    }
    runnel_event event;
    event.records = slot.records.data();
    event.record_count = slot.records.size();
    event.shard_id = Bytes(request.shard_id);
    event.event_source_arn = Bytes(request.event_source_arn);
    event.aws_region = Bytes(request.aws_region);
    event.invoke_identity_arn = Bytes(RoleOf(config()));

    int64_t timeout_ns = absl::ToInt64Nanoseconds(config().timeout);
    int64_t start = MonotonicNanos();
    {
      // A crash in the call kills this process: it says so first (see in_process_crash.h).
      CrashNoteScope crash_note(config().name, CurrentLogTag(kTagMapping), request.shard_id,
                                result.request_id);
      slot.instance->Handle(event, result.request_id, start + timeout_ns,
                            static_cast<uint32_t>(request.attempt), &slot.outcome);
    }
    int64_t elapsed = MonotonicNanos() - start;
    result.duration = absl::Nanoseconds(elapsed);
    if (elapsed > timeout_ns) {
      // The handler ran on to the end: in this process nothing can stop it. Its result is
      // discarded, as Lambda discards the result of a timed-out invocation.
      result.status = InvokeStatus::kTimeout;
      result.error_type = "Sandbox.Timedout";
      result.error_message = TimeoutMessage(config().timeout);
      LogInvocationLine(spdlog::level::warn, config().name, result.request_id,
                        absl::StrCat(result.error_message,
                                     " (in_process: reported when the handler returned, after ",
                                     absl::FormatDuration(result.duration), ")"));
    } else {
      HandleOutcome& outcome = slot.outcome;
      SetResultFromOutcome(outcome.outcome, outcome.error_type, outcome.error_message,
                           outcome.batch_item_failures, &result);
    }
    return result;
  }

  std::shared_ptr<const Plugin> plugin_;
};

// isolation: process: `runnel worker` processes.
class ProcessFunction : public PooledFunction<WorkerProcess> {
 public:
  explicit ProcessFunction(FunctionConfig config) : PooledFunction(std::move(config)) {}

 private:
  absl::StatusOr<std::unique_ptr<WorkerProcess>> NewEnvironment() override {
    return WorkerProcess::Start(config());
  }

  bool Healthy(WorkerProcess& worker) override { return worker.Healthy(); }
  bool Alive(WorkerProcess& worker) override { return worker.alive(); }

  InvokeResult Run(WorkerProcess& worker, const InvokeRequest& request,
                   std::string request_id) override {
    return worker.Invoke(request, request_id, RoleOf(config()), config().timeout);
  }
};

}  // namespace

absl::StatusOr<Isolation> ParseIsolation(std::string_view text) {
  if (text == "process") return Isolation::kProcess;
  if (text == "in_process") return Isolation::kInProcess;
  return absl::InvalidArgumentError(
      absl::StrCat("isolation must be process or in_process, not \"", std::string(text), "\""));
}

std::string_view IsolationName(Isolation isolation) {
  return isolation == Isolation::kProcess ? "process" : "in_process";
}

std::string_view InvokeStatusName(InvokeStatus status) {
  switch (status) {
    case InvokeStatus::kSuccess:
      return "Success";
    case InvokeStatus::kFunctionError:
      return "FunctionError";
    case InvokeStatus::kBatchItemFailures:
      return "BatchItemFailures";
    case InvokeStatus::kTimeout:
      return "Timeout";
    case InvokeStatus::kCrash:
      return "Crash";
    case InvokeStatus::kMemoryExceeded:
      return "MemoryExceeded";
    case InvokeStatus::kInvalidResponse:
      return "InvalidResponse";
    case InvokeStatus::kUnavailable:
      return "Unavailable";
  }
  return "Unknown";
}

absl::Status ValidateFunctionConfig(const FunctionConfig& config) {
  std::string who = absl::StrCat("function ", config.name.empty() ? "(unnamed)" : config.name);
  if (config.name.empty()) return absl::InvalidArgumentError("function: name is required");
  if (config.plugin.empty() && config.plugin_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": plugin is required"));
  }
  if (config.timeout <= absl::ZeroDuration() || config.timeout > kMaxTimeout) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": timeout must be more than 0 and at most 900s, not ",
                     absl::FormatDuration(config.timeout)));
  }
  if (config.memory_size_mb < kMinMemorySizeMb || config.memory_size_mb > kMaxMemorySizeMb) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": memory_size must be 128 to 10240 (MB), not ", config.memory_size_mb));
  }
  if (config.max_concurrency < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, ": max_concurrency must be 0 (no limit) or more, not ", config.max_concurrency));
  }
  return absl::OkStatus();
}

std::string ResolvePluginPath(std::string_view plugin, std::string_view config_dir) {
  if (plugin.empty() || plugin.front() == '/' || config_dir.empty()) return std::string(plugin);
  std::string path(config_dir);
  if (path.back() != '/') path += '/';
  path += plugin;
  return path;
}

absl::StatusOr<std::unique_ptr<Function>> Function::Load(const FunctionConfig& config) {
  if (absl::Status valid = ValidateFunctionConfig(config); !valid.ok()) return valid;
  const std::string& path = config.plugin_path.empty() ? config.plugin : config.plugin_path;
  if (config.isolation == Isolation::kInProcess) {
    absl::StatusOr<std::shared_ptr<const Plugin>> plugin = Plugin::Open(path);
    if (!plugin.ok()) {
      return absl::Status(plugin.status().code(),
                          absl::StrCat("function ", config.name, ": ", plugin.status().message()));
    }
    auto function = std::make_unique<InProcessFunction>(config, *std::move(plugin));
    if (absl::Status started = function->Start(); !started.ok()) return started;
    return function;
  }
  // The parent does not dlopen the plugin (its static constructors are exactly what isolation
  // keeps out); the first worker loads it now, and a missing file is refused before spawning.
  if (::access(path.c_str(), F_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("function ", config.name, ": plugin ", path, ": no such file"));
  }
  auto function = std::make_unique<ProcessFunction>(config);
  if (absl::Status started = function->Start(); !started.ok()) return started;
  return function;
}

absl::Status CheckPlugin(const std::string& plugin_path, const std::string& worker_binary) {
  return WorkerProcess::Check(plugin_path, worker_binary);
}

std::string NewRequestId() {
  thread_local std::mt19937_64 random(std::random_device{}() ^
                                      (static_cast<uint64_t>(MonotonicNanos()) << 1));
  uint64_t high = random();
  uint64_t low = random();
  high = (high & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  low = (low & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;    // variant 10
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", high >> 32, (high >> 16) & 0xffff,
                         high & 0xffff, low >> 48, low & 0xffffffffffffULL);
}

}  // namespace runnel::runtime
