// The control plane: loading, creating, deleting, listing and describing streams; retention.
#include "broker/broker.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/broker_internal.h"
#include "broker/checkpoint_store.h"
#include "broker/iterator.h"
#include "broker/metrics.h"
#include "broker/sequence_number.h"
#include "broker/shard_log.h"
#include "broker/throughput.h"
#include "common/hash_key.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "common/status_macros.h"
#include "google/protobuf/text_format.h"
#include "runnel/storage/v1/metadata.pb.h"
#include "spdlog/spdlog.h"

namespace runnel::broker {

namespace fs = std::filesystem;

namespace {

std::string RandomSuffix() {
  static std::atomic<uint64_t> counter{0};
  std::random_device device;
  return absl::StrFormat("%08x%04x", device(), counter.fetch_add(1) & 0xffff);
}

absl::Status RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", path, ": ", ec.message()));
  return absl::OkStatus();
}

// Empties `dir` (creating it if need be), one log line per entry removed.
absl::Status RemoveLeftovers(const fs::path& dir, std::string_view left_by) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", dir.string(), ": ", ec.message()));
  for (const auto& entry : fs::directory_iterator(dir)) {
    spdlog::warn("removing {}, left by an interrupted {}", entry.path().string(), left_by);
    RETURN_IF_ERROR(RemoveTree(entry.path().string()));
  }
  return absl::OkStatus();
}

// The folder under streams/ that holds a stream. Every valid name is its own folder name except
// "." and "..", which name folders that already exist; '%' is never in a stream name, so their
// spelling cannot collide with another stream's.
std::string StreamFolderName(const std::string& stream_name) {
  if (stream_name == ".") return "%2E";
  if (stream_name == "..") return "%2E%2E";
  return stream_name;
}

// Whether `folder` holds the stream.meta of the stream whose folder it is.
bool NamesItself(const fs::path& folder) {
  auto text = ReadFileToString((folder / "stream.meta").string());
  storage::v1::StreamMetadata meta;
  return text.ok() && google::protobuf::TextFormat::ParseFromString(*text, &meta) &&
         StreamFolderName(meta.stream_name()) == folder.filename().string();
}

}  // namespace

absl::Status Broker::OpenShardLog(const Stream& stream, ShardState& shard,
                                  const std::string& directory) {
  ShardLogOptions log_options;
  log_options.directory = directory;
  log_options.name = absl::StrCat(stream.name, "/", shard.id);
  log_options.fsync = ToFsyncMode(stream.fsync_policy);
  log_options.fsync_interval = options_.fsync_interval;
  log_options.segment_bytes = options_.segment_bytes;
  if (options_.clock) log_options.now_ms = [this] { return NowMs(); };
  ASSIGN_OR_RETURN(shard.log, ShardLog::Open(std::move(log_options)));
  return absl::OkStatus();
}

absl::Status Broker::LoadStreams() {
  const fs::path data_dir(options_.data_dir);
  const fs::path streams_dir = data_dir / "streams";
  // What a crash left in the folders beside streams/: half-built streams and half-deleted ones.
  RETURN_IF_ERROR(RemoveLeftovers(data_dir / "scratch", "stream creation"));
  RETURN_IF_ERROR(RemoveLeftovers(data_dir / "trash", "stream deletion"));
  std::error_code ec;
  fs::create_directories(streams_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("create ", streams_dir.string(), ": ", ec.message()));
  for (const auto& entry : fs::directory_iterator(streams_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(".creating-") && !NamesItself(entry.path())) {
      // Brokers before scratch/ existed built streams in streams/.creating-*: such a folder is
      // an interrupted creation unless its metadata says it is the stream of that name.
      spdlog::warn("removing {}, left by an interrupted stream creation", entry.path().string());
      RETURN_IF_ERROR(RemoveTree(entry.path().string()));
      continue;
    }
    const std::string meta_path = (entry.path() / "stream.meta").string();
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(meta_path));
    storage::v1::StreamMetadata meta;
    if (!google::protobuf::TextFormat::ParseFromString(text, &meta) ||
        StreamFolderName(meta.stream_name()) != name) {
      return absl::DataLossError(absl::StrCat(meta_path, " is unreadable"));
    }
    auto stream = std::make_shared<Stream>();
    stream->name = meta.stream_name();
    stream->directory = entry.path().string();
    stream->incarnation = meta.incarnation();
    stream->creation_time_ms = meta.creation_time_ms();
    stream->fsync_policy = meta.fsync_policy();
    stream->enforce_throughput_limits = meta.enforce_throughput_limits();
    stream->retention_hours = meta.retention_period_hours();
    for (const auto& shard_meta : meta.shards()) {
      auto shard = std::make_unique<ShardState>();
      shard->index = shard_meta.index();
      shard->id = ShardIdFromIndex(shard_meta.index());
      ASSIGN_OR_RETURN(shard->range.start,
                       ParseHashKey(shard_meta.starting_hash_key(), "startingHashKey"));
      ASSIGN_OR_RETURN(shard->range.end,
                       ParseHashKey(shard_meta.ending_hash_key(), "endingHashKey"));
      shard->parent_shard_id = shard_meta.parent_shard_id();
      shard->adjacent_parent_shard_id = shard_meta.adjacent_parent_shard_id();
      RETURN_IF_ERROR(OpenShardLog(*stream, *shard, (entry.path() / shard->id).string()));
      stream->shards.push_back(std::move(shard));
    }
    AttachMetrics(*stream);
    absl::MutexLock lock(&mu_);
    streams_[stream->name] = std::move(stream);
  }
  return absl::OkStatus();
}

absl::Status Broker::SaveMetadata(const Stream& stream) {
  storage::v1::StreamMetadata meta;
  meta.set_stream_name(stream.name);
  meta.set_incarnation(stream.incarnation);
  meta.set_creation_time_ms(stream.creation_time_ms);
  meta.set_retention_period_hours(stream.retention_hours.load());
  meta.set_fsync_policy(stream.fsync_policy);
  meta.set_enforce_throughput_limits(stream.enforce_throughput_limits);
  for (const auto& shard : stream.shards) {
    auto* shard_meta = meta.add_shards();
    shard_meta->set_index(shard->index);
    shard_meta->set_starting_hash_key(FormatHashKey(shard->range.start));
    shard_meta->set_ending_hash_key(FormatHashKey(shard->range.end));
    shard_meta->set_parent_shard_id(shard->parent_shard_id);
    shard_meta->set_adjacent_parent_shard_id(shard->adjacent_parent_shard_id);
  }
  std::string text;
  google::protobuf::TextFormat::PrintToString(meta, &text);
  return WriteFileAtomically((fs::path(stream.directory) / "stream.meta").string(), text);
}

absl::StatusOr<std::shared_ptr<Stream>> Broker::FindStream(const std::string& name) const {
  {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(name);
    if (it != streams_.end()) return it->second;
  }
  RETURN_IF_ERROR(ValidateStreamName(name));
  return absl::NotFoundError(absl::StrCat("ResourceNotFoundException: Stream ", name,
                                          " under account ", options_.account_id, " not found."));
}

absl::StatusOr<std::shared_ptr<Stream>> Broker::FindStream(const std::string& name,
                                                           uint64_t incarnation) const {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(name));
  if (incarnation != 0 && stream->incarnation != incarnation) {
    return absl::NotFoundError(absl::StrCat(
        "ResourceNotFoundException: Stream ", name, " under account ", options_.account_id,
        " not found: incarnation ", incarnation,
        " was deleted (the stream of that name now is incarnation ", stream->incarnation, ")"));
  }
  return stream;
}

absl::StatusOr<ShardState*> Broker::FindShard(const Stream& stream,
                                              const std::string& shard_id) const {
  uint32_t index;
  if (ParseShardId(shard_id, &index) && index < stream.shards.size()) {
    return stream.shards[index].get();
  }
  return absl::NotFoundError(absl::StrCat("ResourceNotFoundException: Shard ", shard_id,
                                          " in stream ", stream.name, " under account ",
                                          options_.account_id, " does not exist"));
}

absl::Status Broker::CreateStream(const v1::CreateStreamRequest& request) {
  RETURN_IF_ERROR(ValidateStreamName(request.stream_name()));
  if (request.shard_count() < 1 || request.shard_count() > kMaxShardsPerStream) {
    return ValidationError("shardCount", std::to_string(request.shard_count()),
                           absl::StrCat("Member must be between 1 and ", kMaxShardsPerStream));
  }
  const int retention =
      request.retention_period_hours() == 0 ? 24 : request.retention_period_hours();
  RETURN_IF_ERROR(ValidateRetention(retention, "retentionPeriodHours"));

  absl::MutexLock control(&control_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (streams_.contains(request.stream_name())) {
      return absl::AlreadyExistsError(absl::StrCat("ResourceInUseException: Stream ",
                                                   request.stream_name(), " under account ",
                                                   options_.account_id, " already exists."));
    }
  }
  // Build the stream in scratch/ and rename it into streams/, so a crash leaves either no stream
  // or a whole one. scratch/ and trash/ sit beside streams/, so no stream name is taken.
  const fs::path data_dir(options_.data_dir);
  const fs::path streams_dir = data_dir / "streams";
  const fs::path scratch = data_dir / "scratch" / RandomSuffix();
  const fs::path final_dir = streams_dir / StreamFolderName(request.stream_name());
  auto stream = std::make_shared<Stream>();
  stream->name = request.stream_name();
  stream->directory = scratch.string();
  std::random_device device;
  stream->incarnation = (static_cast<uint64_t>(device()) << 32) | device();
  if (stream->incarnation == 0) stream->incarnation = 1;  // 0 means "any" in requests
  stream->creation_time_ms = NowMs();
  stream->fsync_policy = request.fsync_policy() == v1::FSYNC_POLICY_UNSPECIFIED
                             ? options_.default_fsync
                             : request.fsync_policy();
  stream->enforce_throughput_limits = request.enforce_throughput_limits();
  stream->retention_hours = retention;
  std::vector<HashKeyRangeValue> ranges = SplitHashKeySpace(request.shard_count());
  for (int i = 0; i < request.shard_count(); ++i) {
    auto shard = std::make_unique<ShardState>();
    shard->index = static_cast<uint32_t>(i);
    shard->id = ShardIdFromIndex(shard->index);
    shard->range = ranges[static_cast<size_t>(i)];
    stream->shards.push_back(std::move(shard));
  }
  auto remove_scratch = [&](absl::Status status) {
    (void)RemoveTree(scratch.string());
    return status;
  };
  std::error_code ec;
  fs::create_directories(scratch, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", scratch.string(), ": ", ec.message()));
  if (absl::Status s = SaveMetadata(*stream); !s.ok()) return remove_scratch(s);
  for (auto& shard : stream->shards) {
    fs::create_directories(scratch / shard->id, ec);
    if (ec) {
      return remove_scratch(absl::InternalError(
          absl::StrCat("create ", (scratch / shard->id).string(), ": ", ec.message())));
    }
  }
  if (absl::Status s = FsyncDirectory(scratch.string()); !s.ok()) return remove_scratch(s);
  fs::rename(scratch, final_dir, ec);
  if (ec) {
    return remove_scratch(
        absl::InternalError(absl::StrCat("rename to ", final_dir.string(), ": ", ec.message())));
  }
  // From here the folder is in streams/: a failure must take it out again through the trash, or
  // the next start would load a stream whose creation was refused.
  auto abandon = [&](absl::Status status) {
    const fs::path doomed =
        data_dir / "trash" / absl::StrCat(stream->name, "-", stream->incarnation);
    std::error_code rename_ec;
    fs::rename(final_dir, doomed, rename_ec);
    if (rename_ec || !FsyncDirectory(streams_dir.string()).ok() ||
        !RemoveTree(doomed.string()).ok()) {
      spdlog::error("creating stream {} failed and {} could not be removed; delete it by hand",
                    stream->name, rename_ec ? final_dir.string() : doomed.string());
    }
    return status;
  };
  if (absl::Status s = FsyncDirectory(streams_dir.string()); !s.ok()) return abandon(s);
  stream->directory = final_dir.string();
  for (auto& shard : stream->shards) {
    if (absl::Status s = OpenShardLog(*stream, *shard, (final_dir / shard->id).string()); !s.ok()) {
      for (auto& opened : stream->shards) opened->log.reset();
      return abandon(s);
    }
  }
  ScopedLogTags tags{{kTagComponent, "broker"}, {kTagStream, stream->name}};
  spdlog::info("created stream {} with {} shards, retention {}h", stream->name,
               stream->shards.size(), retention);
  AttachMetrics(*stream);
  absl::MutexLock lock(&mu_);
  streams_[stream->name] = std::move(stream);
  return absl::OkStatus();
}

absl::Status Broker::DeleteStream(const v1::DeleteStreamRequest& request) {
  absl::MutexLock control(&control_mu_);
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(request.stream_name()));
  {
    absl::MutexLock lock(&mu_);
    streams_.erase(stream->name);
  }
  stream->deleted = true;
  // Move the folder out of the way at once (the name is free again), delete it after. Open
  // files keep working for reads still in flight.
  const fs::path trash = fs::path(options_.data_dir) / "trash";
  std::error_code ec;
  const fs::path doomed = trash / absl::StrCat(stream->name, "-", stream->incarnation);
  fs::rename(stream->directory, doomed, ec);
  if (ec) return absl::InternalError(absl::StrCat("move ", stream->directory, ": ", ec.message()));
  RETURN_IF_ERROR(FsyncDirectory((fs::path(options_.data_dir) / "streams").string()));
  RETURN_IF_ERROR(checkpoints_->Delete("", stream->name, "").status());
  RETURN_IF_ERROR(RemoveTree(doomed.string()));
  ScopedLogTags tags{{kTagComponent, "broker"}, {kTagStream, stream->name}};
  spdlog::info("deleted stream {}", stream->name);
  return absl::OkStatus();
}

absl::StatusOr<v1::ListStreamsResponse> Broker::ListStreams(const v1::ListStreamsRequest& request) {
  if (request.limit() < 0 || request.limit() > 10'000) {
    return ValidationError("limit", std::to_string(request.limit()),
                           "Member must be between 1 and 10000");
  }
  std::vector<std::shared_ptr<Stream>> streams;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, stream] : streams_) streams.push_back(stream);
  }
  std::sort(streams.begin(), streams.end(),
            [](const auto& a, const auto& b) { return a->name < b->name; });
  v1::ListStreamsResponse response;
  for (const auto& stream : streams) {
    if (!request.exclusive_start_stream_name().empty() &&
        stream->name <= request.exclusive_start_stream_name()) {
      continue;
    }
    if (request.limit() > 0 && response.stream_names_size() >= request.limit()) {
      response.set_has_more_streams(true);
      break;
    }
    response.add_stream_names(stream->name);
    auto* summary = response.add_stream_summaries();
    summary->set_stream_name(stream->name);
    summary->set_stream_arn(StreamArn(stream->name));
    summary->set_stream_status(v1::ACTIVE);
    *summary->mutable_stream_creation_timestamp() = MillisToProto(stream->creation_time_ms);
    summary->set_incarnation(stream->incarnation);
  }
  return response;
}

absl::StatusOr<v1::DescribeStreamSummaryResponse> Broker::DescribeStreamSummary(
    const v1::DescribeStreamSummaryRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(request.stream_name()));
  v1::DescribeStreamSummaryResponse response;
  auto* summary = response.mutable_stream_description_summary();
  summary->set_stream_name(stream->name);
  summary->set_stream_arn(StreamArn(stream->name));
  summary->set_stream_status(v1::ACTIVE);
  summary->set_retention_period_hours(stream->retention_hours.load());
  *summary->mutable_stream_creation_timestamp() = MillisToProto(stream->creation_time_ms);
  summary->set_open_shard_count(static_cast<int>(stream->shards.size()));
  summary->set_encryption_type("NONE");
  summary->set_fsync_policy(stream->fsync_policy);
  summary->set_enforce_throughput_limits(stream->enforce_throughput_limits ||
                                         options_.enforce_throughput_limits);
  summary->set_incarnation(stream->incarnation);
  return response;
}

absl::StatusOr<v1::ListShardsResponse> Broker::ListShards(const v1::ListShardsRequest& request) {
  // NextToken carries the stream name and the last shard listed; Kinesis forbids naming the
  // stream beside it.
  std::string stream_name = request.stream_name();
  std::string after = request.exclusive_start_shard_id();
  uint64_t incarnation = request.incarnation();
  if (!request.next_token().empty()) {
    if (!request.stream_name().empty() || !request.exclusive_start_shard_id().empty()) {
      return absl::InvalidArgumentError(
          "InvalidArgumentException: NextToken and StreamName or ExclusiveStartShardId cannot "
          "be provided together.");
    }
    ASSIGN_OR_RETURN(IteratorToken token, DecodeIterator(request.next_token()));
    if (NowMs() - token.issued_ms > kIteratorLifetimeMs) {
      return absl::FailedPreconditionError(
          "ExpiredNextTokenException: The timestamp of the NextToken is older than 300 seconds.");
    }
    stream_name = token.stream_name;
    after = ShardIdFromIndex(token.shard_index);
    // A token names one stream: the next page of a deleted one is not its successor's.
    if (incarnation != 0 && incarnation != token.incarnation) {
      return absl::InvalidArgumentError(
          "InvalidArgumentException: NextToken belongs to another incarnation of the stream than "
          "the one requested.");
    }
    incarnation = token.incarnation;
  }
  if (request.max_results() < 0 || request.max_results() > 10'000) {
    return ValidationError("maxResults", std::to_string(request.max_results()),
                           "Member must be between 1 and 10000");
  }
  const int max_results = request.max_results() == 0 ? 1000 : std::min(request.max_results(), 1000);
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(stream_name, incarnation));
  v1::ListShardsResponse response;
  for (const auto& shard : stream->shards) {
    if (!after.empty() && shard->id <= after) continue;
    if (response.shards_size() >= max_results) {
      IteratorToken token;
      token.stream_name = stream->name;
      token.incarnation = stream->incarnation;
      token.shard_index = stream->shards[shard->index - 1]->index;
      token.issued_ms = NowMs();
      response.set_next_token(EncodeIterator(token));
      break;
    }
    auto* out = response.add_shards();
    out->set_shard_id(shard->id);
    out->set_parent_shard_id(shard->parent_shard_id);
    out->set_adjacent_parent_shard_id(shard->adjacent_parent_shard_id);
    out->mutable_hash_key_range()->set_starting_hash_key(FormatHashKey(shard->range.start));
    out->mutable_hash_key_range()->set_ending_hash_key(FormatHashKey(shard->range.end));
    out->mutable_sequence_number_range()->set_starting_sequence_number(
        FormatSequenceNumber(0, shard->index));
  }
  return response;
}

absl::Status Broker::UpdateRetention(const std::string& stream_name, int hours, bool increase) {
  const char* field = "retentionPeriodHours";
  RETURN_IF_ERROR(ValidateRetention(hours, field));
  absl::MutexLock control(&control_mu_);
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(stream_name));
  const int current = stream->retention_hours.load();
  if (increase && hours < current) {
    return absl::InvalidArgumentError(absl::StrCat(
        "InvalidArgumentException: Requested retention period (", hours, " hours) for stream ",
        stream_name, " can not be shorter than existing retention period (", current,
        " hours). Use DecreaseRetentionPeriod API."));
  }
  if (!increase && hours > current) {
    return absl::InvalidArgumentError(absl::StrCat(
        "InvalidArgumentException: Requested retention period (", hours, " hours) for stream ",
        stream_name, " can not be longer than existing retention period (", current,
        " hours). Use IncreaseRetentionPeriod API."));
  }
  stream->retention_hours = hours;
  RETURN_IF_ERROR(SaveMetadata(*stream));
  if (hours != current) {
    ScopedLogTags tags{{kTagComponent, "broker"}, {kTagStream, stream->name}};
    spdlog::info("stream {}: retention is now {}h (was {}h)", stream->name, hours, current);
  }
  if (!increase) EnforceRetention();
  return absl::OkStatus();
}

absl::Status Broker::IncreaseStreamRetentionPeriod(
    const v1::IncreaseStreamRetentionPeriodRequest& request) {
  return UpdateRetention(request.stream_name(), request.retention_period_hours(), true);
}

absl::Status Broker::DecreaseStreamRetentionPeriod(
    const v1::DecreaseStreamRetentionPeriodRequest& request) {
  return UpdateRetention(request.stream_name(), request.retention_period_hours(), false);
}

int64_t Broker::RetentionCutoffMs(const Stream& stream) const {
  return NowMs() - static_cast<int64_t>(stream.retention_hours.load()) * 3'600'000;
}

void Broker::EnforceRetention() {
  std::vector<std::shared_ptr<Stream>> streams;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, stream] : streams_) streams.push_back(stream);
  }
  for (const auto& stream : streams) {
    const int64_t cutoff = RetentionCutoffMs(*stream);
    for (const auto& shard : stream->shards) {
      auto deleted = shard->log->DeleteSegmentsBefore(cutoff);
      if (!deleted.ok()) {
        spdlog::error("retention on {}: {}", shard->log->name(), deleted.status().ToString());
      } else if (*deleted > 0) {
        spdlog::info("retention: deleted {} expired segments of {}", *deleted, shard->log->name());
      }
    }
  }
}

void Broker::ScheduleRetention() {
  scheduler_->PostAt(absl::Now() + options_.retention_check_interval, [this] {
    EnforceRetention();
    ScheduleRetention();
  });
}

}  // namespace runnel::broker
