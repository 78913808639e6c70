// Opening a data directory, and the broker-wide parts: metrics, the clock, ARNs.
#include "broker/broker.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "broker/broker_internal.h"
#include "broker/checkpoint_store.h"
#include "broker/metrics.h"
#include "common/scheduler.h"
#include "common/status_macros.h"
#include "google/protobuf/text_format.h"
#include "runnel/storage/v1/metadata.pb.h"
#include "spdlog/spdlog.h"

namespace runnel::broker {

namespace fs = std::filesystem;

Broker::Broker(BrokerOptions options, DirectoryLock lock)
    : options_(std::move(options)),
      metrics_(options_.metrics ? BrokerMetrics::Create(options_.metrics) : nullptr),
      lock_(std::move(lock)),
      scheduler_(new Scheduler(2)) {}

void Broker::AttachMetrics(Stream& stream) {
  if (metrics_ == nullptr) return;
  stream.metrics = metrics_->ForStream(stream.name);
  for (auto& shard : stream.shards) shard->metrics = metrics_->ForShard(stream.name, shard->id);
}

void Broker::UpdateMetrics() {
  if (metrics_ == nullptr) return;
  std::vector<std::shared_ptr<Stream>> streams;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, stream] : streams_) streams.push_back(stream);
  }
  for (const auto& stream : streams) {
    for (const auto& shard : stream->shards) {
      if (shard->metrics && shard->log) {
        shard->metrics->disk_bytes->Set(static_cast<double>(shard->log->DiskBytes()));
      }
    }
  }
}

Broker::~Broker() {
  // Stop the timers and wake-ups first: they refer to streams and to this broker.
  scheduler_.reset();
  {
    absl::MutexLock lock(&waits_mu_);
    waiting_reads_.clear();
  }
  absl::MutexLock lock(&mu_);
  streams_.clear();  // closes every shard log: pending appends complete, files are synced
}

int64_t Broker::NowMs() const {
  return absl::ToUnixMillis(options_.clock ? options_.clock() : absl::Now());
}

std::string Broker::StreamArn(const std::string& stream_name) const {
  return absl::StrCat("arn:aws:kinesis:", options_.region, ":", options_.account_id, ":stream/",
                      stream_name);
}

absl::Status Broker::ReconcileCheckpoints() {
  absl::flat_hash_map<std::string, uint64_t> live;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, stream] : streams_) live[name] = stream->incarnation;
  }
  ASSIGN_OR_RETURN(CheckpointStore::ReconcileResult result, checkpoints_->Reconcile(live));
  if (result.deleted > 0) {
    spdlog::info(
        "checkpoints: deleted {} checkpoints and leases of streams that no longer exist (left by "
        "a stream delete that a stop interrupted, or written while one ran)",
        result.deleted);
  }
  if (result.stamped > 0) {
    spdlog::info("checkpoints: recorded the stream incarnation in {} older checkpoints",
                 result.stamped);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Broker>> Broker::Open(BrokerOptions options) {
  std::error_code ec;
  fs::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create data directory ", options.data_dir, ": ", ec.message()));
  }
  ASSIGN_OR_RETURN(DirectoryLock lock,
                   DirectoryLock::Acquire((fs::path(options.data_dir) / "LOCK").string()));

  const std::string manifest_path = (fs::path(options.data_dir) / "MANIFEST").string();
  if (fs::exists(manifest_path)) {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(manifest_path));
    storage::v1::Manifest manifest;
    if (!google::protobuf::TextFormat::ParseFromString(text, &manifest)) {
      return absl::DataLossError(absl::StrCat(manifest_path, " is unreadable"));
    }
    if (manifest.format_version() != kDataFormatVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory ", options.data_dir, " has format version ", manifest.format_version(),
          "; this runnel reads version ", kDataFormatVersion, " only"));
    }
  } else {
    for (const auto& entry : fs::directory_iterator(options.data_dir)) {
      if (entry.path().filename() != "LOCK") {
        return absl::FailedPreconditionError(absl::StrCat(
            "data directory ", options.data_dir,
            " is not empty and has no MANIFEST: refusing to use a folder runnel did not create"));
      }
    }
    storage::v1::Manifest manifest;
    manifest.set_format_version(kDataFormatVersion);
    manifest.set_created_by("runnel");
    manifest.set_creation_time_ms(absl::ToUnixMillis(absl::Now()));
    std::string text;
    google::protobuf::TextFormat::PrintToString(manifest, &text);
    RETURN_IF_ERROR(WriteFileAtomically(manifest_path, text));
  }

  std::unique_ptr<Broker> broker(new Broker(std::move(options), std::move(lock)));
  RETURN_IF_ERROR(broker->LoadStreams());
  ASSIGN_OR_RETURN(
      broker->checkpoints_,
      CheckpointStore::Open((fs::path(broker->options_.data_dir) / "checkpoints").string()));
  RETURN_IF_ERROR(broker->ReconcileCheckpoints());
  broker->ScheduleRetention();
  return broker;
}

}  // namespace runnel::broker
