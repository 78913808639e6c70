// The on-failure record (docs/aws-semantics.md#on-failure-record, plus the payload): exact JSON for
// known input in AWS's key order, the responseContext for each kind of last response, and the round
// trip through the parser that the dlq commands rely on.
#include "poller/failure_record.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace runnel::poller {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kArrival0 = 1718020798100;     // 2024-06-10T11:59:58.100Z
constexpr int64_t kArrival1 = 1718020799870;     // 2024-06-10T11:59:59.870Z
constexpr int64_t kDiscardedAt = 1718020805321;  // 2024-06-10T12:00:05.321Z

const std::string kSeq0 = "49650001112223334445556667778889990001112223334445556666";
const std::string kSeq1 = "49650001112223334445556667778889990001112223334445556999";
const std::string kData1("\x00\xff\n\"", 4);

std::vector<runtime::RecordView> Records() {
  return {{"user-42", kSeq0, "{\"hello\":\"world\"}", kArrival0},
          {"user-43", kSeq1, kData1, kArrival1}};
}

FailureRecordContext Context() {
  return {.function_arn = "arn:aws:lambda:eu-west-1:111122223333:function:consumer",
          .shard_id = "shardId-000000000003",
          .stream_arn = "arn:aws:kinesis:eu-west-1:111122223333:stream/orders",
          .aws_region = "eu-west-1",
          .invoke_identity_arn = "arn:aws:iam::111122223333:role/my-esm-role"};
}

FailurePolicy::Action Discard(DiscardCondition condition, int count, LastResponse last) {
  FailurePolicy::Action a;
  a.kind = FailurePolicy::Action::Kind::kDiscard;
  a.begin = 3;
  a.end = 5;
  a.condition = condition;
  a.approximate_invoke_count = count;
  a.last_response = last;
  a.request_id = last == LastResponse::kNone ? "" : "6b1f0d3e-0c2a-4d55-9a6e-2f7c1b8e9d10";
  return a;
}

const char kPayload[] =
    R"({"Records":[)"
    R"({"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"user-42",)"
    R"("sequenceNumber":"49650001112223334445556667778889990001112223334445556666",)"
    R"("data":"eyJoZWxsbyI6IndvcmxkIn0=","approximateArrivalTimestamp":1718020798.100},)"
    R"("eventSource":"aws:kinesis","eventVersion":"1.0",)"
    R"("eventID":"shardId-000000000003:49650001112223334445556667778889990001112223334445556666",)"
    R"("eventName":"aws:kinesis:record",)"
    R"("invokeIdentityArn":"arn:aws:iam::111122223333:role/my-esm-role","awsRegion":"eu-west-1",)"
    R"("eventSourceARN":"arn:aws:kinesis:eu-west-1:111122223333:stream/orders"},)"
    R"({"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"user-43",)"
    R"("sequenceNumber":"49650001112223334445556667778889990001112223334445556999",)"
    R"("data":"AP8KIg==","approximateArrivalTimestamp":1718020799.870},)"
    R"("eventSource":"aws:kinesis","eventVersion":"1.0",)"
    R"("eventID":"shardId-000000000003:49650001112223334445556667778889990001112223334445556999",)"
    R"("eventName":"aws:kinesis:record",)"
    R"("invokeIdentityArn":"arn:aws:iam::111122223333:role/my-esm-role","awsRegion":"eu-west-1",)"
    R"("eventSourceARN":"arn:aws:kinesis:eu-west-1:111122223333:stream/orders"}]})";

TEST(FailureRecordTest, ExactJsonForAFunctionError) {
  FailureRecord record = MakeFailureRecord(
      Discard(DiscardCondition::kRetryAttemptsExhausted, 3, LastResponse::kFunctionError),
      Records(), Context(), kDiscardedAt);
  const std::string expected =
      std::string(
          R"({"requestContext":{"requestId":"6b1f0d3e-0c2a-4d55-9a6e-2f7c1b8e9d10",)"
          R"("functionArn":"arn:aws:lambda:eu-west-1:111122223333:function:consumer",)"
          R"("condition":"RetryAttemptsExhausted","approximateInvokeCount":3},)"
          R"("responseContext":{"statusCode":200,"executedVersion":"$LATEST",)"
          R"("functionError":"Unhandled"},)"
          R"("version":"1.0","timestamp":"2024-06-10T12:00:05.321Z",)"
          R"("KinesisBatchInfo":{"shardId":"shardId-000000000003",)"
          R"("startSequenceNumber":"49650001112223334445556667778889990001112223334445556666",)"
          R"("endSequenceNumber":"49650001112223334445556667778889990001112223334445556999",)"
          R"("approximateArrivalOfFirstRecord":"2024-06-10T11:59:58.100Z",)"
          R"("approximateArrivalOfLastRecord":"2024-06-10T11:59:59.870Z",)"
          R"("batchSize":2,)"
          R"("streamArn":"arn:aws:kinesis:eu-west-1:111122223333:stream/orders"},)"
          R"("payload":)") +
      kPayload + "}";
  EXPECT_EQ(FailureRecordToJson(record), expected);
}

TEST(FailureRecordTest, PartialFailureHasNoFunctionError) {
  std::string json = FailureRecordToJson(MakeFailureRecord(
      Discard(DiscardCondition::kRetryAttemptsExhausted, 3, LastResponse::kPartialFailure),
      Records(), Context(), kDiscardedAt));
  EXPECT_THAT(json, HasSubstr(R"("responseContext":{"statusCode":200,"executedVersion":"$LATEST",)"
                              R"("functionError":null})"));
}

TEST(FailureRecordTest, NeverInvokedRecords) {
  FailureRecord record =
      MakeFailureRecord(Discard(DiscardCondition::kRecordAgeExceeded, 0, LastResponse::kNone),
                        Records(), Context(), kDiscardedAt);
  // No invocation to take a request id from: a fresh UUID.
  EXPECT_EQ(record.request_id.size(), 36u);
  std::string json = FailureRecordToJson(record);
  EXPECT_THAT(json, HasSubstr(R"("condition":"RecordAgeExceeded","approximateInvokeCount":0})"));
  EXPECT_THAT(json, HasSubstr(R"("responseContext":{"statusCode":0,"executedVersion":null,)"
                              R"("functionError":null})"));
}

TEST(FailureRecordTest, ExplicitRequestIdWins) {
  FailureRecord record = MakeFailureRecord(
      Discard(DiscardCondition::kRetryAttemptsExhausted, 1, LastResponse::kFunctionError),
      Records(), Context(), kDiscardedAt, "given-id");
  EXPECT_EQ(record.request_id, "given-id");
}

TEST(FailureRecordTest, DeeplyNestedLinesAreRefusedNotRecursedInto) {
  // 200,000 levels would overflow the stack of a recursive parser.
  const std::string deep = std::string(200'000, '[') + std::string(200'000, ']');
  absl::StatusOr<FailureRecord> line = ParseFailureRecord(deep);
  ASSERT_FALSE(line.ok());
  EXPECT_THAT(std::string(line.status().message()), ::testing::HasSubstr("nested deeper"));
  // Inside the payload, given as an escaped string, as AWS documents for S3.
  const std::string whole = FailureRecordToJson(MakeFailureRecord(
      Discard(DiscardCondition::kRetryAttemptsExhausted, 3, LastResponse::kFunctionError),
      Records(), Context(), kDiscardedAt));
  const size_t payload = whole.find("\"payload\":");
  ASSERT_NE(payload, std::string::npos);
  const std::string in_payload =
      absl::StrCat(whole.substr(0, payload), R"("payload":")", std::string(200'000, '['), R"("})");
  line = ParseFailureRecord(in_payload);
  ASSERT_FALSE(line.ok());
  EXPECT_THAT(std::string(line.status().message()), ::testing::HasSubstr("nested deeper"));
}

TEST(FailureRecordTest, RoundTrip) {
  FailureRecord written = MakeFailureRecord(
      Discard(DiscardCondition::kRetryAttemptsExhausted, 3, LastResponse::kFunctionError),
      Records(), Context(), kDiscardedAt);
  const std::string json = FailureRecordToJson(written);
  absl::StatusOr<FailureRecord> read = ParseFailureRecord(json);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->request_id, written.request_id);
  EXPECT_EQ(read->function_arn, written.function_arn);
  EXPECT_EQ(read->condition, "RetryAttemptsExhausted");
  EXPECT_EQ(read->approximate_invoke_count, 3);
  EXPECT_EQ(read->status_code, 200);
  EXPECT_EQ(read->executed_version, std::optional<std::string>("$LATEST"));
  EXPECT_EQ(read->function_error, std::optional<std::string>("Unhandled"));
  EXPECT_EQ(read->version, "1.0");
  EXPECT_EQ(read->timestamp_ms, kDiscardedAt);
  EXPECT_EQ(read->shard_id, "shardId-000000000003");
  EXPECT_EQ(read->start_sequence_number, kSeq0);
  EXPECT_EQ(read->end_sequence_number, kSeq1);
  EXPECT_EQ(read->approximate_arrival_of_first_record_ms, kArrival0);
  EXPECT_EQ(read->approximate_arrival_of_last_record_ms, kArrival1);
  EXPECT_EQ(read->batch_size, 2);
  EXPECT_EQ(read->stream_arn, written.stream_arn);
  ASSERT_TRUE(read->has_payload);
  EXPECT_EQ(read->payload.shard_id, "shardId-000000000003");
  EXPECT_EQ(read->payload.event_source_arn, written.stream_arn);
  EXPECT_EQ(read->payload.aws_region, "eu-west-1");
  EXPECT_EQ(read->invoke_identity_arn, "arn:aws:iam::111122223333:role/my-esm-role");
  ASSERT_EQ(read->payload.records.size(), 2u);
  EXPECT_EQ(read->payload.records[0].partition_key, "user-42");
  EXPECT_EQ(read->payload.records[0].sequence_number, kSeq0);
  EXPECT_EQ(read->payload.records[0].data, "{\"hello\":\"world\"}");
  EXPECT_EQ(read->payload.records[0].approximate_arrival_ms, kArrival0);
  EXPECT_EQ(read->payload.records[1].partition_key, "user-43");
  EXPECT_EQ(read->payload.records[1].data, kData1);  // binary bytes survive
  EXPECT_EQ(read->payload.records[1].approximate_arrival_ms, kArrival1);
  // And back to the same bytes.
  EXPECT_EQ(FailureRecordToJson(*read), json);
}

TEST(FailureRecordTest, RoundTripOfNullsAndNeverInvoked) {
  FailureRecord written =
      MakeFailureRecord(Discard(DiscardCondition::kRecordAgeExceeded, 0, LastResponse::kNone),
                        Records(), Context(), kDiscardedAt);
  const std::string json = FailureRecordToJson(written);
  absl::StatusOr<FailureRecord> read = ParseFailureRecord(json);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->status_code, 0);
  EXPECT_FALSE(read->executed_version.has_value());
  EXPECT_FALSE(read->function_error.has_value());
  EXPECT_EQ(FailureRecordToJson(*read), json);
}

// AWS's own record (SQS/SNS: no payload) reads too.
TEST(FailureRecordTest, ParsesAwsRecordWithoutPayload) {
  const char json[] = R"({
    "requestContext": {
      "requestId": "6b1f0d3e-0c2a-4d55-9a6e-2f7c1b8e9d10",
      "functionArn": "arn:aws:lambda:eu-west-1:111122223333:function:consumer",
      "condition": "RetryAttemptsExhausted",
      "approximateInvokeCount": 3
    },
    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
    "version": "1.0",
    "timestamp": "2024-06-10T12:00:05.321Z",
    "KinesisBatchInfo": {
      "shardId": "shardId-000000000003",
      "startSequenceNumber": "49650001112223334445556667778889990001112223334445556666",
      "endSequenceNumber": "49650001112223334445556667778889990001112223334445556999",
      "approximateArrivalOfFirstRecord": "2024-06-10T11:59:58.100Z",
      "approximateArrivalOfLastRecord": "2024-06-10T11:59:59.870Z",
      "batchSize": 7,
      "streamArn": "arn:aws:kinesis:eu-west-1:111122223333:stream/orders"
    }
  })";
  absl::StatusOr<FailureRecord> read = ParseFailureRecord(json);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_FALSE(read->has_payload);
  EXPECT_EQ(read->batch_size, 7);
  EXPECT_EQ(read->timestamp_ms, kDiscardedAt);
  EXPECT_EQ(read->approximate_arrival_of_last_record_ms, kArrival1);
}

// AWS documents the S3 payload as an escaped JSON string.
TEST(FailureRecordTest, ParsesPayloadAsAString) {
  FailureRecord written = MakeFailureRecord(
      Discard(DiscardCondition::kRetryAttemptsExhausted, 3, LastResponse::kFunctionError),
      Records(), Context(), kDiscardedAt);
  written.has_payload = false;
  std::string json = FailureRecordToJson(written);
  json.pop_back();  // the closing brace
  std::string escaped;
  for (char c : std::string(kPayload)) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  json += ",\"payload\":\"" + escaped + "\"}";
  absl::StatusOr<FailureRecord> read = ParseFailureRecord(json);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE(read->has_payload);
  ASSERT_EQ(read->payload.records.size(), 2u);
  EXPECT_EQ(read->payload.records[1].data, kData1);
  EXPECT_EQ(read->invoke_identity_arn, "arn:aws:iam::111122223333:role/my-esm-role");
}

TEST(FailureRecordTest, ParseErrorsNameTheField) {
  const std::string good = FailureRecordToJson(MakeFailureRecord(
      Discard(DiscardCondition::kRetryAttemptsExhausted, 3, LastResponse::kFunctionError),
      Records(), Context(), kDiscardedAt));
  auto broken = [&](const std::string& from, const std::string& to) {
    std::string json = good;
    size_t at = json.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    json.replace(at, from.size(), to);
    absl::StatusOr<FailureRecord> read = ParseFailureRecord(json);
    EXPECT_FALSE(read.ok()) << json;
    return std::string(read.status().message());
  };
  EXPECT_THAT(std::string(ParseFailureRecord("{").status().message()), HasSubstr("not JSON"));
  EXPECT_THAT(std::string(ParseFailureRecord("[]").status().message()), HasSubstr("object"));
  EXPECT_THAT(broken("\"requestContext\"", "\"requestContexts\""), HasSubstr("requestContext"));
  EXPECT_THAT(broken("\"approximateInvokeCount\":3", "\"approximateInvokeCount\":\"3\""),
              HasSubstr("requestContext.approximateInvokeCount: must be an integer"));
  EXPECT_THAT(broken("\"functionError\":\"Unhandled\"", "\"functionError\":1"),
              HasSubstr("responseContext.functionError"));
  EXPECT_THAT(broken("2024-06-10T12:00:05.321Z", "yesterday"), HasSubstr("timestamp"));
  EXPECT_THAT(broken("\"batchSize\":2", "\"batchSizes\":2"),
              HasSubstr("KinesisBatchInfo.batchSize: missing"));
  EXPECT_THAT(broken("\"data\":\"AP8KIg==\"", "\"data\":\"%%%\""), HasSubstr("payload"));
  EXPECT_THAT(broken("\"payload\":{", "\"payload\":[{"), HasSubstr("JSON"));
}

TEST(FailureRecordTest, IsoMillis) {
  EXPECT_EQ(FormatIsoMillis(1718020805005), "2024-06-10T12:00:05.005Z");
  EXPECT_EQ(FormatIsoMillis(1718020805321), "2024-06-10T12:00:05.321Z");
  EXPECT_EQ(FormatIsoMillis(0), "1970-01-01T00:00:00.000Z");
}

}  // namespace
}  // namespace runnel::poller
