// Reading Lambda Kinesis events and writing Lambda-shaped results, with RapidJSON.
#include "runnel/runtime/event_json.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/nesting_depth.h"

namespace runnel::runtime {
namespace {

absl::Status FieldError(size_t index, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("Records[", index, "].", field, ": ", what));
}

// A required string member.
absl::StatusOr<std::string> StringField(const rapidjson::Value& object, const char* name,
                                        size_t index, absl::string_view path) {
  auto it = object.FindMember(name);
  if (it == object.MemberEnd()) return FieldError(index, path, "missing");
  if (!it->value.IsString()) return FieldError(index, path, "must be a string");
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace

std::vector<RecordView> OwnedEvent::views() const {
  std::vector<RecordView> out;
  out.reserve(records.size());
  for (const Record& r : records) {
    out.push_back(RecordView{r.partition_key, r.sequence_number, r.data, r.approximate_arrival_ms});
  }
  return out;
}

// Deeper than any event or failure record runnel writes, far shallower than a stack allows.
constexpr int kMaxEventJsonDepth = 64;

absl::StatusOr<OwnedEvent> ParseKinesisEventJson(std::string_view json) {
  // rapidjson's parser recurses once per level: a file of deeply nested brackets would overflow
  // the stack. A Kinesis event is a few levels deep.
  if (absl::Status deep = CheckJsonNesting(json, kMaxEventJsonDepth); !deep.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("not a Kinesis event: ", deep.message()));
  }
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not JSON: ", rapidjson::GetParseError_En(doc.GetParseError()), " at offset ",
                     doc.GetErrorOffset()));
  }
  if (!doc.IsObject() || !doc.HasMember("Records") || !doc["Records"].IsArray()) {
    return absl::InvalidArgumentError("not a Kinesis event: expected {\"Records\": [...]}");
  }
  OwnedEvent event;
  const rapidjson::Value& records = doc["Records"];
  for (rapidjson::SizeType i = 0; i < records.Size(); ++i) {
    const rapidjson::Value& entry = records[i];
    if (!entry.IsObject()) return FieldError(i, "", "must be an object");
    auto kinesis_it = entry.FindMember("kinesis");
    if (kinesis_it == entry.MemberEnd() || !kinesis_it->value.IsObject()) {
      return FieldError(i, "kinesis", "missing or not an object");
    }
    const rapidjson::Value& kinesis = kinesis_it->value;
    OwnedEvent::Record record;
    auto key = StringField(kinesis, "partitionKey", i, "kinesis.partitionKey");
    if (!key.ok()) return key.status();
    record.partition_key = *std::move(key);
    auto sequence = StringField(kinesis, "sequenceNumber", i, "kinesis.sequenceNumber");
    if (!sequence.ok()) return sequence.status();
    record.sequence_number = *std::move(sequence);
    auto data = StringField(kinesis, "data", i, "kinesis.data");
    if (!data.ok()) return data.status();
    if (!absl::Base64Unescape(*data, &record.data)) {
      return FieldError(i, "kinesis.data", "not valid base64");
    }
    auto arrival = kinesis.FindMember("approximateArrivalTimestamp");
    if (arrival != kinesis.MemberEnd()) {
      if (!arrival->value.IsNumber()) {
        return FieldError(i, "kinesis.approximateArrivalTimestamp", "must be a number (seconds)");
      }
      record.approximate_arrival_ms =
          static_cast<int64_t>(std::llround(arrival->value.GetDouble() * 1000.0));
    }
    // Batch-wide fields come from the first record (a Lambda batch is one shard of one stream).
    if (i == 0) {
      auto id = entry.FindMember("eventID");
      if (id != entry.MemberEnd() && id->value.IsString()) {
        std::string_view event_id(id->value.GetString(), id->value.GetStringLength());
        event.shard_id = std::string(event_id.substr(0, event_id.find(':')));
      }
      auto arn = entry.FindMember("eventSourceARN");
      if (arn != entry.MemberEnd() && arn->value.IsString())
        event.event_source_arn = arn->value.GetString();
      auto region = entry.FindMember("awsRegion");
      if (region != entry.MemberEnd() && region->value.IsString()) {
        event.aws_region = region->value.GetString();
      }
    }
    event.records.push_back(std::move(record));
  }
  return event;
}

OwnedEvent EventFromData(const std::vector<std::string>& lines, std::string_view shard_id,
                         std::string_view event_source_arn, std::string_view aws_region,
                         std::string_view partition_key) {
  OwnedEvent event;
  event.shard_id = std::string(shard_id);
  event.event_source_arn = std::string(event_source_arn);
  event.aws_region = std::string(aws_region);
  int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (size_t i = 0; i < lines.size(); ++i) {
    OwnedEvent::Record record;
    record.partition_key =
        partition_key.empty() ? absl::StrCat("pk-", i + 1) : std::string(partition_key);
    // 56 digits like a Kinesis sequence number, increasing with the record's position.
    record.sequence_number = absl::StrFormat("4965%052d", i + 1);
    record.data = lines[i];
    record.approximate_arrival_ms = now_ms;
    event.records.push_back(std::move(record));
  }
  return event;
}

std::string InvokeResultToJson(const InvokeResult& result) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  if (result.status == InvokeStatus::kSuccess ||
      result.status == InvokeStatus::kBatchItemFailures) {
    writer.Key("batchItemFailures");
    writer.StartArray();
    for (const std::string& id : result.batch_item_failures) {
      writer.StartObject();
      writer.Key("itemIdentifier");
      writer.String(id.data(), static_cast<rapidjson::SizeType>(id.size()));
      writer.EndObject();
    }
    writer.EndArray();
  } else {
    writer.Key("errorType");
    writer.String(result.error_type.data(),
                  static_cast<rapidjson::SizeType>(result.error_type.size()));
    writer.Key("errorMessage");
    writer.String(result.error_message.data(),
                  static_cast<rapidjson::SizeType>(result.error_message.size()));
  }
  writer.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace runnel::runtime
