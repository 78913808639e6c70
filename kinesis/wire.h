// The Kinesis API's wire shapes, private to kinesis/: reading AWS-shaped request members in
// either wire format (JSON 1.1 or CBOR), writing AWS-shaped answers and errors, and the shapes
// that several operations share (shards, records, child shards, consumer ARNs). No operation
// lives here (kinesis/api.cc has those); nothing here calls the broker.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/strings.h"
#include "kinesis/api.h"
#include "runnel/v1/broker.pb.h"

namespace runnel::kinesis {

using Json = nlohmann::json;

// A status whose message starts with the Kinesis exception name `type` (INVALID_ARGUMENT).
absl::Status KinesisStatus(std::string_view type, std::string_view message);
// AWS's wording for a missing required member.
absl::Status MissingMember(std::string_view member);
// AWS's wording for a member out of [min, max].
absl::Status OutOfRange(std::string_view member, int64_t value, int64_t min, int64_t max);
// "ShardCount" -> "shardCount", as AWS names members in validation messages.
std::string CamelCase(std::string_view pascal);

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

// Bytes: byte strings in CBOR, base64 text in JSON.
Json Blob(std::string_view data, WireFormat format);
// Timestamps: epoch milliseconds in CBOR, fractional epoch seconds in JSON.
Json Time(int64_t ms, WireFormat format);
Json Time(const google::protobuf::Timestamp& timestamp, WireFormat format);
std::string Serialize(const Json& value, WireFormat format);
std::string ContentType(WireFormat format);
ApiResponse OkResponse(const Json& value, WireFormat format);
ApiResponse ErrorResponse(const absl::Status& status, WireFormat format);

Json ShardJson(const v1::Shard& shard);
Json RecordJson(const v1::Record& record, WireFormat format);
Json ChildShardsJson(const google::protobuf::RepeatedPtrField<v1::ChildShard>& children);
// A ShardIteratorType by name; a ValidationException naming `member` otherwise.
absl::StatusOr<v1::ShardIteratorType> IteratorType(const std::string& name,
                                                   std::string_view member);
google::protobuf::Timestamp MillisToProto(int64_t ms);

struct ConsumerArnParts {
  std::string stream_name;
  std::string consumer_name;
};
// arn:aws:kinesis:<region>:<account>:stream/<stream>/consumer/<consumer>:<creation seconds>
absl::StatusOr<ConsumerArnParts> ParseConsumerArn(std::string_view arn);

}  // namespace runnel::kinesis
