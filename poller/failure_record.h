// Lambda's on-failure invocation record for Kinesis (docs/aws-semantics.md#on-failure-record),
// written when the failure policy discards records, plus what AWS gives only to S3 destinations: a
// `payload` holding the discarded records themselves, so that `runnel dlq show` can decode them and
// `runnel dlq redrive` can put them back without the source stream still having them.
// ParseFailureRecord reads it back (for the dlq commands); it also accepts AWS's own records (no
// payload).
//
// The JSON, key for key in AWS's order:
//   {"requestContext":{"requestId","functionArn","condition","approximateInvokeCount"},
//    "responseContext":{"statusCode","executedVersion","functionError"},
//    "version":"1.0","timestamp":"2024-06-10T12:00:05.321Z",
//    "KinesisBatchInfo":{"shardId","startSequenceNumber","endSequenceNumber",
//      "approximateArrivalOfFirstRecord","approximateArrivalOfLastRecord","batchSize",
//      "streamArn"},
//    "payload":{"Records":[...]}}
// `payload` is a nested object (as LocalStack writes it; AWS documents S3's less precisely:
// docs/aws-semantics.md#on-failure-record) holding exactly the event the function received for
// these records (Event::ToJson's bytes: data base64, arrival in epoch seconds with milliseconds),
// so a consumer can feed it straight back to a handler.
//
// responseContext:
// * records whose last invocation failed with a function error: 200, "$LATEST", "Unhandled"
//   (the Invoke status is 200 even for function errors: docs/aws-semantics.md#on-failure-record);
// * records whose last invocation was a partial batch failure: 200, "$LATEST", null (as AWS
//   observed);
// * records that never reached the function (too old before their first invocation, or the
//   handler was only ever unavailable): statusCode 0, executedVersion null, functionError null.
//   AWS does not document this case; 0 says "no invocation response" without pretending an
//   HTTP status, and keeping all three keys keeps typed consumers of AWS's shape working.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "poller/failure_policy.h"
#include "runnel/runtime/event_json.h"
#include "runnel/runtime/function.h"

namespace runnel::poller {

struct FailureRecord {
  // requestContext
  std::string request_id;
  std::string function_arn;
  std::string condition;  // "RetryAttemptsExhausted" | "RecordAgeExceeded"
  int approximate_invoke_count = 0;
  // responseContext
  int status_code = 200;
  std::optional<std::string> executed_version;  // "$LATEST"; null: never invoked
  std::optional<std::string> function_error;    // "Unhandled"; null: partial or never invoked
  std::string version = "1.0";
  int64_t timestamp_ms = 0;  // when the records were discarded
  // KinesisBatchInfo: the discarded range.
  std::string shard_id;
  std::string start_sequence_number;
  std::string end_sequence_number;
  int64_t approximate_arrival_of_first_record_ms = 0;
  int64_t approximate_arrival_of_last_record_ms = 0;
  int batch_size = 0;
  std::string stream_arn;
  // runnel's addition: the discarded records (shard_id, event_source_arn and aws_region taken
  // from the first record). has_payload is false for a record without one (e.g. AWS's).
  bool has_payload = false;
  runtime::OwnedEvent payload;
  // The payload's invokeIdentityArn (the function's role), needed to write it.
  std::string invoke_identity_arn;
};

// Where the discarded records came from and who failed on them.
struct FailureRecordContext {
  std::string_view function_arn;  // "arn:aws:lambda:<region>:<account>:function:<name>"
  std::string_view shard_id;
  std::string_view stream_arn;
  std::string_view aws_region;
  std::string_view invoke_identity_arn;  // the function's role
};

// The record for a kDiscard action. `records` are exactly the discarded records
// ([discard.begin, discard.end) of the batch), in order, non-empty. `request_id` empty: the
// discard's own (the last failed invocation's), or a new UUID when it has none.
FailureRecord MakeFailureRecord(const FailurePolicy::Action& discard,
                                std::span<const runtime::RecordView> records,
                                const FailureRecordContext& context, int64_t timestamp_ms,
                                std::string request_id = "");

// One line of JSON (no newline), in the key order above.
std::string FailureRecordToJson(const FailureRecord& record);

// Reads a record written by FailureRecordToJson (or by AWS, without payload). Errors name the
// field.
absl::StatusOr<FailureRecord> ParseFailureRecord(std::string_view json);

// "2024-06-10T12:00:05.321Z"
std::string FormatIsoMillis(int64_t unix_ms);

}  // namespace runnel::poller
