// The SDK header on its own (no plugin loading): Lambda's event JSON byte for byte, the record
// and context accessors, exceptions turned into failures at the ABI boundary, the frozen ABI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "runnel/handler.h"
#include "runnel/runtime/event_json.h"

namespace runnel {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The ABI is a contract with plugins built elsewhere: a layout change must bump
// RUNNEL_HANDLER_ABI_VERSION, and this test makes the change visible.
static_assert(RUNNEL_HANDLER_ABI_VERSION == 1u);
static_assert(sizeof(runnel_bytes) == 16);
static_assert(sizeof(runnel_record) == 56 && offsetof(runnel_record, data) == 32 &&
              offsetof(runnel_record, approximate_arrival_ms) == 48);
static_assert(sizeof(runnel_event) == 80 && offsetof(runnel_event, shard_id) == 16 &&
              offsetof(runnel_event, invoke_identity_arn) == 64);
static_assert(sizeof(runnel_init_config) == 72 && offsetof(runnel_init_config, host_data) == 48);
static_assert(sizeof(runnel_context) == 80 && offsetof(runnel_context, attempt) == 40 &&
              offsetof(runnel_context, add_batch_item_failure) == 72);
static_assert(offsetof(runnel_handler_api, abi_version) == 0 &&
              offsetof(runnel_handler_api, create) == 16 &&
              offsetof(runnel_handler_api, handle) == 32 && sizeof(runnel_handler_api) == 40);

runnel_bytes B(std::string_view s) { return runnel_bytes{s.data(), s.size()}; }

// An event over `records`, with the fields of the example in docs/aws-semantics.md#event.
runnel_event MakeEvent(const std::vector<runnel_record>& records) {
  runnel_event event{};
  event.records = records.data();
  event.record_count = records.size();
  event.shard_id = B("shardId-000000000003");
  event.event_source_arn = B("arn:aws:kinesis:eu-west-1:111122223333:stream/orders");
  event.aws_region = B("eu-west-1");
  event.invoke_identity_arn = B("arn:aws:iam::111122223333:role/my-esm-role");
  return event;
}

TEST(EventJsonTest, MatchesLambdasKinesisEventByteForByte) {
  std::vector<runnel_record> records = {
      {B("user-42"), B("49650001112223334445556667778889990001112223334445556666"),
       B("{\"hello\":\"world\"}"), 1718000000123},
  };
  runnel_event event = MakeEvent(records);
  EXPECT_EQ(
      Event(&event).ToJson(),
      "{\"Records\":[{\"kinesis\":{\"kinesisSchemaVersion\":\"1.0\",\"partitionKey\":\"user-42\","
      "\"sequenceNumber\":\"49650001112223334445556667778889990001112223334445556666\","
      "\"data\":\"eyJoZWxsbyI6IndvcmxkIn0=\",\"approximateArrivalTimestamp\":1718000000.123},"
      "\"eventSource\":\"aws:kinesis\",\"eventVersion\":\"1.0\","
      "\"eventID\":\"shardId-000000000003:"
      "49650001112223334445556667778889990001112223334445556666\","
      "\"eventName\":\"aws:kinesis:record\","
      "\"invokeIdentityArn\":\"arn:aws:iam::111122223333:role/my-esm-role\","
      "\"awsRegion\":\"eu-west-1\","
      "\"eventSourceARN\":\"arn:aws:kinesis:eu-west-1:111122223333:stream/orders\"}]}");
}

TEST(EventJsonTest, EmptyBatchIsAnEmptyRecordsList) {
  std::vector<runnel_record> records;
  runnel_event event = MakeEvent(records);
  EXPECT_EQ(Event(&event).ToJson(), "{\"Records\":[]}");
}

TEST(EventJsonTest, Base64MatchesRfc4648Vectors) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {std::string("\0\xff\xfe", 3), "AP/+"},
  };
  for (const auto& [in, out] : vectors) {
    std::string encoded;
    internal::AppendBase64(encoded, in);
    EXPECT_EQ(encoded, out) << "input of " << in.size() << " bytes";
  }
}

TEST(EventJsonTest, EscapesQuotesBackslashesAndControlBytesAndKeepsUtf8) {
  std::string out;
  internal::AppendJsonString(out, std::string("a\"b\\c\nd\te\x01\x1f\xc3\xa9", 13));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f\xc3\xa9\"");
}

TEST(EventJsonTest, ArrivalTimestampIsSecondsWithMilliseconds) {
  for (auto [ms, text] :
       std::vector<std::pair<int64_t, std::string>>{{1718000000123, "1718000000.123"},
                                                    {1718000000000, "1718000000.000"},
                                                    {5, "0.005"},
                                                    {1000, "1.000"}}) {
    std::string out;
    internal::AppendEpochSeconds(out, ms);
    EXPECT_EQ(out, text);
  }
}

TEST(EventJsonTest, ToJsonParsesBackIntoTheSameBatch) {
  std::string binary("\0\x01\x02 binary\xff", 11);
  std::vector<runnel_record> records = {
      {B("key \"quoted\""), B("1"), B(binary), 1718000000001},
      {B("k2"), B("2"), B(""), 1718000000999},
  };
  runnel_event event = MakeEvent(records);
  std::string json = Event(&event).ToJson();
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  ASSERT_FALSE(doc.HasParseError());
  absl::StatusOr<runtime::OwnedEvent> parsed = runtime::ParseKinesisEventJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->shard_id, "shardId-000000000003");
  EXPECT_EQ(parsed->event_source_arn, "arn:aws:kinesis:eu-west-1:111122223333:stream/orders");
  EXPECT_EQ(parsed->aws_region, "eu-west-1");
  ASSERT_EQ(parsed->records.size(), 2u);
  EXPECT_EQ(parsed->records[0].partition_key, "key \"quoted\"");
  EXPECT_EQ(parsed->records[0].data, binary);
  EXPECT_EQ(parsed->records[0].approximate_arrival_ms, 1718000000001);
  EXPECT_EQ(parsed->records[1].sequence_number, "2");
  EXPECT_EQ(parsed->records[1].data, "");
  EXPECT_EQ(parsed->records[1].approximate_arrival_ms, 1718000000999);
}

TEST(EventJsonTest, ParseErrorsNameTheRecordAndField) {
  EXPECT_THAT(std::string(runtime::ParseKinesisEventJson("{").status().message()),
              HasSubstr("not JSON"));
  EXPECT_THAT(std::string(runtime::ParseKinesisEventJson("[]").status().message()),
              HasSubstr("Records"));
  auto missing = runtime::ParseKinesisEventJson(
      R"({"Records":[{"kinesis":{"partitionKey":"k","sequenceNumber":"1","data":"AA=="}},
                     {"kinesis":{"partitionKey":"k","data":"AA=="}}]})");
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("Records[1].kinesis.sequenceNumber: missing"));
  auto bad64 = runtime::ParseKinesisEventJson(
      R"({"Records":[{"kinesis":{"partitionKey":"k","sequenceNumber":"1","data":"!!"}}]})");
  EXPECT_THAT(std::string(bad64.status().message()), HasSubstr("Records[0].kinesis.data"));
}

TEST(InvokeResultJsonTest, IsLambdasResponseShape) {
  runtime::InvokeResult ok;
  EXPECT_EQ(runtime::InvokeResultToJson(ok), R"({"batchItemFailures":[]})");
  runtime::InvokeResult partial;
  partial.status = runtime::InvokeStatus::kBatchItemFailures;
  partial.batch_item_failures = {"2", ""};
  EXPECT_EQ(runtime::InvokeResultToJson(partial),
            R"({"batchItemFailures":[{"itemIdentifier":"2"},{"itemIdentifier":""}]})");
  runtime::InvokeResult failed;
  failed.status = runtime::InvokeStatus::kTimeout;
  failed.error_type = "Sandbox.Timedout";
  failed.error_message = "Task timed out after 3.00 seconds";
  EXPECT_EQ(
      runtime::InvokeResultToJson(failed),
      R"({"errorType":"Sandbox.Timedout","errorMessage":"Task timed out after 3.00 seconds"})");
}

TEST(RecordTest, AccessorsViewTheRecordWithoutCopying) {
  std::string data("bin\0ary", 7);
  std::vector<runnel_record> records = {{B("pk"), B("123"), B(data), 1718000000123}};
  runnel_event event = MakeEvent(records);
  Event e(&event);
  ASSERT_EQ(e.size(), 1u);
  Record r = e.records()[0];
  EXPECT_EQ(r.partition_key(), "pk");
  EXPECT_EQ(r.sequence_number(), "123");
  EXPECT_EQ(r.data(), data);
  EXPECT_EQ(r.data().data(), data.data());  // a view, not a copy
  EXPECT_EQ(r.data_size(), 7u);
  EXPECT_EQ(r.event_id(), "shardId-000000000003:123");
  EXPECT_EQ(r.approximate_arrival_timestamp_ms(), 1718000000123);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(
                r.approximate_arrival_timestamp().time_since_epoch())
                .count(),
            1718000000123);
  EXPECT_EQ(e.shard_id(), "shardId-000000000003");
  EXPECT_EQ(e.aws_region(), "eu-west-1");
}

// Drives a handler class through the C ABI exactly as the runtime does.
struct Harness {
  std::vector<std::string> logs;
  std::string error_type, error_message;
  bool error_set = false;
  std::vector<std::string> items;

  static void Log(void* h, int32_t level, runnel_bytes message) {
    static_cast<Harness*>(h)->logs.emplace_back(message.data, message.size);
  }
  static void SetError(void* h, runnel_bytes type, runnel_bytes message) {
    auto* self = static_cast<Harness*>(h);
    self->error_set = true;
    self->error_type.assign(type.data, type.size);
    self->error_message.assign(message.data, message.size);
  }
  static void AddItem(void* h, runnel_bytes id) {
    static_cast<Harness*>(h)->items.emplace_back(id.data, id.size);
  }

  runnel_init_config InitConfig() {
    runnel_init_config c{};
    c.function_name = B("fn");
    c.timeout_ms = 3000;
    c.memory_size_mb = 128;
    c.host_data = this;
    c.log = &Log;
    c.set_error = &SetError;
    return c;
  }

  template <typename H>
  int32_t Run(const std::vector<runnel_record>& records) {
    runnel_handler_api api = internal::Adapter<H>::Api();
    runnel_init_config init = InitConfig();
    void* instance = api.create(&init);
    EXPECT_NE(instance, nullptr);
    runnel_event event = MakeEvent(records);
    runnel_context context{};
    context.function_name = B("fn");
    context.request_id = B("req-1");
    context.attempt = 2;
    context.host_data = this;
    context.log = &Log;
    context.set_error = &SetError;
    context.add_batch_item_failure = &AddItem;
    int32_t outcome = api.handle(instance, &event, &context);
    api.destroy(instance);
    return outcome;
  }
};

namespace custom {
struct OrderRejected : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace custom

struct ThrowsStd : Handler {
  Result Handle(const Event&, Context&) override { throw std::out_of_range("index 7 of 3"); }
};
struct ThrowsCustom : Handler {
  Result Handle(const Event&, Context&) override { throw custom::OrderRejected("order o-9"); }
};
struct ThrowsInt : Handler {
  Result Handle(const Event&, Context&) override { throw 42; }
};
struct ReturnsFailure : Handler {
  Result Handle(const Event&, Context& context) override {
    context.logger().warn("about to fail");
    return Result::Failure("ValidationError", "bad order");
  }
};
struct ReportsItems : Handler {
  Result Handle(const Event& event, Context& context) override {
    Result result = Result::Success();
    for (const Record& r : event.records()) {
      if (r.data() == "bad") result.AddBatchItemFailure(r.sequence_number());
    }
    return result;
  }
};
struct InitThrows : Handler {
  void Init(const Config&) override { throw std::invalid_argument("no TABLE_NAME"); }
  Result Handle(const Event&, Context&) override { return Result::Success(); }
};

TEST(AbiBoundaryTest, StdExceptionBecomesFailureWithItsTypeAndWhat) {
  Harness h;
  EXPECT_EQ(h.Run<ThrowsStd>({}), RUNNEL_OUTCOME_FAILURE);
  EXPECT_EQ(h.error_type, "std::out_of_range");
  EXPECT_EQ(h.error_message, "index 7 of 3");
}

TEST(AbiBoundaryTest, CustomExceptionTypeIsDemangled) {
  Harness h;
  EXPECT_EQ(h.Run<ThrowsCustom>({}), RUNNEL_OUTCOME_FAILURE);
  EXPECT_EQ(h.error_type, "runnel::(anonymous namespace)::custom::OrderRejected");
  EXPECT_EQ(h.error_message, "order o-9");
}

TEST(AbiBoundaryTest, NonStdExceptionIsCaughtToo) {
  Harness h;
  EXPECT_EQ(h.Run<ThrowsInt>({}), RUNNEL_OUTCOME_FAILURE);
  EXPECT_EQ(h.error_type, "int");
  EXPECT_EQ(h.error_message, "unknown exception");
}

TEST(AbiBoundaryTest, ReturnedFailureAndLogsCrossTheBoundary) {
  Harness h;
  EXPECT_EQ(h.Run<ReturnsFailure>({}), RUNNEL_OUTCOME_FAILURE);
  EXPECT_EQ(h.error_type, "ValidationError");
  EXPECT_EQ(h.error_message, "bad order");
  EXPECT_THAT(h.logs, ElementsAre("about to fail"));
}

TEST(AbiBoundaryTest, BatchItemFailuresAreReportedInOrder) {
  Harness h;
  std::vector<runnel_record> records = {
      {B("k"), B("1"), B("ok"), 0}, {B("k"), B("2"), B("bad"), 0}, {B("k"), B("3"), B("bad"), 0}};
  EXPECT_EQ(h.Run<ReportsItems>(records), RUNNEL_OUTCOME_BATCH_ITEM_FAILURES);
  EXPECT_THAT(h.items, ElementsAre("2", "3"));
  EXPECT_FALSE(h.error_set);
}

TEST(AbiBoundaryTest, SuccessWhenNoItemFails) {
  Harness h;
  EXPECT_EQ(h.Run<ReportsItems>({{B("k"), B("1"), B("ok"), 0}}), RUNNEL_OUTCOME_SUCCESS);
  EXPECT_TRUE(h.items.empty());
}

TEST(AbiBoundaryTest, InitExceptionRefusesToCreateWithTheReason) {
  Harness h;
  runnel_handler_api api = internal::Adapter<InitThrows>::Api();
  runnel_init_config init = h.InitConfig();
  EXPECT_EQ(api.create(&init), nullptr);
  EXPECT_EQ(h.error_type, "std::invalid_argument");
  EXPECT_EQ(h.error_message, "no TABLE_NAME");
}

TEST(AbiBoundaryTest, ApiTableCarriesTheAbiVersion) {
  runnel_handler_api api = internal::Adapter<ThrowsStd>::Api();
  EXPECT_EQ(api.abi_version, RUNNEL_HANDLER_ABI_VERSION);
  EXPECT_EQ(api.struct_size, sizeof(runnel_handler_api));
}

}  // namespace
}  // namespace runnel
