// Writing and reading the on-failure record (docs/aws-semantics.md#on-failure-record, plus the
// payload), with RapidJSON. The payload is written by the handler SDK's Event::ToJson so that it is
// byte for byte the event a handler receives, and read back with the runtime's
// ParseKinesisEventJson.
#include "poller/failure_record.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/nesting_depth.h"
#include "common/strings.h"
#include "runnel/handler.h"

namespace runnel::poller {
namespace {

constexpr char kExecutedVersion[] = "$LATEST";
constexpr char kUnhandled[] = "Unhandled";

runnel_bytes Bytes(std::string_view s) { return runnel_bytes{s.data(), s.size()}; }

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void String(Writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
void Key(Writer& w, std::string_view s) {
  w.Key(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
void OptionalString(Writer& w, const std::optional<std::string>& s) {
  if (s) {
    String(w, *s);
  } else {
    w.Null();
  }
}

// Lambda's Kinesis event for the records, exactly as Event::ToJson writes it.
std::string PayloadJson(const FailureRecord& record) {
  std::vector<runnel_record> records;
  records.reserve(record.payload.records.size());
  for (const runtime::OwnedEvent::Record& r : record.payload.records) {
    records.push_back(runnel_record{Bytes(r.partition_key), Bytes(r.sequence_number), Bytes(r.data),
                                    r.approximate_arrival_ms});
  }
  runnel_event event;
  event.records = records.data();
  event.record_count = records.size();
  event.shard_id = Bytes(record.payload.shard_id);
  event.event_source_arn = Bytes(record.payload.event_source_arn);
  event.aws_region = Bytes(record.payload.aws_region);
  event.invoke_identity_arn = Bytes(record.invoke_identity_arn);
  return Event(&event).ToJson();
}

absl::Status FieldError(std::string_view field, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(field), ": ", Sv(what)));
}

const rapidjson::Value* Member(const rapidjson::Value& object, const char* name) {
  auto it = object.FindMember(name);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

absl::StatusOr<const rapidjson::Value*> Object(const rapidjson::Value& parent, const char* name) {
  const rapidjson::Value* v = Member(parent, name);
  if (v == nullptr) return FieldError(name, "missing");
  if (!v->IsObject()) return FieldError(name, "must be an object");
  return v;
}

absl::Status GetString(const rapidjson::Value& object, const char* name, std::string_view path,
                       std::string* out) {
  const rapidjson::Value* v = Member(object, name);
  if (v == nullptr) return FieldError(path, "missing");
  if (!v->IsString()) return FieldError(path, "must be a string");
  out->assign(v->GetString(), v->GetStringLength());
  return absl::OkStatus();
}

absl::Status GetOptionalString(const rapidjson::Value& object, const char* name,
                               std::string_view path, std::optional<std::string>* out) {
  const rapidjson::Value* v = Member(object, name);
  if (v == nullptr || v->IsNull()) {
    out->reset();
    return absl::OkStatus();
  }
  if (!v->IsString()) return FieldError(path, "must be a string or null");
  out->emplace(v->GetString(), v->GetStringLength());
  return absl::OkStatus();
}

absl::Status GetInt(const rapidjson::Value& object, const char* name, std::string_view path,
                    int* out) {
  const rapidjson::Value* v = Member(object, name);
  if (v == nullptr) return FieldError(path, "missing");
  if (!v->IsInt()) return FieldError(path, "must be an integer");
  *out = v->GetInt();
  return absl::OkStatus();
}

absl::Status GetTime(const rapidjson::Value& object, const char* name, std::string_view path,
                     int64_t* unix_ms) {
  std::string text;
  if (absl::Status s = GetString(object, name, path, &text); !s.ok()) return s;
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &error)) {
    return FieldError(path, absl::StrCat("not an ISO-8601 time: ", error));
  }
  *unix_ms = absl::ToUnixMillis(t);
  return absl::OkStatus();
}

}  // namespace

std::string FormatIsoMillis(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

FailureRecord MakeFailureRecord(const FailurePolicy::Action& discard,
                                std::span<const runtime::RecordView> records,
                                const FailureRecordContext& context, int64_t timestamp_ms,
                                std::string request_id) {
  FailureRecord record;
  record.request_id = !request_id.empty()           ? std::move(request_id)
                      : !discard.request_id.empty() ? discard.request_id
                                                    : runtime::NewRequestId();
  record.function_arn = std::string(context.function_arn);
  record.condition = std::string(DiscardConditionName(discard.condition));
  record.approximate_invoke_count = discard.approximate_invoke_count;
  switch (discard.last_response) {
    case LastResponse::kFunctionError:
      record.status_code = 200;
      record.executed_version = kExecutedVersion;
      record.function_error = kUnhandled;
      break;
    case LastResponse::kPartialFailure:
      record.status_code = 200;
      record.executed_version = kExecutedVersion;
      break;
    case LastResponse::kNone:
      record.status_code = 0;
      break;
  }
  record.timestamp_ms = timestamp_ms;
  record.shard_id = std::string(context.shard_id);
  record.stream_arn = std::string(context.stream_arn);
  record.batch_size = static_cast<int>(records.size());
  if (!records.empty()) {
    record.start_sequence_number = std::string(records.front().sequence_number);
    record.end_sequence_number = std::string(records.back().sequence_number);
    record.approximate_arrival_of_first_record_ms = records.front().approximate_arrival_ms;
    record.approximate_arrival_of_last_record_ms = records.back().approximate_arrival_ms;
  }
  record.has_payload = true;
  record.payload.shard_id = record.shard_id;
  record.payload.event_source_arn = record.stream_arn;
  record.payload.aws_region = std::string(context.aws_region);
  record.payload.records.reserve(records.size());
  for (const runtime::RecordView& r : records) {
    record.payload.records.push_back({std::string(r.partition_key), std::string(r.sequence_number),
                                      std::string(r.data), r.approximate_arrival_ms});
  }
  record.invoke_identity_arn = std::string(context.invoke_identity_arn);
  return record;
}

std::string FailureRecordToJson(const FailureRecord& record) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  Key(w, "requestContext");
  w.StartObject();
  Key(w, "requestId");
  String(w, record.request_id);
  Key(w, "functionArn");
  String(w, record.function_arn);
  Key(w, "condition");
  String(w, record.condition);
  Key(w, "approximateInvokeCount");
  w.Int(record.approximate_invoke_count);
  w.EndObject();
  Key(w, "responseContext");
  w.StartObject();
  Key(w, "statusCode");
  w.Int(record.status_code);
  Key(w, "executedVersion");
  OptionalString(w, record.executed_version);
  Key(w, "functionError");
  OptionalString(w, record.function_error);
  w.EndObject();
  Key(w, "version");
  String(w, record.version);
  Key(w, "timestamp");
  String(w, FormatIsoMillis(record.timestamp_ms));
  Key(w, "KinesisBatchInfo");
  w.StartObject();
  Key(w, "shardId");
  String(w, record.shard_id);
  Key(w, "startSequenceNumber");
  String(w, record.start_sequence_number);
  Key(w, "endSequenceNumber");
  String(w, record.end_sequence_number);
  Key(w, "approximateArrivalOfFirstRecord");
  String(w, FormatIsoMillis(record.approximate_arrival_of_first_record_ms));
  Key(w, "approximateArrivalOfLastRecord");
  String(w, FormatIsoMillis(record.approximate_arrival_of_last_record_ms));
  Key(w, "batchSize");
  w.Int(record.batch_size);
  Key(w, "streamArn");
  String(w, record.stream_arn);
  w.EndObject();
  if (record.has_payload) {
    Key(w, "payload");
    const std::string payload = PayloadJson(record);
    w.RawValue(payload.data(), payload.size(), rapidjson::kObjectType);
  }
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

// A failure record is a few levels deep (its payload, a Kinesis event, included).
constexpr int kMaxFailureRecordDepth = 64;

absl::StatusOr<FailureRecord> ParseFailureRecord(std::string_view json) {
  // A destination file is input too: rapidjson recurses once per level, so bound the depth first.
  if (absl::Status deep = CheckJsonNesting(json, kMaxFailureRecordDepth); !deep.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("not a failure record: ", deep.message()));
  }
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not JSON: ", rapidjson::GetParseError_En(doc.GetParseError()), " at offset ",
                     doc.GetErrorOffset()));
  }
  if (!doc.IsObject()) return absl::InvalidArgumentError("not a failure record: not an object");
  FailureRecord record;
  absl::StatusOr<const rapidjson::Value*> request = Object(doc, "requestContext");
  if (!request.ok()) return request.status();
  absl::StatusOr<const rapidjson::Value*> response = Object(doc, "responseContext");
  if (!response.ok()) return response.status();
  absl::StatusOr<const rapidjson::Value*> info = Object(doc, "KinesisBatchInfo");
  if (!info.ok()) return info.status();
  for (absl::Status s : {
           GetString(**request, "requestId", "requestContext.requestId", &record.request_id),
           GetString(**request, "functionArn", "requestContext.functionArn", &record.function_arn),
           GetString(**request, "condition", "requestContext.condition", &record.condition),
           GetInt(**request, "approximateInvokeCount", "requestContext.approximateInvokeCount",
                  &record.approximate_invoke_count),
           GetInt(**response, "statusCode", "responseContext.statusCode", &record.status_code),
           GetOptionalString(**response, "executedVersion", "responseContext.executedVersion",
                             &record.executed_version),
           GetOptionalString(**response, "functionError", "responseContext.functionError",
                             &record.function_error),
           GetString(doc, "version", "version", &record.version),
           GetTime(doc, "timestamp", "timestamp", &record.timestamp_ms),
           GetString(**info, "shardId", "KinesisBatchInfo.shardId", &record.shard_id),
           GetString(**info, "startSequenceNumber", "KinesisBatchInfo.startSequenceNumber",
                     &record.start_sequence_number),
           GetString(**info, "endSequenceNumber", "KinesisBatchInfo.endSequenceNumber",
                     &record.end_sequence_number),
           GetTime(**info, "approximateArrivalOfFirstRecord",
                   "KinesisBatchInfo.approximateArrivalOfFirstRecord",
                   &record.approximate_arrival_of_first_record_ms),
           GetTime(**info, "approximateArrivalOfLastRecord",
                   "KinesisBatchInfo.approximateArrivalOfLastRecord",
                   &record.approximate_arrival_of_last_record_ms),
           GetInt(**info, "batchSize", "KinesisBatchInfo.batchSize", &record.batch_size),
           GetString(**info, "streamArn", "KinesisBatchInfo.streamArn", &record.stream_arn),
       }) {
    if (!s.ok()) return s;
  }
  const rapidjson::Value* payload = Member(doc, "payload");
  if (payload != nullptr && !payload->IsNull()) {
    // AWS documents the S3 payload as an escaped JSON string; accept that too.
    std::string text;
    if (payload->IsString()) {
      text.assign(payload->GetString(), payload->GetStringLength());
    } else if (payload->IsObject()) {
      rapidjson::StringBuffer buffer;
      rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
      payload->Accept(writer);
      text.assign(buffer.GetString(), buffer.GetSize());
    } else {
      return FieldError("payload", "must be an object");
    }
    absl::StatusOr<runtime::OwnedEvent> event = runtime::ParseKinesisEventJson(text);
    if (!event.ok()) {
      return FieldError("payload", std::string(event.status().message()));
    }
    record.has_payload = true;
    record.payload = *std::move(event);
    // The role is on every record; keep it so that the record writes back the same.
    const rapidjson::Value* records = nullptr;
    rapidjson::Document parsed;
    if (payload->IsObject()) {
      records = Member(*payload, "Records");
    } else {
      parsed.Parse(text.data(), text.size());
      if (parsed.IsObject()) records = Member(parsed, "Records");
    }
    if (records != nullptr && records->IsArray() && !records->Empty() && (*records)[0].IsObject()) {
      const rapidjson::Value* role = Member((*records)[0], "invokeIdentityArn");
      if (role != nullptr && role->IsString()) {
        record.invoke_identity_arn.assign(role->GetString(), role->GetStringLength());
      }
    }
  }
  return record;
}

}  // namespace runnel::poller
