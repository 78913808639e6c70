#include "common/logging.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <sstream>
#include <thread>

#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

namespace runnel {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

// Routes the default logger into a string for one test and puts the old one back after.
class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  }
  void TearDown() override {
    ASSERT_TRUE(InitLogging("text", "info", "runnel").ok());
    spdlog::set_default_logger(previous_);
  }

  std::vector<std::string> Lines() {
    spdlog::default_logger()->flush();
    std::vector<std::string> lines;
    std::string line;
    std::istringstream in(out_.str());
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
  }

  rapidjson::Document ParseOnlyLine() {
    std::vector<std::string> lines = Lines();
    EXPECT_EQ(lines.size(), 1u);
    rapidjson::Document document;
    document.Parse(lines.empty() ? "" : lines[0].c_str());
    EXPECT_FALSE(document.HasParseError()) << (lines.empty() ? "" : lines[0]);
    return document;
  }

  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(LoggingTest, TextLineHasUtcTimeLevelComponentAndContext) {
  ASSERT_TRUE(InitLogging("text", "info", "broker").ok());
  spdlog::info("plain");
  {
    ScopedLogTags tags{{kTagComponent, "poller"},
                       {kTagMapping, "orders/fn"},
                       {kTagShard, "shardId-000000000001"},
                       {kTagFunction, "fn"}};
    spdlog::warn("in a shard");
  }
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0],
              MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                           "info \\[broker\\] plain"));
  EXPECT_THAT(lines[1], HasSubstr(" warning [poller orders/fn shardId-000000000001] in a shard"));
}

TEST_F(LoggingTest, JsonLineCarriesEveryTagAsAField) {
  ASSERT_TRUE(InitLogging("json", "info", "up").ok());
  {
    ScopedLogTags tags{{kTagComponent, "poller"}, {kTagMapping, "orders/fn"},
                       {kTagStream, "orders"},    {kTagShard, "shardId-000000000000"},
                       {kTagFunction, "fn"},      {kTagRequestId, "req-1"}};
    spdlog::error("boom \"quoted\"\n\tnext\x01");
  }
  rapidjson::Document line = ParseOnlyLine();
  ASSERT_TRUE(line.IsObject());
  EXPECT_STREQ(line["level"].GetString(), "error");
  EXPECT_STREQ(line["component"].GetString(), "poller");
  EXPECT_STREQ(line["mapping"].GetString(), "orders/fn");
  EXPECT_STREQ(line["stream"].GetString(), "orders");
  EXPECT_STREQ(line["shard"].GetString(), "shardId-000000000000");
  EXPECT_STREQ(line["function"].GetString(), "fn");
  EXPECT_STREQ(line["request_id"].GetString(), "req-1");
  EXPECT_STREQ(line["message"].GetString(), "boom \"quoted\"\n\tnext\x01");
  EXPECT_THAT(line["time"].GetString(), MatchesRegex(".*T.*Z"));
}

TEST_F(LoggingTest, JsonLeavesOutTagsNobodySet) {
  ASSERT_TRUE(InitLogging("json", "info", "broker").ok());
  spdlog::info("hello");
  rapidjson::Document line = ParseOnlyLine();
  EXPECT_STREQ(line["component"].GetString(), "broker");
  EXPECT_FALSE(line.HasMember("stream"));
  EXPECT_FALSE(line.HasMember("request_id"));
}

TEST_F(LoggingTest, InnerScopeWinsAndEndsWithItsScope) {
  ASSERT_TRUE(InitLogging("json", "info", "runnel").ok());
  ScopedLogTags outer{{kTagStream, "a"}, {kTagShard, "shardId-000000000000"}};
  {
    ScopedLogTags inner{{kTagStream, "b"}, {kTagRequestId, ""}};  // empty: not pushed
    spdlog::info("inner");
  }
  spdlog::info("outer");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr(R"("stream":"b","shard":"shardId-000000000000")"));
  EXPECT_THAT(lines[1], HasSubstr(R"("stream":"a")"));
  EXPECT_THAT(lines[0], Not(HasSubstr("request_id")));
}

TEST_F(LoggingTest, TagsAreThreadLocalAndCanBeCarriedAcross) {
  ASSERT_TRUE(InitLogging("json", "info", "runnel").ok());
  ScopedLogTags tags{{kTagMapping, "orders/fn"}};
  LogTagSnapshot snapshot = CurrentLogTags();
  std::thread([&snapshot] {
    spdlog::info("bare");
    ScopedLogTags carried(snapshot);
    spdlog::info("carried");
  }).join();
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], Not(HasSubstr("orders/fn")));
  EXPECT_THAT(lines[1], HasSubstr(R"("mapping":"orders/fn")"));
}

TEST_F(LoggingTest, InvocationLinesReadLikeLambdaInTextAndAreFieldsInJson) {
  ASSERT_TRUE(InitLogging("text", "info", "poller").ok());
  LogInvocationLine(spdlog::level::info, "fn", "req-7", "Processing order o-1");
  EXPECT_THAT(Lines().back(), HasSubstr("[fn] [req-7] Processing order o-1"));
  out_.str("");
  ASSERT_TRUE(InitLogging("json", "info", "poller").ok());
  LogInvocationLine(spdlog::level::info, "fn", "req-7", "Processing order o-1");
  rapidjson::Document line = ParseOnlyLine();
  EXPECT_STREQ(line["function"].GetString(), "fn");
  EXPECT_STREQ(line["request_id"].GetString(), "req-7");
  EXPECT_STREQ(line["message"].GetString(), "Processing order o-1");
}

TEST_F(LoggingTest, LevelFiltersLines) {
  ASSERT_TRUE(InitLogging("text", "warn", "runnel").ok());
  spdlog::info("hidden");
  LogInvocationLine(spdlog::level::info, "fn", "r", "hidden too");
  spdlog::warn("shown");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("shown"));
}

TEST(LoggingOptionsTest, BadValuesNameTheFlagAndTheChoices) {
  absl::Status format = InitLogging("yaml", "info", "x");
  EXPECT_EQ(format.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(format.message(), HasSubstr("--log-format"));
  EXPECT_THAT(format.message(), HasSubstr("text, json"));
  absl::Status level = InitLogging("text", "loud", "x");
  EXPECT_EQ(level.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(level.message(), HasSubstr("--log-level"));
  EXPECT_TRUE(InitLogging("text", "off", "x").ok());
  EXPECT_TRUE(InitLogging("text", "info", "x").ok());
}

}  // namespace
}  // namespace runnel
