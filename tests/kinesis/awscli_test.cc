// The AWS CLI (Debian's awscli 2, HTTP/1.1, JSON) against `runnel broker --kinesis-listen` as a
// real process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/time/clock.h"
#include "tests/kinesis/client_support.h"

namespace runnel::testing {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

class AwsCli {
 public:
  explicit AwsCli(std::string endpoint) : endpoint_(std::move(endpoint)) {}
  // Runs `aws kinesis ARGS...`; the CLI is Debian's (a pyenv shim may come first on PATH).
  CommandResult Run(std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/env",
                                     "AWS_ACCESS_KEY_ID=dummy",
                                     "AWS_SECRET_ACCESS_KEY=dummy",
                                     "AWS_CONFIG_FILE=/dev/null",
                                     "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
                                     "/usr/bin/aws",
                                     "--region",
                                     "ap-southeast-2",
                                     "--endpoint-url",
                                     endpoint_,
                                     "--no-cli-pager",
                                     "--output",
                                     "json",
                                     "kinesis"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }
  Json Ok(std::vector<std::string> args) {
    CommandResult result = Run(args);
    EXPECT_EQ(result.exit_code, 0) << args[0] << ": " << result.err;
    if (result.exit_code != 0 || result.out.empty()) return Json::object();
    return Json::parse(result.out);
  }
  // A service error: the CLI prints "An error occurred (<Exception>) when calling ...".
  void Error(const std::string& exception, std::vector<std::string> args) {
    CommandResult result = Run(args);
    EXPECT_NE(result.exit_code, 0) << args[0] << " succeeded: " << result.out;
    EXPECT_THAT(result.err, HasSubstr("An error occurred (" + exception + ")")) << args[0];
  }

 private:
  std::string endpoint_;
};

TEST(KinesisClients, AwsCli) {
  TempDir dir("kinesis-awscli");
  KinesisBroker broker = StartBroker(dir);
  ASSERT_NE(broker.process, nullptr);
  AwsCli aws(broker.endpoint);

  aws.Ok({"create-stream", "--stream-name", "cli", "--shard-count", "2"});
  Json summary = aws.Ok({"describe-stream-summary", "--stream-name", "cli"});
  EXPECT_EQ(summary["StreamDescriptionSummary"]["StreamStatus"], "ACTIVE");
  EXPECT_EQ(summary["StreamDescriptionSummary"]["OpenShardCount"], 2);
  const std::string arn = summary["StreamDescriptionSummary"]["StreamARN"];
  EXPECT_EQ(arn, "arn:aws:kinesis:us-east-1:000000000000:stream/cli");

  // ListShards one page at a time.
  Json first =
      aws.Ok({"list-shards", "--stream-name", "cli", "--max-results", "1", "--no-paginate"});
  ASSERT_EQ(first["Shards"].size(), 1u);
  ASSERT_TRUE(first.contains("NextToken"));
  Json second = aws.Ok({"list-shards", "--next-token", first["NextToken"], "--no-paginate"});
  ASSERT_EQ(second["Shards"].size(), 1u);
  EXPECT_EQ(second["Shards"][0]["ShardId"], "shardId-000000000001");
  EXPECT_FALSE(second.contains("NextToken"));

  // Writes, all to shard 0 (explicit hash key 0), the data as raw text.
  Json one =
      aws.Ok({"put-record", "--stream-arn", arn, "--partition-key", "k", "--explicit-hash-key", "0",
              "--data", "one", "--cli-binary-format", "raw-in-base64-out"});
  EXPECT_EQ(one["ShardId"], "shardId-000000000000");
  std::ofstream(dir.File("records.json"))
      << R"([{"PartitionKey":"k","ExplicitHashKey":"0","Data":"two"},
             {"PartitionKey":"k","ExplicitHashKey":"0","Data":"three"}])";
  Json batch =
      aws.Ok({"put-records", "--stream-name", "cli", "--records",
              "file://" + dir.File("records.json"), "--cli-binary-format", "raw-in-base64-out"});
  EXPECT_EQ(batch["FailedRecordCount"], 0);
  ASSERT_EQ(batch["Records"].size(), 2u);
  const std::string seq_two = batch["Records"][0]["SequenceNumber"];

  auto read = [&](std::vector<std::string> iterator_args) {
    std::vector<std::string> args = {"get-shard-iterator", "--stream-name", "cli", "--shard-id",
                                     "shardId-000000000000"};
    args.insert(args.end(), iterator_args.begin(), iterator_args.end());
    Json iterator = aws.Ok(args);
    return aws.Ok({"get-records", "--shard-iterator", iterator.value("ShardIterator", "")});
  };
  // The CLI shows Data as base64: b25l = "one", dHdv = "two", dGhyZWU= = "three".
  Json all = read({"--shard-iterator-type", "TRIM_HORIZON"});
  ASSERT_EQ(all["Records"].size(), 3u);
  EXPECT_EQ(all["Records"][0]["Data"], "b25l");
  EXPECT_EQ(all["Records"][2]["Data"], "dGhyZWU=");
  Json at =
      read({"--shard-iterator-type", "AT_SEQUENCE_NUMBER", "--starting-sequence-number", seq_two});
  ASSERT_EQ(at["Records"].size(), 2u);
  EXPECT_EQ(at["Records"][0]["Data"], "dHdv");
  Json after = read(
      {"--shard-iterator-type", "AFTER_SEQUENCE_NUMBER", "--starting-sequence-number", seq_two});
  ASSERT_EQ(after["Records"].size(), 1u);
  EXPECT_EQ(after["Records"][0]["Data"], "dGhyZWU=");
  EXPECT_TRUE(read({"--shard-iterator-type", "LATEST"})["Records"].empty());
  // AT_TIMESTAMP: from an hour ago, everything; from an hour ahead, nothing.
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  EXPECT_EQ(read({"--shard-iterator-type", "AT_TIMESTAMP", "--timestamp",
                  std::to_string(now - 3600)})["Records"]
                .size(),
            3u);
  EXPECT_TRUE(read({"--shard-iterator-type", "AT_TIMESTAMP", "--timestamp",
                    std::to_string(now + 3600)})["Records"]
                  .empty());

  // Errors the CLI does not catch itself reach the server and come back with Kinesis's names.
  aws.Error("ResourceNotFoundException", {"describe-stream-summary", "--stream-name", "nope"});
  aws.Error("ResourceInUseException",
            {"create-stream", "--stream-name", "cli", "--shard-count", "1"});
  aws.Error("ValidationException", {"get-shard-iterator", "--stream-name", "cli", "--shard-id",
                                    "shardId-000000000000", "--shard-iterator-type", "SIDEWAYS"});
  aws.Error("InvalidArgumentException", {"get-records", "--shard-iterator", "garbage"});
  aws.Error("ValidationException", {"put-record", "--stream-name", "cli", "--partition-key",
                                    std::string(257, 'k'), "--data", "eA=="});
  aws.Error("InvalidArgumentException", {"increase-stream-retention-period", "--stream-name", "cli",
                                         "--retention-period-hours", "9000"});

  // Tags, retention, then delete.
  aws.Ok({"add-tags-to-stream", "--stream-name", "cli", "--tags", "team=orders"});
  Json tags = aws.Ok({"list-tags-for-stream", "--stream-name", "cli"});
  ASSERT_EQ(tags["Tags"].size(), 1u);
  EXPECT_EQ(tags["Tags"][0]["Value"], "orders");
  aws.Ok({"increase-stream-retention-period", "--stream-name", "cli", "--retention-period-hours",
          "48"});
  EXPECT_EQ(aws.Ok({"describe-stream", "--stream-name",
                    "cli"})["StreamDescription"]["RetentionPeriodHours"],
            48);
  aws.Ok({"delete-stream", "--stream-name", "cli"});
  EXPECT_TRUE(aws.Ok({"list-streams"})["StreamNames"].empty());
  ExpectCleanStop(broker);
}

}  // namespace
}  // namespace runnel::testing
