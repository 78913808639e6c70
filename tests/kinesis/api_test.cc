// The Kinesis API layer without HTTP: request decoding (JSON and CBOR), answer shapes, ARNs,
// error mapping and the event-stream framing, against a real broker core in a temp folder.
#include "kinesis/api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "kinesis/event_stream.h"
#include "tests/integration/test_support.h"

namespace runnel::kinesis {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

TEST(KinesisTarget, NamesTheOperation) {
  EXPECT_EQ(*OperationFromTarget("Kinesis_20131202.PutRecords"), "PutRecords");
  for (std::string_view bad :
       {"", "Kinesis_20131202.", "DynamoDB_20120810.PutItem", "PutRecords"}) {
    auto op = OperationFromTarget(bad);
    ASSERT_FALSE(op.ok()) << bad;
    EXPECT_EQ(ErrorFromStatus(op.status()).type, "UnknownOperationException");
  }
}

TEST(KinesisArn, GivesTheStreamName) {
  EXPECT_EQ(*StreamNameFromArn("arn:aws:kinesis:us-east-1:000000000000:stream/orders"), "orders");
  EXPECT_EQ(*StreamNameFromArn("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/a.b-c_d"),
            "a.b-c_d");
  for (std::string_view bad :
       {"orders", "arn:aws:s3:::bucket", "arn:aws:kinesis:us-east-1:0:stream/",
        "arn:aws:kinesis:us-east-1:0:table/orders",
        "arn:aws:kinesis:us-east-1:0:stream/a/consumer/c:1"}) {
    auto name = StreamNameFromArn(bad);
    ASSERT_FALSE(name.ok()) << bad;
    EXPECT_EQ(ErrorFromStatus(name.status()).type, "InvalidArgumentException") << bad;
    EXPECT_THAT(name.status().message(), HasSubstr("StreamARN")) << bad;
  }
}

TEST(KinesisErrors, TakeTheNameFromTheCoreOrTheCode) {
  KinesisError named = ErrorFromStatus(
      absl::NotFoundError("ResourceNotFoundException: Stream x under account 0 not found."));
  EXPECT_EQ(named.type, "ResourceNotFoundException");
  EXPECT_EQ(named.message, "Stream x under account 0 not found.");
  EXPECT_EQ(named.http_status, 400);
  EXPECT_EQ(ErrorFromStatus(absl::FailedPreconditionError("ExpiredIteratorException: old")).type,
            "ExpiredIteratorException");
  EXPECT_EQ(ErrorFromStatus(absl::ResourceExhaustedError("slow down")).type,
            "ProvisionedThroughputExceededException");
  EXPECT_EQ(ErrorFromStatus(absl::AlreadyExistsError("taken")).type, "ResourceInUseException");
  // A colon in a plain message is no exception name.
  KinesisError plain = ErrorFromStatus(absl::InvalidArgumentError("bad value: 7"));
  EXPECT_EQ(plain.type, "InvalidArgumentException");
  EXPECT_EQ(plain.message, "bad value: 7");
  KinesisError internal = ErrorFromStatus(absl::DataLossError("shard log corrupt at 12"));
  EXPECT_EQ(internal.type, "InternalFailure");
  EXPECT_EQ(internal.http_status, 500);
  EXPECT_EQ(ErrorFromStatus(absl::UnavailableError("stopping")).http_status, 503);
}

TEST(EventStream, MatchesAwsEmptyMessageVector) {
  // aws-c-event-stream's "empty message" test vector.
  const std::string expected("\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2\x48\xeb\x7d\x98\xc8\xff",
                             16);
  EXPECT_EQ(EncodeEventStreamMessage({}, ""), expected);
}

TEST(EventStream, RoundTripsAndRefusesCorruption) {
  std::string frame = EncodeEventStreamMessage(
      {{":message-type", "event"}, {":event-type", "SubscribeToShardEvent"}}, "{\"a\":1}");
  std::string two = frame + frame;
  size_t consumed = 0;
  auto message = DecodeEventStreamMessage(two, &consumed);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(consumed, frame.size());
  EXPECT_EQ(message->payload, "{\"a\":1}");
  ASSERT_EQ(message->headers.size(), 2u);
  EXPECT_EQ(message->headers[1].second, "SubscribeToShardEvent");
  for (size_t at : {size_t{2}, size_t{20}, frame.size() - 6}) {
    std::string corrupt = frame;
    corrupt[at] ^= 0x01;
    EXPECT_FALSE(DecodeEventStreamMessage(corrupt, &consumed).ok()) << at;
  }
  EXPECT_FALSE(DecodeEventStreamMessage(frame.substr(0, frame.size() - 1), &consumed).ok());
}

class KinesisApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker::BrokerOptions options;
    options.data_dir = dir_.File("data");
    auto broker = broker::Broker::Open(options);
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = std::move(*broker);
    api_ = std::make_unique<KinesisApi>(broker_.get());
  }

  ApiResponse Call(const std::string& op, const std::string& content_type,
                   const std::string& body) {
    absl::Notification done;
    ApiResponse out;
    api_->Handle("Kinesis_20131202." + op, content_type, body, [&](ApiResponse response) {
      out = std::move(response);
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10))) << op;
    return out;
  }
  Json CallJson(const std::string& op, const Json& request, int status = 200) {
    ApiResponse response = Call(op, "application/x-amz-json-1.1", request.dump());
    EXPECT_EQ(response.http_status, status) << op << ": " << response.body;
    EXPECT_EQ(response.content_type, "application/x-amz-json-1.1");
    return Json::parse(response.body);
  }
  Json CallCbor(const std::string& op, const Json& request, int status = 200) {
    std::vector<uint8_t> bytes = Json::to_cbor(request);
    ApiResponse response =
        Call(op, "application/x-amz-cbor-1.1", std::string(bytes.begin(), bytes.end()));
    EXPECT_EQ(response.http_status, status) << op;
    EXPECT_EQ(response.content_type, "application/x-amz-cbor-1.1");
    return Json::from_cbor(response.body);
  }
  void ExpectJsonError(const std::string& op, const std::string& body, const std::string& type,
                       const std::string& text = "") {
    ApiResponse response = Call(op, "application/x-amz-json-1.1", body);
    EXPECT_EQ(response.http_status, 400) << op << " " << body;
    EXPECT_EQ(response.error_type, type) << op << " " << body << " -> " << response.body;
    Json error = Json::parse(response.body);
    EXPECT_EQ(error["__type"], type);
    EXPECT_THAT(error["message"].get<std::string>(), HasSubstr(text)) << body;
  }

  runnel::testing::TempDir dir_{"kinesis-api"};
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<KinesisApi> api_;
};

TEST_F(KinesisApiTest, JsonRoundTripWithBase64DataAndEpochSecondTimestamps) {
  CallJson("CreateStream", {{"StreamName", "s"}, {"ShardCount", 2}});
  const double before = absl::ToUnixMillis(absl::Now()) / 1000.0;
  Json put = CallJson("PutRecord", {{"StreamName", "s"},
                                    {"PartitionKey", "k"},
                                    {"ExplicitHashKey", "0"},
                                    {"Data", "aGVsbG8="}});  // "hello"
  EXPECT_EQ(put["ShardId"], "shardId-000000000000");
  EXPECT_EQ(put["EncryptionType"], "NONE");
  Json iterator =
      CallJson("GetShardIterator", {{"StreamARN", "arn:aws:kinesis:eu-west-1:1:stream/s"},
                                    {"ShardId", "shardId-000000000000"},
                                    {"ShardIteratorType", "AT_TIMESTAMP"},
                                    {"Timestamp", before - 1}});
  Json records = CallJson("GetRecords", {{"ShardIterator", iterator["ShardIterator"]}});
  ASSERT_EQ(records["Records"].size(), 1u);
  const Json& record = records["Records"][0];
  EXPECT_EQ(record["Data"], "aGVsbG8=");
  EXPECT_EQ(record["PartitionKey"], "k");
  EXPECT_EQ(record["SequenceNumber"], put["SequenceNumber"]);
  ASSERT_TRUE(record["ApproximateArrivalTimestamp"].is_number_float());
  EXPECT_NEAR(record["ApproximateArrivalTimestamp"].get<double>(), before, 5.0);
  EXPECT_TRUE(records["NextShardIterator"].is_string());
  EXPECT_EQ(records["MillisBehindLatest"], 0);

  // A timestamp after the record: nothing at or after it.
  Json later = CallJson("GetShardIterator", {{"StreamName", "s"},
                                             {"ShardId", "shardId-000000000000"},
                                             {"ShardIteratorType", "AT_TIMESTAMP"},
                                             {"Timestamp", before + 3600}});
  EXPECT_TRUE(
      CallJson("GetRecords", {{"ShardIterator", later["ShardIterator"]}})["Records"].empty());
}

TEST_F(KinesisApiTest, CborUsesByteStringsAndEpochMilliseconds) {
  CallCbor("CreateStream", {{"StreamName", "c"}, {"ShardCount", 1}});
  const std::string payload("\x00\x01\xff binary", 10);
  const int64_t before_ms = absl::ToUnixMillis(absl::Now());
  Json put = CallCbor(
      "PutRecords", {{"StreamName", "c"},
                     {"Records", Json::array({{{"PartitionKey", "k"},
                                               {"Data", Json::binary(std::vector<uint8_t>(
                                                            payload.begin(), payload.end()))}}})}});
  EXPECT_EQ(put["FailedRecordCount"], 0);
  Json iterator = CallCbor("GetShardIterator", {{"StreamName", "c"},
                                                {"ShardId", "shardId-000000000000"},
                                                {"ShardIteratorType", "AT_TIMESTAMP"},
                                                {"Timestamp", before_ms - 1000}});
  Json records = CallCbor("GetRecords", {{"ShardIterator", iterator["ShardIterator"]}});
  ASSERT_EQ(records["Records"].size(), 1u);
  const Json& record = records["Records"][0];
  ASSERT_TRUE(record["Data"].is_binary());
  EXPECT_EQ(std::string(record["Data"].get_binary().begin(), record["Data"].get_binary().end()),
            payload);
  ASSERT_TRUE(record["ApproximateArrivalTimestamp"].is_number_integer());
  EXPECT_NEAR(record["ApproximateArrivalTimestamp"].get<int64_t>(), before_ms, 5000);

  // Errors answer in CBOR too.
  Json error = CallCbor("DescribeStreamSummary", {{"StreamName", "missing"}}, 400);
  EXPECT_EQ(error["__type"], "ResourceNotFoundException");
}

TEST_F(KinesisApiTest, ShapeErrorsHaveKinesisNames) {
  CallJson("CreateStream", {{"StreamName", "s"}, {"ShardCount", 1}});
  ExpectJsonError("PutRecord", "{not json", "SerializationException");
  ExpectJsonError("PutRecord", "[1,2]", "SerializationException");
  ExpectJsonError("CreateStream", R"({"StreamName":"x","ShardCount":"two"})",
                  "SerializationException", "ShardCount");
  ExpectJsonError("PutRecord", R"({"StreamName":"s","PartitionKey":"k","Data":"@@@"})",
                  "SerializationException", "Data");
  ExpectJsonError("CreateStream", R"({"StreamName":"x"})", "ValidationException", "shardCount");
  ExpectJsonError("GetShardIterator", R"({"StreamName":"s","ShardIteratorType":"LATEST"})",
                  "ValidationException", "shardId");
  ExpectJsonError("PutRecord", R"({"PartitionKey":"k","Data":""})", "ValidationException",
                  "streamName");
  ExpectJsonError("PutRecords", R"({"StreamName":"s","Records":[{"Data":""}]})",
                  "ValidationException", "records.1.member.partitionKey");
  ExpectJsonError("ListShards", R"({"StreamName":"s","MaxResults":0})", "ValidationException",
                  "maxResults");
  ExpectJsonError(
      "GetShardIterator",
      R"({"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"NEXT"})",
      "ValidationException", "shardIteratorType");
  ExpectJsonError("DescribeStreamSummary",
                  R"({"StreamName":"s","StreamARN":"arn:aws:kinesis:us-east-1:0:stream/t"})",
                  "InvalidArgumentException", "different streams");
  ExpectJsonError("FlyToTheMoon", "{}", "UnknownOperationException");
  ExpectJsonError("UpdateShardCount", R"({"StreamName":"s","TargetShardCount":2})",
                  "InvalidArgumentException", "resharding");
}

// StreamCreationTimestamp tells apart a deleted stream from a new one of the same name: ListShards
// answers only for the stream created then (AWS: ResourceNotFoundException otherwise).
TEST_F(KinesisApiTest, ListShardsHonoursStreamCreationTimestamp) {
  CallJson("CreateStream", {{"StreamName", "s"}, {"ShardCount", 2}});
  auto created = [&] {
    return CallJson("DescribeStreamSummary",
                    {{"StreamName", "s"}})["StreamDescriptionSummary"]["StreamCreationTimestamp"]
        .get<double>();
  };
  const double first = created();
  EXPECT_EQ(
      CallJson("ListShards", {{"StreamName", "s"}, {"StreamCreationTimestamp", first}})["Shards"]
          .size(),
      2u);
  CallJson("DeleteStream", {{"StreamName", "s"}});
  // The successor must be created in a later millisecond to be told apart by its timestamp.
  ASSERT_TRUE(runnel::testing::WaitFor(
      [&] { return absl::ToUnixMillis(absl::Now()) > std::llround(first * 1000) + 1; },
      absl::Seconds(1)));
  CallJson("CreateStream", {{"StreamName", "s"}, {"ShardCount", 1}});
  const double second = created();
  ASSERT_NE(first, second);
  ExpectJsonError("ListShards",
                  Json({{"StreamName", "s"}, {"StreamCreationTimestamp", first}}).dump(),
                  "ResourceNotFoundException", "Stream s under account 000000000000 created at");
  EXPECT_EQ(
      CallJson("ListShards", {{"StreamName", "s"}, {"StreamCreationTimestamp", second}})["Shards"]
          .size(),
      1u);
  // Whole seconds (as typed by hand) name the stream created within that second.
  EXPECT_EQ(CallJson("ListShards", {{"StreamName", "s"},
                                    {"StreamCreationTimestamp", std::floor(second)}})["Shards"]
                .size(),
            1u);
  ExpectJsonError("ListShards",
                  Json({{"NextToken", "x"}, {"StreamCreationTimestamp", second}}).dump(),
                  "InvalidArgumentException", "NextToken and StreamCreationTimestamp");
}

// Deep bodies overflowed the recursive decoders' stack (a SIGSEGV of the whole broker); they
// are refused before decoding, in both formats, however the depth is built.
TEST_F(KinesisApiTest, DeeplyNestedBodiesAreSerializationErrors) {
  CallJson("CreateStream", {{"StreamName", "s"}, {"ShardCount", 1}});
  auto expect_refused = [&](const std::string& content_type, const std::string& body) {
    ApiResponse response = Call("PutRecord", content_type, body);
    EXPECT_EQ(response.http_status, 400);
    EXPECT_EQ(response.error_type, "SerializationException");
    EXPECT_THAT(response.body, HasSubstr("nested deeper than 32 levels"));
  };
  constexpr int kHostile = 150000;
  const std::string cbor = "application/x-amz-cbor-1.1";
  expect_refused(cbor, std::string(kHostile, '\x81') + '\x01');  // [[[...1]]]
  expect_refused(cbor, std::string(kHostile, '\x9F'));           // [_ [_ ... (indefinite)
  expect_refused(cbor, std::string(kHostile, '\xC6') + '\x01');  // tag(tag(...(1)))
  expect_refused(cbor, std::string(kHostile, '\x7F'));           // indefinite text chunks
  // A map member holding the deep value, as a hostile client would send it.
  expect_refused(cbor, "\xA1\x6AStreamName" + std::string(kHostile, '\x81') + '\x01');
  const std::string json = "application/x-amz-json-1.1";
  expect_refused(json, std::string(kHostile, '[') + std::string(kHostile, ']'));
  expect_refused(
      json, R"({"StreamName":)" + std::string(kHostile, '[') + std::string(kHostile, ']') + "}");
  // Up to the bound, unknown members are read and ignored as before.
  Json nested = 1;
  for (int i = 0; i < kMaxBodyNesting - 1; ++i) nested = Json::array({nested});
  Json put = {{"StreamName", "s"}, {"PartitionKey", "k"}, {"Data", "aGk="}, {"Extra", nested}};
  CallJson("PutRecord", put);
  CallCbor(
      "PutRecord",
      {{"StreamName", "s"}, {"PartitionKey", "k"}, {"Data", Json::binary({1})}, {"Extra", nested}});
}

TEST_F(KinesisApiTest, ListStreamsAndConsumersPage) {
  for (const char* name : {"a", "b", "c"})
    CallJson("CreateStream", {{"StreamName", name}, {"ShardCount", 1}});
  Json first = CallJson("ListStreams", {{"Limit", 2}});
  EXPECT_EQ(first["StreamNames"], Json({"a", "b"}));
  EXPECT_TRUE(first["HasMoreStreams"].get<bool>());
  Json second = CallJson("ListStreams", {{"Limit", 2}, {"NextToken", first["NextToken"]}});
  EXPECT_EQ(second["StreamNames"], Json({"c"}));
  EXPECT_FALSE(second["HasMoreStreams"].get<bool>());

  const std::string arn = "arn:aws:kinesis:us-east-1:000000000000:stream/a";
  for (const char* name : {"x", "y"}) {
    CallJson("RegisterStreamConsumer", {{"StreamARN", arn}, {"ConsumerName", name}});
  }
  Json page = CallJson("ListStreamConsumers", {{"StreamARN", arn}, {"MaxResults", 1}});
  ASSERT_EQ(page["Consumers"].size(), 1u);
  Json rest =
      CallJson("ListStreamConsumers", {{"StreamARN", arn}, {"NextToken", page["NextToken"]}});
  ASSERT_EQ(rest["Consumers"].size(), 1u);
  EXPECT_EQ(rest["Consumers"][0]["ConsumerName"], "y");

  // Deleting the stream forgets its consumers; a new stream of the same name starts clean.
  CallJson("DeleteStream", {{"StreamName", "a"}});
  CallJson("CreateStream", {{"StreamName", "a"}, {"ShardCount", 1}});
  EXPECT_TRUE(CallJson("ListStreamConsumers", {{"StreamARN", arn}})["Consumers"].empty());
}

TEST_F(KinesisApiTest, SubscribeToShardStartsAnEventStream) {
  CallJson("CreateStream", {{"StreamName", "s"}, {"ShardCount", 1}});
  Json consumer = CallJson("RegisterStreamConsumer",
                           {{"StreamARN", "arn:aws:kinesis:us-east-1:000000000000:stream/s"},
                            {"ConsumerName", "c"}})["Consumer"];
  CallJson("PutRecord", {{"StreamName", "s"}, {"PartitionKey", "k"}, {"Data", "eA=="}});
  ApiResponse response = Call("SubscribeToShard", "application/x-amz-json-1.1",
                              Json({{"ConsumerARN", consumer["ConsumerARN"]},
                                    {"ShardId", "shardId-000000000000"},
                                    {"StartingPosition", {{"Type", "TRIM_HORIZON"}}}})
                                  .dump());
  ASSERT_EQ(response.http_status, 200) << response.body;
  EXPECT_EQ(response.content_type, "application/vnd.amazon.eventstream");
  ASSERT_NE(response.subscription, nullptr);
  size_t consumed = 0;
  auto initial = DecodeEventStreamMessage(response.body, &consumed);
  ASSERT_TRUE(initial.ok()) << initial.status();
  EXPECT_THAT(initial->headers, ::testing::Contains(std::pair<std::string, std::string>(
                                    ":event-type", "initial-response")));

  absl::Notification got;
  absl::StatusOr<v1::SubscribeToShardEvent> event;
  response.subscription->Next([&](absl::StatusOr<v1::SubscribeToShardEvent> e) {
    event = std::move(e);
    got.Notify();
  });
  ASSERT_TRUE(got.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(event.ok()) << event.status();
  auto frame = DecodeEventStreamMessage(EncodeSubscribeEvent(*event, WireFormat::kJson), &consumed);
  ASSERT_TRUE(frame.ok());
  Json payload = Json::parse(frame->payload);
  ASSERT_EQ(payload["Records"].size(), 1u);
  EXPECT_EQ(payload["Records"][0]["Data"], "eA==");
  EXPECT_TRUE(payload["ContinuationSequenceNumber"].is_string());

  Json missing = Json::parse(
      Call("SubscribeToShard", "application/x-amz-json-1.1",
           Json({{"ConsumerARN", "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/no:1"},
                 {"ShardId", "shardId-000000000000"},
                 {"StartingPosition", {{"Type", "LATEST"}}}})
               .dump())
          .body);
  EXPECT_EQ(missing["__type"], "ResourceNotFoundException");
}

}  // namespace
}  // namespace runnel::kinesis
