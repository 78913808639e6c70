#include "kinesis/api.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/nesting_depth.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "google/protobuf/util/time_util.h"
#include "kinesis/event_stream.h"

namespace runnel::kinesis {
namespace {

using Json = nlohmann::json;
using google::protobuf::util::TimeUtil;

constexpr std::string_view kTargetPrefix = "Kinesis_20131202.";
// Kinesis's limits for what only this layer keeps.
constexpr size_t kMaxConsumersPerStream = 20;
constexpr size_t kMaxTagsPerStream = 50;

absl::Status KinesisStatus(std::string_view type, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(type), ": ", Sv(message)));
}

// AWS's wording for a missing required member.
absl::Status MissingMember(std::string_view member) {
  return KinesisStatus("ValidationException",
                       absl::StrCat("1 validation error detected: Value null at '", Sv(member),
                                    "' failed to satisfy constraint: Member must not be null"));
}

absl::Status OutOfRange(std::string_view member, int64_t value, int64_t min, int64_t max) {
  return KinesisStatus(
      "ValidationException",
      absl::StrCat("1 validation error detected: Value '", value, "' at '", Sv(member),
                   "' failed to satisfy constraint: Member must have value ",
                   value < min ? absl::StrCat("greater than or equal to ", min)
                               : absl::StrCat("less than or equal to ", max)));
}

std::string CamelCase(std::string_view pascal) {
  std::string out(pascal);
  if (!out.empty()) out[0] = absl::ascii_tolower(static_cast<unsigned char>(out[0]));
  return out;
}

// Reads the members of one request object, in either wire format. The first shape error (a
// member of the wrong type, undecodable base64) is kept and reported by status(); readers
// return empty values after it.
class Reader {
 public:
  Reader(const Json* object, WireFormat format) : object_(object), format_(format) {}

  WireFormat format() const { return format_; }
  absl::Status status() const { return status_; }

  bool Has(const char* member) const { return Find(member) != nullptr; }

  std::string String(const char* member) {
    const Json* value = Find(member);
    if (value == nullptr) return {};
    if (!value->is_string()) return Fail(member, "a string"), std::string();
    return value->get<std::string>();
  }

  // Absent: `absent`. Out of int32's range: a ValidationException.
  int64_t Int(const char* member, int64_t absent, int64_t min = std::numeric_limits<int32_t>::min(),
              int64_t max = std::numeric_limits<int32_t>::max()) {
    const Json* value = Find(member);
    if (value == nullptr) return absent;
    int64_t result = 0;
    if (value->is_number_integer()) {
      result = value->is_number_unsigned()
                   ? static_cast<int64_t>(std::min<uint64_t>(value->get<uint64_t>(), INT64_MAX))
                   : value->get<int64_t>();
    } else if (value->is_number_float() &&
               std::trunc(value->get<double>()) == value->get<double>() &&
               std::abs(value->get<double>()) < 9e18) {
      result = static_cast<int64_t>(value->get<double>());
    } else {
      Fail(member, "an integer");
      return absent;
    }
    if ((result < min || result > max) && status_.ok()) {
      status_ = OutOfRange(CamelCase(member), result, min, max);
    }
    return result;
  }

  bool Bool(const char* member) {
    const Json* value = Find(member);
    if (value == nullptr) return false;
    if (!value->is_boolean()) return Fail(member, "a boolean"), false;
    return value->get<bool>();
  }

  // Bytes: base64 text in JSON; a byte string in CBOR (base64 text accepted there too).
  std::string Blob(const char* member) {
    const Json* value = Find(member);
    if (value == nullptr) return {};
    if (value->is_binary()) {
      const auto& bytes = value->get_binary();
      return std::string(bytes.begin(), bytes.end());
    }
    if (!value->is_string()) return Fail(member, "base64 text or bytes"), std::string();
    std::string decoded;
    if (!absl::Base64Unescape(value->get_ref<const std::string&>(), &decoded)) {
      Fail(member, "base64 text");
      return {};
    }
    return decoded;
  }

  // Epoch milliseconds. JSON: epoch seconds (fractional allowed) or ISO 8601 text; CBOR: epoch
  // milliseconds (the AWS CBOR protocol's timestamps).
  std::optional<int64_t> TimestampMs(const char* member) {
    const Json* value = Find(member);
    if (value == nullptr) return std::nullopt;
    if (value->is_number()) {
      const double number = value->get<double>();
      if (format_ == WireFormat::kCbor) return static_cast<int64_t>(std::llround(number));
      return static_cast<int64_t>(std::llround(number * 1000.0));
    }
    if (value->is_string()) {
      const std::string& text = value->get_ref<const std::string&>();
      double seconds;
      if (absl::SimpleAtod(text, &seconds))
        return static_cast<int64_t>(std::llround(seconds * 1000));
      absl::Time time;
      std::string error;
      if (absl::ParseTime(absl::RFC3339_full, text, &time, &error)) return absl::ToUnixMillis(time);
    }
    Fail(member, "a timestamp (epoch seconds or ISO 8601)");
    return std::nullopt;
  }

  // A member holding an object (nullptr when absent or not an object; the latter fails).
  const Json* Object(const char* member) {
    const Json* value = Find(member);
    if (value == nullptr) return nullptr;
    if (!value->is_object()) return Fail(member, "a structure"), nullptr;
    return value;
  }
  const Json* Array(const char* member) {
    const Json* value = Find(member);
    if (value == nullptr) return nullptr;
    if (!value->is_array()) return Fail(member, "a list"), nullptr;
    return value;
  }
  std::vector<std::string> StringList(const char* member) {
    std::vector<std::string> out;
    const Json* list = Array(member);
    if (list == nullptr) return out;
    for (const Json& item : *list) {
      if (!item.is_string()) return Fail(member, "a list of strings"), out;
      out.push_back(item.get<std::string>());
    }
    return out;
  }

  // Records a failure found by the caller (the first one wins).
  void Set(absl::Status status) {
    if (status_.ok()) status_ = std::move(status);
  }

 private:
  const Json* Find(const char* member) const {
    if (object_ == nullptr || !object_->is_object()) return nullptr;
    auto it = object_->find(member);
    if (it == object_->end() || it->is_null()) return nullptr;
    return &*it;
  }
  void Fail(const char* member, std::string_view expected) {
    Set(KinesisStatus("SerializationException",
                      absl::StrCat("member ", member, ": expected ", Sv(expected))));
  }

  const Json* object_;
  WireFormat format_;
  absl::Status status_;
};

Json Blob(std::string_view data, WireFormat format) {
  if (format == WireFormat::kCbor) {
    return Json::binary(std::vector<uint8_t>(data.begin(), data.end()));
  }
  return absl::Base64Escape(Sv(data));
}

Json Time(int64_t ms, WireFormat format) {
  if (format == WireFormat::kCbor) return ms;
  return static_cast<double>(ms) / 1000.0;
}

Json Time(const google::protobuf::Timestamp& timestamp, WireFormat format) {
  return Time(TimeUtil::TimestampToMilliseconds(timestamp), format);
}

std::string Serialize(const Json& value, WireFormat format) {
  if (format == WireFormat::kCbor) {
    std::vector<uint8_t> bytes = Json::to_cbor(value);
    return std::string(bytes.begin(), bytes.end());
  }
  // Partition keys from CBOR requests need not be UTF-8; never throw on them.
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string ContentType(WireFormat format) {
  return std::string(format == WireFormat::kCbor ? kCborContentType : kJsonContentType);
}

ApiResponse OkResponse(const Json& value, WireFormat format) {
  ApiResponse response;
  response.content_type = ContentType(format);
  response.body = Serialize(value, format);
  response.format = format;
  return response;
}

ApiResponse ErrorResponse(const absl::Status& status, WireFormat format) {
  KinesisError error = ErrorFromStatus(status);
  ApiResponse response;
  response.http_status = error.http_status;
  response.content_type = ContentType(format);
  response.error_type = error.type;
  response.body = Serialize(Json{{"__type", error.type}, {"message", error.message}}, format);
  response.format = format;
  return response;
}

Json ShardJson(const v1::Shard& shard) {
  Json out{{"ShardId", shard.shard_id()},
           {"HashKeyRange",
            {{"StartingHashKey", shard.hash_key_range().starting_hash_key()},
             {"EndingHashKey", shard.hash_key_range().ending_hash_key()}}}};
  if (!shard.parent_shard_id().empty()) out["ParentShardId"] = shard.parent_shard_id();
  if (!shard.adjacent_parent_shard_id().empty()) {
    out["AdjacentParentShardId"] = shard.adjacent_parent_shard_id();
  }
  Json range{{"StartingSequenceNumber", shard.sequence_number_range().starting_sequence_number()}};
  if (!shard.sequence_number_range().ending_sequence_number().empty()) {
    range["EndingSequenceNumber"] = shard.sequence_number_range().ending_sequence_number();
  }
  out["SequenceNumberRange"] = std::move(range);
  return out;
}

Json RecordJson(const v1::Record& record, WireFormat format) {
  return Json{{"SequenceNumber", record.sequence_number()},
              {"ApproximateArrivalTimestamp", Time(record.approximate_arrival_timestamp(), format)},
              {"Data", Blob(record.data(), format)},
              {"PartitionKey", record.partition_key()}};
}

Json ChildShardsJson(const google::protobuf::RepeatedPtrField<v1::ChildShard>& children) {
  Json out = Json::array();
  for (const auto& child : children) {
    out.push_back({{"ShardId", child.shard_id()},
                   {"ParentShards", Json(std::vector<std::string>(child.parent_shards().begin(),
                                                                  child.parent_shards().end()))},
                   {"HashKeyRange",
                    {{"StartingHashKey", child.hash_key_range().starting_hash_key()},
                     {"EndingHashKey", child.hash_key_range().ending_hash_key()}}}});
  }
  return out;
}

absl::StatusOr<v1::ShardIteratorType> IteratorType(const std::string& name,
                                                   std::string_view member) {
  v1::ShardIteratorType type;
  if (name.empty() || !v1::ShardIteratorType_Parse(name, &type) ||
      type == v1::SHARD_ITERATOR_TYPE_UNSPECIFIED) {
    return KinesisStatus(
        "ValidationException",
        absl::StrCat("1 validation error detected: Value '", name, "' at '", Sv(member),
                     "' failed to satisfy constraint: Member must satisfy enum value set: "
                     "[AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, "
                     "AT_TIMESTAMP]"));
  }
  return type;
}

google::protobuf::Timestamp MillisToProto(int64_t ms) {
  return TimeUtil::MillisecondsToTimestamp(ms);
}

struct ConsumerArnParts {
  std::string stream_name;
  std::string consumer_name;
};

// arn:aws:kinesis:<region>:<account>:stream/<stream>/consumer/<consumer>:<creation seconds>
absl::StatusOr<ConsumerArnParts> ParseConsumerArn(std::string_view arn) {
  const size_t marker = arn.find("/consumer/");
  if (marker == std::string_view::npos) {
    return KinesisStatus("InvalidArgumentException",
                         absl::StrCat("ConsumerARN ", Sv(arn), " is not a stream consumer ARN"));
  }
  ConsumerArnParts parts;
  ASSIGN_OR_RETURN(parts.stream_name, StreamNameFromArn(arn.substr(0, marker), "ConsumerARN"));
  std::string_view rest = arn.substr(marker + sizeof("/consumer/") - 1);
  rest = rest.substr(0, rest.rfind(':'));
  parts.consumer_name = std::string(rest);
  if (parts.consumer_name.empty()) {
    return KinesisStatus("InvalidArgumentException",
                         absl::StrCat("ConsumerARN ", Sv(arn), " names no consumer"));
  }
  return parts;
}

}  // namespace

WireFormat FormatFromContentType(std::string_view content_type) {
  std::string lowered = absl::AsciiStrToLower(Sv(content_type));
  return lowered.find("cbor") != std::string::npos ? WireFormat::kCbor : WireFormat::kJson;
}

absl::StatusOr<std::string> OperationFromTarget(std::string_view target) {
  if (!target.starts_with(kTargetPrefix) || target.size() == kTargetPrefix.size()) {
    return KinesisStatus("UnknownOperationException",
                         target.empty() ? "Missing X-Amz-Target header"
                                        : absl::StrCat("Unknown operation ", Sv(target)));
  }
  return std::string(target.substr(kTargetPrefix.size()));
}

absl::StatusOr<std::string> StreamNameFromArn(std::string_view arn, std::string_view field) {
  // arn : partition : service : region : account : resource
  std::vector<absl::string_view> split = absl::StrSplit(Sv(arn), absl::MaxSplits(':', 5));
  std::vector<std::string_view> parts;
  for (absl::string_view part : split) parts.emplace_back(part.data(), part.size());
  auto invalid = [&] {
    return KinesisStatus("InvalidArgumentException",
                         absl::StrCat(Sv(field), " ", Sv(arn),
                                      " is not a stream ARN: expected "
                                      "arn:aws:kinesis:<region>:<account>:stream/<name>"));
  };
  if (parts.size() != 6 || parts[0] != "arn" || parts[2] != "kinesis" ||
      !parts[5].starts_with("stream/")) {
    return invalid();
  }
  std::string_view name = parts[5].substr(sizeof("stream/") - 1);
  if (name.empty() || name.find('/') != std::string_view::npos) return invalid();
  return std::string(name);
}

KinesisError ErrorFromStatus(const absl::Status& status) {
  KinesisError error;
  const std::string_view message(status.message().data(), status.message().size());
  const size_t colon = message.find(": ");
  if (colon != std::string_view::npos) {
    std::string_view name = message.substr(0, colon);
    const bool is_name =
        (name.ends_with("Exception") || name == "InternalFailure") &&
        std::all_of(name.begin(), name.end(), [](char c) { return absl::ascii_isalnum(c); });
    if (is_name) {
      error.type = std::string(name);
      error.message = std::string(message.substr(colon + 2));
    }
  }
  if (error.type.empty()) {
    error.message = std::string(message);
    switch (status.code()) {
      case absl::StatusCode::kNotFound:
        error.type = "ResourceNotFoundException";
        break;
      case absl::StatusCode::kAlreadyExists:
        error.type = "ResourceInUseException";
        break;
      case absl::StatusCode::kInvalidArgument:
      case absl::StatusCode::kOutOfRange:
      case absl::StatusCode::kFailedPrecondition:
        error.type = "InvalidArgumentException";
        break;
      case absl::StatusCode::kResourceExhausted:
        error.type = "ProvisionedThroughputExceededException";
        break;
      case absl::StatusCode::kUnavailable:
      case absl::StatusCode::kCancelled:
        error.type = "ServiceUnavailable";
        error.http_status = 503;
        break;
      default:
        error.type = "InternalFailure";
        break;
    }
  }
  if (error.type == "InternalFailure") error.http_status = 500;
  return error;
}

std::string EncodeSubscribeEvent(const v1::SubscribeToShardEvent& event, WireFormat format) {
  Json records = Json::array();
  for (const auto& record : event.records()) records.push_back(RecordJson(record, format));
  Json payload{{"Records", std::move(records)},
               {"ContinuationSequenceNumber", event.continuation_sequence_number()},
               {"MillisBehindLatest", event.millis_behind_latest()}};
  if (event.child_shards_size() > 0) payload["ChildShards"] = ChildShardsJson(event.child_shards());
  return EncodeEventStreamMessage({{":message-type", "event"},
                                   {":event-type", "SubscribeToShardEvent"},
                                   {":content-type", ContentType(format)}},
                                  Serialize(payload, format));
}

std::string EncodeSubscribeError(const absl::Status& status, WireFormat format) {
  KinesisError error = ErrorFromStatus(status);
  return EncodeEventStreamMessage({{":message-type", "exception"},
                                   {":exception-type", error.type},
                                   {":content-type", ContentType(format)}},
                                  Serialize(Json{{"message", error.message}}, format));
}

// ---------------------------------------------------------------------------------------------

struct KinesisApi::Impl {
  broker::Broker* const broker;

  // What the core does not keep: registered consumers, tags, the enhanced-monitoring metric
  // names. In memory, per stream, and forgotten when the stream is deleted or replaced by one
  // of the same name (told apart by creation time).
  struct Consumer {
    std::string name;
    std::string arn;
    int64_t creation_ms = 0;
  };
  struct StreamExtras {
    int64_t stream_creation_ms = 0;
    std::map<std::string, std::string> tags;
    std::map<std::string, Consumer> consumers;
    std::set<std::string> metrics;
  };
  absl::Mutex mu;
  absl::flat_hash_map<std::string, StreamExtras> extras ABSL_GUARDED_BY(mu);

  explicit Impl(broker::Broker* b) : broker(b) {}

  using Reply = std::function<void(absl::StatusOr<Json>)>;

  // StreamName, or the name inside StreamARN (the two must agree when both are set).
  absl::StatusOr<std::string> StreamName(Reader& in, bool name_only = false) {
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

  absl::StatusOr<v1::StreamDescriptionSummary> Summary(const std::string& stream) {
    v1::DescribeStreamSummaryRequest request;
    request.set_stream_name(stream);
    ASSIGN_OR_RETURN(auto response, broker->DescribeStreamSummary(request));
    return response.stream_description_summary();
  }

  StreamExtras& ExtrasFor(const v1::StreamDescriptionSummary& summary)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int64_t created = TimeUtil::TimestampToMilliseconds(summary.stream_creation_timestamp());
    StreamExtras& entry = extras[summary.stream_name()];
    if (entry.stream_creation_ms != created) entry = StreamExtras{created, {}, {}, {}};
    return entry;
  }

  Json StreamMode() { return Json{{"StreamMode", "PROVISIONED"}}; }

  Json MetricsJson(const std::set<std::string>& metrics) {
    return Json::array({Json{
        {"ShardLevelMetrics", Json(std::vector<std::string>(metrics.begin(), metrics.end()))}}});
  }

  // ---- Control plane ----

  absl::StatusOr<Json> CreateStream(Reader& in) {
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

  absl::StatusOr<Json> DeleteStream(Reader& in) {
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

  absl::StatusOr<Json> ListStreams(Reader& in) {
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

  Json SummaryJson(const v1::StreamDescriptionSummary& summary, WireFormat format) {
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

  absl::StatusOr<Json> DescribeStreamSummary(Reader& in) {
    ASSIGN_OR_RETURN(std::string name, StreamName(in));
    ASSIGN_OR_RETURN(auto summary, Summary(name));
    Json out = SummaryJson(summary, in.format());
    out["OpenShardCount"] = summary.open_shard_count();
    return Json{{"StreamDescriptionSummary", std::move(out)}};
  }

  absl::StatusOr<Json> DescribeStream(Reader& in) {
    ASSIGN_OR_RETURN(std::string name, StreamName(in));
    v1::ListShardsRequest request;
    request.set_stream_name(name);
    request.set_max_results(static_cast<int>(in.Int("Limit", 100, 1, 10000)));
    request.set_exclusive_start_shard_id(in.String("ExclusiveStartShardId"));
    RETURN_IF_ERROR(in.status());
    ASSIGN_OR_RETURN(auto summary, Summary(name));
    ASSIGN_OR_RETURN(auto shards, broker->ListShards(request));
    Json out = SummaryJson(summary, in.format());
    out.erase("ConsumerCount");  // not a member of StreamDescription
    Json list = Json::array();
    for (const auto& shard : shards.shards()) list.push_back(ShardJson(shard));
    out["Shards"] = std::move(list);
    out["HasMoreShards"] = !shards.next_token().empty();
    return Json{{"StreamDescription", std::move(out)}};
  }

  absl::StatusOr<Json> ListShards(Reader& in) {
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
    (void)in.TimestampMs("StreamCreationTimestamp");  // names one stream; runnel has one per name
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
      if (type == "AFTER_SHARD_ID")
        request.set_exclusive_start_shard_id(filter_in.String("ShardId"));
    }
    RETURN_IF_ERROR(in.status());
    ASSIGN_OR_RETURN(auto response, broker->ListShards(request));
    Json shards = Json::array();
    for (const auto& shard : response.shards()) shards.push_back(ShardJson(shard));
    Json out{{"Shards", std::move(shards)}};
    if (!response.next_token().empty()) out["NextToken"] = response.next_token();
    return out;
  }

  absl::StatusOr<Json> Retention(Reader& in, bool increase) {
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

  // ---- Data plane ----

  void PutRecord(Reader& in, Reply reply) {
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

  void PutRecords(Reader& in, Reply reply) {
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
    broker->PutRecords(
        request, [reply = std::move(reply)](absl::StatusOr<v1::PutRecordsResponse> r) {
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

  absl::StatusOr<Json> GetShardIterator(Reader& in) {
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

  void GetRecords(Reader& in, Reply reply) {
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
    broker->GetRecords(
        request, [reply = std::move(reply), format](absl::StatusOr<v1::GetRecordsResponse> r) {
          if (!r.ok()) return reply(r.status());
          Json records = Json::array();
          for (const auto& record : r->records()) records.push_back(RecordJson(record, format));
          Json out{{"Records", std::move(records)},
                   {"NextShardIterator", r->next_shard_iterator()},
                   {"MillisBehindLatest", r->millis_behind_latest()}};
          if (r->child_shards_size() > 0) out["ChildShards"] = ChildShardsJson(r->child_shards());
          if (r->next_shard_iterator().empty()) out.erase("NextShardIterator");
          reply(std::move(out));
        });
  }

  // ---- Consumers (kept by this layer) ----

  Json ConsumerJson(const Consumer& consumer, WireFormat format) {
    return Json{{"ConsumerName", consumer.name},
                {"ConsumerARN", consumer.arn},
                {"ConsumerStatus", "ACTIVE"},
                {"ConsumerCreationTimestamp", Time(consumer.creation_ms, format)}};
  }

  absl::StatusOr<std::string> RequiredStreamArn(Reader& in) {
    if (!in.Has("StreamARN")) {
      RETURN_IF_ERROR(in.status());
      return MissingMember("streamARN");
    }
    return StreamNameFromArn(in.String("StreamARN"));
  }

  absl::Status ValidateConsumerName(const std::string& name) {
    if (name.empty() || name.size() > 128 || !std::all_of(name.begin(), name.end(), [](char c) {
          return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
                 c == '-';
        })) {
      return KinesisStatus(
          "ValidationException",
          absl::StrCat("1 validation error detected: Value '", name,
                       "' at 'consumerName' failed to satisfy constraint: Member must satisfy "
                       "regular expression pattern: [a-zA-Z0-9_.-]+ and have length 1 to 128"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Json> RegisterStreamConsumer(Reader& in) {
    ASSIGN_OR_RETURN(std::string stream, RequiredStreamArn(in));
    if (!in.Has("ConsumerName")) return MissingMember("consumerName");
    const std::string name = in.String("ConsumerName");
    RETURN_IF_ERROR(in.status());
    RETURN_IF_ERROR(ValidateConsumerName(name));
    ASSIGN_OR_RETURN(auto summary, Summary(stream));
    absl::MutexLock lock(&mu);
    StreamExtras& entry = ExtrasFor(summary);
    if (entry.consumers.contains(name)) {
      return absl::AlreadyExistsError(absl::StrCat("ResourceInUseException: Consumer ", name,
                                                   " under stream ", stream, " already exists."));
    }
    if (entry.consumers.size() >= kMaxConsumersPerStream) {
      return KinesisStatus("LimitExceededException",
                           absl::StrCat("Stream ", stream, " already has ", kMaxConsumersPerStream,
                                        " registered consumers, the limit"));
    }
    Consumer consumer;
    consumer.name = name;
    consumer.creation_ms = absl::ToUnixMillis(absl::Now());
    consumer.arn =
        absl::StrCat(summary.stream_arn(), "/consumer/", name, ":", consumer.creation_ms / 1000);
    entry.consumers[name] = consumer;
    return Json{{"Consumer", ConsumerJson(consumer, in.format())}};
  }

  // The consumer a request names: ConsumerARN, or StreamARN + ConsumerName.
  absl::StatusOr<std::pair<v1::StreamDescriptionSummary, Consumer>> FindConsumer(Reader& in) {
    std::string stream;
    std::string name;
    const std::string arn = in.String("ConsumerARN");
    if (in.Has("ConsumerARN")) {
      ASSIGN_OR_RETURN(ConsumerArnParts parts, ParseConsumerArn(arn));
      stream = parts.stream_name;
      name = parts.consumer_name;
    } else if (in.Has("StreamARN") && in.Has("ConsumerName")) {
      ASSIGN_OR_RETURN(stream, StreamNameFromArn(in.String("StreamARN")));
      name = in.String("ConsumerName");
    } else {
      RETURN_IF_ERROR(in.status());
      return KinesisStatus("InvalidArgumentException",
                           "Either ConsumerARN or both StreamARN and ConsumerName must be given");
    }
    RETURN_IF_ERROR(in.status());
    ASSIGN_OR_RETURN(auto summary, Summary(stream));
    absl::MutexLock lock(&mu);
    StreamExtras& entry = ExtrasFor(summary);
    auto it = entry.consumers.find(name);
    if (it == entry.consumers.end() || (!arn.empty() && it->second.arn != arn)) {
      return absl::NotFoundError(absl::StrCat("ResourceNotFoundException: Consumer ",
                                              arn.empty() ? name : arn, " under stream ", stream,
                                              " not found."));
    }
    return std::make_pair(summary, it->second);
  }

  absl::StatusOr<Json> DescribeStreamConsumer(Reader& in) {
    ASSIGN_OR_RETURN(auto found, FindConsumer(in));
    Json description = ConsumerJson(found.second, in.format());
    description["StreamARN"] = found.first.stream_arn();
    return Json{{"ConsumerDescription", std::move(description)}};
  }

  absl::StatusOr<Json> DeregisterStreamConsumer(Reader& in) {
    ASSIGN_OR_RETURN(auto found, FindConsumer(in));
    absl::MutexLock lock(&mu);
    ExtrasFor(found.first).consumers.erase(found.second.name);
    return Json::object();
  }

  absl::StatusOr<Json> ListStreamConsumers(Reader& in) {
    ASSIGN_OR_RETURN(std::string stream, RequiredStreamArn(in));
    const int64_t max_results = in.Int("MaxResults", 100, 1, 10000);
    const std::string after = in.String("NextToken");  // the last name of the previous page
    (void)in.TimestampMs("StreamCreationTimestamp");
    RETURN_IF_ERROR(in.status());
    ASSIGN_OR_RETURN(auto summary, Summary(stream));
    absl::MutexLock lock(&mu);
    Json consumers = Json::array();
    Json out = Json::object();
    for (const auto& [name, consumer] : ExtrasFor(summary).consumers) {
      if (!after.empty() && name <= after) continue;
      if (static_cast<int64_t>(consumers.size()) >= max_results) {
        out["NextToken"] = consumers.back()["ConsumerName"];
        break;
      }
      consumers.push_back(ConsumerJson(consumer, in.format()));
    }
    out["Consumers"] = std::move(consumers);
    return out;
  }

  absl::StatusOr<ApiResponse> SubscribeToShard(Reader& in) {
    if (!in.Has("ConsumerARN")) return MissingMember("consumerARN");
    if (!in.Has("ShardId")) return MissingMember("shardId");
    const Json* position = in.Object("StartingPosition");
    RETURN_IF_ERROR(in.status());
    if (position == nullptr) return MissingMember("startingPosition");
    Reader position_in(position, in.format());
    ASSIGN_OR_RETURN(v1::ShardIteratorType type,
                     IteratorType(position_in.String("Type"), "startingPosition.type"));
    ASSIGN_OR_RETURN(auto found, FindConsumer(in));
    v1::SubscribeToShardRequest request;
    request.set_stream_name(found.first.stream_name());
    request.set_shard_id(in.String("ShardId"));
    request.set_consumer_name(found.second.name);
    auto* start = request.mutable_starting_position();
    start->set_type(type);
    start->set_sequence_number(position_in.String("SequenceNumber"));
    if (auto ms = position_in.TimestampMs("Timestamp"))
      *start->mutable_timestamp() = MillisToProto(*ms);
    RETURN_IF_ERROR(position_in.status());
    ASSIGN_OR_RETURN(std::unique_ptr<broker::Subscription> subscription,
                     broker->SubscribeToShard(request));
    ApiResponse response;
    response.content_type = std::string(kEventStreamContentType);
    response.format = in.format();
    response.body = EncodeEventStreamMessage({{":message-type", "event"},
                                              {":event-type", "initial-response"},
                                              {":content-type", ContentType(in.format())}},
                                             Serialize(Json::object(), in.format()));
    response.subscription = std::move(subscription);
    return response;
  }

  // ---- Tags (kept by this layer) ----

  absl::StatusOr<Json> AddTags(const std::string& stream, const Json* tag_map) {
    if (tag_map == nullptr) return MissingMember("tags");
    std::map<std::string, std::string> tags;
    for (const auto& [key, value] : tag_map->items()) {
      if (!value.is_string()) {
        return KinesisStatus("SerializationException", "Tags: expected a map of strings");
      }
      if (key.empty() || key.size() > 128) {
        return KinesisStatus("InvalidArgumentException",
                             absl::StrCat("Tag key '", key, "' must be 1 to 128 characters"));
      }
      tags[key] = value.get<std::string>();
    }
    ASSIGN_OR_RETURN(auto summary, Summary(stream));
    absl::MutexLock lock(&mu);
    StreamExtras& entry = ExtrasFor(summary);
    std::map<std::string, std::string> merged = entry.tags;
    for (auto& [key, value] : tags) merged[key] = value;
    if (merged.size() > kMaxTagsPerStream) {
      return KinesisStatus("LimitExceededException",
                           absl::StrCat("A stream has at most ", kMaxTagsPerStream, " tags; ",
                                        stream, " would have ", merged.size()));
    }
    entry.tags = std::move(merged);
    return Json::object();
  }

  absl::StatusOr<Json> RemoveTags(const std::string& stream, const std::vector<std::string>& keys) {
    ASSIGN_OR_RETURN(auto summary, Summary(stream));
    absl::MutexLock lock(&mu);
    StreamExtras& entry = ExtrasFor(summary);
    for (const std::string& key : keys) entry.tags.erase(key);
    return Json::object();
  }

  absl::StatusOr<std::map<std::string, std::string>> Tags(const std::string& stream) {
    ASSIGN_OR_RETURN(auto summary, Summary(stream));
    absl::MutexLock lock(&mu);
    return ExtrasFor(summary).tags;
  }

  static Json TagList(const std::map<std::string, std::string>& tags, const std::string& after,
                      int64_t limit, bool* more) {
    Json list = Json::array();
    *more = false;
    for (const auto& [key, value] : tags) {
      if (!after.empty() && key <= after) continue;
      if (static_cast<int64_t>(list.size()) >= limit) {
        *more = true;
        break;
      }
      list.push_back({{"Key", key}, {"Value", value}});
    }
    return list;
  }

  // ---- Everything else ----

  absl::StatusOr<Json> DescribeLimits() {
    v1::ListStreamsRequest request;
    ASSIGN_OR_RETURN(auto streams, broker->ListStreams(request));
    int64_t open_shards = 0;
    for (const std::string& name : streams.stream_names()) {
      auto summary = Summary(name);
      if (summary.ok()) open_shards += summary->open_shard_count();
    }
    // runnel has no account-wide shard limit; the per-stream one (1,024) is reported.
    return Json{{"ShardLimit", std::max<int64_t>(1024, open_shards)},
                {"OpenShardCount", open_shards},
                {"OnDemandStreamCount", 0},
                {"OnDemandStreamCountLimit", 50}};
  }

  absl::StatusOr<Json> EnhancedMonitoring(Reader& in, bool enable) {
    ASSIGN_OR_RETURN(std::string name, StreamName(in));
    if (!in.Has("ShardLevelMetrics")) return MissingMember("shardLevelMetrics");
    std::vector<std::string> metrics = in.StringList("ShardLevelMetrics");
    RETURN_IF_ERROR(in.status());
    ASSIGN_OR_RETURN(auto summary, Summary(name));
    absl::MutexLock lock(&mu);
    StreamExtras& entry = ExtrasFor(summary);
    Json current(std::vector<std::string>(entry.metrics.begin(), entry.metrics.end()));
    for (const std::string& metric : metrics) {
      if (enable) {
        entry.metrics.insert(metric);
      } else {
        entry.metrics.erase(metric);
      }
    }
    return Json{{"StreamName", name},
                {"StreamARN", summary.stream_arn()},
                {"CurrentShardLevelMetrics", std::move(current)},
                {"DesiredShardLevelMetrics",
                 Json(std::vector<std::string>(entry.metrics.begin(), entry.metrics.end()))}};
  }

  // Calls that change nothing here but must name an existing stream.
  absl::StatusOr<Json> AcceptForStream(Reader& in) {
    ASSIGN_OR_RETURN(std::string name, StreamName(in));
    RETURN_IF_ERROR(Summary(name).status());
    return Json::object();
  }

  void Dispatch(const std::string& op, Reader& in, Reply reply) {
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
};

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
