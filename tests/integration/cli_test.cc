// The `runnel` command line against a real broker process: each command's output and exit code
// (0 success, 1 error with one line on stderr, 2 usage error), and a clean stop on SIGTERM.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>

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
  EXPECT_EQ(empty_key.exit_code, 2);
  EXPECT_THAT(empty_key.err, HasSubstr("--partition-key: a key has 1-256 characters"));
  EXPECT_EQ(Lines(empty_key.err).size(), 1u);

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

// The partition keys `runnel get` prints, in order, for shard `shard` (empty: every shard).
std::vector<std::string> KeysOf(const std::string& get_output) {
  std::vector<std::string> keys;
  for (absl::string_view line : absl::StrSplit(get_output, '\n', absl::SkipEmpty())) {
    const size_t at = line.find("\"partitionKey\":\"") + 16;
    keys.emplace_back(line.substr(at, line.find('"', at) - at));
  }
  return keys;
}

TEST_F(CliTest, PutTakesEachRecordsKeyFromAJsonFieldOrAKeyTabDataLine) {
  ASSERT_EQ(Run({"stream", "create", "orders", "--shards", "1"}).exit_code, 0);
  std::ofstream(dir_.File("orders.jsonl")) << "{\"orderId\":\"o-1\",\"customerId\":\"c-1\"}\n"
                                              "{\"orderId\":\"o-2\",\"customerId\":42}\n";
  auto by_field =
      Run({"put", "orders", "--key-field", "customerId", "--file", dir_.File("orders.jsonl")});
  ASSERT_EQ(by_field.exit_code, 0) << by_field.err;
  EXPECT_EQ(Lines(by_field.out).size(), 2u);
  auto keyed = Run({"put", "orders", "--keyed", "--file", "-"}, "c-3\tthree\nc-4\tfour\n");
  ASSERT_EQ(keyed.exit_code, 0) << keyed.err;
  auto got = Run({"get", "orders", "--text"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(KeysOf(got.out), (std::vector<std::string>{"c-1", "42", "c-3", "c-4"}));
  EXPECT_THAT(got.out, HasSubstr("\"data\":\"four\""));  // the key and the tab are not data

  // Exactly one key source.
  auto two = Run({"put", "orders", "-k", "k", "--keyed", "--data", "x"});
  EXPECT_EQ(two.exit_code, 2);
  EXPECT_THAT(two.err, HasSubstr("give exactly one of --partition-key KEY, --key-field NAME"));
  EXPECT_EQ(Run({"put", "orders", "--data", "x"}).exit_code, 2);
}

TEST_F(CliTest, PutChecksTheWholeFileFirstAndNamesTheBadLine) {
  ASSERT_EQ(Run({"stream", "create", "s", "--shards", "1"}).exit_code, 0);
  const std::string path = dir_.File("records.txt");
  std::ofstream(path) << "one\ntwo\n\nfour\n";  // a stray blank line at line 3
  auto blank = Run({"put", "s", "-k", "k", "--file", path});
  EXPECT_EQ(blank.exit_code, 1);
  EXPECT_EQ(blank.err,
            "runnel: " + path + ":3: empty record (pass --allow-empty to put empty records)\n");
  EXPECT_TRUE(blank.out.empty()) << blank.out;
  EXPECT_TRUE(Run({"get", "s"}).out.empty());  // not even the lines before it

  auto allowed = Run({"put", "s", "-k", "k", "--file", path, "--allow-empty"});
  ASSERT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_EQ(Lines(Run({"get", "s"}).out).size(), 4u);

  // Missing key fields and a record over 1 MiB, from stdin: each named by its line.
  const std::string big = std::string(1 << 20, 'x');
  auto bad = Run({"put", "s", "--key-field", "id", "--file", "-"},
                 "{\"id\":\"a\"}\n{\"name\":\"b\"}\n{\"id\":\"" + big + "\"}\n");
  EXPECT_EQ(bad.exit_code, 1);
  auto errors = Lines(bad.err);
  ASSERT_EQ(errors.size(), 3u) << bad.err;
  EXPECT_EQ(errors[0], "runnel: <stdin>:2: no field \"id\" for the partition key");
  EXPECT_THAT(errors[1], StartsWith("runnel: <stdin>:3: record of 1048585 bytes"));
  EXPECT_THAT(errors[1], HasSubstr("over Kinesis's limit of 1048576 bytes"));
  EXPECT_EQ(errors[2], "runnel: 2 bad records; nothing was put");
  EXPECT_EQ(Lines(Run({"get", "s"}).out).size(), 4u);
}

TEST_F(CliTest, PutRoutesByAnExplicitHashKey) {
  ASSERT_EQ(Run({"stream", "create", "s", "--shards", "2"}).exit_code, 0);
  // The second of two shards starts at 2^127.
  auto put = Run({"put", "s", "-k", "k", "--explicit-hash-key",
                  "170141183460469231731687303715884105728", "--data", "x"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  EXPECT_THAT(put.out, HasSubstr("\"shardId\":\"shardId-000000000001\""));
  auto bad = Run({"put", "s", "-k", "k", "--explicit-hash-key", "2x", "--data", "x"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--explicit-hash-key"));
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
