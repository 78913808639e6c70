// `runnel stream create|list|describe|delete|retention`: the stream control plane.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/client_util.h"
#include "cli/commands.h"

namespace runnel::cli {
namespace {

constexpr absl::Duration kControlTimeout = absl::Seconds(30);

std::string FsyncName(v1::FsyncPolicy policy) {
  switch (policy) {
    case v1::FSYNC_INTERVAL:
      return "interval";
    case v1::FSYNC_NEVER:
      return "never";
    default:
      return "always";
  }
}

std::string TimeText(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

struct CreateOptions {
  ClientOptions client;
  std::string name;
  int shards = 1;
  std::string retention = "24h";
  std::string fsync;
  bool throughput_limits = false;
};

int Create(const CreateOptions& options) {
  absl::Duration retention;
  if (!absl::ParseDuration(options.retention, &retention) ||
      retention % absl::Hours(1) != absl::ZeroDuration()) {
    PrintError(absl::StrCat("--retention: '", options.retention,
                            "' is not a whole number of hours like 24h or 168h"));
    return kExitUsage;
  }
  auto stub = ConnectBroker(options.client);
  v1::CreateStreamRequest request;
  request.set_stream_name(options.name);
  request.set_shard_count(options.shards);
  request.set_retention_period_hours(static_cast<int>(retention / absl::Hours(1)));
  if (options.fsync == "always") request.set_fsync_policy(v1::FSYNC_ALWAYS);
  if (options.fsync == "interval") request.set_fsync_policy(v1::FSYNC_INTERVAL);
  if (options.fsync == "never") request.set_fsync_policy(v1::FSYNC_NEVER);
  request.set_enforce_throughput_limits(options.throughput_limits);
  auto response = stub->CreateStream(request, {.timeout = kControlTimeout});
  if (!response.ok()) return ReportRpcError(response.status(), options.client);
  if (options.client.output == "json") {
    std::printf("{\"streamName\":%s,\"shardCount\":%d}\n", JsonString(options.name).c_str(),
                options.shards);
  } else {
    std::printf("created stream %s with %d shard%s\n", options.name.c_str(), options.shards,
                options.shards == 1 ? "" : "s");
  }
  return kExitOk;
}

absl::StatusOr<v1::StreamDescriptionSummary> Describe(client::BrokerClient& stub,
                                                      const std::string& name) {
  return stub.DescribeStreamSummary(name, {.timeout = kControlTimeout});
}

int List(const ClientOptions& options) {
  auto stub = ConnectBroker(options);
  std::vector<v1::StreamDescriptionSummary> summaries;
  std::string start;
  for (;;) {
    v1::ListStreamsRequest request;
    request.set_exclusive_start_stream_name(start);
    auto listed = stub->ListStreams(request, {.timeout = kControlTimeout});
    if (!listed.ok()) return ReportRpcError(listed.status(), options);
    const v1::ListStreamsResponse& response = *listed;
    for (const std::string& name : response.stream_names()) {
      auto summary = Describe(*stub, name);
      if (!summary.ok()) {
        if (absl::IsNotFound(summary.status())) continue;  // deleted meanwhile
        return ReportRpcError(summary.status(), options);
      }
      summaries.push_back(*summary);
      start = name;
    }
    if (!response.has_more_streams() || response.stream_names().empty()) break;
  }
  if (options.output == "json") {
    std::string out = "[";
    for (size_t i = 0; i < summaries.size(); ++i) {
      const auto& s = summaries[i];
      absl::StrAppend(
          &out, i ? "," : "", "{\"streamName\":", JsonString(s.stream_name()),
          ",\"streamARN\":", JsonString(s.stream_arn()),
          ",\"openShardCount\":", s.open_shard_count(),
          ",\"retentionPeriodHours\":", s.retention_period_hours(), ",\"streamStatus\":\"",
          v1::StreamStatus_Name(s.stream_status()),
          "\",\"streamCreationTimestamp\":", EpochSecondsText(s.stream_creation_timestamp()), "}");
    }
    std::printf("%s]\n", out.c_str());
    return kExitOk;
  }
  std::printf("%-32s %6s %10s %-8s %-8s %s\n", "NAME", "SHARDS", "RETENTION", "STATUS", "FSYNC",
              "CREATED");
  for (const auto& s : summaries) {
    std::printf("%-32s %6d %9dh %-8s %-8s %s\n", s.stream_name().c_str(), s.open_shard_count(),
                s.retention_period_hours(), v1::StreamStatus_Name(s.stream_status()).c_str(),
                FsyncName(s.fsync_policy()).c_str(),
                TimeText(s.stream_creation_timestamp()).c_str());
  }
  return kExitOk;
}

int DescribeCommand(const ClientOptions& options, const std::string& name) {
  auto stub = ConnectBroker(options);
  auto summary = Describe(*stub, name);
  if (!summary.ok()) return ReportRpcError(summary.status(), options);
  auto listed = stub->ListAllShards(name, {.timeout = kControlTimeout});
  if (!listed.ok()) return ReportRpcError(listed.status(), options);
  const std::vector<v1::Shard>& shards = *listed;

  const auto& s = *summary;
  if (options.output == "json") {
    std::string out = absl::StrCat(
        "{\"streamName\":", JsonString(s.stream_name()),
        ",\"streamARN\":", JsonString(s.stream_arn()), ",\"streamStatus\":\"",
        v1::StreamStatus_Name(s.stream_status()),
        "\",\"retentionPeriodHours\":", s.retention_period_hours(),
        ",\"streamCreationTimestamp\":", EpochSecondsText(s.stream_creation_timestamp()),
        ",\"openShardCount\":", s.open_shard_count(), ",\"fsyncPolicy\":\"",
        FsyncName(s.fsync_policy()),
        "\",\"throughputLimits\":", s.enforce_throughput_limits() ? "true" : "false",
        ",\"shards\":[");
    for (size_t i = 0; i < shards.size(); ++i) {
      const auto& shard = shards[i];
      absl::StrAppend(&out, i ? "," : "", "{\"shardId\":\"", shard.shard_id(),
                      "\",\"hashKeyRange\":{\"startingHashKey\":\"",
                      shard.hash_key_range().starting_hash_key(), "\",\"endingHashKey\":\"",
                      shard.hash_key_range().ending_hash_key(),
                      "\"},\"sequenceNumberRange\":{\"startingSequenceNumber\":\"",
                      shard.sequence_number_range().starting_sequence_number(), "\"}}");
    }
    std::printf("%s]}\n", out.c_str());
    return kExitOk;
  }
  std::printf(
      "Stream:     %s\nARN:        %s\nStatus:     %s\nRetention:  %dh\nCreated:    %s\n"
      "Fsync:      %s\nLimits:     %s\nShards:     %d\n\n",
      s.stream_name().c_str(), s.stream_arn().c_str(),
      v1::StreamStatus_Name(s.stream_status()).c_str(), s.retention_period_hours(),
      TimeText(s.stream_creation_timestamp()).c_str(), FsyncName(s.fsync_policy()).c_str(),
      s.enforce_throughput_limits() ? "Kinesis throughput limits enforced" : "off",
      s.open_shard_count());
  std::printf("%-22s %-40s %-40s\n", "SHARD", "STARTING HASH KEY", "ENDING HASH KEY");
  for (const auto& shard : shards) {
    std::printf("%-22s %-40s %-40s\n", shard.shard_id().c_str(),
                shard.hash_key_range().starting_hash_key().c_str(),
                shard.hash_key_range().ending_hash_key().c_str());
  }
  return kExitOk;
}

int Delete(const ClientOptions& options, const std::string& name) {
  auto stub = ConnectBroker(options);
  v1::DeleteStreamRequest request;
  request.set_stream_name(name);
  auto deleted = stub->DeleteStream(request, {.timeout = kControlTimeout});
  if (!deleted.ok()) return ReportRpcError(deleted.status(), options);
  if (options.output != "json") std::printf("deleted stream %s\n", name.c_str());
  return kExitOk;
}

int Retention(const ClientOptions& options, const std::string& name, const std::string& value) {
  absl::Duration retention;
  if (!absl::ParseDuration(value, &retention) ||
      retention % absl::Hours(1) != absl::ZeroDuration()) {
    PrintError(absl::StrCat("retention: '", value, "' is not a whole number of hours like 48h"));
    return kExitUsage;
  }
  const int hours = static_cast<int>(retention / absl::Hours(1));
  auto stub = ConnectBroker(options);
  auto summary = Describe(*stub, name);
  if (!summary.ok()) return ReportRpcError(summary.status(), options);
  absl::Status status;
  if (hours >= summary->retention_period_hours()) {
    v1::IncreaseStreamRetentionPeriodRequest request;
    request.set_stream_name(name);
    request.set_retention_period_hours(hours);
    status = stub->IncreaseStreamRetentionPeriod(request, {.timeout = kControlTimeout}).status();
  } else {
    v1::DecreaseStreamRetentionPeriodRequest request;
    request.set_stream_name(name);
    request.set_retention_period_hours(hours);
    status = stub->DecreaseStreamRetentionPeriod(request, {.timeout = kControlTimeout}).status();
  }
  if (!status.ok()) return ReportRpcError(status, options);
  if (options.output != "json")
    std::printf("stream %s keeps records for %dh\n", name.c_str(), hours);
  return kExitOk;
}

}  // namespace

void AddStreamCommands(CLI::App& app, int* exit_code) {
  CLI::App* stream = app.add_subcommand("stream", "Create, list, describe and delete streams");
  stream->require_subcommand(1);

  auto create = std::make_shared<CreateOptions>();
  CLI::App* create_command = stream->add_subcommand("create", "Create a stream");
  create_command->add_option("NAME", create->name, "Stream name ([a-zA-Z0-9_.-], 1-128)")
      ->required();
  create_command->add_option("--shards", create->shards, "Number of shards")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  create_command
      ->add_option("--retention", create->retention,
                   "How long records are kept, whole hours from 24h to 8760h")
      ->capture_default_str();
  create_command
      ->add_option("--fsync", create->fsync,
                   "always|interval|never (default: the broker's --fsync)")
      ->check(CLI::IsMember({"always", "interval", "never"}));
  create_command->add_flag("--throughput-limits", create->throughput_limits,
                           "Enforce Kinesis's per-shard throughput limits on this stream");
  AddBrokerOption(*create_command, &create->client);
  AddOutputOption(*create_command, &create->client);
  create_command->callback([create, exit_code] { *exit_code = Create(*create); });

  auto list = std::make_shared<ClientOptions>();
  CLI::App* list_command = stream->add_subcommand("list", "List streams");
  AddBrokerOption(*list_command, list.get());
  AddOutputOption(*list_command, list.get());
  list_command->callback([list, exit_code] { *exit_code = List(*list); });

  auto describe = std::make_shared<std::pair<ClientOptions, std::string>>();
  CLI::App* describe_command =
      stream->add_subcommand("describe", "Show a stream's settings and shards");
  describe_command->add_option("NAME", describe->second, "Stream name")->required();
  AddBrokerOption(*describe_command, &describe->first);
  AddOutputOption(*describe_command, &describe->first);
  describe_command->callback(
      [describe, exit_code] { *exit_code = DescribeCommand(describe->first, describe->second); });

  auto remove = std::make_shared<std::pair<ClientOptions, std::string>>();
  CLI::App* delete_command =
      stream->add_subcommand("delete", "Delete a stream, its records and its checkpoints");
  delete_command->add_option("NAME", remove->second, "Stream name")->required();
  AddBrokerOption(*delete_command, &remove->first);
  AddOutputOption(*delete_command, &remove->first);
  delete_command->callback(
      [remove, exit_code] { *exit_code = Delete(remove->first, remove->second); });

  auto retention = std::make_shared<std::tuple<ClientOptions, std::string, std::string>>();
  CLI::App* retention_command = stream->add_subcommand(
      "retention", "Change how long a stream keeps records (Increase/DecreaseStreamRetention)");
  retention_command->add_option("NAME", std::get<1>(*retention), "Stream name")->required();
  retention_command->add_option("RETENTION", std::get<2>(*retention), "e.g. 48h")->required();
  AddBrokerOption(*retention_command, &std::get<0>(*retention));
  AddOutputOption(*retention_command, &std::get<0>(*retention));
  retention_command->callback([retention, exit_code] {
    *exit_code =
        Retention(std::get<0>(*retention), std::get<1>(*retention), std::get<2>(*retention));
  });
}

}  // namespace runnel::cli
