// A stream setting changed in the YAML takes effect at the next start: a declared retention is
// applied to the existing stream (up or down, with a log line), an undeclared one is left alone.
#include <csignal>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/poller_support.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

int Retention(v1::StreamBroker::Stub& stub) {
  v1::DescribeStreamSummaryRequest request;
  request.set_stream_name("events");
  v1::DescribeStreamSummaryResponse response;
  grpc::ClientContext context;
  grpc::Status status = stub.DescribeStreamSummary(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.stream_description_summary().retention_period_hours();
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

class YamlDriftTest : public ::testing::Test {
 protected:
  // Writes the YAML with `retention` (none when empty) and runs `runnel up` on it.
  std::unique_ptr<UpProcess> Up(const std::string& retention) {
    std::string yaml = Yaml(2, {MappingYaml{.echo_file = dir_.File("echo.out")}});
    if (!retention.empty()) {
      yaml = absl::StrReplaceAll(
          yaml,
          {{"    shards: 2\n", absl::StrCat("    shards: 2\n    retention: ", retention, "\n")}});
    }
    std::ofstream(yaml_path_) << yaml;
    return UpProcess::Start(yaml_path_, data_dir_);
  }

  void Stop(std::unique_ptr<UpProcess> up) {
    up->process().Signal(SIGTERM);
    auto status = up->process().Wait(absl::Seconds(30));
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(*status, 0);
  }

  std::string Log() const { return ReadText(data_dir_ + ".log"); }

  TempDir dir_{"yaml-drift"};
  std::string yaml_path_ = dir_.File("runnel.yaml");
  std::string data_dir_ = dir_.File("data");
};

TEST_F(YamlDriftTest, ADeclaredRetentionIsAppliedUpOrDownAndAnUndeclaredOneIsLeftAlone) {
  auto up = Up("48h");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(Retention(up->stub()), 48);
  EXPECT_EQ(Count(Log(), "retention changed"), 0u);
  Stop(std::move(up));

  up = Up("72h");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(Retention(up->stub()), 72);
  EXPECT_EQ(Count(Log(), "stream events: retention changed from 48h to 72h"), 1u) << Log();
  Stop(std::move(up));

  up = Up("24h");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(Retention(up->stub()), 24);
  EXPECT_EQ(Count(Log(), "stream events: retention changed from 72h to 24h"), 1u) << Log();
  // A change made with the stream commands, then a file that does not declare retention: the
  // stream keeps what it was given.
  v1::IncreaseStreamRetentionPeriodRequest increase;
  increase.set_stream_name("events");
  increase.set_retention_period_hours(100);
  v1::IncreaseStreamRetentionPeriodResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(up->stub().IncreaseStreamRetentionPeriod(&context, increase, &response).ok());
  Stop(std::move(up));

  up = Up("");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(Retention(up->stub()), 100);
  EXPECT_EQ(Count(Log(), "retention changed"), 2u) << Log();
  Stop(std::move(up));
}

TEST_F(YamlDriftTest, AChangedShardCountIsRefusedAndTheStreamKeepsItsRecords) {
  auto up = Up("");
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), 4, 5);
  Stop(std::move(up));
  std::string yaml = Yaml(3, {MappingYaml{.echo_file = dir_.File("echo.out")}});
  std::ofstream(yaml_path_) << yaml;
  CommandResult result = RunCommand(
      {RUNNEL_BINARY, "up", "-f", yaml_path_, "--listen", "127.0.0.1:0", "--data-dir", data_dir_});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, ::testing::HasSubstr("stream events exists with 2 shards, but the file "
                                               "declares 3"));
  auto again = Up("");
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(ReadShard(again->stub(), "events", "shardId-000000000000").size() +
                ReadShard(again->stub(), "events", "shardId-000000000001").size(),
            20u);
  Stop(std::move(again));
}

}  // namespace
}  // namespace runnel::testing
