#include "kinesis/wire.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "google/protobuf/util/time_util.h"
#include "kinesis/event_stream.h"

namespace runnel::kinesis {

using google::protobuf::util::TimeUtil;

namespace {
constexpr std::string_view kTargetPrefix = "Kinesis_20131202.";
}  // namespace

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

}  // namespace runnel::kinesis
