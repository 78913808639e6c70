// `runnel invoke` (run a handler plugin once on a Lambda-shaped Kinesis event, as `sam local
// invoke` does for Lambda) and `runnel worker` (the isolated handler process the runtime spawns).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "common/file_util.h"
#include "poller/plugins.h"
#include "runnel/runtime/event_json.h"
#include "runnel/runtime/function.h"
#include "runnel/runtime/worker.h"

namespace runnel::cli {
namespace {

struct InvokeOptions {
  std::string plugin;
  std::vector<std::string> plugin_dirs;
  std::string partition_key;
  std::string isolation = "process";
  std::string timeout = "3s";
  int memory_size_mb = 128;
  std::string event_file;
  std::vector<std::string> data;
  std::string function_name;
  std::vector<std::string> env;
  std::string shard_id = "shardId-000000000000";
  std::string stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/local";
  std::string region = "us-east-1";
  int attempt = 1;
};

absl::StatusOr<std::string> ReadEventText(const std::string& file) {
  if (file != "-") return ReadFileToString(file);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

int RunInvoke(const InvokeOptions& options) {
  // stdout carries the result JSON only; the handler's log lines go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("runnel-invoke"));

  runtime::FunctionConfig config;
  config.plugin = options.plugin;
  // A bare name (`echo`, `echo.so`) is looked up as a YAML file's `plugin:` is, with the current
  // folder in the place of the YAML file's folder.
  absl::StatusOr<std::string> found =
      poller::FindPlugin(options.plugin, poller::PluginSearchPath(options.plugin_dirs, "."));
  if (!found.ok()) {
    PrintError(std::string(found.status().message()));
    return kExitError;
  }
  config.plugin_path = std::filesystem::absolute(*found).lexically_normal().string();
  config.name = options.function_name.empty()
                    ? std::filesystem::path(options.plugin).stem().string()
                    : options.function_name;
  auto isolation = runtime::ParseIsolation(options.isolation);
  if (!isolation.ok()) {
    PrintError(absl::StrCat("--isolation: ", isolation.status().message()));
    return kExitUsage;
  }
  config.isolation = *isolation;
  if (!absl::ParseDuration(options.timeout, &config.timeout)) {
    PrintError(
        absl::StrCat("--timeout: '", options.timeout, "' is not a duration like 3s, 500ms or 1m"));
    return kExitUsage;
  }
  config.memory_size_mb = options.memory_size_mb;
  for (const std::string& entry : options.env) {
    size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      PrintError(absl::StrCat("--env: '", entry, "' is not KEY=VALUE"));
      return kExitUsage;
    }
    config.environment[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  if (absl::Status valid = runtime::ValidateFunctionConfig(config); !valid.ok()) {
    PrintError(std::string(valid.message()));
    return kExitUsage;
  }

  runtime::OwnedEvent event;
  if (!options.event_file.empty()) {
    absl::StatusOr<std::string> text = ReadEventText(options.event_file);
    if (!text.ok()) {
      PrintError(absl::StrCat("--event: ", text.status().message()));
      return kExitError;
    }
    absl::StatusOr<runtime::OwnedEvent> parsed = runtime::ParseKinesisEventJson(*text);
    if (!parsed.ok()) {
      PrintError(absl::StrCat("--event ", options.event_file, ": ", parsed.status().message()));
      return kExitError;
    }
    event = *std::move(parsed);
    if (event.shard_id.empty()) event.shard_id = options.shard_id;
    if (event.event_source_arn.empty()) event.event_source_arn = options.stream_arn;
    if (event.aws_region.empty()) event.aws_region = options.region;
  } else {
    event = runtime::EventFromData(options.data, options.shard_id, options.stream_arn,
                                   options.region, options.partition_key);
  }

  absl::StatusOr<std::unique_ptr<runtime::Function>> function = runtime::Function::Load(config);
  if (!function.ok()) {
    PrintError(std::string(function.status().message()));
    return kExitError;
  }
  std::vector<runtime::RecordView> records = event.views();
  runtime::InvokeRequest request;
  request.shard_id = event.shard_id;
  request.event_source_arn = event.event_source_arn;
  request.aws_region = event.aws_region;
  request.attempt = options.attempt;
  request.records = records;
  runtime::InvokeResult result = (*function)->Invoke(request);
  // Stops the workers and waits until everything they wrote has been logged.
  function->reset();

  std::cout << runtime::InvokeResultToJson(result) << std::endl;
  // Lambda's REPORT line, on stderr with the logs.
  std::cerr << absl::StrFormat(
                   "REPORT RequestId: %s\tDuration: %.2f ms\tMax Memory Used: %d MB\tRecords: "
                   "%d\tStatus: %s",
                   result.request_id, absl::ToDoubleMilliseconds(result.duration),
                   result.max_memory_used_mb, records.size(),
                   runtime::InvokeStatusName(result.status))
            << std::endl;
  return result.ok() ? kExitOk : kExitError;
}

}  // namespace

void AddRuntimeCommands(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<InvokeOptions>();
  CLI::App* invoke = app.add_subcommand(
      "invoke",
      "Invoke a handler plugin once with a Lambda-shaped Kinesis event and print the result as "
      "JSON: {\"batchItemFailures\":[...]} (an empty list is success) or "
      "{\"errorType\":...,\"errorMessage\":...}. Exits 0 on success, 1 on any failure.");
  invoke
      ->add_option("plugin", options->plugin,
                   "The handler plugin: a path (with a /), or a name (echo, echo.so) looked up as "
                   "in YAML: --plugin-dir, RUNNEL_PLUGIN_PATH, the installed handlers, then the "
                   "current folder")
      ->required();
  invoke->add_option("--plugin-dir", options->plugin_dirs,
                     "Folder to look up a plugin given by name (repeatable; also "
                     "RUNNEL_PLUGIN_PATH)");
  invoke->add_option("--isolation", options->isolation, "process or in_process")
      ->check(CLI::IsMember({"process", "in_process"}))
      ->capture_default_str();
  invoke->add_option("--timeout", options->timeout, "Invocation timeout, e.g. 3s, 500ms, 1m")
      ->capture_default_str();
  invoke
      ->add_option("--memory-size", options->memory_size_mb,
                   "Worker memory limit in MB (process isolation)")
      ->check(CLI::Range(runtime::kMinMemorySizeMb, runtime::kMaxMemorySizeMb))
      ->capture_default_str();
  auto* event_option = invoke->add_option(
      "--event", options->event_file,
      "A Lambda Kinesis event JSON file ({\"Records\":[...]}), or - for standard input");
  invoke
      ->add_option("--data", options->data,
                   "One record per occurrence, with this text as its data (instead of --event)")
      ->excludes(event_option);
  invoke
      ->add_option("--partition-key", options->partition_key,
                   "Partition key of every --data record (default: pk-1, pk-2, ...)")
      ->excludes(event_option);
  invoke->add_option("--function-name", options->function_name,
                     "The function name handlers see (default: the plugin file's name)");
  invoke->add_option("--env", options->env, "KEY=VALUE for the function's environment (repeat)");
  invoke->add_option("--shard-id", options->shard_id, "Shard id for --data events")
      ->capture_default_str();
  invoke->add_option("--stream-arn", options->stream_arn, "eventSourceARN for --data events")
      ->capture_default_str();
  invoke->add_option("--region", options->region, "awsRegion for --data events")
      ->capture_default_str();
  invoke->add_option("--attempt", options->attempt, "The attempt number the handler sees")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  invoke->callback([options, exit_code, invoke] {
    if (options->event_file.empty() && invoke->count("--data") == 0) {
      PrintError("invoke: give --event FILE (or -) or at least one --data");
      *exit_code = kExitUsage;
      return;
    }
    *exit_code = RunInvoke(*options);
  });

  struct WorkerOptions {
    int channel_fd = -1;
    std::string function_name;  // for ps(1) only
  };
  // Owned by the callback: CLI11 writes into these after this function has returned.
  auto worker_options = std::make_shared<WorkerOptions>();
  CLI::App* worker = app.add_subcommand(
      "worker",
      "(internal) The isolated handler process for `isolation: process`; the runtime starts it "
      "with its channel on --channel-fd.");
  worker->add_option("--channel-fd", worker_options->channel_fd, "The runtime's socket")
      ->required();
  worker->add_option("--function", worker_options->function_name, "The function it serves");
  worker->callback(
      [worker_options, exit_code] { *exit_code = runtime::RunWorker(worker_options->channel_fd); });
}

}  // namespace runnel::cli
