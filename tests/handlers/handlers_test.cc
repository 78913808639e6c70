// The example handlers: order_processor (the quick start), echo (order and duplicate checks in
// other tests) and poison (failure tests), in both isolation modes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runnel/runtime/function.h"
#include "tests/runtime/test_util.h"

namespace runnel::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class HandlersTest : public ::testing::TestWithParam<Isolation> {
 protected:
  std::unique_ptr<Function> Load(const std::string& name, const std::string& plugin,
                                 std::map<std::string, std::string> env = {}) {
    FunctionConfig config = testing::TestConfig(name, plugin, GetParam());
    config.environment = std::move(env);
    auto function = Function::Load(config);
    EXPECT_TRUE(function.ok()) << function.status();
    return function.ok() ? *std::move(function) : nullptr;
  }

  // Invokes with records whose sequence numbers are 1, 2, 3, ...
  InvokeResult Invoke(Function& function, const std::vector<std::string>& data,
                      const std::string& request_id = "") {
    std::vector<std::string> seqs;
    for (size_t i = 0; i < data.size(); ++i) seqs.push_back(std::to_string(i + 1));
    std::vector<RecordView> views;
    for (size_t i = 0; i < data.size(); ++i) {
      views.push_back(RecordView{i % 2 == 0 ? "k0" : "k1", seqs[i], data[i], 1718000000000});
    }
    InvokeRequest request;
    request.shard_id = "shardId-000000000000";
    request.request_id = request_id;
    request.records = views;
    return function.Invoke(request);
  }
};

TEST_P(HandlersTest, OrderProcessorLogsEachOrderInBatchOrder) {
  testing::LogCapture capture;
  auto function = Load("orders", ORDER_PROCESSOR_PLUGIN);
  InvokeResult result = Invoke(*function,
                               {R"({"orderId":"A-1","customerId":"c-1","amount":10})",
                                R"({"orderId":"A-2","customerId":"c-2","amount":0.5})",
                                R"({"orderId":"A-3","customerId":"c-1","amount":99})"},
                               "req-orders");
  ASSERT_TRUE(result.ok()) << result.error_message;
  ASSERT_TRUE(capture.WaitForLine("Processing order A-3"));
  std::vector<std::string> processed;
  for (const std::string& line : capture.Lines()) {
    if (line.find("Processing order") != std::string::npos) processed.push_back(line);
  }
  EXPECT_THAT(processed, ElementsAre("[orders] [req-orders] Processing order A-1",
                                     "[orders] [req-orders] Processing order A-2",
                                     "[orders] [req-orders] Processing order A-3"));
}

TEST_P(HandlersTest, OrderProcessorFailsTheInvocationOnAMalformedOrder) {
  testing::LogCapture capture;
  auto function = Load("orders", ORDER_PROCESSOR_PLUGIN);
  InvokeResult result = Invoke(*function, {R"({"orderId":"A-1","customerId":"c-1","amount":10})",
                                           R"({"orderId":"A-2","amount":"lots"})",
                                           R"({"orderId":"A-3","customerId":"c-1","amount":1})"});
  EXPECT_EQ(result.status, InvokeStatus::kFunctionError);
  EXPECT_EQ(result.error_type, "orders::MalformedOrder");
  EXPECT_THAT(result.error_message, HasSubstr("record 2"));
  EXPECT_THAT(result.error_message, HasSubstr("customerId"));
  // Orders before the bad one were processed; none after it.
  EXPECT_TRUE(capture.WaitForLine("Processing order A-1"));
  EXPECT_FALSE(capture.Contains("Processing order A-3"));

  InvokeResult not_json = Invoke(*function, {"{orderId"});
  EXPECT_EQ(not_json.error_type, "orders::MalformedOrder");
  EXPECT_THAT(not_json.error_message, HasSubstr("not JSON"));
}

TEST_P(HandlersTest, EchoAppendsEveryRecordEscaped) {
  testing::TempDir dir;
  auto function = Load("echo", ECHO_PLUGIN, {{"ECHO_FILE", dir.File("out.txt")}});
  ASSERT_TRUE(Invoke(*function, {"plain", "tab\there", std::string("nul\0byte", 8)}).ok());
  ASSERT_TRUE(Invoke(*function, {"again"}).ok());
  EXPECT_EQ(testing::ReadFile(dir.File("out.txt")),
            "1\tk0\tplain\n2\tk1\ttab\\there\n3\tk0\tnul\\x00byte\n1\tk0\tagain\n");
}

TEST_P(HandlersTest, EchoFailsWhenItCannotWrite) {
  auto function = Load("echo", ECHO_PLUGIN, {{"ECHO_FILE", "/nonexistent/dir/out.txt"}});
  InvokeResult result = Invoke(*function, {"x"});
  EXPECT_EQ(result.status, InvokeStatus::kFunctionError);
  EXPECT_EQ(result.error_type, "std::system_error");
  EXPECT_THAT(result.error_message, HasSubstr("/nonexistent/dir/out.txt"));
}

TEST_P(HandlersTest, PoisonMisbehavesOnlyOnMarkedRecords) {
  auto function = Load("poison", POISON_PLUGIN);
  EXPECT_TRUE(Invoke(*function, {"a", "b"}).ok());
  EXPECT_EQ(Invoke(*function, {"a", "x POISON:fail"}).error_message, "poison record 2");
  EXPECT_EQ(Invoke(*function, {"POISON:throw"}).error_type, "std::runtime_error");
  EXPECT_THAT(Invoke(*function, {"POISON:partial", "ok", "POISON:partial"}).batch_item_failures,
              ElementsAre("1", "3"));
  EXPECT_THAT(Invoke(*function, {"POISON:garbage"}).batch_item_failures,
              ElementsAre("", "not-a-sequence-number"));
  InvokeResult slept = Invoke(*function, {"POISON:sleep=30"});
  EXPECT_TRUE(slept.ok());
  EXPECT_GE(slept.duration, absl::Milliseconds(30));
}

INSTANTIATE_TEST_SUITE_P(BothModes, HandlersTest,
                         ::testing::Values(Isolation::kProcess, Isolation::kInProcess),
                         [](const auto& info) { return std::string(IsolationName(info.param)); });

}  // namespace
}  // namespace runnel::runtime
