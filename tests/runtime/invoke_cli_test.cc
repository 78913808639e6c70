// `runnel invoke`: a handler run once from the command line, as `sam local invoke` does it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "runnel/handler.h"
#include "tests/runtime/test_util.h"

namespace runnel {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::RunCommand;
using ::testing::StartsWith;

std::vector<std::string> Invoke(std::vector<std::string> args) {
  args.insert(args.begin(), {RUNNEL_BINARY, "invoke"});
  return args;
}

class InvokeCliTest : public ::testing::TestWithParam<std::string> {};

TEST_P(InvokeCliTest, SuccessPrintsAnEmptyFailureListAndExitsZero) {
  auto r = RunCommand(Invoke({ORDER_PROCESSOR_PLUGIN, "--isolation", GetParam(), "--data",
                              R"({"orderId":"o-1","customerId":"c-1","amount":5})", "--data",
                              R"({"orderId":"o-2","customerId":"c-1","amount":7.5})"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"batchItemFailures\":[]}\n");
  EXPECT_THAT(r.err, HasSubstr("Processing order o-1"));
  EXPECT_LT(r.err.find("Processing order o-1"), r.err.find("Processing order o-2"));
  EXPECT_THAT(r.err, HasSubstr("REPORT RequestId: "));
}

TEST_P(InvokeCliTest, FailurePrintsErrorTypeAndMessageAndExitsOne) {
  auto r = RunCommand(
      Invoke({ORDER_PROCESSOR_PLUGIN, "--isolation", GetParam(), "--data",
              R"({"orderId":"o-1","customerId":"c-1","amount":5})", "--data", "not json"}));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, StartsWith("{\"errorType\":\"orders::MalformedOrder\",\"errorMessage\":"));
  EXPECT_THAT(r.out, HasSubstr("not JSON"));
}

TEST_P(InvokeCliTest, BatchItemFailuresArePrintedAndExitOne) {
  auto r = RunCommand(Invoke(
      {POISON_PLUGIN, "--isolation", GetParam(), "--data", "a", "--data", "POISON:partial"}));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out,
            "{\"batchItemFailures\":[{\"itemIdentifier\":"
            "\"49650000000000000000000000000000000000000000000000000002\"}]}\n");
}

TEST_P(InvokeCliTest, EventFileIsDeliveredAsWritten) {
  testing::TempDir dir;
  std::string json =
      R"({"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"user-42",)"
      R"("sequenceNumber":"49650001112223334445556667778889990001112223334445556666",)"
      R"("data":"eyJoZWxsbyI6IndvcmxkIn0=","approximateArrivalTimestamp":1718000000.123},)"
      R"("eventSource":"aws:kinesis","eventVersion":"1.0",)"
      R"("eventID":"shardId-000000000003:49650001112223334445556667778889990001112223334445556666",)"
      R"("eventName":"aws:kinesis:record","awsRegion":"eu-west-1",)"
      R"("eventSourceARN":"arn:aws:kinesis:eu-west-1:111122223333:stream/orders"}]})";
  testing::WriteFile(dir.File("event.json"), json);
  auto r =
      RunCommand(Invoke({ECHO_PLUGIN, "--isolation", GetParam(), "--event", dir.File("event.json"),
                         "--env", "ECHO_FILE=" + dir.File("out.txt")}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::ReadFile(dir.File("out.txt")),
            "49650001112223334445556667778889990001112223334445556666\tuser-42\t"
            "{\"hello\":\"world\"}\n");
  // The same event from standard input.
  auto from_stdin = RunCommand(Invoke({ECHO_PLUGIN, "--isolation", GetParam(), "--event", "-",
                                       "--env", "ECHO_FILE=" + dir.File("stdin.txt")}),
                               json);
  EXPECT_EQ(from_stdin.exit_code, 0) << from_stdin.err;
  EXPECT_EQ(testing::ReadFile(dir.File("stdin.txt")), testing::ReadFile(dir.File("out.txt")));
}

TEST_P(InvokeCliTest, LoaderErrorIsOneLineOnStderr) {
  auto r = RunCommand(Invoke({ABI_MISMATCH_PLUGIN, "--isolation", GetParam(), "--data", "x"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, StartsWith("runnel: "));
  EXPECT_THAT(r.err, HasSubstr("ABI version 999"));
}

INSTANTIATE_TEST_SUITE_P(BothModes, InvokeCliTest, ::testing::Values("process", "in_process"));

TEST(InvokeCliUsageTest, TimeoutIsHardAndNamed) {
  auto r = RunCommand(Invoke({POISON_PLUGIN, "--timeout", "200ms", "--data", "POISON:hang"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out,
            "{\"errorType\":\"Sandbox.Timedout\",\"errorMessage\":\"Task timed out after 0.20 "
            "seconds\"}\n");
}

TEST(InvokeCliUsageTest, CrashIsReported) {
  auto r = RunCommand(Invoke({POISON_PLUGIN, "--data", "POISON:abort"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("SIGABRT"));
}

TEST(InvokeCliUsageTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCommand(Invoke({POISON_PLUGIN})).exit_code, 2) << "neither --event nor --data";
  auto bad_timeout = RunCommand(Invoke({POISON_PLUGIN, "--timeout", "soon", "--data", "x"}));
  EXPECT_EQ(bad_timeout.exit_code, 2);
  EXPECT_THAT(bad_timeout.err, HasSubstr("--timeout"));
  EXPECT_EQ(RunCommand(Invoke({POISON_PLUGIN, "--isolation", "thread", "--data", "x"})).exit_code,
            2);
}

TEST(InvokeCliUsageTest, BrokenEventFileIsAnError) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("bad.json"), R"({"Records":[{"kinesis":{}}]})");
  auto r = RunCommand(Invoke({POISON_PLUGIN, "--event", dir.File("bad.json")}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("Records[0].kinesis.partitionKey"));
}

TEST(InvokeCliUsageTest, PartitionKeyIsEveryDataRecordsKey) {
  testing::TempDir dir;
  auto r = RunCommand(Invoke({ECHO_PLUGIN, "--partition-key", "user-7", "--data", "a", "--data",
                              "b", "--env", "ECHO_FILE=" + dir.File("out.txt")}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(testing::ReadFile(dir.File("out.txt")),
              ::testing::MatchesRegex("[0-9]+\tuser-7\ta\n[0-9]+\tuser-7\tb\n"));
  // Without it, each record has a key of its own.
  auto keyed = RunCommand(Invoke({ECHO_PLUGIN, "--data", "a", "--data", "b", "--env",
                                  "ECHO_FILE=" + dir.File("default.txt")}));
  EXPECT_THAT(testing::ReadFile(dir.File("default.txt")),
              ::testing::MatchesRegex("[0-9]+\tpk-1\ta\n[0-9]+\tpk-2\tb\n"));
  // It is for --data records; an event file carries its own keys.
  EXPECT_EQ(
      RunCommand(Invoke({ECHO_PLUGIN, "--partition-key", "k", "--event", "-"}), "{}").exit_code, 2);
}

TEST(InvokeCliUsageTest, BarePluginNameIsFoundOnTheSearchPathAsInYaml) {
  // `echo` is in the build tree's handlers folder beside the binary (as an installed runnel has
  // its handlers folder); the test plugins are found through --plugin-dir or RUNNEL_PLUGIN_PATH.
  auto by_name = RunCommand(Invoke({"echo", "--data", "x"}));
  EXPECT_EQ(by_name.exit_code, 0) << by_name.err;
  EXPECT_EQ(by_name.out, "{\"batchItemFailures\":[]}\n");
  const std::string plugins = std::filesystem::path(PROBE_PLUGIN).parent_path().string();
  auto by_dir = RunCommand(Invoke({"test_probe", "--plugin-dir", plugins, "--data", "x"}));
  EXPECT_THAT(by_dir.out, HasSubstr("\"errorType\":\"Probe\"")) << by_dir.err;
  EXPECT_THAT(by_dir.out, HasSubstr("\\\"function\\\":\\\"test_probe\\\""))
      << "the function is named after the plugin";
  ::setenv("RUNNEL_PLUGIN_PATH", plugins.c_str(), 1);
  auto by_env = RunCommand(Invoke({"test_probe.so", "--data", "x"}));
  ::unsetenv("RUNNEL_PLUGIN_PATH");
  EXPECT_THAT(by_env.out, HasSubstr("\"errorType\":\"Probe\"")) << by_env.err;

  auto missing = RunCommand(Invoke({"no_such_handler", "--data", "x"}));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.out, "");
  EXPECT_THAT(missing.err, AllOf(HasSubstr("plugin 'no_such_handler' not found in "),
                                 HasSubstr("--plugin-dir")));
}

TEST(WorkerCommandTest, RefusesToRunWithoutARuntime) {
  auto r = RunCommand({RUNNEL_BINARY, "worker", "--channel-fd", "0"}, "not a frame");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("started by runnel"));
}

}  // namespace
}  // namespace runnel
