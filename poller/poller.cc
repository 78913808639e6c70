#include "poller/poller.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/broker_client.h"
#include "common/status_macros.h"
#include "poller/mapping_controller.h"
#include "poller/mapping_runner.h"
#include "poller/plugins.h"
#include "runnel/runtime/function.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {
namespace {

// An on_failure stream that the file does not declare is created with one shard and 7 days of
// retention (Kinesis's default is 24h): dead letters must outlive the records of their source
// stream, long enough to inspect and redrive them. deploy/order-events.yaml and README say so.
constexpr int kDestinationStreamRetentionHours = 168;

}  // namespace

class Poller::Impl {
 public:
  explicit Impl(PollerOptions options)
      : options_(std::move(options)),
        broker_(std::make_shared<client::BrokerClient>(options_.broker)) {}

  absl::Status Init() {
    const Config& config = options_.config;
    const std::vector<std::string> search =
        PluginSearchPath(options_.plugin_dirs, config.directory);
    for (const FunctionSpec& spec : config.functions) {
      runtime::FunctionConfig function = spec.config;
      if (function.plugin_path.empty()) {
        auto found = FindPlugin(function.plugin, search);
        if (!found.ok()) {
          return absl::Status(found.status().code(),
                              absl::StrCat(spec.plugin_where.ToString(), ": function ",
                                           function.name, ": ", found.status().message()));
        }
        function.plugin_path = *found;
      }
      if (function.worker_binary.empty()) function.worker_binary = options_.worker_binary;
      auto loaded = runtime::Function::Load(function);
      if (!loaded.ok()) {
        // Load's message names the function already.
        return absl::Status(loaded.status().code(), absl::StrCat(spec.plugin_where.ToString(), ": ",
                                                                 loaded.status().message()));
      }
      functions_[function.name] = std::move(*loaded);
    }
    for (const StreamSpec& stream : config.streams) {
      if (absl::Status status = EnsureStream(stream); !status.ok()) return status;
    }
    // A stream named only as an on_failure destination is created on start.
    for (const MappingSpec& mapping : config.mappings) {
      if (mapping.on_failure.kind != OnFailureDestination::Kind::kStream) continue;
      bool declared = false;
      for (const StreamSpec& stream : config.streams)
        declared |= stream.name == mapping.on_failure.target;
      if (declared) continue;
      StreamSpec destination{.name = mapping.on_failure.target,
                             .shards = 1,
                             .retention_hours = kDestinationStreamRetentionHours,
                             .where = mapping.where};
      if (absl::Status status = EnsureStream(destination, /*is_destination=*/true); !status.ok()) {
        return status;
      }
    }
    MappingControllerOptions controller_options;
    controller_options.broker = broker_;
    controller_options.region = options_.region;
    controller_options.metrics = options_.metrics;
    controller_options.config_directory = config.directory;
    controller_options.poller_id = options_.poller_id;
    controller_options.lease_duration = options_.lease_duration;
    // An update may name a new on_failure stream: created as at start-up.
    controller_options.prepare = [this](const MappingSpec& mapping) {
      if (mapping.on_failure.kind != OnFailureDestination::Kind::kStream) {
        return absl::OkStatus();
      }
      return EnsureStream(StreamSpec{.name = mapping.on_failure.target,
                                     .shards = 1,
                                     .retention_hours = kDestinationStreamRetentionHours,
                                     .where = mapping.where},
                          /*is_destination=*/true);
    };
    controller_ = std::make_unique<MappingController>(std::move(controller_options));
    for (const MappingSpec& mapping : config.mappings) {
      RETURN_IF_ERROR(controller_->Add(mapping, functions_.at(mapping.function).get()));
    }
    return absl::OkStatus();
  }

  void Stop(absl::Duration grace) {
    if (controller_) controller_->StopAll(grace);
  }

  MappingController* controller() { return controller_.get(); }

  bool FlushCheckpoints() { return controller_ == nullptr || controller_->FlushCheckpoints(); }

  std::vector<std::string> Describe() const {
    std::vector<std::string> lines;
    for (const MappingSpec& spec : controller_->Running()) {
      lines.push_back(absl::StrCat(spec.Id(), ": stream ", spec.stream, " -> function ",
                                   spec.function, " (",
                                   functions_.at(spec.function)->config().plugin_path, ")"));
    }
    return lines;
  }

 private:
  // Kinesis-style streams are created with their shard count and retention. An existing stream
  // with another shard count is refused rather than silently consumed differently; a retention
  // the file declares is applied to it, so that editing the file and restarting takes effect.
  absl::Status EnsureStream(const StreamSpec& stream, bool is_destination = false) {
    auto summary = broker_->DescribeStreamSummary(stream.name);
    if (summary.ok()) {
      const int shards = summary->open_shard_count();
      if (shards != stream.shards && !is_destination) {
        return absl::FailedPreconditionError(
            absl::StrCat(stream.where.ToString(), ": stream ", stream.name, " exists with ", shards,
                         " shards, but the file declares ", stream.shards,
                         "; change `shards` to match, or delete the stream"));
      }
      return ApplyDeclaredRetention(stream, summary->retention_period_hours());
    }
    if (!absl::IsNotFound(summary.status())) {
      return client::WithContext(summary.status(), absl::StrCat("stream ", stream.name));
    }
    if (!options_.create_streams && !is_destination) {
      return absl::NotFoundError(absl::StrCat(stream.where.ToString(), ": stream ", stream.name,
                                              " does not exist on the broker (create it with "
                                              "`runnel stream create`, or use `runnel up`)"));
    }
    v1::CreateStreamRequest create;
    create.set_stream_name(stream.name);
    create.set_shard_count(stream.shards);
    create.set_retention_period_hours(stream.retention_hours);
    auto created = broker_->CreateStream(create);
    if (!created.ok() && !absl::IsAlreadyExists(created.status())) {
      return client::WithContext(created.status(), absl::StrCat("create stream ", stream.name));
    }
    return absl::OkStatus();
  }

  absl::Status ApplyDeclaredRetention(const StreamSpec& stream, int current_hours) {
    if (!stream.retention_declared || stream.retention_hours == current_hours) {
      return absl::OkStatus();
    }
    absl::Status status;
    if (stream.retention_hours > current_hours) {
      v1::IncreaseStreamRetentionPeriodRequest request;
      request.set_stream_name(stream.name);
      request.set_retention_period_hours(stream.retention_hours);
      status = broker_->IncreaseStreamRetentionPeriod(request).status();
    } else {
      v1::DecreaseStreamRetentionPeriodRequest request;
      request.set_stream_name(stream.name);
      request.set_retention_period_hours(stream.retention_hours);
      status = broker_->DecreaseStreamRetentionPeriod(request).status();
    }
    if (!status.ok()) {
      return client::WithContext(
          status, absl::StrCat(stream.where.ToString(), ": retention of stream ", stream.name));
    }
    spdlog::info("{}: stream {}: retention changed from {}h to {}h, as the file declares",
                 stream.where.ToString(), stream.name, current_hours, stream.retention_hours);
    return absl::OkStatus();
  }

  PollerOptions options_;
  std::shared_ptr<client::BrokerClient> broker_;
  std::map<std::string, std::unique_ptr<runtime::Function>> functions_;
  // Declared after functions_, so runners stop before the functions they call go away.
  std::unique_ptr<MappingController> controller_;
};

Poller::Poller(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Poller::~Poller() = default;

absl::StatusOr<std::unique_ptr<Poller>> Poller::Start(PollerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status status = impl->Init(); !status.ok()) return status;
  return std::unique_ptr<Poller>(new Poller(std::move(impl)));
}

void Poller::Stop(absl::Duration grace) { impl_->Stop(grace); }

bool Poller::FlushCheckpoints() { return impl_->FlushCheckpoints(); }

std::vector<std::string> Poller::Describe() const { return impl_->Describe(); }

MappingController* Poller::controller() { return impl_->controller(); }

}  // namespace runnel::poller
