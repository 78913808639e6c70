// `runnel mapping list|describe|enable|disable|update|seek`: the live control of event-source
// mappings, through the EventSourceMappings API of a running poller (proto/runnel/v1/
// mappings.proto): `--poller ADDR` (env RUNNEL_POLLER) for a `runnel poller --listen`, else the
// `--broker` address, where `runnel up` serves it.
//
// enable, disable and update are in-memory overrides of the YAML: a poller restart applies the
// file again. seek moves durable checkpoints, so it lasts.
#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "broker/server.h"
#include "cli/client_util.h"
#include "cli/commands.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "poller/config.h"
#include "poller/mapping_controller.h"
#include "runnel/v1/mappings.grpc.pb.h"

namespace runnel::cli {
namespace {

using google::protobuf::util::TimeUtil;

// Changes wait for batches in flight to finish (the poller's stop grace is 30 s).
constexpr absl::Duration kTimeout = absl::Seconds(90);

constexpr char kOverrideNote[] =
    "Live changes are in-memory overrides of the YAML file: when the poller restarts, the file "
    "applies again (it stays the source of truth). To keep a change, edit the file too.";

struct MappingOptions {
  ClientOptions client;
  std::string poller;  // --poller, else $RUNNEL_POLLER; empty: the broker's address
  std::string uuid;
  // update
  std::optional<int> batch_size;
  std::optional<std::string> window;
  std::optional<int> parallelization_factor;
  std::optional<int> retry_attempts;
  std::optional<std::string> max_record_age;
  std::optional<std::string> bisect;
  std::optional<std::string> on_failure;
  std::optional<std::string> report_batch_item_failures;
  // seek
  std::string shard;
  bool all_shards = false;
  std::string to;

  const std::string& address() const { return poller.empty() ? client.broker : poller; }
  bool json() const { return client.output == "json"; }
};

std::unique_ptr<v1::EventSourceMappings::Stub> Connect(const MappingOptions& options) {
  return v1::EventSourceMappings::NewStub(broker::MakeBrokerChannel(options.address()));
}

int ReportError(const grpc::Status& status, const MappingOptions& options) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    PrintError(absl::StrCat(
        "no mapping control at ", options.address(),
        " (`runnel up` serves it on the broker's address, `runnel poller` on its --listen "
        "address, 127.0.0.1:4568 by default; set --poller or RUNNEL_POLLER): ",
        status.error_message()));
  } else if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    PrintError(absl::StrCat("the poller at ", options.address(), " did not answer in time"));
  } else {
    PrintError(status.error_message());
  }
  return kExitError;
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  SetDeadline(*context, kTimeout);
  return context;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  print.always_print_primitive_fields = true;
  print.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, print);
  return json;
}

std::string Seconds(const google::protobuf::Duration& d) {
  if (d.seconds() == -1 && d.nanos() == 0) return "-1";  // maximum_record_age: no limit
  return poller::FormatSeconds(absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos()));
}

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                          absl::FromUnixMillis(TimeUtil::TimestampToMilliseconds(t)),
                          absl::UTCTimeZone());
}

std::string OrNone(const std::string& text) { return text.empty() ? "none" : text; }

// A shard's lease owner as the tables show it: "id (host pid)", or "-" when free.
std::string Owner(const v1::ShardStatus& shard) {
  if (shard.lease_owner().empty()) return "-";
  if (shard.lease_owner_host().empty()) return shard.lease_owner();
  return absl::StrCat(shard.lease_owner(), " (", shard.lease_owner_host(), " pid ",
                      shard.lease_owner_pid(), ")");
}

// Prints rows as columns separated by two spaces, each as wide as its widest cell.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

void PrintConfiguration(const v1::EventSourceMappingConfiguration& c) {
  std::vector<std::vector<std::string>> rows = {
      {"Mapping", c.uuid()},
      {"State", c.state()},
      {"StateTransitionReason", c.state_transition_reason()},
      {"LastModified", Time(c.last_modified())},
      {"LastProcessingResult", c.last_processing_result()},
      {"FunctionName", c.function_name()},
      {"FunctionArn", c.function_arn()},
      {"EventSourceArn", c.event_source_arn()},
      {"StartingPosition",
       c.starting_position() + (c.has_starting_position_timestamp()
                                    ? absl::StrCat(" ", Time(c.starting_position_timestamp()))
                                    : "")},
      {"BatchSize", absl::StrCat(c.batch_size())},
      {"MaximumBatchingWindow", Seconds(c.maximum_batching_window())},
      {"ParallelizationFactor", absl::StrCat(c.parallelization_factor())},
      {"BisectBatchOnFunctionError", c.bisect_batch_on_function_error() ? "true" : "false"},
      {"MaximumRetryAttempts", absl::StrCat(c.maximum_retry_attempts())},
      {"MaximumRecordAge", Seconds(c.maximum_record_age())},
      {"OnFailure", OrNone(c.destination_config().on_failure().destination())},
      {"FunctionResponseTypes",
       absl::StrCat("[", absl::StrJoin(c.function_response_types(), ", "), "]")},
      {"Consumer", c.consumer()},
  };
  for (const auto& filter : c.filter_criteria().filters())
    rows.push_back({"Filter", filter.pattern()});
  if (c.overrides_configuration_file()) {
    rows.push_back({"Note", "live changes differ from the YAML file until the poller restarts"});
  }
  PrintTable(rows);
  if (c.shards_size() == 0) return;
  std::printf("\n");
  std::vector<std::vector<std::string>> shards = {
      {"SHARD", "CHECKPOINT", "OWNER", "EPOCH", "LEASE EXPIRES", "ITERATOR AGE",
       "IN FLIGHT (first..last records attempt)", "BUFFERED", "LAST ERROR"}};
  for (const v1::ShardStatus& shard : c.shards()) {
    std::vector<std::string> batches;
    for (const v1::InFlightBatch& batch : shard.in_flight_batches()) {
      batches.push_back(absl::StrCat(batch.first_sequence_number(), "..",
                                     batch.last_sequence_number(), " ", batch.record_count(), " #",
                                     batch.attempt()));
    }
    shards.push_back(
        {shard.shard_id(),
         shard.checkpoint_sequence_number().empty() ? "-" : shard.checkpoint_sequence_number(),
         Owner(shard), absl::StrCat(shard.lease_epoch()),
         shard.lease_owner().empty() ? "-" : Time(shard.lease_expiry()),
         shard.iterator_age_millis() < 0 ? "-" : absl::StrCat(shard.iterator_age_millis(), "ms"),
         batches.empty() ? "-" : absl::StrJoin(batches, ", "),
         absl::StrCat(shard.buffered_records()),
         shard.last_error().empty()
             ? "-"
             : absl::StrCat(Time(shard.last_error_time()), " ", shard.last_error())});
  }
  PrintTable(shards);
}

int RunList(const MappingOptions& options) {
  auto stub = Connect(options);
  v1::ListEventSourceMappingsResponse response;
  grpc::Status status = stub->ListEventSourceMappings(
      Context().get(), v1::ListEventSourceMappingsRequest(), &response);
  if (!status.ok()) return ReportError(status, options);
  if (options.json()) {
    std::printf("%s\n", ToJson(response).c_str());
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {{"MAPPING", "STATE", "BATCH", "WINDOW", "PARALLEL",
                                                 "RETRIES", "MAX AGE", "ON FAILURE",
                                                 "LAST RESULT"}};
  for (const auto& c : response.event_source_mappings()) {
    rows.push_back({c.uuid() + (c.overrides_configuration_file() ? " *" : ""), c.state(),
                    absl::StrCat(c.batch_size()), Seconds(c.maximum_batching_window()),
                    absl::StrCat(c.parallelization_factor()),
                    absl::StrCat(c.maximum_retry_attempts()), Seconds(c.maximum_record_age()),
                    OrNone(c.destination_config().on_failure().destination()),
                    c.last_processing_result()});
  }
  PrintTable(rows);
  bool any_override = false;
  for (const auto& c : response.event_source_mappings()) {
    any_override |= c.overrides_configuration_file();
  }
  if (any_override)
    std::printf("* changed live: differs from the YAML until the poller restarts\n");
  // Who processes which shard (a fleet of pollers shares them by lease).
  std::vector<std::vector<std::string>> leases = {
      {"MAPPING", "SHARD", "OWNER", "EPOCH", "LEASE EXPIRES"}};
  for (const auto& c : response.event_source_mappings()) {
    for (const v1::ShardStatus& shard : c.shards()) {
      leases.push_back({c.uuid(), shard.shard_id(), Owner(shard), absl::StrCat(shard.lease_epoch()),
                        shard.lease_owner().empty() ? "-" : Time(shard.lease_expiry())});
    }
  }
  if (leases.size() > 1) {
    std::printf("\n");
    PrintTable(leases);
  }
  return kExitOk;
}

int PrintResult(const v1::EventSourceMappingConfiguration& config, const MappingOptions& options) {
  if (options.json()) {
    std::printf("%s\n", ToJson(config).c_str());
  } else {
    PrintConfiguration(config);
  }
  return kExitOk;
}

int RunDescribe(const MappingOptions& options) {
  v1::GetEventSourceMappingRequest request;
  request.set_uuid(options.uuid);
  v1::EventSourceMappingConfiguration response;
  grpc::Status status =
      Connect(options)->GetEventSourceMapping(Context().get(), request, &response);
  if (!status.ok()) return ReportError(status, options);
  return PrintResult(response, options);
}

int RunEnable(const MappingOptions& options, bool enable) {
  auto stub = Connect(options);
  v1::EventSourceMappingConfiguration response;
  grpc::Status status;
  if (enable) {
    v1::EnableEventSourceMappingRequest request;
    request.set_uuid(options.uuid);
    status = stub->EnableEventSourceMapping(Context().get(), request, &response);
  } else {
    v1::DisableEventSourceMappingRequest request;
    request.set_uuid(options.uuid);
    status = stub->DisableEventSourceMapping(Context().get(), request, &response);
  }
  if (!status.ok()) return ReportError(status, options);
  if (options.json()) return PrintResult(response, options);
  std::printf("mapping %s: %s\n", response.uuid().c_str(), response.state().c_str());
  return kExitOk;
}

// --flag true|false.
bool ParseBool(const std::string& text) { return text == "true"; }

absl::StatusOr<google::protobuf::Duration> ParseDurationFlag(const std::string& flag,
                                                             const std::string& text,
                                                             bool allow_minus_one) {
  absl::Duration duration;
  if (allow_minus_one && text == "-1") {
    duration = absl::Seconds(-1);
  } else if (!poller::ParseConfigDuration(text, &duration)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected a duration like 500ms, 5s, 1m or 7d",
                     allow_minus_one ? " (or -1)" : "", ", got '", text, "'"));
  }
  google::protobuf::Duration out;
  const int64_t nanos = absl::ToInt64Nanoseconds(duration);
  out.set_seconds(nanos / 1'000'000'000);
  out.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  return out;
}

int RunUpdate(const MappingOptions& options) {
  v1::UpdateEventSourceMappingRequest request;
  request.set_uuid(options.uuid);
  if (options.batch_size) request.set_batch_size(*options.batch_size);
  if (options.window) {
    auto window = ParseDurationFlag("--maximum-batching-window", *options.window, false);
    if (!window.ok()) {
      PrintError(std::string(window.status().message()));
      return kExitUsage;
    }
    *request.mutable_maximum_batching_window() = *window;
  }
  if (options.parallelization_factor) {
    request.set_parallelization_factor(*options.parallelization_factor);
  }
  if (options.retry_attempts) request.set_maximum_retry_attempts(*options.retry_attempts);
  if (options.max_record_age) {
    auto age = ParseDurationFlag("--max-record-age", *options.max_record_age, true);
    if (!age.ok()) {
      PrintError(std::string(age.status().message()));
      return kExitUsage;
    }
    *request.mutable_maximum_record_age() = *age;
  }
  if (options.bisect) request.set_bisect_batch_on_function_error(ParseBool(*options.bisect));
  if (options.on_failure) {
    std::string destination = *options.on_failure == "none" ? "" : *options.on_failure;
    // A relative file is relative to where the command runs, not to the poller's folder.
    if (destination.starts_with("file:") && destination.size() > 5 && destination[5] != '/') {
      destination =
          "file:" +
          (std::filesystem::current_path() / destination.substr(5)).lexically_normal().string();
    }
    request.mutable_destination_config()->mutable_on_failure()->set_destination(destination);
  }
  if (options.report_batch_item_failures) {
    request.set_report_batch_item_failures(ParseBool(*options.report_batch_item_failures));
  }
  v1::UpdateEventSourceMappingRequest empty;
  empty.set_uuid(options.uuid);
  if (request.SerializeAsString() == empty.SerializeAsString()) {
    PrintError(
        "nothing to update: give at least one of --batch-size, --maximum-batching-window, "
        "--parallelization-factor, --retry-attempts, --max-record-age, --bisect-batch-on-error, "
        "--on-failure, --report-batch-item-failures");
    return kExitUsage;
  }
  v1::EventSourceMappingConfiguration response;
  grpc::Status status =
      Connect(options)->UpdateEventSourceMapping(Context().get(), request, &response);
  if (!status.ok()) return ReportError(status, options);
  if (options.json()) return PrintResult(response, options);
  std::printf(
      "mapping %s: %s (batch %d, window %s, parallelization %d); until the poller "
      "restarts\n",
      response.uuid().c_str(), response.state().c_str(), response.batch_size(),
      Seconds(response.maximum_batching_window()).c_str(), response.parallelization_factor());
  return kExitOk;
}

int RunSeek(const MappingOptions& options) {
  if (options.all_shards == !options.shard.empty()) {
    PrintError("seek: give --shard SHARD_ID or --all-shards");
    return kExitUsage;
  }
  auto position = poller::ParseSeekPosition(options.to);
  if (!position.ok()) {
    PrintError(absl::StrCat("--to: ", position.status().message()));
    return kExitUsage;
  }
  v1::SeekEventSourceMappingRequest request;
  request.set_uuid(options.uuid);
  request.set_shard_id(options.shard);
  request.set_all_shards(options.all_shards);
  *request.mutable_position() = *position;
  v1::SeekEventSourceMappingResponse response;
  grpc::Status status =
      Connect(options)->SeekEventSourceMapping(Context().get(), request, &response);
  if (!status.ok()) return ReportError(status, options);
  if (options.json()) {
    std::printf("%s\n", ToJson(response).c_str());
    return kExitOk;
  }
  for (const auto& checkpoint : response.checkpoints()) {
    std::printf("mapping %s %s: resumes after %s\n", response.configuration().uuid().c_str(),
                checkpoint.shard_id().c_str(), checkpoint.sequence_number().c_str());
  }
  std::printf("mapping %s: %s\n", response.configuration().uuid().c_str(),
              response.configuration().state().c_str());
  return kExitOk;
}

}  // namespace

void AddMappingCommands(CLI::App& app, int* exit_code) {
  CLI::App* mapping = app.add_subcommand(
      "mapping",
      "Look at and change running event-source mappings: list, describe, enable, disable, "
      "update, seek. Talks to --poller ADDR (env RUNNEL_POLLER: a `runnel poller --listen`), "
      "else to --broker (where `runnel up` serves it).");
  mapping->require_subcommand(1);
  auto options = std::make_shared<MappingOptions>();
  if (const char* env = std::getenv("RUNNEL_POLLER"); env != nullptr && *env != '\0') {
    options->poller = env;
  }
  auto add_common = [&](CLI::App* command, bool with_uuid) {
    AddBrokerOption(*command, &options->client);
    command->add_option("--poller", options->poller,
                        "Address HOST:PORT of a `runnel poller --listen` (env RUNNEL_POLLER); "
                        "without it, --broker (`runnel up` serves mappings there)");
    AddOutputOption(*command, &options->client);
    // The spelling these commands had before every listing took --output: kept, hidden, so
    // that scripts written against it keep working while they move to --output json.
    command
        ->add_flag_callback("--json",
                            [client = &options->client] {
                              PrintError("--json is deprecated: use --output json");
                              client->output = "json";
                            })
        ->group("");
    if (with_uuid) {
      command
          ->add_option("mapping", options->uuid,
                       "The mapping: its id stream/function (see `runnel mapping list`), its "
                       "function's name, or a unique prefix of the id")
          ->required();
    }
  };
  auto run = [options, exit_code](int (*fn)(const MappingOptions&)) {
    return [options, exit_code, fn] { *exit_code = fn(*options); };
  };

  CLI::App* list = mapping->add_subcommand(
      "list", "One line per mapping: state and knobs (* marks live changes to the YAML)");
  add_common(list, false);
  list->callback(run(RunList));

  CLI::App* describe = mapping->add_subcommand(
      "describe",
      "A mapping's state, every knob, and per shard: the stored checkpoint, the iterator age "
      "(milliseconds behind the newest record at the last read), the batches in flight "
      "(first..last sequence number, record count, attempt) and the last error");
  add_common(describe, true);
  describe->callback(run(RunDescribe));

  CLI::App* enable = mapping->add_subcommand(
      "enable", absl::StrCat("Resume a disabled mapping from its checkpoints. ", kOverrideNote));
  add_common(enable, true);
  enable->callback([options, exit_code] { *exit_code = RunEnable(*options, true); });

  CLI::App* disable = mapping->add_subcommand(
      "disable",
      absl::StrCat("Pause a mapping: stop reading, let the batches in flight finish, write the "
                   "checkpoints (the position is kept; enable resumes there). ",
                   kOverrideNote));
  add_common(disable, true);
  disable->callback([options, exit_code] { *exit_code = RunEnable(*options, false); });

  CLI::App* update = mapping->add_subcommand(
      "update",
      absl::StrCat(
          "Change knobs of a running mapping, checked against the YAML's limits. An enabled "
          "mapping goes Updating: batches in flight finish, checkpoints are written, and it "
          "restarts with the new settings from them (nothing lost; at-least-once as always). ",
          kOverrideNote));
  add_common(update, true);
  update->add_option("--batch-size", options->batch_size, "1 .. 10000 (YAML batch_size)");
  update->add_option("--maximum-batching-window", options->window,
                     "0s .. 300s, e.g. 500ms, 5s (YAML maximum_batching_window)");
  update->add_option("--parallelization-factor", options->parallelization_factor,
                     "1 .. 10 concurrent batches per shard (YAML parallelization_factor)");
  update->add_option("--retry-attempts", options->retry_attempts,
                     "-1 (until the records expire) .. 10000 (YAML retry_attempts)");
  update->add_option("--max-record-age", options->max_record_age,
                     "-1 (no limit), or 60s .. 7d (YAML max_record_age)");
  update
      ->add_option("--bisect-batch-on-error", options->bisect,
                   "true | false (YAML bisect_batch_on_error)")
      ->check(CLI::IsMember({"true", "false"}));
  update->add_option("--on-failure", options->on_failure,
                     "stream:NAME | file:PATH | none (YAML on_failure; a relative PATH is "
                     "relative to this directory)");
  update
      ->add_option("--report-batch-item-failures", options->report_batch_item_failures,
                   "true | false (YAML report_batch_item_failures)")
      ->check(CLI::IsMember({"true", "false"}));
  update->callback(run(RunUpdate));

  CLI::App* seek = mapping->add_subcommand(
      "seek",
      "Move a mapping's checkpoint, for one shard or all, so that it next invokes the record at "
      "--to. Seeks write the durable checkpoints in the broker, so unlike enable/disable/update "
      "they outlast a poller restart. An enabled mapping stops (batches in flight finish), "
      "moves, and resumes; a disabled one stays disabled and resumes there when enabled.");
  add_common(seek, true);
  seek->add_option("--shard", options->shard, "One shard, e.g. shardId-000000000001");
  seek->add_flag("--all-shards", options->all_shards, "Every shard of the stream");
  seek->add_option("--to", options->to,
                   "TRIM_HORIZON (the oldest record kept) | LATEST (only records put from now "
                   "on) | AT_SEQUENCE_NUMBER:<seq> | AFTER_SEQUENCE_NUMBER:<seq> (with --shard) "
                   "| AT_TIMESTAMP:<RFC 3339 time, e.g. 2024-06-10T12:00:00Z, or epoch seconds>")
      ->required();
  seek->callback(run(RunSeek));
}

}  // namespace runnel::cli
