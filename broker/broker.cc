#include "broker/broker.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <random>
#include <span>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/checkpoint_store.h"
#include "broker/iterator.h"
#include "broker/message_pool.h"
#include "broker/metrics.h"
#include "broker/sequence_number.h"
#include "broker/shard_log.h"
#include "broker/throughput.h"
#include "common/hash_key.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/time_util.h"
#include "runnel/storage/v1/metadata.pb.h"
#include "spdlog/spdlog.h"

namespace runnel::broker {

namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

// Kinesis limits (docs/aws-semantics.md#limits, #retention).
inline constexpr int kMaxRecordsPerPut = 500;
inline constexpr size_t kMaxPutRecordsBytes = 5u << 20;
inline constexpr size_t kMaxRecordBytes = 1u << 20;  // data + partition key
inline constexpr int kMaxPartitionKeyChars = 256;
inline constexpr int kMaxStreamNameLength = 128;
inline constexpr int kMinRetentionHours = 24;
inline constexpr int kMaxRetentionHours = 8760;
inline constexpr int kMaxGetRecordsLimit = 10'000;
inline constexpr size_t kMaxGetRecordsBytes = 10u << 20;
// One writer thread per shard bounds how many a broker can carry well.
inline constexpr int kMaxShardsPerStream = 1024;
inline constexpr absl::Duration kMaxWaitTime = absl::Seconds(20);
// A subscription sends an event at least this often, records or not.
inline constexpr absl::Duration kSubscriptionHeartbeat = absl::Seconds(2);

struct ShardState {
  uint32_t index = 0;
  std::string id;
  HashKeyRangeValue range;
  std::string parent_shard_id;
  std::string adjacent_parent_shard_id;
  // Before `log`: the log's destructor completes pending appends, whose callbacks count.
  std::shared_ptr<ShardMetrics> metrics;  // null: metrics off
  std::unique_ptr<ShardLog> log;
  ShardThroughput throughput;
};

struct Stream {
  std::string name;
  std::string directory;
  uint64_t incarnation = 0;
  int64_t creation_time_ms = 0;
  v1::FsyncPolicy fsync_policy = v1::FSYNC_ALWAYS;
  bool enforce_throughput_limits = false;
  std::atomic<int> retention_hours{24};
  std::vector<std::unique_ptr<ShardState>> shards;  // by index; ranges ascending
  std::atomic<bool> deleted{false};
  std::shared_ptr<StreamMetrics> metrics;  // null: metrics off

  ShardState& Route(absl::uint128 hash_key) const {
    auto it = std::upper_bound(shards.begin(), shards.end(), hash_key,
                               [](absl::uint128 key, const std::unique_ptr<ShardState>& s) {
                                 return key < s->range.start;
                               });
    return **std::prev(it);
  }
};

namespace {

absl::Status ValidationError(std::string_view field, std::string_view value,
                             std::string_view constraint) {
  std::string shown(value.substr(0, 256));
  return absl::InvalidArgumentError(absl::StrFormat(
      "ValidationException: 1 validation error detected: Value '%s' at '%s' failed to satisfy "
      "constraint: %s",
      shown, field, constraint));
}

absl::Status ValidateStreamName(const std::string& name, std::string_view field = "streamName") {
  if (name.empty()) {
    return ValidationError(field, name, "Member must have length greater than or equal to 1");
  }
  if (name.size() > kMaxStreamNameLength) {
    return ValidationError(field, name, "Member must have length less than or equal to 128");
  }
  for (char c : name) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      return ValidationError(field, name,
                             "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
    }
  }
  if (name == "." || name == "..") {
    return ValidationError(field, name, "'.' and '..' are reserved (they name folders)");
  }
  return absl::OkStatus();
}

// Kinesis counts partition keys in Unicode characters: count UTF-8 lead bytes.
int Utf8Length(std::string_view text) {
  int count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;
  return count;
}

absl::Status ValidateRetention(int hours, std::string_view field) {
  if (hours < kMinRetentionHours || hours > kMaxRetentionHours) {
    return absl::InvalidArgumentError(
        absl::StrCat("InvalidArgumentException: ", Sv(field), " ", hours,
                     " is out of range: retention must be between 24 and 8760 hours"));
  }
  return absl::OkStatus();
}

FsyncMode ToFsyncMode(v1::FsyncPolicy policy) {
  switch (policy) {
    case v1::FSYNC_INTERVAL:
      return FsyncMode::kInterval;
    case v1::FSYNC_NEVER:
      return FsyncMode::kNever;
    default:
      return FsyncMode::kAlways;
  }
}

google::protobuf::Timestamp MillisToProto(int64_t ms) {
  return TimeUtil::MillisecondsToTimestamp(ms);
}

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

// Protobuf 3.21's set_x(const char*, size_t) builds a temporary std::string (an allocation past
// 15 bytes) and copies it; mutable_x()->assign() copies once, into a recycled message's storage.
void FillRecord(const RecordView& view, uint32_t shard_index, v1::Record* record) {
  char sequence[kSequenceNumberLength];
  FormatSequenceNumberTo(view.offset, shard_index, sequence);
  record->mutable_sequence_number()->assign(sequence, kSequenceNumberLength);
  // Set the fields in place: assigning the Timestamp would copy a whole message.
  const google::protobuf::Timestamp arrival = MillisToProto(view.arrival_ms);
  auto* timestamp = record->mutable_approximate_arrival_timestamp();
  timestamp->set_seconds(arrival.seconds());
  timestamp->set_nanos(arrival.nanos());
  record->mutable_data()->assign(view.data.data(), view.data.size());
  record->mutable_partition_key()->assign(view.partition_key.data(), view.partition_key.size());
}

}  // namespace

// Answers a call at once; there is nothing to cancel.
template <typename Done, typename Result>
Broker::CancelFn Answer(Done& done, Result&& result) {
  done(std::forward<Result>(result));
  return {};
}

// A read that may wait for records (GetRecords with wait_time, and subscriptions).
struct Broker::ReadRequest {
  std::shared_ptr<Stream> stream;
  ShardState* shard = nullptr;
  uint64_t offset = 0;
  ReadLimits limits;
  absl::Time deadline;
  std::function<void(absl::StatusOr<ReadBatch>)> done;
  std::atomic<bool> cancelled{false};
  // The current wait: woken exactly once, by an append, the deadline, or a cancel.
  std::atomic<bool> woken{false};
  absl::Mutex mu;
  uint64_t waiter_id ABSL_GUARDED_BY(mu) = 0;
  Scheduler::TaskId timer ABSL_GUARDED_BY(mu) = 0;
  std::function<void()> wake ABSL_GUARDED_BY(mu);
};

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
  broker->ScheduleRetention();
  return broker;
}

absl::Status Broker::LoadStreams() {
  const fs::path streams_dir = fs::path(options_.data_dir) / "streams";
  const fs::path trash_dir = fs::path(options_.data_dir) / "trash";
  RETURN_IF_ERROR(RemoveTree(trash_dir.string()));  // deletions a crash interrupted
  std::error_code ec;
  fs::create_directories(streams_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("create ", streams_dir.string(), ": ", ec.message()));
  for (const auto& entry : fs::directory_iterator(streams_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(".creating-")) {  // a creation a crash interrupted
      RETURN_IF_ERROR(RemoveTree(entry.path().string()));
      continue;
    }
    const std::string meta_path = (entry.path() / "stream.meta").string();
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(meta_path));
    storage::v1::StreamMetadata meta;
    if (!google::protobuf::TextFormat::ParseFromString(text, &meta) || meta.stream_name() != name) {
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
      ShardLogOptions log_options;
      log_options.directory = (entry.path() / shard->id).string();
      log_options.name = absl::StrCat(stream->name, "/", shard->id);
      log_options.fsync = ToFsyncMode(stream->fsync_policy);
      log_options.fsync_interval = options_.fsync_interval;
      log_options.segment_bytes = options_.segment_bytes;
      if (options_.clock) log_options.now_ms = [this] { return NowMs(); };
      ASSIGN_OR_RETURN(shard->log, ShardLog::Open(std::move(log_options)));
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
  // Build the stream in a scratch folder and rename it into place, so a crash leaves either no
  // stream or a whole one.
  const fs::path streams_dir = fs::path(options_.data_dir) / "streams";
  const fs::path scratch = streams_dir / absl::StrCat(".creating-", RandomSuffix());
  const fs::path final_dir = streams_dir / request.stream_name();
  auto stream = std::make_shared<Stream>();
  stream->name = request.stream_name();
  stream->directory = scratch.string();
  std::random_device device;
  stream->incarnation = (static_cast<uint64_t>(device()) << 32) | device();
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
  auto cleanup = [&](absl::Status status) {
    (void)RemoveTree(scratch.string());
    return status;
  };
  std::error_code ec;
  fs::create_directories(scratch, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", scratch.string(), ": ", ec.message()));
  if (absl::Status s = SaveMetadata(*stream); !s.ok()) return cleanup(s);
  for (auto& shard : stream->shards) fs::create_directories(scratch / shard->id, ec);
  if (ec) return cleanup(absl::InternalError(ec.message()));
  if (absl::Status s = FsyncDirectory(scratch.string()); !s.ok()) return cleanup(s);
  fs::rename(scratch, final_dir, ec);
  if (ec)
    return cleanup(
        absl::InternalError(absl::StrCat("rename to ", final_dir.string(), ": ", ec.message())));
  RETURN_IF_ERROR(FsyncDirectory(streams_dir.string()));
  stream->directory = final_dir.string();
  for (auto& shard : stream->shards) {
    ShardLogOptions log_options;
    log_options.directory = (final_dir / shard->id).string();
    log_options.name = absl::StrCat(stream->name, "/", shard->id);
    log_options.fsync = ToFsyncMode(stream->fsync_policy);
    log_options.fsync_interval = options_.fsync_interval;
    log_options.segment_bytes = options_.segment_bytes;
    if (options_.clock) log_options.now_ms = [this] { return NowMs(); };
    ASSIGN_OR_RETURN(shard->log, ShardLog::Open(std::move(log_options)));
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
  fs::create_directories(trash, ec);
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
  return response;
}

absl::StatusOr<v1::ListShardsResponse> Broker::ListShards(const v1::ListShardsRequest& request) {
  // NextToken carries the stream name and the last shard listed; Kinesis forbids naming the
  // stream beside it.
  std::string stream_name = request.stream_name();
  std::string after = request.exclusive_start_shard_id();
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
  }
  if (request.max_results() < 0 || request.max_results() > 10'000) {
    return ValidationError("maxResults", std::to_string(request.max_results()),
                           "Member must be between 1 and 10000");
  }
  const int max_results = request.max_results() == 0 ? 1000 : std::min(request.max_results(), 1000);
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(stream_name));
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

absl::Status Broker::ThrottledError(const Stream& stream, const ShardState& shard) const {
  return absl::ResourceExhaustedError(
      absl::StrCat("ProvisionedThroughputExceededException: Rate exceeded for shard ", shard.id,
                   " in stream ", stream.name, " under account ", options_.account_id, "."));
}

// ---- Writes ----------------------------------------------------------------------------------

namespace {

// Everything a PutRecords needs once its shards have written; no reference to the stream, so
// the last reference to a deleted stream is never dropped on a shard's writer thread.
struct PutState {
  absl::Mutex mu;
  v1::PutRecordsResponse response;
  // Records of the batch that failed to write, by request index, with the error.
  std::vector<std::pair<std::vector<int>, absl::Status>> failures;
  std::atomic<int> remaining{1};
  Broker::PutRecordsDone done;
  // Metrics on: where the latency goes, and when the request came.
  prometheus::Histogram* latency = nullptr;
  absl::Time start;

  void Release() {
    if (remaining.fetch_sub(1) != 1) return;
    if (latency != nullptr) latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    int failed = response.failed_record_count();
    for (auto& [indices, status] : failures) {
      for (int i : indices) {
        auto* entry = response.mutable_records(i);
        entry->Clear();
        entry->set_error_code("InternalFailure");
        entry->set_error_message(absl::StrCat("Internal service failure: ", status.message()));
        ++failed;
      }
    }
    response.set_failed_record_count(failed);
    done(std::move(response));
  }
};

}  // namespace

void Broker::PutRecords(const v1::PutRecordsRequest& request, PutRecordsDone done) {
  const int count = request.records_size();
  if (count < 1 || count > kMaxRecordsPerPut) {
    return done(ValidationError("records", absl::StrCat("[", count, " records]"),
                                count < 1 ? "Member must have length greater than or equal to 1"
                                          : "Member must have length less than or equal to 500"));
  }
  size_t total_bytes = 0;
  std::vector<absl::uint128> hash_keys(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    const auto& record = request.records(i);
    const int key_chars = Utf8Length(record.partition_key());
    if (key_chars < 1 || key_chars > kMaxPartitionKeyChars) {
      const std::string field = absl::StrCat("records.", i + 1, ".member.partitionKey");
      return done(ValidationError(field, record.partition_key(),
                                  key_chars < 1
                                      ? "Member must have length greater than or equal to 1"
                                      : "Member must have length less than or equal to 256"));
    }
    const size_t record_bytes = record.data().size() + record.partition_key().size();
    if (record_bytes > kMaxRecordBytes) {
      return done(ValidationError(
          absl::StrCat("records.", i + 1, ".member.data"),
          absl::StrCat("[", record.data().size(), " bytes of data + ",
                       record.partition_key().size(), " bytes of partition key]"),
          "Member must have length less than or equal to 1048576 bytes, partition key "
          "included"));
    }
    total_bytes += record_bytes;
    if (record.explicit_hash_key().empty()) {
      hash_keys[static_cast<size_t>(i)] = PartitionKeyHash(record.partition_key());
    } else {
      auto key = ParseHashKey(record.explicit_hash_key(),
                              absl::StrCat("records.", i + 1, ".member.explicitHashKey"));
      if (!key.ok()) return done(key.status());
      hash_keys[static_cast<size_t>(i)] = *key;
    }
  }
  if (total_bytes > kMaxPutRecordsBytes) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "InvalidArgumentException: Records size exceeds 5 MB limit: the request carries ",
        total_bytes, " bytes of data and partition keys (at most 5242880)")));
  }
  auto stream_or = FindStream(request.stream_name());
  if (!stream_or.ok()) return done(stream_or.status());
  const Stream& stream = **stream_or;
  StreamMetrics* const stream_metrics = stream.metrics.get();
  const bool limited = stream.enforce_throughput_limits || options_.enforce_throughput_limits;
  const int64_t now = limited ? NowMs() : 0;

  // Group by shard, keeping request order within each shard.
  std::vector<std::vector<int>> by_shard(stream.shards.size());
  auto state = std::make_shared<PutState>();
  state->response = MessagePool<v1::PutRecordsResponse>::Get().Take();
  state->done = std::move(done);
  if (stream_metrics != nullptr) {
    state->latency = stream_metrics->put_latency;
    state->start = absl::Now();
  }
  state->response.mutable_records()->Reserve(count);
  for (int i = 0; i < count; ++i) state->response.add_records();
  int throttled = 0;
  for (int i = 0; i < count; ++i) {
    ShardState& shard = stream.Route(hash_keys[static_cast<size_t>(i)]);
    if (limited) {
      const auto& record = request.records(i);
      const double bytes =
          static_cast<double>(record.data().size() + record.partition_key().size());
      if (!shard.throughput.write_records.TryTake(1, now) ||
          !shard.throughput.write_bytes.TryTake(bytes, now)) {
        auto* entry = state->response.mutable_records(i);
        entry->set_error_code("ProvisionedThroughputExceededException");
        entry->set_error_message(
            std::string(ThrottledError(stream, shard)
                            .message()
                            .substr(sizeof("ProvisionedThroughputExceededException: ") - 1)));
        ++throttled;
        if (shard.metrics) shard.metrics->throttled_records->Increment();
        continue;
      }
    }
    by_shard[shard.index].push_back(i);
  }
  if (throttled > 0 && stream_metrics != nullptr)
    stream_metrics->throttled_put_records->Increment();
  state->response.set_failed_record_count(throttled);
  state->response.set_encryption_type("NONE");

  std::vector<AppendRecord> records;
  for (size_t s = 0; s < by_shard.size(); ++s) {
    std::vector<int>& indices = by_shard[s];
    if (indices.empty()) continue;
    records.clear();
    size_t bytes = 0;
    for (int i : indices) {
      const auto& record = request.records(i);
      records.push_back({record.partition_key(), record.data()});
      bytes += record.partition_key().size() + record.data().size();
    }
    state->remaining.fetch_add(1);
    ShardState& shard = *stream.shards[s];
    // The callback may run before Append returns; it only records a failure, and the response
    // is completed by whoever releases last. The shard's metrics outlive its log (ShardState).
    auto on_durable = [state, indices, metrics = shard.metrics.get(),
                       bytes](const absl::Status& status) {
      if (!status.ok()) {
        absl::MutexLock lock(&state->mu);
        state->failures.emplace_back(indices, status);
      } else if (metrics != nullptr) {
        metrics->incoming_records->Increment(static_cast<double>(indices.size()));
        metrics->incoming_bytes->Increment(static_cast<double>(bytes));
      }
      state->Release();
    };
    auto ticket = shard.log->Append(records, on_durable);
    if (!ticket.ok()) {
      on_durable(ticket.status());
      continue;
    }
    char sequence[kSequenceNumberLength];
    for (size_t k = 0; k < indices.size(); ++k) {
      auto* entry = state->response.mutable_records(indices[k]);
      FormatSequenceNumberTo(ticket->first_offset + k, shard.index, sequence);
      entry->mutable_sequence_number()->assign(sequence, kSequenceNumberLength);  // see FillRecord
      entry->set_shard_id(shard.id);
    }
  }
  state->Release();
}

void Broker::PutRecord(const v1::PutRecordRequest& request, PutRecordDone done) {
  v1::PutRecordsRequest batch;
  batch.set_stream_name(request.stream_name());
  auto* entry = batch.add_records();
  entry->set_data(request.data());
  entry->set_partition_key(request.partition_key());
  entry->set_explicit_hash_key(request.explicit_hash_key());
  PutRecords(batch, [done = std::move(done)](absl::StatusOr<v1::PutRecordsResponse> result) {
    if (!result.ok()) {
      // Name the single-record fields as Kinesis's PutRecord does.
      std::string message(result.status().message());
      for (std::string_view from : {"records.1.member.partitionKey", "records.1.member.data",
                                    "records.1.member.explicitHashKey"}) {
        if (auto pos = message.find(from); pos != std::string::npos) {
          message.replace(pos, from.size(), from.substr(sizeof("records.1.member.") - 1));
        }
      }
      return done(absl::Status(result.status().code(), message));
    }
    const auto& record = result->records(0);
    if (record.error_code() == "ProvisionedThroughputExceededException") {
      return done(absl::ResourceExhaustedError(
          absl::StrCat(record.error_code(), ": ", record.error_message())));
    }
    if (!record.error_code().empty()) {
      return done(
          absl::UnavailableError(absl::StrCat("InternalFailure: ", record.error_message())));
    }
    v1::PutRecordResponse response;
    response.set_shard_id(record.shard_id());
    response.set_sequence_number(record.sequence_number());
    response.set_encryption_type("NONE");
    done(std::move(response));
  });
}

// ---- Reads -----------------------------------------------------------------------------------

absl::StatusOr<uint64_t> Broker::ResolvePosition(const Stream& stream, ShardState& shard,
                                                 v1::ShardIteratorType type,
                                                 const std::string& sequence_number,
                                                 const google::protobuf::Timestamp& timestamp,
                                                 const char* sequence_field) {
  const bool by_sequence = type == v1::AT_SEQUENCE_NUMBER || type == v1::AFTER_SEQUENCE_NUMBER;
  if (by_sequence == sequence_number.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("InvalidArgumentException: Must either specify (1) AT_SEQUENCE_NUMBER or "
                     "AFTER_SEQUENCE_NUMBER and ",
                     sequence_field,
                     " or (2) TRIM_HORIZON, LATEST or "
                     "AT_TIMESTAMP and no ",
                     sequence_field, ". Request specified ", v1::ShardIteratorType_Name(type),
                     (sequence_number.empty() ? " and no " : " and "), sequence_field, "."));
  }
  const uint64_t end = shard.log->EndOffset();
  switch (type) {
    case v1::TRIM_HORIZON: {
      const int64_t cutoff = RetentionCutoffMs(stream);
      return shard.log->OffsetAtTimestamp(cutoff);
    }
    case v1::LATEST:
      return end;
    case v1::AT_TIMESTAMP: {
      if (!timestamp.IsInitialized() || (timestamp.seconds() == 0 && timestamp.nanos() == 0)) {
        return absl::InvalidArgumentError(
            "InvalidArgumentException: Must specify timestampInMillis parameter for iterator "
            "of type AT_TIMESTAMP.");
      }
      const int64_t ms =
          std::max(TimeUtil::TimestampToMilliseconds(timestamp), RetentionCutoffMs(stream));
      return shard.log->OffsetAtTimestamp(ms);
    }
    case v1::AT_SEQUENCE_NUMBER:
    case v1::AFTER_SEQUENCE_NUMBER: {
      ASSIGN_OR_RETURN(SequencePosition position,
                       ParseSequenceNumber(sequence_number, sequence_field));
      if (position.shard_index != shard.index) {
        return absl::InvalidArgumentError(
            absl::StrCat("InvalidArgumentException: Invalid ", sequence_field, ". It encodes ",
                         ShardIdFromIndex(position.shard_index),
                         ", while it was used in a call to a shard with ", shard.id));
      }
      const uint64_t offset = position.offset + (type == v1::AFTER_SEQUENCE_NUMBER ? 1 : 0);
      if (offset > end) {
        return absl::InvalidArgumentError(
            absl::StrCat("InvalidArgumentException: ", sequence_field, " ", sequence_number,
                         " is past the end of shard ", shard.id, " in stream ", stream.name,
                         " (its last record is ", FormatSequenceNumber(end - 1, shard.index), ")"));
      }
      return offset;
    }
    default:
      return ValidationError("shardIteratorType", v1::ShardIteratorType_Name(type),
                             "Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, "
                             "AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]");
  }
}

absl::StatusOr<v1::GetShardIteratorResponse> Broker::GetShardIterator(
    const v1::GetShardIteratorRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(request.stream_name()));
  ASSIGN_OR_RETURN(ShardState * shard, FindShard(*stream, request.shard_id()));
  ASSIGN_OR_RETURN(uint64_t offset, ResolvePosition(*stream, *shard, request.shard_iterator_type(),
                                                    request.starting_sequence_number(),
                                                    request.timestamp(), "StartingSequenceNumber"));
  IteratorToken token;
  token.stream_name = stream->name;
  token.incarnation = stream->incarnation;
  token.shard_index = shard->index;
  token.offset = offset;
  token.issued_ms = NowMs();
  v1::GetShardIteratorResponse response;
  response.set_shard_iterator(EncodeIterator(token));
  return response;
}

void Broker::CancelAllReads() {
  std::vector<std::shared_ptr<ReadRequest>> waiting;
  {
    absl::MutexLock lock(&waits_mu_);
    reads_cancelled_ = true;
    for (auto& [key, request] : waiting_reads_) waiting.push_back(request);
  }
  for (const auto& request : waiting) CancelRead(request);
}

void Broker::ReadWithWait(std::shared_ptr<ReadRequest> request) {
  {
    absl::MutexLock lock(&waits_mu_);
    if (reads_cancelled_) {
      return request->done(absl::UnavailableError("the broker is shutting down"));
    }
  }
  request->limits.min_arrival_ms = RetentionCutoffMs(*request->stream);
  ShardLog& log = *request->shard->log;
  absl::StatusOr<ReadBatch> batch = log.Read(request->offset, request->limits);
  const absl::Time now = options_.clock ? options_.clock() : absl::Now();
  if (!batch.ok() || !batch->records.empty() || now >= request->deadline ||
      request->cancelled.load() || request->stream->deleted.load()) {
    return request->done(std::move(batch));
  }
  request->offset = batch->next_offset;
  if (request->offset < log.EndOffset()) {
    // Only expired records were skipped; more may follow at once.
    scheduler_->Post([this, request] { ReadWithWait(request); });
    return;
  }
  // Wait. The callbacks hold the request weakly and only post to the scheduler, so no shard
  // writer thread ever holds (and might drop) the last reference to a stream.
  request->woken = false;
  {
    absl::MutexLock lock(&waits_mu_);
    waiting_reads_[request.get()] = request;
  }
  std::weak_ptr<ReadRequest> weak = request;
  auto wake = [this, weak] {
    scheduler_->Post([this, weak] {
      std::shared_ptr<ReadRequest> request = weak.lock();
      if (request == nullptr || request->woken.exchange(true)) return;
      {
        absl::MutexLock lock(&request->mu);
        request->shard->log->RemoveWaiter(request->waiter_id);
        scheduler_->Cancel(request->timer);
        request->wake = nullptr;
      }
      {
        absl::MutexLock lock(&waits_mu_);
        waiting_reads_.erase(request.get());
      }
      ReadWithWait(request);
    });
  };
  {
    absl::MutexLock lock(&request->mu);
    request->waiter_id = log.AddWaiter(wake);
    request->timer = scheduler_->PostAt(request->deadline, wake);
    request->wake = wake;
  }
  // Records may have landed (or a cancel come) between the read and AddWaiter.
  if (log.EndOffset() > request->offset || request->cancelled.load()) wake();
}

Broker::CancelFn Broker::GetRecords(const v1::GetRecordsRequest& request, GetRecordsDone done) {
  if (request.limit() < 0 || request.limit() > kMaxGetRecordsLimit) {
    return Answer(done, ValidationError("limit", std::to_string(request.limit()),
                                        "Member must have value between 1 and 10000"));
  }
  const absl::Duration wait =
      absl::Seconds(request.wait_time().seconds()) + absl::Nanoseconds(request.wait_time().nanos());
  if (wait < absl::ZeroDuration() || wait > kMaxWaitTime) {
    return Answer(done, ValidationError("waitTime", absl::FormatDuration(wait),
                                        "Member must be between 0s and 20s"));
  }
  auto token = DecodeIterator(request.shard_iterator());
  if (!token.ok()) return Answer(done, token.status());
  const int64_t now_ms = NowMs();
  if (now_ms - token->issued_ms > kIteratorLifetimeMs) {
    return Answer(
        done,
        absl::FailedPreconditionError(absl::StrCat(
            "ExpiredIteratorException: Iterator expired. The iterator was created at time ",
            absl::FormatTime(absl::FromUnixMillis(token->issued_ms), absl::UTCTimeZone()),
            " while right now it is ",
            absl::FormatTime(absl::FromUnixMillis(now_ms), absl::UTCTimeZone()),
            " which is further in the future than the tolerated delay of 300000 milliseconds.")));
  }
  auto stream = FindStream(token->stream_name);
  if (!stream.ok()) return Answer(done, stream.status());
  if ((*stream)->incarnation != token->incarnation ||
      token->shard_index >= (*stream)->shards.size()) {
    return Answer(done,
                  absl::NotFoundError(absl::StrCat(
                      "ResourceNotFoundException: the iterator belongs to an earlier stream named ",
                      token->stream_name, ", since deleted")));
  }
  ShardState* shard = (*stream)->shards[token->shard_index].get();
  const bool limited = (*stream)->enforce_throughput_limits || options_.enforce_throughput_limits;
  if (limited && (!shard->throughput.read_calls.TryTake(1, now_ms) ||
                  !shard->throughput.read_bytes.HasTokens(now_ms))) {
    if ((*stream)->metrics) (*stream)->metrics->throttled_get_records->Increment();
    return Answer(done, ThrottledError(**stream, *shard));
  }
  const absl::Time start = (*stream)->metrics ? absl::Now() : absl::InfinitePast();

  auto read = std::make_shared<ReadRequest>();
  read->stream = *stream;
  read->shard = shard;
  read->offset = token->offset;
  read->limits.max_records = request.limit() == 0 ? kMaxGetRecordsLimit : request.limit();
  read->limits.max_bytes = kMaxGetRecordsBytes;
  read->deadline = (options_.clock ? options_.clock() : absl::Now()) + wait;
  read->done = [this, stream = *stream, shard, limited, issued = *token, start,
                done = std::move(done)](absl::StatusOr<ReadBatch> batch) {
    if (stream->metrics) {
      stream->metrics->get_records_latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    }
    if (!batch.ok()) return done(batch.status());
    v1::GetRecordsResponse response = MessagePool<v1::GetRecordsResponse>::Get().Take();
    response.mutable_records()->Reserve(static_cast<int>(batch->records.size()));
    size_t bytes = 0;
    for (const RecordView& view : batch->records) {
      FillRecord(view, shard->index, response.add_records());
      bytes += view.data.size() + view.partition_key.size();
    }
    const int64_t now = NowMs();
    if (limited) shard->throughput.read_bytes.Take(static_cast<double>(bytes), now);
    IteratorToken next = issued;
    next.offset = batch->next_offset;
    next.issued_ms = now;
    response.set_next_shard_iterator(EncodeIterator(next));
    const bool caught_up = batch->next_offset >= shard->log->EndOffset();
    response.set_millis_behind_latest(
        caught_up || batch->records.empty()
            ? 0
            : std::max<int64_t>(0, now - batch->records.back().arrival_ms));
    if (shard->metrics) {
      shard->metrics->outgoing_records->Increment(static_cast<double>(batch->records.size()));
      shard->metrics->outgoing_bytes->Increment(static_cast<double>(bytes));
      shard->metrics->iterator_age_ms->Set(static_cast<double>(response.millis_behind_latest()));
    }
    done(std::move(response));
  };
  std::weak_ptr<ReadRequest> weak = read;
  ReadWithWait(std::move(read));
  return [this, weak] {
    if (auto read = weak.lock()) CancelRead(read);
  };
}

void Broker::CancelRead(const std::shared_ptr<ReadRequest>& request) {
  request->cancelled = true;
  std::function<void()> wake;
  {
    absl::MutexLock lock(&request->mu);
    wake = request->wake;
  }
  if (wake) wake();
}

class ShardSubscription : public Subscription {
 public:
  ShardSubscription(Broker* broker, std::shared_ptr<Stream> stream, ShardState* shard,
                    uint64_t offset)
      : broker_(broker), stream_(std::move(stream)), shard_(shard), offset_(offset) {
    if (shard_->metrics) shard_->metrics->subscribers->Increment();
  }
  ~ShardSubscription() override {
    Cancel();
    if (shard_->metrics) shard_->metrics->subscribers->Decrement();
  }

  void Next(EventDone done) override {
    if (cancelled_.load()) return done(absl::CancelledError("subscription cancelled"));
    auto read = std::make_shared<Broker::ReadRequest>();
    read->stream = stream_;
    read->shard = shard_;
    read->offset = offset_;
    read->limits.max_records = kMaxGetRecordsLimit;
    read->limits.max_bytes = kMaxGetRecordsBytes;
    read->deadline = absl::Now() + kSubscriptionHeartbeat;
    read->done = [this, done = std::move(done)](absl::StatusOr<ReadBatch> batch) {
      {
        absl::MutexLock lock(&mu_);
        pending_.reset();
      }
      if (!batch.ok()) return done(batch.status());
      if (stream_->deleted.load()) {
        return done(absl::NotFoundError(
            absl::StrCat("ResourceNotFoundException: Stream ", stream_->name, " was deleted")));
      }
      v1::SubscribeToShardEvent event;
      size_t bytes = 0;
      for (const RecordView& view : batch->records) {
        FillRecord(view, shard_->index, event.add_records());
        bytes += view.data.size() + view.partition_key.size();
      }
      offset_ = batch->next_offset;
      event.set_continuation_sequence_number(FormatSequenceNumber(offset_ - 1, shard_->index));
      const bool caught_up = offset_ >= shard_->log->EndOffset();
      event.set_millis_behind_latest(
          caught_up || batch->records.empty()
              ? 0
              : std::max<int64_t>(0, broker_->NowMs() - batch->records.back().arrival_ms));
      if (shard_->metrics) {
        shard_->metrics->outgoing_records->Increment(static_cast<double>(batch->records.size()));
        shard_->metrics->outgoing_bytes->Increment(static_cast<double>(bytes));
        shard_->metrics->iterator_age_ms->Set(static_cast<double>(event.millis_behind_latest()));
      }
      done(std::move(event));
    };
    {
      absl::MutexLock lock(&mu_);
      pending_ = read;
    }
    broker_->ReadWithWait(std::move(read));
  }

  void Cancel() override {
    cancelled_ = true;
    std::shared_ptr<Broker::ReadRequest> pending;
    {
      absl::MutexLock lock(&mu_);
      pending = pending_;
    }
    if (pending != nullptr) broker_->CancelRead(pending);
  }

 private:
  Broker* const broker_;
  const std::shared_ptr<Stream> stream_;
  ShardState* const shard_;
  uint64_t offset_;
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  std::shared_ptr<Broker::ReadRequest> pending_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<Subscription>> Broker::SubscribeToShard(
    const v1::SubscribeToShardRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(request.stream_name()));
  ASSIGN_OR_RETURN(ShardState * shard, FindShard(*stream, request.shard_id()));
  const auto& position = request.starting_position();
  ASSIGN_OR_RETURN(uint64_t offset,
                   ResolvePosition(*stream, *shard, position.type(), position.sequence_number(),
                                   position.timestamp(), "StartingPosition.SequenceNumber"));
  return std::make_unique<ShardSubscription>(this, std::move(stream), shard, offset);
}

// ---- Checkpoints -----------------------------------------------------------------------------

absl::StatusOr<v1::GetCheckpointResponse> Broker::GetCheckpoint(
    const v1::GetCheckpointRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(request.stream_name()));
  RETURN_IF_ERROR(FindShard(*stream, request.shard_id()).status());
  v1::GetCheckpointResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_checkpoint(),
      checkpoints_->Get(request.consumer_name(), request.stream_name(), request.shard_id()));
  return response;
}

absl::StatusOr<v1::ListCheckpointsResponse> Broker::ListCheckpoints(
    const v1::ListCheckpointsRequest& request) {
  RETURN_IF_ERROR(FindStream(request.stream_name()).status());
  v1::ListCheckpointsResponse response;
  for (auto& checkpoint : checkpoints_->List(request.consumer_name(), request.stream_name())) {
    *response.add_checkpoints() = std::move(checkpoint);
  }
  return response;
}

absl::StatusOr<v1::SetCheckpointResponse> Broker::SetCheckpoint(
    const v1::SetCheckpointRequest& request) {
  if (request.consumer_name().empty() || request.consumer_name().size() > 256) {
    return ValidationError("consumerName", request.consumer_name(),
                           "Member must have length between 1 and 256");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, FindStream(request.stream_name()));
  ASSIGN_OR_RETURN(ShardState * shard, FindShard(*stream, request.shard_id()));
  if (request.has_position()) {
    if (!request.sequence_number().empty()) {
      return absl::InvalidArgumentError(
          "InvalidArgumentException: set sequenceNumber or position, not both");
    }
    const v1::StartingPosition& position = request.position();
    ASSIGN_OR_RETURN(uint64_t offset,
                     ResolvePosition(*stream, *shard, position.type(), position.sequence_number(),
                                     position.timestamp(), "position.sequenceNumber"));
    // The checkpoint names the last record done: the one before the next to read (offset 0 is
    // the position before a shard's first record).
    v1::SetCheckpointRequest resolved = request;
    resolved.clear_position();
    resolved.set_sequence_number(FormatSequenceNumber(offset > 0 ? offset - 1 : 0, shard->index));
    return SetCheckpoint(resolved);
  }
  if (!request.sequence_number().empty()) {
    ASSIGN_OR_RETURN(SequencePosition position,
                     ParseSequenceNumber(request.sequence_number(), "sequenceNumber"));
    if (position.shard_index != shard->index || position.offset >= shard->log->EndOffset()) {
      return absl::InvalidArgumentError(
          absl::StrCat("InvalidArgumentException: sequenceNumber ", request.sequence_number(),
                       " is not a record of ", stream->name, "/", shard->id));
    }
  }
  if (request.sequence_number().empty() && request.lease_owner().empty()) {
    return absl::InvalidArgumentError(
        "InvalidArgumentException: set sequenceNumber, leaseOwner or both");
  }
  v1::SetCheckpointResponse response;
  ASSIGN_OR_RETURN(*response.mutable_checkpoint(),
                   checkpoints_->Set(request, options_.clock ? options_.clock() : absl::Now()));
  return response;
}

absl::StatusOr<v1::DeleteCheckpointsResponse> Broker::DeleteCheckpoints(
    const v1::DeleteCheckpointsRequest& request) {
  RETURN_IF_ERROR(FindStream(request.stream_name()).status());
  v1::DeleteCheckpointsResponse response;
  ASSIGN_OR_RETURN(int deleted, checkpoints_->Delete(request.consumer_name(), request.stream_name(),
                                                     request.shard_id()));
  response.set_deleted_count(deleted);
  return response;
}

}  // namespace runnel::broker
