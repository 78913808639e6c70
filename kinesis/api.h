// The Kinesis API (JSON 1.1 and CBOR bodies, X-Amz-Target operations) translated onto the
// broker core: every operation decodes its AWS-shaped request into the runnel.v1 message the
// core takes, calls broker::Broker, and encodes the answer as AWS shapes it. No semantics of
// streams live here; only the shapes, and the two things the core has no notion of:
// registered stream consumers and stream tags, kept in memory by this layer (see README.md).
//
// Transport-free (no HTTP here), so the unit tests drive it directly. Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "broker/broker.h"

namespace runnel::kinesis {

enum class WireFormat { kJson, kCbor };

inline constexpr std::string_view kJsonContentType = "application/x-amz-json-1.1";
inline constexpr std::string_view kCborContentType = "application/x-amz-cbor-1.1";
inline constexpr std::string_view kEventStreamContentType = "application/vnd.amazon.eventstream";

// Deepest nesting of arrays and maps a request body may have (Kinesis's deepest request shape
// has 3 levels); deeper bodies get a SerializationException before any decoder sees them.
inline constexpr int kMaxBodyNesting = 32;

// "application/x-amz-cbor-1.1" → CBOR; JSON for the JSON types and for anything else a client
// may send (the AWS CLI and SDKs always name one of the two).
WireFormat FormatFromContentType(std::string_view content_type);

// "Kinesis_20131202.PutRecord" → "PutRecord"; UnknownOperationException otherwise.
absl::StatusOr<std::string> OperationFromTarget(std::string_view target);

// arn:<partition>:kinesis:<region>:<account>:stream/<name> → name (any region and account:
// runnel is one account). InvalidArgumentException naming `field` when it is no stream ARN.
absl::StatusOr<std::string> StreamNameFromArn(std::string_view arn,
                                              std::string_view field = "StreamARN");

// A Kinesis error as the wire shows it.
struct KinesisError {
  int http_status = 400;
  std::string type;  // "ResourceNotFoundException"
  std::string message;
};
// The core's statuses carry the Kinesis exception name as the message's prefix
// ("ResourceNotFoundException: ..."); without one the gRPC code picks it.
KinesisError ErrorFromStatus(const absl::Status& status);

// One answer. For SubscribeToShard, `subscription` is set and the body is the event stream's
// first message (initial-response); the transport then sends EncodeSubscribeEvent(...) for each
// event the subscription yields.
struct ApiResponse {
  int http_status = 200;
  std::string content_type;
  std::string error_type;  // for the x-amzn-ErrorType header; empty on success
  std::string body;
  std::unique_ptr<broker::Subscription> subscription;
  WireFormat format = WireFormat::kJson;
};

// The event-stream message for one SubscribeToShard event, or for the error that ends one.
std::string EncodeSubscribeEvent(const v1::SubscribeToShardEvent& event, WireFormat format);
std::string EncodeSubscribeError(const absl::Status& status, WireFormat format);

class KinesisApi {
 public:
  // `broker` is not owned and must outlive this.
  explicit KinesisApi(broker::Broker* broker);
  ~KinesisApi();
  KinesisApi(const KinesisApi&) = delete;
  KinesisApi& operator=(const KinesisApi&) = delete;

  // Runs one call. `done` runs exactly once, on this thread or on a broker thread (a put is
  // answered once durable). Blocking: control-plane calls write metadata and fsync.
  using Done = std::function<void(ApiResponse)>;
  void Handle(std::string_view target, std::string_view content_type, std::string_view body,
              Done done);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace runnel::kinesis
