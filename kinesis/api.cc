#include "kinesis/api.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/nesting_depth.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "google/protobuf/util/time_util.h"
#include "kinesis/api_impl.h"
#include "kinesis/event_stream.h"
#include "kinesis/wire.h"

namespace runnel::kinesis {

using google::protobuf::util::TimeUtil;

namespace {

// Whether a StreamCreationTimestamp a client sent names the stream created at `created`: to the
// millisecond (what runnel answers), or to the second when the client sent whole seconds (a
// timestamp typed by hand, or shortened by a tool).
bool SameCreation(const google::protobuf::Timestamp& created, int64_t given_ms) {
  const int64_t created_ms = TimeUtil::TimestampToMilliseconds(created);
  if (given_ms == created_ms) return true;
  return given_ms % 1000 == 0 && given_ms / 1000 == created_ms / 1000;
}

std::string FormatMillis(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

// The account of an ARN arn:aws:kinesis:<region>:<account>:stream/<name>.
std::string AccountOf(const std::string& arn) {
  std::vector<std::string> parts = absl::StrSplit(arn, ':');
  return parts.size() > 4 ? parts[4] : "";
}

}  // namespace

// StreamName, or the name inside StreamARN (the two must agree when both are set).
absl::StatusOr<std::string> KinesisApi::Impl::StreamName(Reader& in, bool name_only) {
  std::string name = in.String("StreamName");
  const bool has_name = in.Has("StreamName");
  if (!name_only && in.Has("StreamARN")) {
    ASSIGN_OR_RETURN(std::string from_arn, StreamNameFromArn(in.String("StreamARN")));
    if (has_name && name != from_arn) {
      return KinesisStatus("InvalidArgumentException",
                           absl::StrCat("StreamName ", name, " and StreamARN ",
                                        in.String("StreamARN"), " name different streams"));
    }
    return from_arn;
  }
  RETURN_IF_ERROR(in.status());
  if (!has_name) return MissingMember("streamName");
  return name;
}

absl::StatusOr<v1::StreamDescriptionSummary> KinesisApi::Impl::Summary(const std::string& stream) {
  v1::DescribeStreamSummaryRequest request;
  request.set_stream_name(stream);
  ASSIGN_OR_RETURN(auto response, broker->DescribeStreamSummary(request));
  return response.stream_description_summary();
}

KinesisApi::Impl::StreamExtras& KinesisApi::Impl::ExtrasFor(
    const v1::StreamDescriptionSummary& summary) {
  const int64_t created = TimeUtil::TimestampToMilliseconds(summary.stream_creation_timestamp());
  StreamExtras& entry = extras[summary.stream_name()];
  if (entry.stream_creation_ms != created) entry = StreamExtras{created, {}, {}, {}};
  return entry;
}

Json KinesisApi::Impl::MetricsJson(const std::set<std::string>& metrics) {
  return Json::array({Json{
      {"ShardLevelMetrics", Json(std::vector<std::string>(metrics.begin(), metrics.end()))}}});
}

absl::StatusOr<Json> KinesisApi::Impl::CreateStream(Reader& in) {
  v1::CreateStreamRequest request;
  ASSIGN_OR_RETURN(std::string name, StreamName(in, /*name_only=*/true));
  request.set_stream_name(name);
  std::string mode;
  if (const Json* details = in.Object("StreamModeDetails")) {
    Reader details_in(details, in.format());
    mode = details_in.String("StreamMode");
    RETURN_IF_ERROR(details_in.status());
    if (mode != "PROVISIONED" && mode != "ON_DEMAND") {
      return KinesisStatus("ValidationException",
                           absl::StrCat("1 validation error detected: Value '", mode,
                                        "' at 'streamModeDetails.streamMode' failed to satisfy "
                                        "constraint: Member must satisfy enum value set: "
                                        "[PROVISIONED, ON_DEMAND]"));
    }
  }
  // On-demand streams start with 4 shards on AWS; runnel keeps them at that.
  const int64_t shards = in.Int("ShardCount", mode == "ON_DEMAND" ? 4 : 0, 1, 100000);
  std::map<std::string, std::string> tags;
  if (const Json* tag_map = in.Object("Tags")) {
    for (const auto& [key, value] : tag_map->items()) {
      if (!value.is_string())
        return KinesisStatus("SerializationException", "Tags: expected a map of strings");
      tags[key] = value.get<std::string>();
    }
  }
  RETURN_IF_ERROR(in.status());
  if (shards == 0) return MissingMember("shardCount");
  request.set_shard_count(static_cast<int>(shards));
  RETURN_IF_ERROR(broker->CreateStream(request));
  if (!tags.empty()) {
    ASSIGN_OR_RETURN(auto summary, Summary(name));
    absl::MutexLock lock(&mu);
    ExtrasFor(summary).tags = std::move(tags);
  }
  return Json::object();
}

absl::StatusOr<Json> KinesisApi::Impl::DeleteStream(Reader& in) {
  ASSIGN_OR_RETURN(std::string name, StreamName(in));
  v1::DeleteStreamRequest request;
  request.set_stream_name(name);
  request.set_enforce_consumer_deletion(in.Bool("EnforceConsumerDeletion"));
  RETURN_IF_ERROR(in.status());
  RETURN_IF_ERROR(broker->DeleteStream(request));
  absl::MutexLock lock(&mu);
  extras.erase(name);
  return Json::object();
}

absl::StatusOr<Json> KinesisApi::Impl::ListStreams(Reader& in) {
  v1::ListStreamsRequest request;
  request.set_limit(static_cast<int>(in.Int("Limit", 100, 1, 10000)));
  // NextToken is the last name of the previous page.
  std::string start = in.String("ExclusiveStartStreamName");
  if (in.Has("NextToken")) start = in.String("NextToken");
  request.set_exclusive_start_stream_name(start);
  RETURN_IF_ERROR(in.status());
  ASSIGN_OR_RETURN(auto response, broker->ListStreams(request));
  Json summaries = Json::array();
  for (const auto& summary : response.stream_summaries()) {
    summaries.push_back(
        {{"StreamName", summary.stream_name()},
         {"StreamARN", summary.stream_arn()},
         {"StreamStatus", v1::StreamStatus_Name(summary.stream_status())},
         {"StreamModeDetails", StreamMode()},
         {"StreamCreationTimestamp", Time(summary.stream_creation_timestamp(), in.format())}});
  }
  Json out{{"StreamNames", Json(std::vector<std::string>(response.stream_names().begin(),
                                                         response.stream_names().end()))},
           {"HasMoreStreams", response.has_more_streams()},
           {"StreamSummaries", std::move(summaries)}};
  if (response.has_more_streams() && response.stream_names_size() > 0) {
    out["NextToken"] = response.stream_names(response.stream_names_size() - 1);
  }
  return out;
}

Json KinesisApi::Impl::SummaryJson(const v1::StreamDescriptionSummary& summary, WireFormat format) {
  Json out{{"StreamName", summary.stream_name()},
           {"StreamARN", summary.stream_arn()},
           {"StreamStatus", v1::StreamStatus_Name(summary.stream_status())},
           {"StreamModeDetails", StreamMode()},
           {"RetentionPeriodHours", summary.retention_period_hours()},
           {"StreamCreationTimestamp", Time(summary.stream_creation_timestamp(), format)},
           {"EncryptionType", "NONE"}};
  absl::MutexLock lock(&mu);
  out["EnhancedMonitoring"] = MetricsJson(ExtrasFor(summary).metrics);
  out["ConsumerCount"] = ExtrasFor(summary).consumers.size();
  return out;
}

absl::StatusOr<Json> KinesisApi::Impl::DescribeStreamSummary(Reader& in) {
  ASSIGN_OR_RETURN(std::string name, StreamName(in));
  ASSIGN_OR_RETURN(auto summary, Summary(name));
  Json out = SummaryJson(summary, in.format());
  out["OpenShardCount"] = summary.open_shard_count();
  return Json{{"StreamDescriptionSummary", std::move(out)}};
}

absl::StatusOr<Json> KinesisApi::Impl::DescribeStream(Reader& in) {
  ASSIGN_OR_RETURN(std::string name, StreamName(in));
  v1::ListShardsRequest request;
  request.set_stream_name(name);
  request.set_max_results(static_cast<int>(in.Int("Limit", 100, 1, 10000)));
  request.set_exclusive_start_shard_id(in.String("ExclusiveStartShardId"));
  RETURN_IF_ERROR(in.status());
  ASSIGN_OR_RETURN(auto summary, Summary(name));
  // The shards of the stream just described, not of one created under its name since.
  request.set_incarnation(summary.incarnation());
  ASSIGN_OR_RETURN(auto shards, broker->ListShards(request));
  Json out = SummaryJson(summary, in.format());
  out.erase("ConsumerCount");  // not a member of StreamDescription
  Json list = Json::array();
  for (const auto& shard : shards.shards()) list.push_back(ShardJson(shard));
  out["Shards"] = std::move(list);
  out["HasMoreShards"] = !shards.next_token().empty();
  return Json{{"StreamDescription", std::move(out)}};
}

absl::StatusOr<Json> KinesisApi::Impl::ListShards(Reader& in) {
  v1::ListShardsRequest request;
  request.set_next_token(in.String("NextToken"));
  if (in.Has("StreamName") || in.Has("StreamARN")) {
    ASSIGN_OR_RETURN(std::string name, StreamName(in));
    request.set_stream_name(name);
  } else if (!in.Has("NextToken")) {
    RETURN_IF_ERROR(in.status());
    return MissingMember("streamName");
  }
  request.set_exclusive_start_shard_id(in.String("ExclusiveStartShardId"));
  request.set_max_results(static_cast<int>(in.Int("MaxResults", 0, 1, 10000)));
  // Tells apart streams that had the same name (one deleted, another created): only the one
  // created then is listed.
  const std::optional<int64_t> created_ms = in.TimestampMs("StreamCreationTimestamp");
  if (const Json* filter = in.Object("ShardFilter")) {
    // Every runnel shard is open and a child of none: each filter type selects them all.
    Reader filter_in(filter, in.format());
    const std::string type = filter_in.String("Type");
    RETURN_IF_ERROR(filter_in.status());
    static const std::set<std::string> kTypes = {"AFTER_SHARD_ID",    "AT_TRIM_HORIZON",
                                                 "FROM_TRIM_HORIZON", "AT_LATEST",
                                                 "AT_TIMESTAMP",      "FROM_TIMESTAMP"};
    if (!kTypes.contains(type)) {
      return KinesisStatus("ValidationException",
                           absl::StrCat("1 validation error detected: Value '", type,
                                        "' at 'shardFilter.type' failed to satisfy constraint: "
                                        "Member must satisfy enum value set: [AFTER_SHARD_ID, "
                                        "AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, "
                                        "AT_TIMESTAMP, FROM_TIMESTAMP]"));
    }
    if (type == "AFTER_SHARD_ID") request.set_exclusive_start_shard_id(filter_in.String("ShardId"));
  }
  RETURN_IF_ERROR(in.status());
  if (created_ms.has_value()) {
    if (!request.next_token().empty()) {
      return KinesisStatus("InvalidArgumentException",
                           "NextToken and StreamCreationTimestamp cannot be provided together.");
    }
    ASSIGN_OR_RETURN(auto summary, Summary(request.stream_name()));
    if (!SameCreation(summary.stream_creation_timestamp(), *created_ms)) {
      return absl::NotFoundError(absl::StrCat(
          "ResourceNotFoundException: Stream ", request.stream_name(), " under account ",
          AccountOf(summary.stream_arn()), " created at ", FormatMillis(*created_ms),
          " not found (the stream of that name was created at ",
          FormatMillis(TimeUtil::TimestampToMilliseconds(summary.stream_creation_timestamp())),
          ")."));
    }
    request.set_incarnation(summary.incarnation());
  }
  ASSIGN_OR_RETURN(auto response, broker->ListShards(request));
  Json shards = Json::array();
  for (const auto& shard : response.shards()) shards.push_back(ShardJson(shard));
  Json out{{"Shards", std::move(shards)}};
  if (!response.next_token().empty()) out["NextToken"] = response.next_token();
  return out;
}

absl::StatusOr<Json> KinesisApi::Impl::Retention(Reader& in, bool increase) {
  ASSIGN_OR_RETURN(std::string name, StreamName(in));
  const bool has_hours = in.Has("RetentionPeriodHours");
  const int64_t hours = in.Int("RetentionPeriodHours", 0);
  RETURN_IF_ERROR(in.status());
  if (!has_hours) return MissingMember("retentionPeriodHours");
  if (increase) {
    v1::IncreaseStreamRetentionPeriodRequest request;
    request.set_stream_name(name);
    request.set_retention_period_hours(static_cast<int>(hours));
    RETURN_IF_ERROR(broker->IncreaseStreamRetentionPeriod(request));
  } else {
    v1::DecreaseStreamRetentionPeriodRequest request;
    request.set_stream_name(name);
    request.set_retention_period_hours(static_cast<int>(hours));
    RETURN_IF_ERROR(broker->DecreaseStreamRetentionPeriod(request));
  }
  return Json::object();
}

void KinesisApi::Impl::PutRecord(Reader& in, Reply reply) {
  v1::PutRecordRequest request;
  auto name = StreamName(in);
  if (!name.ok()) return reply(name.status());
  request.set_stream_name(*name);
  if (!in.Has("Data")) return reply(in.status().ok() ? MissingMember("data") : in.status());
  if (!in.Has("PartitionKey")) {
    return reply(in.status().ok() ? MissingMember("partitionKey") : in.status());
  }
  *request.mutable_data() = in.Blob("Data");
  request.set_partition_key(in.String("PartitionKey"));
  request.set_explicit_hash_key(in.String("ExplicitHashKey"));
  request.set_sequence_number_for_ordering(in.String("SequenceNumberForOrdering"));
  if (!in.status().ok()) return reply(in.status());
  broker->PutRecord(request, [reply = std::move(reply)](absl::StatusOr<v1::PutRecordResponse> r) {
    if (!r.ok()) return reply(r.status());
    reply(Json{{"ShardId", r->shard_id()},
               {"SequenceNumber", r->sequence_number()},
               {"EncryptionType", "NONE"}});
  });
}

void KinesisApi::Impl::PutRecords(Reader& in, Reply reply) {
  v1::PutRecordsRequest request;
  auto name = StreamName(in);
  if (!name.ok()) return reply(name.status());
  request.set_stream_name(*name);
  const Json* records = in.Array("Records");
  if (!in.status().ok()) return reply(in.status());
  if (records == nullptr) return reply(MissingMember("records"));
  request.mutable_records()->Reserve(static_cast<int>(records->size()));
  int index = 0;
  for (const Json& record : *records) {
    ++index;
    if (!record.is_object()) {
      return reply(KinesisStatus("SerializationException",
                                 absl::StrCat("Records.", index, ": expected a structure")));
    }
    Reader entry_in(&record, in.format());
    if (!entry_in.Has("Data")) {
      return reply(MissingMember(absl::StrCat("records.", index, ".member.data")));
    }
    if (!entry_in.Has("PartitionKey")) {
      return reply(MissingMember(absl::StrCat("records.", index, ".member.partitionKey")));
    }
    auto* entry = request.add_records();
    *entry->mutable_data() = entry_in.Blob("Data");
    entry->set_partition_key(entry_in.String("PartitionKey"));
    entry->set_explicit_hash_key(entry_in.String("ExplicitHashKey"));
    if (!entry_in.status().ok()) return reply(entry_in.status());
  }
  broker->PutRecords(request, [reply = std::move(reply)](absl::StatusOr<v1::PutRecordsResponse> r) {
    if (!r.ok()) return reply(r.status());
    Json results = Json::array();
    for (const auto& record : r->records()) {
      if (record.error_code().empty()) {
        results.push_back(
            {{"SequenceNumber", record.sequence_number()}, {"ShardId", record.shard_id()}});
      } else {
        results.push_back(
            {{"ErrorCode", record.error_code()}, {"ErrorMessage", record.error_message()}});
      }
    }
    reply(Json{{"FailedRecordCount", r->failed_record_count()},
               {"Records", std::move(results)},
               {"EncryptionType", "NONE"}});
  });
}

absl::StatusOr<Json> KinesisApi::Impl::GetShardIterator(Reader& in) {
  ASSIGN_OR_RETURN(std::string name, StreamName(in));
  v1::GetShardIteratorRequest request;
  request.set_stream_name(name);
  if (!in.Has("ShardId")) return MissingMember("shardId");
  if (!in.Has("ShardIteratorType")) return MissingMember("shardIteratorType");
  request.set_shard_id(in.String("ShardId"));
  const std::string type_name = in.String("ShardIteratorType");
  request.set_starting_sequence_number(in.String("StartingSequenceNumber"));
  std::optional<int64_t> timestamp = in.TimestampMs("Timestamp");
  RETURN_IF_ERROR(in.status());
  ASSIGN_OR_RETURN(v1::ShardIteratorType type, IteratorType(type_name, "shardIteratorType"));
  request.set_shard_iterator_type(type);
  if (timestamp.has_value()) *request.mutable_timestamp() = MillisToProto(*timestamp);
  ASSIGN_OR_RETURN(auto response, broker->GetShardIterator(request));
  return Json{{"ShardIterator", response.shard_iterator()}};
}

void KinesisApi::Impl::GetRecords(Reader& in, Reply reply) {
  v1::GetRecordsRequest request;
  if (!in.Has("ShardIterator")) {
    return reply(in.status().ok() ? MissingMember("shardIterator") : in.status());
  }
  request.set_shard_iterator(in.String("ShardIterator"));
  request.set_limit(static_cast<int>(in.Int("Limit", 0, 1, 10000)));
  if (in.Has("StreamARN")) (void)StreamNameFromArn(in.String("StreamARN"));
  if (!in.status().ok()) return reply(in.status());
  // No wait_time: Kinesis's GetRecords answers at once, empty or not.
  const WireFormat format = in.format();
  broker->GetRecords(request,
                     [reply = std::move(reply), format](absl::StatusOr<v1::GetRecordsResponse> r) {
                       if (!r.ok()) return reply(r.status());
                       Json records = Json::array();
                       for (const auto& record : r->records())
                         records.push_back(RecordJson(record, format));
                       Json out{{"Records", std::move(records)},
                                {"NextShardIterator", r->next_shard_iterator()},
                                {"MillisBehindLatest", r->millis_behind_latest()}};
                       if (r->child_shards_size() > 0)
                         out["ChildShards"] = ChildShardsJson(r->child_shards());
                       if (r->next_shard_iterator().empty()) out.erase("NextShardIterator");
                       reply(std::move(out));
                     });
}

void KinesisApi::Impl::Dispatch(const std::string& op, Reader& in, Reply reply) {
  if (op == "PutRecords") return PutRecords(in, std::move(reply));
  if (op == "PutRecord") return PutRecord(in, std::move(reply));
  if (op == "GetRecords") return GetRecords(in, std::move(reply));
  if (op == "GetShardIterator") return reply(GetShardIterator(in));
  if (op == "CreateStream") return reply(CreateStream(in));
  if (op == "DeleteStream") return reply(DeleteStream(in));
  if (op == "ListStreams") return reply(ListStreams(in));
  if (op == "DescribeStream") return reply(DescribeStream(in));
  if (op == "DescribeStreamSummary") return reply(DescribeStreamSummary(in));
  if (op == "ListShards") return reply(ListShards(in));
  if (op == "IncreaseStreamRetentionPeriod") return reply(Retention(in, true));
  if (op == "DecreaseStreamRetentionPeriod") return reply(Retention(in, false));
  if (op == "RegisterStreamConsumer") return reply(RegisterStreamConsumer(in));
  if (op == "DescribeStreamConsumer") return reply(DescribeStreamConsumer(in));
  if (op == "DeregisterStreamConsumer") return reply(DeregisterStreamConsumer(in));
  if (op == "ListStreamConsumers") return reply(ListStreamConsumers(in));
  if (op == "AddTagsToStream") {
    auto name = StreamName(in);
    if (!name.ok()) return reply(name.status());
    const Json* tags = in.Object("Tags");
    if (!in.status().ok()) return reply(in.status());
    return reply(AddTags(*name, tags));
  }
  if (op == "TagResource") {
    if (!in.Has("ResourceARN")) return reply(MissingMember("resourceARN"));
    auto name = StreamNameFromArn(in.String("ResourceARN"), "ResourceARN");
    if (!name.ok()) return reply(name.status());
    const Json* tags = in.Object("Tags");
    if (!in.status().ok()) return reply(in.status());
    return reply(AddTags(*name, tags));
  }
  if (op == "RemoveTagsFromStream" || op == "UntagResource") {
    absl::StatusOr<std::string> name =
        op == "UntagResource" ? StreamNameFromArn(in.String("ResourceARN"), "ResourceARN")
                              : StreamName(in);
    if (!name.ok()) return reply(name.status());
    if (!in.Has("TagKeys")) return reply(MissingMember("tagKeys"));
    std::vector<std::string> keys = in.StringList("TagKeys");
    if (!in.status().ok()) return reply(in.status());
    return reply(RemoveTags(*name, keys));
  }
  if (op == "ListTagsForStream") {
    auto name = StreamName(in);
    if (!name.ok()) return reply(name.status());
    const std::string after = in.String("ExclusiveStartTagKey");
    const int64_t limit = in.Int("Limit", 50, 1, 50);
    if (!in.status().ok()) return reply(in.status());
    auto tags = Tags(*name);
    if (!tags.ok()) return reply(tags.status());
    bool more = false;
    Json list = TagList(*tags, after, limit, &more);
    return reply(Json{{"Tags", std::move(list)}, {"HasMoreTags", more}});
  }
  if (op == "ListTagsForResource") {
    auto name = StreamNameFromArn(in.String("ResourceARN"), "ResourceARN");
    if (!name.ok()) return reply(name.status());
    auto tags = Tags(*name);
    if (!tags.ok()) return reply(tags.status());
    bool more = false;
    return reply(Json{{"Tags", TagList(*tags, "", 50, &more)}});
  }
  if (op == "DescribeLimits") return reply(DescribeLimits());
  if (op == "EnableEnhancedMonitoring") return reply(EnhancedMonitoring(in, true));
  if (op == "DisableEnhancedMonitoring") return reply(EnhancedMonitoring(in, false));
  if (op == "StartStreamEncryption" || op == "StopStreamEncryption") {
    return reply(AcceptForStream(in));
  }
  if (op == "UpdateShardCount" || op == "SplitShard" || op == "MergeShards") {
    return reply(KinesisStatus("InvalidArgumentException",
                               absl::StrCat(op,
                                            ": runnel streams keep the shard count they were "
                                            "created with (no resharding yet)")));
  }
  if (op == "UpdateStreamMode") {
    return reply(KinesisStatus("InvalidArgumentException",
                               "UpdateStreamMode: runnel streams are PROVISIONED only"));
  }
  reply(KinesisStatus("UnknownOperationException",
                      absl::StrCat("Operation ", op, " is not supported by runnel")));
}

KinesisApi::KinesisApi(broker::Broker* broker) : impl_(std::make_unique<Impl>(broker)) {}
KinesisApi::~KinesisApi() = default;

void KinesisApi::Handle(std::string_view target, std::string_view content_type,
                        std::string_view body, Done done) {
  const WireFormat format = FormatFromContentType(content_type);
  auto op = OperationFromTarget(target);
  if (!op.ok()) return done(ErrorResponse(op.status(), format));

  // The decoders recurse per level (nlohmann's CBOR reader also per tag): a deep body must be
  // refused before it reaches them, or it overflows the stack.
  if (absl::Status depth = format == WireFormat::kCbor ? CheckCborNesting(body, kMaxBodyNesting)
                                                       : CheckJsonNesting(body, kMaxBodyNesting);
      !depth.ok()) {
    return done(ErrorResponse(
        KinesisStatus("SerializationException", absl::StrCat("the body is ", depth.message())),
        format));
  }
  Json request;
  if (body.empty()) {
    request = Json::object();
  } else if (format == WireFormat::kCbor) {
    request = Json::from_cbor(body, /*strict=*/true, /*allow_exceptions=*/false,
                              Json::cbor_tag_handler_t::ignore);
  } else {
    request = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  }
  if (request.is_discarded() || !request.is_object()) {
    return done(ErrorResponse(
        KinesisStatus("SerializationException", format == WireFormat::kCbor
                                                    ? "the body is not a CBOR map"
                                                    : "the body is not a JSON object"),
        format));
  }

  // `done` runs once: a reply, or an InternalFailure if translating threw (a bug).
  auto replied = std::make_shared<std::atomic<bool>>(false);
  auto finish = [done, replied](ApiResponse response) {
    if (!replied->exchange(true)) done(std::move(response));
  };
  try {
    Reader in(&request, format);
    if (*op == "SubscribeToShard") {
      auto response = impl_->SubscribeToShard(in);
      return finish(response.ok() ? std::move(*response)
                                  : ErrorResponse(response.status(), format));
    }
    impl_->Dispatch(*op, in, [finish, format](absl::StatusOr<Json> result) {
      finish(result.ok() ? OkResponse(*result, format) : ErrorResponse(result.status(), format));
    });
  } catch (const std::exception& e) {
    finish(ErrorResponse(absl::InternalError(absl::StrCat("InternalFailure: ", e.what())), format));
  }
}

}  // namespace runnel::kinesis
