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
#include "runtime/plugin.h"
#include "runtime/worker_process.h"

namespace runnel::runtime {
namespace {

std::string TimeoutMessage(absl::Duration timeout) {
  // Lambda's wording, seconds with two decimals.
  return absl::StrFormat("Task timed out after %.2f seconds", absl::ToDoubleSeconds(timeout));
}

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

// in_process: a pool of handler instances in this process, one per concurrent invocation.
class InProcessFunction : public Function {
 public:
  InProcessFunction(FunctionConfig config, std::shared_ptr<const Plugin> plugin)
      : Function(std::move(config)), plugin_(std::move(plugin)) {}

  absl::Status Start() {
    absl::StatusOr<std::unique_ptr<Slot>> slot = NewSlot();
    if (!slot.ok()) return slot.status();
    absl::MutexLock lock(&mu_);
    idle_.push_back(*std::move(slot));
    live_ = 1;
    return absl::OkStatus();
  }

  InvokeResult Invoke(const InvokeRequest& request) override {
    InvokeResult result;
    result.request_id =
        request.request_id.empty() ? NewRequestId() : std::string(request.request_id);
    std::unique_ptr<Slot> slot = Acquire();
    if (slot == nullptr) {
      absl::StatusOr<std::unique_ptr<Slot>> made = NewSlot();
      if (!made.ok()) {
        Release(nullptr);
        result.status = InvokeStatus::kUnavailable;
        result.error_type = "Runtime.Unavailable";
        result.error_message = std::string(made.status().message());
        return result;
      }
      slot = *std::move(made);
    }

    slot->records.resize(request.records.size());
    for (size_t i = 0; i < request.records.size(); ++i) {
      const RecordView& r = request.records[i];
      slot->records[i] = runnel_record{Bytes(r.partition_key), Bytes(r.sequence_number),
                                       Bytes(r.data), r.approximate_arrival_ms};
    }
    runnel_event event;
    event.records = slot->records.data();
    event.record_count = slot->records.size();
    event.shard_id = Bytes(request.shard_id);
    event.event_source_arn = Bytes(request.event_source_arn);
    event.aws_region = Bytes(request.aws_region);
    event.invoke_identity_arn = Bytes(RoleOf(config()));

    int64_t timeout_ns = absl::ToInt64Nanoseconds(config().timeout);
    int64_t start = MonotonicNanos();
    slot->instance->Handle(event, result.request_id, start + timeout_ns,
                           static_cast<uint32_t>(request.attempt), &slot->outcome);
    int64_t elapsed = MonotonicNanos() - start;
    result.duration = absl::Nanoseconds(elapsed);
    HandleOutcome& outcome = slot->outcome;
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
      switch (outcome.outcome) {
        case RUNNEL_OUTCOME_SUCCESS:
          break;
        case RUNNEL_OUTCOME_FAILURE:
          result.status = InvokeStatus::kFunctionError;
          result.error_type = std::move(outcome.error_type);
          result.error_message = std::move(outcome.error_message);
          break;
        case RUNNEL_OUTCOME_BATCH_ITEM_FAILURES:
          result.status = outcome.batch_item_failures.empty() ? InvokeStatus::kSuccess
                                                              : InvokeStatus::kBatchItemFailures;
          result.batch_item_failures = std::move(outcome.batch_item_failures);
          break;
        default:
          result.status = InvokeStatus::kInvalidResponse;
          result.error_type = "Runtime.InvalidResponse";
          result.error_message =
              absl::StrCat("the handler returned an unknown outcome ", outcome.outcome);
      }
    }
    Release(std::move(slot));
    return result;
  }

 private:
  struct Slot {
    std::unique_ptr<PluginInstance> instance;
    std::vector<runnel_record> records;  // reused: no allocation per invocation
    HandleOutcome outcome;
  };

  static runnel_bytes Bytes(std::string_view view) {
    return runnel_bytes{view.data(), view.size()};
  }

  absl::StatusOr<std::unique_ptr<Slot>> NewSlot() {
    InitParams params{config().name, config().environment,
                      absl::ToInt64Milliseconds(config().timeout), config().memory_size_mb};
    absl::StatusOr<std::unique_ptr<PluginInstance>> instance =
        PluginInstance::Create(plugin_, params, &SpdlogSink);
    if (!instance.ok()) {
      return absl::Status(instance.status().code(), absl::StrCat("function ", config().name, ": ",
                                                                 instance.status().message()));
    }
    auto slot = std::make_unique<Slot>();
    slot->instance = *std::move(instance);
    return slot;
  }

  // An idle slot, or nullptr with a reservation to make a new one (see Release).
  std::unique_ptr<Slot> Acquire() {
    absl::MutexLock lock(&mu_);
    int max = config().max_concurrency;
    auto available = [this, max]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || max == 0 || live_ < max;
    };
    mu_.Await(absl::Condition(&available));
    if (!idle_.empty()) {
      std::unique_ptr<Slot> slot = std::move(idle_.back());
      idle_.pop_back();
      return slot;
    }
    ++live_;
    return nullptr;
  }

  // Returns a slot to the pool; nullptr gives back a reservation that made none.
  void Release(std::unique_ptr<Slot> slot) {
    absl::MutexLock lock(&mu_);
    if (slot == nullptr) {
      --live_;
    } else {
      idle_.push_back(std::move(slot));
    }
  }

  std::shared_ptr<const Plugin> plugin_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Slot>> idle_ ABSL_GUARDED_BY(mu_);
  int live_ ABSL_GUARDED_BY(mu_) = 0;
};

// isolation: process: a pool of worker processes, one per concurrent invocation.
class ProcessFunction : public Function {
 public:
  explicit ProcessFunction(FunctionConfig config) : Function(std::move(config)) {}

  ~ProcessFunction() override {
    absl::MutexLock lock(&mu_);
    idle_.clear();  // kills and reaps each worker
  }

  absl::Status Start() {
    absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(config());
    if (!worker.ok()) return worker.status();
    absl::MutexLock lock(&mu_);
    idle_.push_back(*std::move(worker));
    live_ = 1;
    return absl::OkStatus();
  }

  InvokeResult Invoke(const InvokeRequest& request) override {
    std::string request_id =
        request.request_id.empty() ? NewRequestId() : std::string(request.request_id);
    std::unique_ptr<WorkerProcess> worker = Acquire();
    // A worker that died while idle is replaced before the batch is sent, so its death is not
    // charged to this batch.
    if (worker != nullptr && !worker->Healthy()) worker.reset();
    if (worker == nullptr) {
      absl::StatusOr<std::unique_ptr<WorkerProcess>> started = WorkerProcess::Start(config());
      if (!started.ok()) {
        Release(nullptr);
        InvokeResult result;
        result.request_id = std::move(request_id);
        result.status = InvokeStatus::kUnavailable;
        result.error_type = "Runtime.Unavailable";
        result.error_message = std::string(started.status().message());
        LogInvocationLine(spdlog::level::err, config().name, result.request_id,
                          result.error_message);
        return result;
      }
      worker = *std::move(started);
    }
    InvokeResult result = worker->Invoke(request, request_id, RoleOf(config()), config().timeout);
    // A dead worker is not returned: the next invocation gets a fresh one.
    Release(worker->alive() ? std::move(worker) : nullptr);
    return result;
  }

 private:
  // An idle worker (the most recently used: its caches are warm), or nullptr with a reservation
  // to start a new one.
  std::unique_ptr<WorkerProcess> Acquire() {
    absl::MutexLock lock(&mu_);
    int max = config().max_concurrency;
    auto available = [this, max]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || max == 0 || live_ < max;
    };
    mu_.Await(absl::Condition(&available));
    if (!idle_.empty()) {
      std::unique_ptr<WorkerProcess> worker = std::move(idle_.back());
      idle_.pop_back();
      return worker;
    }
    ++live_;
    return nullptr;
  }

  // Returns a live worker to the pool, or (nullptr) frees the slot of one that is gone.
  void Release(std::unique_ptr<WorkerProcess> worker) {
    absl::MutexLock lock(&mu_);
    if (worker == nullptr) {
      --live_;
    } else {
      idle_.push_back(std::move(worker));
    }
  }

  absl::Mutex mu_;
  std::vector<std::unique_ptr<WorkerProcess>> idle_ ABSL_GUARDED_BY(mu_);
  int live_ ABSL_GUARDED_BY(mu_) = 0;  // workers idle or busy, plus reservations
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
