// The YAML config (poller/config.h): every default, every range boundary in and out, duration
// and size parsing, and every kind of error with its exact `file:line:column` and wording.
#include "poller/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace runnel::poller {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kPath[] = "/cfg/test.yaml";

absl::StatusOr<Config> Parse(std::string_view yaml) { return ParseConfig(yaml, kPath); }

Config MustParse(std::string_view yaml) {
  absl::StatusOr<Config> config = Parse(yaml);
  EXPECT_TRUE(config.ok()) << config.status() << "\n" << yaml;
  return config.ok() ? *std::move(config) : Config{};
}

std::string ErrorOf(std::string_view yaml) {
  absl::StatusOr<Config> config = Parse(yaml);
  EXPECT_FALSE(config.ok()) << "parsed:\n" << yaml;
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

std::string At(int line, int column, const std::string& message) {
  return absl::StrCat(kPath, ":", line, ":", column, ": ", message);
}

// A valid file with one more line (indented as a key of the entry) in one section, always on
// the line that Line() returns, so that a knob's value sits at column key.size() + 7.
enum class Section { kStream, kFunction, kMapping };

constexpr char kStreams[] = "streams:\n  - name: orders\n";
constexpr char kFunctions[] = "functions:\n  - name: fn\n    plugin: fn.so\n";
constexpr char kMappings[] = "event_source_mappings:\n  - function: fn\n    stream: orders\n";

std::string With(Section section, const std::string& knob) {
  std::string extra = absl::StrCat("    ", knob, "\n");
  return absl::StrCat(kStreams, section == Section::kStream ? extra : "", kFunctions,
                      section == Section::kFunction ? extra : "", kMappings,
                      section == Section::kMapping ? extra : "");
}
int Line(Section section) {
  switch (section) {
    case Section::kStream:
      return 3;
    case Section::kFunction:
      return 6;
    case Section::kMapping:
      return 9;
  }
  return 0;
}
const char* Context(Section section) {
  switch (section) {
    case Section::kStream:
      return "streams[0]";
    case Section::kFunction:
      return "functions[0]";
    case Section::kMapping:
      return "event_source_mappings[0]";
  }
  return "";
}
const StreamSpec& TheStream(const Config& c) { return c.streams.at(0); }
const runtime::FunctionConfig& TheFunction(const Config& c) { return c.functions.at(0).config; }
const MappingSpec& TheMapping(const Config& c) { return c.mappings.at(0); }
MappingSpec MappingWith(const std::string& knob) {
  Config config = MustParse(With(Section::kMapping, knob));
  return config.mappings.empty() ? MappingSpec{} : config.mappings[0];
}
runtime::FunctionConfig FunctionWith(const std::string& knob) {
  Config config = MustParse(With(Section::kFunction, knob));
  return config.functions.empty() ? runtime::FunctionConfig{} : config.functions[0].config;
}
StreamSpec StreamWith(const std::string& knob) {
  Config config = MustParse(With(Section::kStream, knob));
  return config.streams.empty() ? StreamSpec{} : config.streams[0];
}

// --- Defaults and values ---

TEST(ConfigTest, DefaultsAreLambdas) {
  Config config = MustParse(With(Section::kMapping, "enabled: true"));
  EXPECT_EQ(config.path, kPath);
  EXPECT_EQ(config.directory, "/cfg");
  ASSERT_EQ(config.streams.size(), 1u);
  EXPECT_EQ(TheStream(config).name, "orders");
  EXPECT_EQ(TheStream(config).shards, 1);
  EXPECT_EQ(TheStream(config).retention_hours, 24);
  EXPECT_EQ(TheStream(config).where.ToString(), "/cfg/test.yaml:2:5");

  ASSERT_EQ(config.functions.size(), 1u);
  const runtime::FunctionConfig& fn = TheFunction(config);
  EXPECT_EQ(fn.name, "fn");
  EXPECT_EQ(fn.plugin, "fn.so");
  EXPECT_EQ(fn.plugin_path, "");  // a bare name: the poller searches its plugin folders
  EXPECT_EQ(fn.timeout, absl::Seconds(3));
  EXPECT_EQ(fn.memory_size_mb, 128);
  EXPECT_EQ(fn.isolation, runtime::Isolation::kProcess);
  EXPECT_EQ(fn.max_concurrency, 0);
  EXPECT_TRUE(fn.environment.empty());
  EXPECT_EQ(fn.role, "");
  EXPECT_EQ(config.functions[0].where.ToString(), "/cfg/test.yaml:4:5");

  ASSERT_EQ(config.mappings.size(), 1u);
  const MappingSpec& m = TheMapping(config);
  EXPECT_EQ(m.function, "fn");
  EXPECT_EQ(m.stream, "orders");
  EXPECT_EQ(m.Id(), "orders/fn");
  EXPECT_TRUE(m.enabled);
  EXPECT_EQ(m.starting_position, StartingPosition::kTrimHorizon);
  EXPECT_EQ(m.starting_position_timestamp, absl::InfinitePast());
  EXPECT_EQ(m.batch_size, 100);
  EXPECT_EQ(m.maximum_batching_window, absl::ZeroDuration());
  EXPECT_EQ(m.parallelization_factor, 1);
  EXPECT_EQ(m.consumer, ConsumerType::kPolling);
  EXPECT_FALSE(m.bisect_batch_on_error);
  EXPECT_EQ(m.retry_attempts, -1);
  EXPECT_EQ(m.max_record_age, absl::InfiniteDuration());
  EXPECT_EQ(m.on_failure.kind, OnFailureDestination::Kind::kNone);
  EXPECT_FALSE(m.report_batch_item_failures);
  EXPECT_TRUE(m.filters.empty());
  EXPECT_EQ(m.where.ToString(), "/cfg/test.yaml:7:5");
}

TEST(ConfigTest, EveryKnobIsRead) {
  Config config = MustParse(R"(streams:
  - name: orders
    shards: 4
    retention: 7d
functions:
  - name: fn
    plugin: ./plugins/../lib/libfn.so
    timeout: 1m30s
    memory_size: 1GB
    isolation: in_process
    max_concurrency: 8
    role: arn:aws:iam::123:role/x
    environment:
      LEVEL: debug
      COUNT: 3
      ON: true
      EMPTY:
event_source_mappings:
  - function: fn
    stream: orders
    enabled: false
    starting_position: AT_TIMESTAMP
    starting_position_timestamp: 2024-06-10T12:00:00Z
    batch_size: 500
    maximum_batching_window: 250ms
    parallelization_factor: 10
    consumer: fan_out
    bisect_batch_on_error: true
    retry_attempts: 0
    max_record_age: 1h
    on_failure: file:dead/letters.jsonl
    report_batch_item_failures: true
    filters:
      - data: {type: [buy]}
)");
  EXPECT_EQ(TheStream(config).shards, 4);
  EXPECT_EQ(TheStream(config).retention_hours, 168);
  const runtime::FunctionConfig& fn = TheFunction(config);
  EXPECT_EQ(fn.plugin, "./plugins/../lib/libfn.so");
  EXPECT_EQ(fn.plugin_path, "/cfg/lib/libfn.so");
  EXPECT_EQ(fn.timeout, absl::Seconds(90));
  EXPECT_EQ(fn.memory_size_mb, 1024);
  EXPECT_EQ(fn.isolation, runtime::Isolation::kInProcess);
  EXPECT_EQ(fn.max_concurrency, 8);
  EXPECT_EQ(fn.role, "arn:aws:iam::123:role/x");
  EXPECT_EQ(fn.environment,
            (std::map<std::string, std::string>{
                {"COUNT", "3"}, {"EMPTY", ""}, {"LEVEL", "debug"}, {"ON", "true"}}));
  const MappingSpec& m = TheMapping(config);
  EXPECT_FALSE(m.enabled);
  EXPECT_EQ(m.starting_position, StartingPosition::kAtTimestamp);
  EXPECT_EQ(m.starting_position_timestamp, absl::FromUnixSeconds(1718020800));
  EXPECT_EQ(m.batch_size, 500);
  EXPECT_EQ(m.maximum_batching_window, absl::Milliseconds(250));
  EXPECT_EQ(m.parallelization_factor, 10);
  EXPECT_EQ(m.consumer, ConsumerType::kFanOut);
  EXPECT_TRUE(m.bisect_batch_on_error);
  EXPECT_EQ(m.retry_attempts, 0);
  EXPECT_EQ(m.max_record_age, absl::Hours(1));
  EXPECT_EQ(m.on_failure.kind, OnFailureDestination::Kind::kFile);
  EXPECT_EQ(m.on_failure.target, "/cfg/dead/letters.jsonl");
  EXPECT_TRUE(m.report_batch_item_failures);
  ASSERT_EQ(m.filters.size(), 1u);
  EXPECT_EQ(m.filters[0].pattern_json, R"({"data":{"type":["buy"]}})");
  EXPECT_EQ(m.filters[0].where.ToString(), "/cfg/test.yaml:34:9");
}

TEST(ConfigTest, EmptyFileIsAnEmptyConfig) {
  for (std::string_view yaml : {"", "# nothing yet\n", "streams:\nfunctions: []\n"}) {
    Config config = MustParse(yaml);
    EXPECT_TRUE(config.streams.empty());
    EXPECT_TRUE(config.functions.empty());
    EXPECT_TRUE(config.mappings.empty());
  }
}

TEST(ConfigTest, PluginPaths) {
  EXPECT_EQ(FunctionWith("timeout: 3s").plugin_path, "");
  // Bare names stay for the poller's plugin search.
  Config bare = MustParse("functions:\n  - name: fn\n    plugin: liborder_processor.so\n");
  EXPECT_EQ(TheFunction(bare).plugin, "liborder_processor.so");
  EXPECT_EQ(TheFunction(bare).plugin_path, "");
  Config absolute = MustParse("functions:\n  - name: fn\n    plugin: /opt/h/libx.so\n");
  EXPECT_EQ(TheFunction(absolute).plugin_path, "/opt/h/libx.so");
  Config relative = MustParse("functions:\n  - name: fn\n    plugin: handlers/libx.so\n");
  EXPECT_EQ(TheFunction(relative).plugin_path, "/cfg/handlers/libx.so");
}

TEST(ConfigTest, RelativeFilePathUsesItsFolder) {
  absl::StatusOr<Config> config = ParseConfig("", "sub/dir/x.yaml");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->path, "sub/dir/x.yaml");
  EXPECT_THAT(config->directory, ::testing::EndsWith("/sub/dir"));
  EXPECT_THAT(config->directory, StartsWith("/"));
}

// --- Ranges: every boundary in and out ---

struct RangeCase {
  Section section;
  std::string key;
  std::string value;
  std::string error;  // after "<context>.<key>"; empty when the value is accepted
};

void PrintTo(const RangeCase& c, std::ostream* os) {
  *os << Context(c.section) << "." << c.key << ": " << c.value;
}

class RangeTest : public ::testing::TestWithParam<RangeCase> {};

TEST_P(RangeTest, BoundaryIsEnforced) {
  const RangeCase& c = GetParam();
  std::string yaml = With(c.section, absl::StrCat(c.key, ": ", c.value));
  if (c.error.empty()) {
    MustParse(yaml);
  } else {
    EXPECT_EQ(ErrorOf(yaml), At(Line(c.section), static_cast<int>(c.key.size()) + 7,
                                absl::StrCat(Context(c.section), ".", c.key, c.error)));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Streams, RangeTest,
    ::testing::Values(
        RangeCase{Section::kStream, "shards", "1", ""},
        RangeCase{Section::kStream, "shards", "1024", ""},
        RangeCase{Section::kStream, "shards", "0", " must be between 1 and 1024, got 0"},
        RangeCase{Section::kStream, "shards", "1025", " must be between 1 and 1024, got 1025"},
        RangeCase{Section::kStream, "retention", "24h", ""},
        RangeCase{Section::kStream, "retention", "8760h", ""},
        RangeCase{Section::kStream, "retention", "365d", ""},
        RangeCase{Section::kStream, "retention", "23h",
                  " must be between 24h and 8760h (365d), got 23h"},
        RangeCase{Section::kStream, "retention", "8761h",
                  " must be between 24h and 8760h (365d), got 8761h"},
        RangeCase{Section::kStream, "retention", "24h30m",
                  " must be whole hours (as Kinesis), got 24h30m"}));

INSTANTIATE_TEST_SUITE_P(
    Functions, RangeTest,
    ::testing::Values(RangeCase{Section::kFunction, "timeout", "1ms", ""},
                      RangeCase{Section::kFunction, "timeout", "900s", ""},
                      RangeCase{Section::kFunction, "timeout", "15m", ""},
                      RangeCase{Section::kFunction, "timeout", "0s",
                                " must be more than 0s and at most 15m (900s), got 0s"},
                      RangeCase{Section::kFunction, "timeout", "901s",
                                " must be more than 0s and at most 15m (900s), got 901s"},
                      RangeCase{Section::kFunction, "timeout", "-1s",
                                " must be more than 0s and at most 15m (900s), got -1s"},
                      RangeCase{Section::kFunction, "memory_size", "128", ""},
                      RangeCase{Section::kFunction, "memory_size", "10240", ""},
                      RangeCase{Section::kFunction, "memory_size", "127",
                                " must be between 128 and 10240 (MB), got 127"},
                      RangeCase{Section::kFunction, "memory_size", "10241",
                                " must be between 128 and 10240 (MB), got 10241"},
                      RangeCase{Section::kFunction, "memory_size", "10GB", ""},
                      RangeCase{Section::kFunction, "memory_size", "11GB",
                                " must be between 128 and 10240 (MB), got 11GB"},
                      RangeCase{Section::kFunction, "max_concurrency", "0", ""},
                      RangeCase{Section::kFunction, "max_concurrency", "-1",
                                " must be 0 or more, got -1"}));

INSTANTIATE_TEST_SUITE_P(
    Mappings, RangeTest,
    ::testing::Values(
        RangeCase{Section::kMapping, "batch_size", "1", ""},
        RangeCase{Section::kMapping, "batch_size", "10000", ""},
        RangeCase{Section::kMapping, "batch_size", "0", " must be between 1 and 10000, got 0"},
        RangeCase{Section::kMapping, "batch_size", "10001",
                  " must be between 1 and 10000, got 10001"},
        RangeCase{Section::kMapping, "maximum_batching_window", "0s", ""},
        RangeCase{Section::kMapping, "maximum_batching_window", "300s", ""},
        RangeCase{Section::kMapping, "maximum_batching_window", "5m", ""},
        RangeCase{Section::kMapping, "maximum_batching_window", "301s",
                  " must be between 0s and 300s (5m), got 301s"},
        RangeCase{Section::kMapping, "maximum_batching_window", "-1ms",
                  " must be between 0s and 300s (5m), got -1ms"},
        RangeCase{Section::kMapping, "parallelization_factor", "1", ""},
        RangeCase{Section::kMapping, "parallelization_factor", "10", ""},
        RangeCase{Section::kMapping, "parallelization_factor", "0",
                  " must be between 1 and 10, got 0"},
        RangeCase{Section::kMapping, "parallelization_factor", "11",
                  " must be between 1 and 10, got 11"},
        RangeCase{Section::kMapping, "retry_attempts", "-1", ""},
        RangeCase{Section::kMapping, "retry_attempts", "10000", ""},
        RangeCase{Section::kMapping, "retry_attempts", "-2",
                  " must be between -1 and 10000, got -2"},
        RangeCase{Section::kMapping, "retry_attempts", "10001",
                  " must be between -1 and 10000, got 10001"},
        RangeCase{Section::kMapping, "max_record_age", "-1", ""},
        RangeCase{Section::kMapping, "max_record_age", "60s", ""},
        RangeCase{Section::kMapping, "max_record_age", "7d", ""},
        RangeCase{Section::kMapping, "max_record_age", "604800s", ""},
        RangeCase{Section::kMapping, "max_record_age", "59s",
                  " must be -1 (no limit) or between 60s and 7d (604800s), got 59s"},
        RangeCase{Section::kMapping, "max_record_age", "0s",
                  " must be -1 (no limit) or between 60s and 7d (604800s), got 0s"},
        RangeCase{Section::kMapping, "max_record_age", "604801s",
                  " must be -1 (no limit) or between 60s and 7d (604800s), got 604801s"},
        RangeCase{Section::kMapping, "max_record_age", "-2s",
                  " must be -1 (no limit) or between 60s and 7d (604800s), got -2s"}));

// --- Wrong types ---

INSTANTIATE_TEST_SUITE_P(
    WrongTypes, RangeTest,
    ::testing::Values(
        RangeCase{Section::kStream, "shards", "two", ": expected an integer, got 'two'"},
        RangeCase{Section::kStream, "shards", "1.5", ": expected an integer, got '1.5'"},
        RangeCase{Section::kStream, "shards", "[1]", ": expected an integer, got a list"},
        RangeCase{Section::kFunction, "memory_size", "lots",
                  ": expected megabytes as an integer (512) or a size like 512MB or 1GB, got "
                  "'lots'"},
        RangeCase{Section::kFunction, "environment", "[A]",
                  ": expected a mapping of NAME: value, got a list"},
        RangeCase{Section::kFunction, "role", "[x]", ": expected a string, got a list"},
        RangeCase{Section::kMapping, "enabled", "maybe", ": expected true or false, got 'maybe'"},
        RangeCase{Section::kMapping, "bisect_batch_on_error", "{}",
                  ": expected true or false, got a mapping"},
        RangeCase{Section::kMapping, "report_batch_item_failures", "2",
                  ": expected true or false, got '2'"},
        RangeCase{Section::kMapping, "batch_size", "100.0", ": expected an integer, got '100.0'"},
        RangeCase{Section::kMapping, "filters", "{data: {a: [1]}}",
                  ": expected a list of patterns, got a mapping"}));

TEST(WrongTypeTest, Names) {
  EXPECT_EQ(ErrorOf("streams:\n  - name: {a: 1}\n"),
            At(2, 11, "streams[0].name: expected a string, got a mapping"));
  EXPECT_EQ(
      ErrorOf(absl::StrCat(kStreams, kFunctions,
                           "event_source_mappings:\n  - function: fn\n    stream: [orders]\n")),
      At(8, 13, "event_source_mappings[0].stream: expected a string, got a list"));
}

// --- Durations ---

INSTANTIATE_TEST_SUITE_P(
    Durations, RangeTest,
    ::testing::Values(
        RangeCase{Section::kFunction, "timeout", "5",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got '5' (a number needs "
                  "a unit: write 5s)"},
        RangeCase{Section::kFunction, "timeout", "2.5",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got '2.5' (a number "
                  "needs a unit: write 2.5s)"},
        RangeCase{Section::kStream, "retention", "48",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got '48' (a number "
                  "needs a unit: write 48h)"},
        RangeCase{Section::kMapping, "maximum_batching_window", "0",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got '0' (a number needs "
                  "a unit: write 0s)"},
        RangeCase{Section::kMapping, "max_record_age", "3600",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got '3600' (a number "
                  "needs a unit: write 3600s)"},
        RangeCase{Section::kFunction, "timeout", "5 sec",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got '5 sec'"},
        RangeCase{Section::kFunction, "timeout", "inf",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got 'inf'"},
        RangeCase{Section::kFunction, "timeout", "+5s",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got '+5s'"},
        RangeCase{Section::kFunction, "timeout", "s",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got 's'"},
        RangeCase{Section::kFunction, "timeout", "1dd",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got '1dd'"},
        RangeCase{Section::kFunction, "timeout", "[5s]",
                  ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got a list"}));

TEST(DurationTest, UnitsAndCombinations) {
  EXPECT_EQ(FunctionWith("timeout: 500ms").timeout, absl::Milliseconds(500));
  EXPECT_EQ(FunctionWith("timeout: 5s").timeout, absl::Seconds(5));
  EXPECT_EQ(FunctionWith("timeout: 1.5s").timeout, absl::Milliseconds(1500));
  EXPECT_EQ(FunctionWith("timeout: 1m").timeout, absl::Minutes(1));
  EXPECT_EQ(FunctionWith("timeout: 1m30s").timeout, absl::Seconds(90));
  EXPECT_EQ(FunctionWith("timeout: \"2m\"").timeout, absl::Minutes(2));
  EXPECT_EQ(FunctionWith("timeout: 250000us").timeout, absl::Milliseconds(250));
  EXPECT_EQ(StreamWith("retention: 48h").retention_hours, 48);
  EXPECT_EQ(StreamWith("retention: 2d").retention_hours, 48);
  EXPECT_EQ(StreamWith("retention: 1d12h").retention_hours, 36);
  EXPECT_EQ(StreamWith("retention: 1.5d").retention_hours, 36);
  EXPECT_EQ(MappingWith("max_record_age: 7d").max_record_age, absl::Hours(168));
  EXPECT_EQ(MappingWith("max_record_age: 60s").max_record_age, absl::Seconds(60));
  EXPECT_EQ(MappingWith("max_record_age: -1").max_record_age, absl::InfiniteDuration());
  EXPECT_EQ(MappingWith("max_record_age: \"-1\"").max_record_age, absl::InfiniteDuration());
  EXPECT_EQ(MappingWith("maximum_batching_window: 0s").maximum_batching_window,
            absl::ZeroDuration());
  EXPECT_EQ(MappingWith("maximum_batching_window: 5m").maximum_batching_window, absl::Seconds(300));
}

// --- Memory sizes, environment, enumerations ---

TEST(ConfigTest, MemorySizeForms) {
  EXPECT_EQ(FunctionWith("memory_size: 512").memory_size_mb, 512);
  EXPECT_EQ(FunctionWith("memory_size: 512MB").memory_size_mb, 512);
  EXPECT_EQ(FunctionWith("memory_size: 512 MB").memory_size_mb, 512);
  EXPECT_EQ(FunctionWith("memory_size: 512mb").memory_size_mb, 512);
  EXPECT_EQ(FunctionWith("memory_size: 512MiB").memory_size_mb, 512);
  EXPECT_EQ(FunctionWith("memory_size: 1GB").memory_size_mb, 1024);
  EXPECT_EQ(FunctionWith("memory_size: 1.5GB").memory_size_mb, 1536);
  EXPECT_EQ(FunctionWith("memory_size: 2GiB").memory_size_mb, 2048);
  EXPECT_EQ(ErrorOf(With(Section::kFunction, "memory_size: 0.1MB")),
            At(6, 18,
               "functions[0].memory_size: expected megabytes as an integer (512) or a size like "
               "512MB or 1GB, got '0.1MB'"));
}

TEST(ConfigTest, EnvironmentErrors) {
  EXPECT_EQ(ErrorOf(With(Section::kFunction, "environment: {A: {B: 1}}")),
            At(6, 22,
               "functions[0].environment.A: expected a string, number or boolean, got a "
               "mapping"));
  EXPECT_EQ(ErrorOf(With(Section::kFunction, "environment: {A: 1, A: 2}")),
            At(6, 25, "duplicate key 'A' in functions[0].environment"));
  EXPECT_EQ(ErrorOf(With(Section::kFunction, "environment: {\"A=B\": 1}")),
            At(6, 19,
               "functions[0].environment: a variable name must be a non-empty string without "
               "'=', got 'A=B'"));
}

TEST(ConfigTest, Enumerations) {
  EXPECT_EQ(FunctionWith("isolation: process").isolation, runtime::Isolation::kProcess);
  EXPECT_EQ(FunctionWith("isolation: in_process").isolation, runtime::Isolation::kInProcess);
  EXPECT_EQ(ErrorOf(With(Section::kFunction, "isolation: thread")),
            At(6, 16, "functions[0].isolation must be process or in_process, got 'thread'"));
  EXPECT_EQ(MappingWith("starting_position: LATEST").starting_position, StartingPosition::kLatest);
  EXPECT_EQ(MappingWith("starting_position: TRIM_HORIZON").starting_position,
            StartingPosition::kTrimHorizon);
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "starting_position: trim_horizon")),
            At(9, 24,
               "event_source_mappings[0].starting_position must be TRIM_HORIZON, LATEST or "
               "AT_TIMESTAMP, got 'trim_horizon'"));
  EXPECT_EQ(MappingWith("consumer: polling").consumer, ConsumerType::kPolling);
  EXPECT_EQ(MappingWith("consumer: fan_out").consumer, ConsumerType::kFanOut);
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "consumer: efo")),
            At(9, 15, "event_source_mappings[0].consumer must be polling or fan_out, got 'efo'"));
  EXPECT_TRUE(MappingWith("bisect_batch_on_error: true").bisect_batch_on_error);
  EXPECT_FALSE(MappingWith("bisect_batch_on_error: false").bisect_batch_on_error);
  EXPECT_FALSE(MappingWith("enabled: false").enabled);
  EXPECT_TRUE(MappingWith("report_batch_item_failures: true").report_batch_item_failures);
}

// --- Starting position timestamp ---

TEST(ConfigTest, AtTimestampTakesRfc3339OrEpochSeconds) {
  std::string base =
      absl::StrCat(kStreams, kFunctions, kMappings, "    starting_position: AT_TIMESTAMP\n");
  Config rfc = MustParse(base + "    starting_position_timestamp: 2024-06-10T12:00:00.5+02:00\n");
  EXPECT_EQ(TheMapping(rfc).starting_position_timestamp, absl::FromUnixMillis(1718013600500));
  Config epoch = MustParse(base + "    starting_position_timestamp: 1718020800\n");
  EXPECT_EQ(TheMapping(epoch).starting_position_timestamp, absl::FromUnixSeconds(1718020800));
  Config fraction = MustParse(base + "    starting_position_timestamp: 1718020800.25\n");
  EXPECT_EQ(TheMapping(fraction).starting_position_timestamp, absl::FromUnixMillis(1718020800250));
  EXPECT_EQ(ErrorOf(base + "    starting_position_timestamp: yesterday\n"),
            At(10, 34,
               "event_source_mappings[0].starting_position_timestamp: expected an RFC 3339 time "
               "(2024-06-10T12:00:00Z) or epoch seconds, got 'yesterday'"));
}

TEST(ConfigTest, AtTimestampNeedsATimestamp) {
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "starting_position: AT_TIMESTAMP")),
            At(9, 24,
               "event_source_mappings[0].starting_position AT_TIMESTAMP needs "
               "starting_position_timestamp"));
}

TEST(ConfigTest, TimestampWithoutAtTimestampIsRefused) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings,
                                 "    starting_position: LATEST\n"
                                 "    starting_position_timestamp: 1718020800\n")),
            At(10, 5,
               "event_source_mappings[0].starting_position_timestamp is only used with "
               "starting_position: AT_TIMESTAMP"));
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "starting_position_timestamp: 1718020800")),
            At(9, 5,
               "event_source_mappings[0].starting_position_timestamp is only used with "
               "starting_position: AT_TIMESTAMP (the default is TRIM_HORIZON)"));
}

// --- on_failure ---

TEST(ConfigTest, OnFailureDestinations) {
  MappingSpec to_stream = MappingWith("on_failure: stream:orders-dlq");  // undeclared is fine
  EXPECT_EQ(to_stream.on_failure.kind, OnFailureDestination::Kind::kStream);
  EXPECT_EQ(to_stream.on_failure.target, "orders-dlq");
  MappingSpec to_file = MappingWith("on_failure: file:dlq.jsonl");
  EXPECT_EQ(to_file.on_failure.kind, OnFailureDestination::Kind::kFile);
  EXPECT_EQ(to_file.on_failure.target, "/cfg/dlq.jsonl");
  EXPECT_EQ(MappingWith("on_failure: file:/var/dlq.jsonl").on_failure.target, "/var/dlq.jsonl");
  EXPECT_EQ(MappingWith("on_failure: \"\"").on_failure.kind, OnFailureDestination::Kind::kNone);
  EXPECT_EQ(MappingWith("on_failure:").on_failure.kind, OnFailureDestination::Kind::kNone);
}

TEST(ConfigTest, OnFailureErrors) {
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "on_failure: sqs:my-queue")),
            At(9, 17,
               "event_source_mappings[0].on_failure: expected stream:NAME or file:PATH, got "
               "'sqs:my-queue'"));
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "on_failure: stream:bad/name")),
            At(9, 17,
               "event_source_mappings[0].on_failure: 'bad/name' is not a valid stream name: 1 to "
               "128 of a-z A-Z 0-9 _ . -"));
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "on_failure: stream:orders")),
            At(9, 17,
               "event_source_mappings[0].on_failure: the destination is the mapping's own stream, "
               "so failed records would be read and fail again; use another stream"));
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "on_failure: \"file:\"")),
            At(9, 17, "event_source_mappings[0].on_failure: file: needs a path"));
}

// --- filters ---

TEST(ConfigTest, FiltersFromYamlAndFromJsonStrings) {
  Config config = MustParse(absl::StrCat(kStreams, kFunctions, kMappings, R"(    filters:
      - data:
          amount: [{numeric: [">", 0, "<=", 300.0]}]
          type: ["buy", "300", 300, true, null, ~]
      - '{"data": {"region": [{"prefix": "eu-"}]}}'
      - {data: {flag: [{exists: false}]}}
)"));
  const MappingSpec& m = TheMapping(config);
  ASSERT_EQ(m.filters.size(), 3u);
  // Numbers keep their written form; quoted scalars stay strings.
  EXPECT_EQ(m.filters[0].pattern_json, R"({"data":{"amount":[{"numeric":[">",0,"<=",300.0]}],)"
                                       R"("type":["buy","300",300,true,null,null]}})");
  EXPECT_EQ(m.filters[0].where.ToString(), "/cfg/test.yaml:10:9");
  EXPECT_EQ(m.filters[1].pattern_json, R"({"data":{"region":[{"prefix":"eu-"}]}})");
  EXPECT_EQ(m.filters[1].where.ToString(), "/cfg/test.yaml:13:9");
  EXPECT_EQ(m.filters[2].pattern_json, R"({"data":{"flag":[{"exists":false}]}})");
}

TEST(ConfigTest, BadFilterIsRefusedAtThePattern) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings, R"(    filters:
      - data: {type: [buy]}
      - data:
          type: [{wildcard: "b*"}]
)")),
            At(11, 9,
               "event_source_mappings[0].filters[1]: invalid filter pattern: data.type: unknown "
               "operator \"wildcard\"; known: prefix, suffix, equals-ignore-case, anything-but, "
               "numeric, exists"));
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings,
                                 "    filters:\n      - '{\"data\": '\n")),
            At(10, 9,
               "event_source_mappings[0].filters[0]: invalid filter pattern: not valid JSON: "
               "Invalid value. (at offset 9)"));
  EXPECT_EQ(
      ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings, "    filters:\n      - [data]\n")),
      At(10, 9,
         "event_source_mappings[0].filters[0]: expected a pattern (a mapping, or a string "
         "of JSON), got a list"));
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings,
                                 "    filters:\n      - partitionKey: [a]\n")),
            At(10, 9,
               "event_source_mappings[0].filters[0]: invalid filter pattern: \"partitionKey\": "
               "Kinesis filters match the record's data only; write {\"data\": {...}}"));
}

// A hostile file must get an error at the place, in bounded time and memory: YAML nested
// past yaml-cpp's recursion guard, a pattern nested deeper than filters allow, and a
// "billion laughs" of aliases that a pattern would expand to 10^9 values.
TEST(ConfigTest, DeepAndAliasExpandedInputIsRefusedWithItsPlace) {
  const std::string deep = "streams: " + std::string(100000, '[') + std::string(100000, ']');
  EXPECT_THAT(ErrorOf(deep), StartsWith(absl::StrCat(kPath, ":1:")));
  EXPECT_THAT(ErrorOf(deep), HasSubstr("YAML nested too deeply"));

  std::string pattern = "1";
  for (int i = 0; i < 100; ++i) pattern = "[" + pattern + "]";
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings,
                                 "    filters:\n      - {data: {x: ", pattern, "}}\n")),
            At(10, 82, "a filter pattern nested deeper than 64 levels"));

  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 9; ++i) {
    absl::StrAppend(&bomb, "a", i, ": &a", i, " [");
    for (int k = 0; k < 10; ++k) absl::StrAppend(&bomb, k == 0 ? "" : ", ", "*a", i - 1);
    absl::StrAppend(&bomb, "]\n");
  }
  const absl::Time start = absl::Now();
  const std::string error = ErrorOf(absl::StrCat(bomb, kStreams, kFunctions, kMappings,
                                                 "    filters:\n      - {data: {x: *a8}}\n"));
  EXPECT_THAT(error, HasSubstr("a filter pattern longer than 65536 bytes as JSON"));
  EXPECT_THAT(error, StartsWith(absl::StrCat(kPath, ":")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(ConfigTest, AtMostFiveFilters) {
  std::string five = "    filters:\n";
  for (int i = 0; i < 5; ++i) absl::StrAppend(&five, "      - data: {n: [", i, "]}\n");
  EXPECT_EQ(
      TheMapping(MustParse(absl::StrCat(kStreams, kFunctions, kMappings, five))).filters.size(),
      5u);
  EXPECT_EQ(
      ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings, five, "      - data: {n: [5]}\n")),
      At(15, 9,
         "event_source_mappings[0].filters: at most 5 filters per mapping (Lambda's "
         "limit)"));
}

// --- Keys: unknown (with suggestions), duplicate, missing ---

TEST(KeyTest, UnknownKeySuggestsTheClosest) {
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "batchsize: 10")),
            At(9, 5,
               "unknown key 'batchsize' in event_source_mappings[0]; did you mean "
               "'batch_size'?"));
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "BatchSize: 10")),
            At(9, 5,
               "unknown key 'BatchSize' in event_source_mappings[0]; did you mean "
               "'batch_size'?"));
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "paralellization_factor: 2")),
            At(9, 5,
               "unknown key 'paralellization_factor' in event_source_mappings[0]; did you mean "
               "'parallelization_factor'?"));
  // AWS's own names point to ours.
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "MaximumRetryAttempts: 2")),
            At(9, 5,
               "unknown key 'MaximumRetryAttempts' in event_source_mappings[0]; did you mean "
               "'retry_attempts'?"));
  EXPECT_EQ(ErrorOf(With(Section::kMapping, "maxBatchingWindow: 2s")),
            At(9, 5,
               "unknown key 'maxBatchingWindow' in event_source_mappings[0]; did you mean "
               "'maximum_batching_window'?"));
  EXPECT_EQ(ErrorOf(With(Section::kFunction, "memorySize: 256")),
            At(6, 5, "unknown key 'memorySize' in functions[0]; did you mean 'memory_size'?"));
  EXPECT_EQ(ErrorOf(With(Section::kStream, "shard: 2")),
            At(3, 5, "unknown key 'shard' in streams[0]; did you mean 'shards'?"));
}

TEST(KeyTest, UnknownKeyWithNothingCloseListsTheValidKeys) {
  EXPECT_EQ(ErrorOf(With(Section::kStream, "color: blue")),
            At(3, 5, "unknown key 'color' in streams[0]; valid keys: name, shards, retention"));
}

TEST(KeyTest, UnknownTopLevelKeyIsRefused) {
  EXPECT_EQ(ErrorOf("stream:\n  - name: a\n"),
            At(1, 1, "unknown key 'stream' in the file; did you mean 'streams'?"));
  EXPECT_EQ(ErrorOf("version: 1\n"),
            At(1, 1,
               "unknown key 'version' in the file; valid keys: streams, functions, "
               "event_source_mappings"));
}

TEST(KeyTest, DuplicateKeyIsRefused) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings,
                                 "    batch_size: 10\n    batch_size: 20\n")),
            At(10, 5, "duplicate key 'batch_size' in event_source_mappings[0] (first at line 9)"));
}

TEST(KeyTest, MissingRequiredKeyPointsAtTheEntry) {
  EXPECT_EQ(ErrorOf("streams:\n  - shards: 2\n"),
            At(2, 5, "streams[0]: missing required key 'name'"));
  EXPECT_EQ(ErrorOf("functions:\n  - name: fn\n"),
            At(2, 5, "functions[0]: missing required key 'plugin'"));
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions,
                                 "event_source_mappings:\n  - function: fn\n    batch_size: 5\n")),
            At(7, 5, "event_source_mappings[0]: missing required key 'stream'"));
  EXPECT_EQ(
      ErrorOf(absl::StrCat(kStreams, kFunctions, "event_source_mappings:\n  - stream: orders\n")),
      At(7, 5, "event_source_mappings[0]: missing required key 'function'"));
}

TEST(KeyTest, NullValueIsReportedAtItsKey) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings, "    batch_size:\n",
                                 "    enabled: true\n")),
            At(9, 5, "event_source_mappings[0].batch_size: expected an integer, got nothing"));
}

// --- Names and references ---

TEST(ReferenceTest, DuplicateStreamName) {
  EXPECT_EQ(ErrorOf("streams:\n  - name: a\n  - name: b\n  - name: a\n"),
            At(4, 11, "stream 'a' is already declared at line 2"));
}

TEST(ReferenceTest, DuplicateFunctionName) {
  EXPECT_EQ(ErrorOf("functions:\n  - name: f\n    plugin: x\n  - name: f\n    plugin: y\n"),
            At(4, 11, "function 'f' is already declared at line 2"));
}

TEST(ReferenceTest, InvalidNames) {
  EXPECT_EQ(ErrorOf("streams:\n  - name: my stream\n"),
            At(2, 11,
               "streams[0].name 'my stream' is not a valid stream name: 1 to 128 of a-z A-Z 0-9 _ "
               ". -"));
  EXPECT_EQ(ErrorOf("functions:\n  - name: my.fn\n    plugin: x\n"),
            At(2, 11,
               "functions[0].name 'my.fn' is not a valid function name: 1 to 64 of a-z A-Z 0-9 _ "
               "-"));
}

TEST(ReferenceTest, MappingToUnknownStreamNamesTheDeclaredOnes) {
  EXPECT_EQ(
      ErrorOf(absl::StrCat(kStreams, kFunctions,
                           "event_source_mappings:\n  - function: fn\n    stream: payments\n")),
      At(8, 13,
         "event_source_mappings[0]: stream 'payments' is not declared under streams "
         "(declared: orders)"));
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions,
                                 "event_source_mappings:\n  - function: fn\n    stream: order\n")),
            At(8, 13,
               "event_source_mappings[0]: stream 'order' is not declared under streams; did you "
               "mean 'orders'?"));
  EXPECT_EQ(ErrorOf(absl::StrCat(kFunctions,
                                 "event_source_mappings:\n  - function: fn\n    stream: orders\n")),
            At(6, 13,
               "event_source_mappings[0]: stream 'orders' is not declared under streams "
               "(declared: none)"));
}

TEST(ReferenceTest, MappingToUnknownFunction) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions,
                                 "event_source_mappings:\n  - function: other\n    stream: "
                                 "orders\n")),
            At(7, 15,
               "event_source_mappings[0]: function 'other' is not declared under functions "
               "(declared: fn)"));
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions,
                                 "event_source_mappings:\n  - function: fn2\n    stream: "
                                 "orders\n")),
            At(7, 15,
               "event_source_mappings[0]: function 'fn2' is not declared under functions; did "
               "you mean 'fn'?"));
}

TEST(ReferenceTest, SecondMappingOfTheSamePairIsAResourceConflict) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kStreams, kFunctions, kMappings,
                                 "  - function: fn\n    stream: orders\n    batch_size: 5\n")),
            At(9, 5,
               "event_source_mappings[1]: ResourceConflictException: The event source arn "
               "(stream orders) and function (fn) provided mapping already exists "
               "(event_source_mappings[0] at line 7); a stream and a function have at most one "
               "mapping, as on AWS"));
}

TEST(ReferenceTest, TwoFunctionsMayMapTheSameStream) {
  Config config = MustParse(
      absl::StrCat(kStreams, "functions:\n  - name: a\n    plugin: a\n  - name: b\n    plugin: b\n",
                   "event_source_mappings:\n  - {function: a, stream: orders}\n"
                   "  - {function: b, stream: orders}\n"));
  ASSERT_EQ(config.mappings.size(), 2u);
  EXPECT_EQ(config.mappings[1].Id(), "orders/b");
}

// --- Structure and syntax ---

TEST(SyntaxTest, YamlSyntaxErrorUsesTheParsersMark) {
  EXPECT_EQ(ErrorOf("streams:\n  - name: a\n   bad: [\n"),
            At(3, 4, "YAML syntax error: end of sequence not found"));
  EXPECT_EQ(ErrorOf("streams: [a, b\n"),
            At(2, 1, "YAML syntax error: end of sequence flow not found"));
  EXPECT_EQ(ErrorOf("streams:\n\t- name: a\n"), At(2, 2, "YAML syntax error: illegal block entry"));
  EXPECT_EQ(ErrorOf("streams: *nothing\n"),
            At(1, 10, "YAML syntax error: the referenced anchor is not defined"));
}

TEST(SyntaxTest, WrongShapes) {
  EXPECT_EQ(ErrorOf("- streams\n"),
            At(1, 1,
               "expected a mapping with streams, functions and event_source_mappings, got a "
               "list"));
  EXPECT_EQ(ErrorOf("streams: {name: a}\n"),
            At(1, 10, "streams: expected a list (entries starting with '- '), got a mapping"));
  EXPECT_EQ(
      ErrorOf("streams:\n  - orders\n"),
      At(2, 5, "streams[0]: expected a mapping of keys (name, shards, retention), got 'orders'"));
  EXPECT_EQ(ErrorOf("a: 1\n---\nb: 2\n"),
            At(3, 1, "a second YAML document ('---'): put everything in one document"));
  EXPECT_EQ(ErrorOf("streams:\n  - ? [a]\n    : 1\n"),
            At(2, 5, "streams[0]: missing required key 'name'") + "\n" +
                At(2, 7, "a key in streams[0] must be a plain name, got a list"));
}

TEST(SyntaxTest, EveryErrorIsReportedInFileOrder) {
  std::string message = ErrorOf(R"(streams:
  - name: orders
    shards: 0
functions:
  - name: fn
    plugin: fn.so
    timeout: 5
event_source_mappings:
  - function: nope
    stream: orders
    batch_size: 0
    batchsize: 1
)");
  EXPECT_EQ(message,
            absl::StrCat(At(3, 13, "streams[0].shards must be between 1 and 1024, got 0"), "\n",
                         At(7, 14,
                            "functions[0].timeout: expected a duration like 500ms, 5s, 1m, 48h "
                            "or 7d, got '5' (a number needs a unit: write 5s)"),
                         "\n",
                         At(9, 15,
                            "event_source_mappings[0]: function 'nope' is not declared under "
                            "functions (declared: fn)"),
                         "\n",
                         At(11, 17,
                            "event_source_mappings[0].batch_size must be between 1 and 10000, got "
                            "0"),
                         "\n",
                         At(12, 5,
                            "unknown key 'batchsize' in event_source_mappings[0]; did you mean "
                            "'batch_size'?")));
}

TEST(SyntaxTest, ErrorListIsCapped) {
  std::string yaml = "streams:\n";
  for (int i = 0; i < 30; ++i) absl::StrAppend(&yaml, "  - {name: s", i, ", shards: 0}\n");
  std::string message = ErrorOf(yaml);
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 20);
  EXPECT_THAT(message, ::testing::EndsWith("\n... and 10 more errors"));
}

// --- Files ---

TEST(LoadConfigTest, MissingFileIsNotFound) {
  absl::StatusOr<Config> config = LoadConfig("/nonexistent/runnel.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr("/nonexistent/runnel.yaml"));
}

TEST(LoadConfigTest, TheQuickStartFileValidates) {
  std::string path = std::string(RUNNEL_SOURCE_DIR) + "/deploy/order-events.yaml";
  absl::StatusOr<Config> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->directory, std::string(RUNNEL_SOURCE_DIR) + "/deploy");
  ASSERT_EQ(config->streams.size(), 2u);
  EXPECT_EQ(config->streams[0].name, "order-events");
  EXPECT_EQ(config->streams[0].shards, 2);
  EXPECT_EQ(config->streams[0].retention_hours, 48);
  EXPECT_EQ(config->streams[1].name, "order-events-dlq");
  ASSERT_EQ(config->functions.size(), 1u);
  const runtime::FunctionConfig& fn = config->functions[0].config;
  EXPECT_EQ(fn.name, "kinesis-processor");
  EXPECT_EQ(fn.plugin, "order_processor");
  EXPECT_EQ(fn.plugin_path, "");
  EXPECT_EQ(fn.timeout, absl::Minutes(1));
  EXPECT_EQ(fn.memory_size_mb, 512);
  EXPECT_EQ(fn.isolation, runtime::Isolation::kProcess);
  ASSERT_EQ(config->mappings.size(), 1u);
  const MappingSpec& m = config->mappings[0];
  EXPECT_EQ(m.function, "kinesis-processor");
  EXPECT_EQ(m.stream, "order-events");
  EXPECT_TRUE(m.enabled);
  EXPECT_EQ(m.starting_position, StartingPosition::kTrimHorizon);
  EXPECT_EQ(m.batch_size, 100);
  EXPECT_EQ(m.maximum_batching_window, absl::Seconds(5));
  EXPECT_EQ(m.parallelization_factor, 2);
  EXPECT_TRUE(m.bisect_batch_on_error);
  EXPECT_EQ(m.retry_attempts, 3);
  EXPECT_EQ(m.max_record_age, absl::InfiniteDuration());
  EXPECT_EQ(m.on_failure.kind, OnFailureDestination::Kind::kStream);
  EXPECT_EQ(m.on_failure.target, "order-events-dlq");
  EXPECT_FALSE(m.report_batch_item_failures);
  EXPECT_TRUE(m.filters.empty());
}

TEST(LoadConfigTest, EveryPrefixOfTheQuickStartFileIsHandled) {
  // Truncated files hit every yaml-cpp error path; none may throw or crash.
  absl::StatusOr<Config> full =
      LoadConfig(std::string(RUNNEL_SOURCE_DIR) + "/deploy/order-events.yaml");
  ASSERT_TRUE(full.ok());
  std::ifstream in(std::string(RUNNEL_SOURCE_DIR) + "/deploy/order-events.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t n = 0; n <= text.size(); n += 7) {
    absl::StatusOr<Config> config = Parse(text.substr(0, n));
    if (!config.ok()) {
      EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << n;
      EXPECT_THAT(std::string(config.status().message()), StartsWith("/cfg/test.yaml:")) << n;
    }
  }
}

}  // namespace
}  // namespace runnel::poller
