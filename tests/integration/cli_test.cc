// The `runnel` command line against a real broker process: each command's output and exit code
// (0 success, 1 error with one line on stderr, 2 usage error), and a clean stop on SIGTERM.
#include <signal.h>
#include <sys/wait.h>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = BrokerProcess::Start(dir_.File("data"));
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = std::move(*broker);
  }

  CommandResult Run(std::vector<std::string> args, const std::string& stdin_text = "") {
    args.insert(args.begin(), RUNNEL_BINARY);
    args.push_back("--broker");
    args.push_back(broker_->address());
    return RunCommand(args, stdin_text);
  }

  static std::vector<std::string> Lines(const std::string& text) {
    return absl::StrSplit(text, '\n', absl::SkipEmpty());
  }

  TempDir dir_{"cli"};
  std::unique_ptr<BrokerProcess> broker_;
};

TEST_F(CliTest, CreatePutGetRoundTrip) {
  auto created = Run({"stream", "create", "order-events", "--shards", "2", "--retention", "48h"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("created stream order-events with 2 shards"));

  auto listed = Run({"stream", "list"});
  ASSERT_EQ(listed.exit_code, 0);
  EXPECT_THAT(listed.out, HasSubstr("order-events"));
  EXPECT_THAT(listed.out, HasSubstr("48h"));
  auto listed_json = Run({"stream", "list", "--output", "json"});
  EXPECT_THAT(listed_json.out, HasSubstr("\"streamName\":\"order-events\""));

  auto put = Run({"put", "order-events", "--partition-key", "c-1", "--file", "-"},
                 "{\"orderId\":1}\n{\"orderId\":2}\n{\"orderId\":3}\n");
  ASSERT_EQ(put.exit_code, 0) << put.err;
  auto put_lines = Lines(put.out);
  ASSERT_EQ(put_lines.size(), 3u);
  for (const auto& line : put_lines) EXPECT_THAT(line, HasSubstr("\"sequenceNumber\""));

  auto got = Run({"get", "order-events", "--text"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  auto lines = Lines(got.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], HasSubstr("\"data\":\"{\\\"orderId\\\":1}\""));
  EXPECT_THAT(lines[2], HasSubstr("\"data\":\"{\\\"orderId\\\":3}\""));
  EXPECT_THAT(lines[0], HasSubstr("\"partitionKey\":\"c-1\""));

  auto limited = Run({"get", "order-events", "--limit", "2"});
  EXPECT_EQ(Lines(limited.out).size(), 2u);
  // base64 by default: {"orderId":1} -> eyJvcmRlcklkIjoxfQ==
  EXPECT_THAT(limited.out, HasSubstr("eyJvcmRlcklkIjoxfQ=="));

  auto described = Run({"stream", "describe", "order-events", "--output", "json"});
  EXPECT_THAT(described.out, HasSubstr("\"shardId\":\"shardId-000000000001\""));

  auto deleted = Run({"stream", "delete", "order-events"});
  EXPECT_EQ(deleted.exit_code, 0);
  EXPECT_EQ(Run({"get", "order-events"}).exit_code, 1);
}

TEST_F(CliTest, ErrorsAreOneLineAndExitOne) {
  auto missing = Run({"get", "no-such-stream"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, StartsWith("runnel: ResourceNotFoundException"));
  EXPECT_EQ(Lines(missing.err).size(), 1u);

  ASSERT_EQ(Run({"stream", "create", "s", "--shards", "1"}).exit_code, 0);
  auto empty_key = Run({"put", "s", "--partition-key", "", "--data", "x"});
  EXPECT_EQ(empty_key.exit_code, 1);
  EXPECT_THAT(empty_key.err, HasSubstr("partitionKey"));

  auto unreachable = RunCommand({RUNNEL_BINARY, "stream", "list", "--broker", "127.0.0.1:1"});
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_THAT(unreachable.err, HasSubstr("cannot reach the broker at 127.0.0.1:1"));
}

TEST_F(CliTest, UsageErrorsExitTwoAndHelpExitsZero) {
  EXPECT_EQ(RunCommand({RUNNEL_BINARY, "stream", "create"}).exit_code, 2);
  EXPECT_EQ(RunCommand({RUNNEL_BINARY, "get", "s", "--no-such-flag"}).exit_code, 2);
  EXPECT_EQ(RunCommand({RUNNEL_BINARY, "put", "s", "-k", "k"}).exit_code, 2);  // no data
  EXPECT_EQ(Run({"get", "s", "--from", "yesterday"}).exit_code, 2);
  auto help = RunCommand({RUNNEL_BINARY, "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("broker"));
  auto put_help = RunCommand({RUNNEL_BINARY, "put", "--help"});
  EXPECT_EQ(put_help.exit_code, 0);
  EXPECT_THAT(put_help.out, HasSubstr("--partition-key"));
}

TEST_F(CliTest, BrokerStopsCleanlyOnSigterm) {
  broker_->process().Signal(SIGTERM);
  auto status = broker_->process().Wait(absl::Seconds(30));
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST(CliBrokerTest, ASecondBrokerOnTheSameDataDirectoryExitsWithAnError) {
  TempDir dir("cli-lock");
  auto first = BrokerProcess::Start(dir.File("data"));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = RunCommand(
      {RUNNEL_BINARY, "broker", "--listen", "127.0.0.1:0", "--data-dir", dir.File("data")});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("in use"));
}

}  // namespace
}  // namespace runnel::testing
