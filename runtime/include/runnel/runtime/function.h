// The function runtime: loads a handler plugin as the YAML's `functions:` entry describes it and
// invokes it with batches of records, in isolated worker processes (`isolation: process`, the
// default) or directly in this process (`in_process`). This is the API the poller builds on; it
// knows nothing about retries, bisect or checkpoints, which are the poller's business.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace runnel::runtime {

enum class Isolation {
  kProcess,    // worker processes: hard timeouts, crashes and memory overruns stay contained
  kInProcess,  // direct calls: fastest; a crash takes the process down, timeouts are only reported
};

// "process" / "in_process" (the YAML spelling).
absl::StatusOr<Isolation> ParseIsolation(std::string_view text);
std::string_view IsolationName(Isolation isolation);

// Lambda's limits, which the YAML reuses.
inline constexpr int kMinMemorySizeMb = 128;
inline constexpr int kMaxMemorySizeMb = 10240;
inline constexpr absl::Duration kMaxTimeout = absl::Seconds(900);

// One entry of `functions:`.
struct FunctionConfig {
  std::string name;
  // The plugin path as written in the YAML (for messages).
  std::string plugin;
  // The path actually loaded: `plugin` resolved against the YAML file's folder (see
  // ResolvePluginPath). When empty, `plugin` is used as is.
  std::string plugin_path;
  // Hard in process mode (the worker is killed at the deadline); reported late in in_process
  // mode. Lambda allows whole seconds 1–900; runnel also allows fractions of a second.
  absl::Duration timeout = absl::Seconds(3);
  // Process mode: the most memory a worker may allocate beyond what it uses once the plugin is
  // loaded (its address-space limit is raised by that baseline). 128–10240 as on Lambda.
  int memory_size_mb = 128;
  Isolation isolation = Isolation::kProcess;
  // The most invocations in flight at once, each with its own worker process (or, in_process,
  // its own handler instance). 0 means no limit of the runtime's own: one execution environment
  // per concurrent caller, as many as the poller's lanes. Environments are kept for reuse.
  int max_concurrency = 0;
  // `environment:` from the YAML, handed to the handler's Init and Context.
  std::map<std::string, std::string> environment;
  // The function's execution role; the event's invokeIdentityArn. Empty: a runnel default.
  std::string role;
  // The `runnel` executable that runs `runnel worker`. Empty: this process's own executable
  // (/proc/self/exe), which is right for the `runnel` binary; tests and benchmarks set it.
  std::string worker_binary;
};

// Checks the ranges (name set, plugin set, timeout in (0, 900 s], memory 128–10240,
// max_concurrency >= 0). The error names the function and the field.
absl::Status ValidateFunctionConfig(const FunctionConfig& config);

// A relative plugin path is taken relative to `config_dir`, the folder of the YAML file that
// names it; an absolute path is kept.
std::string ResolvePluginPath(std::string_view plugin, std::string_view config_dir);

// Checks a plugin file without running it: it is a shared library exporting
// runnel_handler_entry, built for this ABI version, with a well-formed entry table. The file is
// opened in a short-lived `runnel worker` process (`worker_binary`; empty: this executable), so
// that its static constructors run there: one that crashes or hangs is reported, not suffered.
// Init is not run (it may need what only the running system has). The error names the file and
// says what is wrong, or how the worker died while loading it.
absl::Status CheckPlugin(const std::string& plugin_path, const std::string& worker_binary = "");

// The invokeIdentityArn used when FunctionConfig::role is empty.
inline constexpr std::string_view kDefaultRoleArn = "arn:aws:iam::000000000000:role/runnel";

// One record, borrowed from the caller for the duration of Invoke (no copy in in_process mode).
struct RecordView {
  std::string_view partition_key;
  std::string_view sequence_number;
  std::string_view data;
  int64_t approximate_arrival_ms = 0;  // since the Unix epoch
};

// One batch. Every view must stay valid until Invoke returns.
struct InvokeRequest {
  std::string_view shard_id;          // "shardId-000000000000"
  std::string_view event_source_arn;  // the stream's ARN
  std::string_view aws_region;
  std::string_view request_id;  // empty: Invoke makes one (a UUID) and returns it
  int attempt = 1;              // 1 for the first invocation of these records
  std::span<const RecordView> records;
};

enum class InvokeStatus {
  kSuccess,            // the handler succeeded (or reported an empty list of item failures)
  kFunctionError,      // the handler returned a failure or threw (error_type, error_message)
  kBatchItemFailures,  // the handler reported records as failed (batch_item_failures)
  kTimeout,            // ran past FunctionConfig::timeout
  kCrash,              // the worker died: a signal or an exit status (process mode)
  kMemoryExceeded,     // the worker ran out of its memory_size (process mode)
  kInvalidResponse,    // the worker or plugin answered something that is not a valid result
  kUnavailable,        // the handler never ran: no worker could be started (not a function
                       // error: Lambda does not count these toward retries)
};
std::string_view InvokeStatusName(InvokeStatus status);

// What one invocation came to. Every non-success has error_type and error_message set, with
// Lambda's wording where Lambda has one (e.g. "Task timed out after 3.00 seconds").
struct InvokeResult {
  InvokeStatus status = InvokeStatus::kSuccess;
  std::string error_type;
  std::string error_message;
  // kBatchItemFailures: the identifiers exactly as the handler reported them, in its order,
  // duplicates, empty strings and values that are not in the batch included, so that the poller
  // can apply Lambda's ReportBatchItemFailures rules (an empty or unknown identifier fails the
  // whole batch).
  std::vector<std::string> batch_item_failures;
  std::string request_id;
  // Wall time of the invocation as the caller saw it (queueing for a worker excluded).
  absl::Duration duration;
  // Process mode: the worker's peak resident memory so far, in MiB (0 when unknown).
  int64_t max_memory_used_mb = 0;
  // Process mode: the worker process that ran it (for logs and tests; 0 in_process).
  int worker_pid = 0;

  bool ok() const { return status == InvokeStatus::kSuccess; }
};

// A loaded function.
//
// Thread-safe: Invoke may be called concurrently from any number of threads; each call gets an
// execution environment of its own (a worker process or a handler instance) and blocks while
// max_concurrency environments are busy. The Function must outlive every Invoke call.
class Function {
 public:
  // Loads and validates the plugin now, so that a missing file, a file that is not a plugin, a
  // missing entry symbol, a wrong ABI version or a failing Init is reported at start-up, naming
  // the file. Process mode starts one worker eagerly (the parent never dlopens the plugin).
  static absl::StatusOr<std::unique_ptr<Function>> Load(const FunctionConfig& config);

  virtual ~Function() = default;

  // Runs the handler on one batch and waits for it (at most the timeout, in process mode).
  virtual InvokeResult Invoke(const InvokeRequest& request) = 0;

  const FunctionConfig& config() const { return config_; }

 protected:
  explicit Function(FunctionConfig config) : config_(std::move(config)) {}

 private:
  FunctionConfig config_;
};

// A random UUID (version 4), Lambda's request-id format.
std::string NewRequestId();

}  // namespace runnel::runtime
