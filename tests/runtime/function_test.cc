// Function::Invoke in both isolation modes: results of every kind, the context and event fields
// the handler sees, concurrency, and the in_process timeout that is reported late.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runnel/runtime/function.h"
#include "tests/runtime/test_util.h"

namespace runnel::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TestConfig;

// Owns the bytes of a batch and hands out views.
struct Batch {
  std::vector<std::string> data;
  std::vector<std::string> sequence_numbers;
  std::vector<RecordView> views;

  explicit Batch(std::vector<std::string> records) : data(std::move(records)) {
    for (size_t i = 0; i < data.size(); ++i) sequence_numbers.push_back(std::to_string(1000 + i));
    for (size_t i = 0; i < data.size(); ++i) {
      views.push_back(RecordView{"pk", sequence_numbers[i], data[i], 1718000000000 + int64_t(i)});
    }
  }
  InvokeRequest Request() const {
    InvokeRequest request;
    request.shard_id = "shardId-000000000001";
    request.event_source_arn = "arn:aws:kinesis:eu-west-1:000000000000:stream/orders";
    request.aws_region = "eu-west-1";
    request.records = views;
    return request;
  }
};

rapidjson::Document ProbeReport(const InvokeResult& result) {
  EXPECT_EQ(result.status, InvokeStatus::kFunctionError);
  EXPECT_EQ(result.error_type, "Probe");
  rapidjson::Document doc;
  doc.Parse(result.error_message.c_str());
  EXPECT_FALSE(doc.HasParseError()) << result.error_message;
  return doc;
}

class FunctionTest : public ::testing::TestWithParam<Isolation> {
 protected:
  std::unique_ptr<Function> Load(const std::string& plugin,
                                 const std::function<void(FunctionConfig&)>& edit = {}) {
    FunctionConfig config =
        TestConfig("fn-" + std::string(IsolationName(GetParam())), plugin, GetParam());
    if (edit) edit(config);
    absl::StatusOr<std::unique_ptr<Function>> function = Function::Load(config);
    EXPECT_TRUE(function.ok()) << function.status();
    return function.ok() ? *std::move(function) : nullptr;
  }
};

TEST_P(FunctionTest, SuccessAndRecordsInBatchOrder) {
  testing::TempDir dir;
  auto function = Load(
      ECHO_PLUGIN, [&](FunctionConfig& c) { c.environment["ECHO_FILE"] = dir.File("echo.txt"); });
  Batch batch({"first", "second\nline", "third"});
  InvokeResult result = function->Invoke(batch.Request());
  EXPECT_EQ(result.status, InvokeStatus::kSuccess);
  EXPECT_TRUE(result.ok());
  EXPECT_TRUE(result.error_type.empty());
  EXPECT_GT(result.duration, absl::ZeroDuration());
  EXPECT_EQ(testing::ReadFile(dir.File("echo.txt")),
            "1000\tpk\tfirst\n1001\tpk\tsecond\\nline\n1002\tpk\tthird\n");
}

TEST_P(FunctionTest, ReturnedFailureIsAFunctionError) {
  auto function = Load(POISON_PLUGIN);
  Batch batch({"ok", "POISON:fail"});
  InvokeResult result = function->Invoke(batch.Request());
  EXPECT_EQ(result.status, InvokeStatus::kFunctionError);
  EXPECT_EQ(result.error_type, "PoisonFailure");
  EXPECT_EQ(result.error_message, "poison record 1001");
}

TEST_P(FunctionTest, ExceptionBecomesAFailureWithItsTypeAndMessage) {
  auto function = Load(POISON_PLUGIN);
  Batch batch({"POISON:throw"});
  InvokeResult result = function->Invoke(batch.Request());
  EXPECT_EQ(result.status, InvokeStatus::kFunctionError);
  EXPECT_EQ(result.error_type, "std::runtime_error");
  EXPECT_EQ(result.error_message, "poison record 1000");
  // The environment survives the exception.
  Batch good({"fine"});
  EXPECT_TRUE(function->Invoke(good.Request()).ok());
}

TEST_P(FunctionTest, BatchItemFailuresRoundTrip) {
  auto function = Load(POISON_PLUGIN);
  Batch batch({"a", "POISON:partial", "b", "POISON:partial"});
  InvokeResult result = function->Invoke(batch.Request());
  EXPECT_EQ(result.status, InvokeStatus::kBatchItemFailures);
  EXPECT_THAT(result.batch_item_failures, ElementsAre("1001", "1003"));
}

TEST_P(FunctionTest, InvalidItemIdentifiersAreKeptRawForThePoller) {
  auto function = Load(POISON_PLUGIN);
  Batch batch({"POISON:garbage"});
  InvokeResult result = function->Invoke(batch.Request());
  EXPECT_EQ(result.status, InvokeStatus::kBatchItemFailures);
  EXPECT_THAT(result.batch_item_failures, ElementsAre("", "not-a-sequence-number"));
}

TEST_P(FunctionTest, UnknownOutcomeFromACPluginIsAnInvalidResponse) {
  auto function = Load(BAD_OUTCOME_PLUGIN);
  Batch empty({});
  EXPECT_EQ(function->Invoke(empty.Request()).status, InvokeStatus::kSuccess);
  Batch batch({"x"});
  InvokeResult result = function->Invoke(batch.Request());
  EXPECT_EQ(result.status, InvokeStatus::kInvalidResponse);
  EXPECT_THAT(result.error_message, HasSubstr("unknown outcome 42"));
}

TEST_P(FunctionTest, HandlerSeesContextEventAndEnvironment) {
  auto function = Load(PROBE_PLUGIN, [](FunctionConfig& c) {
    c.environment = {{"TABLE", "orders"}, {"MODE", "strict \"quoted\""}};
    c.timeout = absl::Seconds(7);
    c.memory_size_mb = 256;
    c.role = "arn:aws:iam::1:role/r";
  });
  Batch batch({"x", "y"});
  InvokeRequest request = batch.Request();
  request.request_id = "req-123";
  request.attempt = 4;
  rapidjson::Document doc = ProbeReport(function->Invoke(request));
  EXPECT_EQ(std::string(doc["function"].GetString()),
            "fn-" + std::string(IsolationName(GetParam())));
  EXPECT_STREQ(doc["request_id"].GetString(), "req-123");
  EXPECT_EQ(doc["attempt"].GetInt(), 4);
  EXPECT_GT(doc["remaining_ms"].GetInt64(), 5000);
  EXPECT_LE(doc["remaining_ms"].GetInt64(), 7000);
  EXPECT_EQ(doc["init_timeout_ms"].GetInt64(), 7000);
  EXPECT_EQ(doc["init_memory_mb"].GetInt(), 256);
  EXPECT_EQ(doc["records"].GetInt(), 2);
  EXPECT_STREQ(doc["shard_id"].GetString(), "shardId-000000000001");
  EXPECT_STREQ(doc["event_source_arn"].GetString(),
               "arn:aws:kinesis:eu-west-1:000000000000:stream/orders");
  EXPECT_STREQ(doc["aws_region"].GetString(), "eu-west-1");
  EXPECT_STREQ(doc["role"].GetString(), "arn:aws:iam::1:role/r");
  EXPECT_STREQ(doc["env"]["TABLE"].GetString(), "orders");
  EXPECT_STREQ(doc["env"]["MODE"].GetString(), "strict \"quoted\"");
}

TEST_P(FunctionTest, GeneratesUuidRequestIdsWhenNoneIsGiven) {
  auto function = Load(POISON_PLUGIN);
  Batch batch({"x"});
  std::set<std::string> ids;
  std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  for (int i = 0; i < 20; ++i) {
    InvokeResult result = function->Invoke(batch.Request());
    EXPECT_TRUE(std::regex_match(result.request_id, uuid)) << result.request_id;
    ids.insert(result.request_id);
  }
  EXPECT_EQ(ids.size(), 20u);
}

TEST_P(FunctionTest, HandlerLogLinesAreTaggedWithFunctionAndRequestId) {
  testing::LogCapture capture;
  auto function = Load(ORDER_PROCESSOR_PLUGIN);
  Batch batch({R"({"orderId":"o-1","customerId":"c","amount":1})"});
  InvokeRequest request = batch.Request();
  request.request_id = "req-log-1";
  EXPECT_TRUE(function->Invoke(request).ok());
  std::string expected =
      "[fn-" + std::string(IsolationName(GetParam())) + "] [req-log-1] Processing order o-1";
  EXPECT_TRUE(capture.WaitForLine(expected)) << ::testing::PrintToString(capture.Lines());
}

TEST_P(FunctionTest, ConcurrentInvocationsAllSucceedInOrderPerCaller) {
  testing::TempDir dir;
  auto function = Load(
      ECHO_PLUGIN, [&](FunctionConfig& c) { c.environment["ECHO_FILE"] = dir.File("echo.txt"); });
  constexpr int kThreads = 6;
  constexpr int kCalls = 20;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        std::string data = "t" + std::to_string(t) + "-" + std::to_string(i);
        RecordView view{"pk", data, data, 0};
        InvokeRequest request;
        request.shard_id = "shardId-000000000000";
        request.records = std::span<const RecordView>(&view, 1);
        if (function->Invoke(request).ok()) ++ok;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kCalls);
  // Each caller's records appear once each, in the caller's order.
  std::string echoed = testing::ReadFile(dir.File("echo.txt"));
  for (int t = 0; t < kThreads; ++t) {
    size_t at = 0;
    for (int i = 0; i < kCalls; ++i) {
      std::string line = "t" + std::to_string(t) + "-" + std::to_string(i) + "\tpk\t";
      size_t found = echoed.find(line, at);
      ASSERT_NE(found, std::string::npos) << line;
      at = found + line.size();
    }
  }
}

TEST_P(FunctionTest, MaxConcurrencyBoundsTheExecutionEnvironments) {
  auto function = Load(PROBE_PLUGIN, [](FunctionConfig& c) {
    c.max_concurrency = 2;
    c.environment["PROBE_SLEEP_MS"] = "30";
  });
  std::mutex mu;
  std::set<std::string> environments;
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 3; ++i) {
        Batch batch({"x"});
        rapidjson::Document doc = ProbeReport(function->Invoke(batch.Request()));
        std::lock_guard<std::mutex> lock(mu);
        environments.insert(std::to_string(doc["pid"].GetInt()) + "/" +
                            std::to_string(doc["instance"].GetInt()));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(environments.size(), 2u);
  EXPECT_GE(environments.size(), 1u);
}

TEST_P(FunctionTest, EmptyBatchIsDelivered) {
  auto function = Load(PROBE_PLUGIN);
  Batch batch({});
  EXPECT_EQ(ProbeReport(function->Invoke(batch.Request()))["records"].GetInt(), 0);
}

INSTANTIATE_TEST_SUITE_P(BothModes, FunctionTest,
                         ::testing::Values(Isolation::kProcess, Isolation::kInProcess),
                         [](const auto& info) { return std::string(IsolationName(info.param)); });

TEST(InProcessTest, TimeoutIsReportedWhenTheHandlerReturnsLate) {
  FunctionConfig config = TestConfig("slow", POISON_PLUGIN, Isolation::kInProcess);
  config.timeout = absl::Milliseconds(50);
  auto function = Function::Load(config);
  ASSERT_TRUE(function.ok()) << function.status();
  Batch batch({"POISON:sleep=200", "POISON:fail"});
  InvokeResult result = (*function)->Invoke(batch.Request());
  EXPECT_EQ(result.status, InvokeStatus::kTimeout);
  EXPECT_EQ(result.error_type, "Sandbox.Timedout");
  EXPECT_EQ(result.error_message, "Task timed out after 0.05 seconds");
  // Not enforced: the handler ran to its end.
  EXPECT_GE(result.duration, absl::Milliseconds(200));
}

}  // namespace
}  // namespace runnel::runtime
