// Metrics end to end: real `runnel up` and `runnel broker` processes with --metrics on a free
// port, scraped over HTTP while they work, every value checked against what the test produced
// and what the handlers saw; --metrics errors; and the operator assets (the Grafana dashboard,
// the Prometheus scrape config, the metrics table of deploy/README.md) checked against a real
// scrape, so a renamed metric breaks this test rather than a dashboard.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/metrics_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/test_support.h"
#include "yaml-cpp/yaml.h"

namespace runnel::testing {
namespace {

using ::testing::HasSubstr;
using Labels = std::map<std::string, std::string>;

constexpr char kEchoPlugin[] = RUNNEL_BUILD_DIR "/handlers/echo.so";
constexpr char kPoisonPlugin[] = RUNNEL_BUILD_DIR "/handlers/poison.so";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t CountLines(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  size_t lines = 0;
  while (std::getline(in, line)) lines += !line.empty();
  return lines;
}

// Reads the first line of `path` once it has one.
std::string WaitForLine(const std::string& path) {
  std::string line;
  WaitFor(
      [&] {
        std::ifstream in(path);
        return static_cast<bool>(std::getline(in, line)) && !line.empty();
      },
      absl::Seconds(60));
  return line;
}

// `runnel up` with --metrics on a free port; the broker and metrics addresses from its ready
// files.
struct Up {
  std::unique_ptr<ChildProcess> process;
  std::string broker;
  std::string metrics;
  std::unique_ptr<v1::StreamBroker::Stub> stub;

  static std::unique_ptr<Up> Start(const TempDir& dir, const std::string& yaml) {
    std::ofstream(dir.File("up.yaml")) << yaml;
    auto up = std::make_unique<Up>();
    auto process = ChildProcess::Start(
        {RUNNEL_BINARY, "up", "-f", dir.File("up.yaml"), "--listen", "127.0.0.1:0", "--data-dir",
         dir.File("data"), "--metrics", "127.0.0.1:0", "--metrics-ready-file",
         dir.File("metrics.ready"), "--ready-file", dir.File("broker.ready")},
        dir.File("up.log"));
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return nullptr;
    up->process = std::move(*process);
    up->broker = WaitForLine(dir.File("broker.ready"));
    up->metrics = WaitForLine(dir.File("metrics.ready"));
    EXPECT_FALSE(up->broker.empty()) << "runnel up did not start: " << ReadFile(dir.File("up.log"));
    if (up->broker.empty() || up->metrics.empty()) return nullptr;
    EXPECT_NE(up->metrics, "off");
    up->stub = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(up->broker));
    return up;
  }
};

Scrape MustScrape(const std::string& address) {
  auto scrape = Scrape::From(address);
  EXPECT_TRUE(scrape.ok()) << scrape.status();
  return scrape.ok() ? *scrape : Scrape();
}

// Two mappings: echo on `events` (2 shards; every record succeeds), and the poison handler on
// `poisoned` (1 shard; a "POISON:fail" record fails), bisecting, one retry, dead letters to a
// stream.
std::string TwoMappingsYaml(const std::string& echo_file) {
  return absl::StrCat(
      "streams:\n"
      "  - name: events\n    shards: 2\n"
      "  - name: poisoned\n    shards: 1\n"
      "functions:\n"
      "  - name: echo\n    plugin: ",
      kEchoPlugin, "\n    isolation: in_process\n    environment:\n      ECHO_FILE: ", echo_file,
      "\n  - name: poison\n    plugin: ", kPoisonPlugin,
      "\n    isolation: in_process\n"
      "event_source_mappings:\n"
      "  - function: echo\n    stream: events\n    batch_size: 100\n"
      "  - function: poison\n    stream: poisoned\n    batch_size: 100\n"
      "    bisect_batch_on_error: true\n    retry_attempts: 1\n"
      "    on_failure: stream:poisoned-dlq\n");
}

TEST(MetricsEndToEndTest, UpMetricsMatchWhatWasProducedAndInvoked) {
  TempDir dir("metrics-up");
  const std::string echo = dir.File("echo.out");
  auto up = Up::Start(dir, TwoMappingsYaml(echo));
  ASSERT_NE(up, nullptr);

  // 1,000 records of known size into `events`, in two PutRecords calls.
  constexpr int kRecords = 1000;
  std::map<std::string, int> per_shard;
  size_t bytes = 0;
  for (int call = 0; call < 2; ++call) {
    std::vector<std::pair<std::string, std::string>> batch;
    for (int i = call * 500; i < (call + 1) * 500; ++i) {
      batch.push_back({absl::StrFormat("key-%03d", i % 100), absl::StrFormat("record-%06d", i)});
      bytes += batch.back().first.size() + batch.back().second.size();
    }
    grpc::Status status;
    v1::PutRecordsResponse response = PutRecords(*up->stub, "events", batch, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.failed_record_count(), 0);
    for (const auto& entry : response.records()) ++per_shard[entry.shard_id()];
  }
  ASSERT_EQ(per_shard.size(), 2u);
  // Seven records into `poisoned` in one call (so one batch), the fourth a poison pill.
  {
    std::vector<std::pair<std::string, std::string>> batch;
    for (int i = 0; i < 7; ++i) batch.push_back({"k", i == 3 ? "POISON:fail" : "fine"});
    grpc::Status status;
    PutRecords(*up->stub, "poisoned", batch, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  ASSERT_TRUE(WaitFor([&] { return CountLines(echo) >= kRecords; }, absl::Seconds(60)))
      << CountLines(echo) << " of " << kRecords << " records reached the echo handler";
  const Labels echo_mapping{{"mapping", "events/echo"}};
  const Labels poison_mapping{{"mapping", "poisoned/poison"}};
  // Checkpoints are written asynchronously: wait until every shard's gauge is at its end.
  Scrape scrape;
  const bool settled = WaitFor(
      [&] {
        scrape = MustScrape(up->metrics);
        for (const auto& [shard, count] : per_shard) {
          Labels labels = echo_mapping;
          labels["shard"] = shard;
          if (scrape.Sum("runnel_poller_checkpoint_offset", labels) != count) return false;
        }
        return scrape.Sum("runnel_poller_checkpoint_offset", poison_mapping) == 7 &&
               scrape.Sum("runnel_poller_in_flight_batches") == 0;
      },
      absl::Seconds(60));
  ASSERT_TRUE(settled) << scrape.text();

  // Broker: what was put, per shard, with its bytes; two put calls timed.
  for (const auto& [shard, count] : per_shard) {
    EXPECT_EQ(scrape.Sum("runnel_broker_incoming_records_total",
                         {{"stream", "events"}, {"shard", shard}}),
              count)
        << shard;
    EXPECT_GE(scrape.Sum("runnel_broker_disk_bytes", {{"stream", "events"}, {"shard", shard}}), 1.0)
        << shard;
  }
  EXPECT_EQ(scrape.Sum("runnel_broker_incoming_records_total", {{"stream", "events"}}), kRecords);
  EXPECT_EQ(scrape.Sum("runnel_broker_incoming_bytes_total", {{"stream", "events"}}),
            static_cast<double>(bytes));
  EXPECT_GE(scrape.Sum("runnel_broker_disk_bytes", {{"stream", "events"}}),
            static_cast<double>(bytes));
  EXPECT_EQ(scrape.Sum("runnel_broker_put_latency_seconds_count", {{"stream", "events"}}), 2);
  EXPECT_EQ(scrape.Sum("runnel_broker_put_latency_seconds_bucket",
                       {{"stream", "events"}, {"le", "+Inf"}}),
            2);
  EXPECT_GE(scrape.Sum("runnel_broker_outgoing_records_total", {{"stream", "events"}}), kRecords);
  EXPECT_GE(scrape.Sum("runnel_broker_get_records_latency_seconds_count", {{"stream", "events"}}),
            2);
  EXPECT_EQ(scrape.Sum("runnel_broker_throttled_requests_total"), 0);
  // The dead letter went through the broker too.
  EXPECT_EQ(scrape.Sum("runnel_broker_incoming_records_total", {{"stream", "poisoned-dlq"}}), 1);

  // The echo mapping: everything polled, processed, invoked successfully, checkpointed.
  EXPECT_EQ(scrape.Sum("runnel_poller_records_polled_total", echo_mapping), kRecords);
  EXPECT_EQ(scrape.Sum("runnel_poller_records_processed_total", echo_mapping), kRecords);
  EXPECT_EQ(scrape.Sum("runnel_poller_records_filtered_total", echo_mapping), 0);
  EXPECT_EQ(scrape.Sum("runnel_poller_records_failed_total", echo_mapping), 0);
  const double ok_invocations = scrape.Sum("runnel_poller_invocations_total",
                                           {{"mapping", "events/echo"}, {"outcome", "ok"}});
  EXPECT_GE(ok_invocations, kRecords / 100);  // batch_size 100
  EXPECT_EQ(scrape.Sum("runnel_poller_invocations_total", echo_mapping), ok_invocations)
      << "every echo invocation succeeded";
  // No failures: each batch was invoked exactly once, and the batches add up to every record.
  EXPECT_EQ(scrape.Sum("runnel_poller_batch_size_records_count", echo_mapping), ok_invocations);
  EXPECT_EQ(scrape.Sum("runnel_poller_batch_size_records_sum", echo_mapping), kRecords);
  EXPECT_EQ(scrape.Sum("runnel_poller_invocation_duration_seconds_count", echo_mapping),
            ok_invocations);
  EXPECT_EQ(scrape.Sum("runnel_poller_retries_total", echo_mapping), 0);
  EXPECT_EQ(scrape.Sum("runnel_poller_concurrent_executions", {{"function", "echo"}}), 0);
  for (const auto& [shard, count] : per_shard) {
    Labels labels = echo_mapping;
    labels["shard"] = shard;
    const double age = scrape.Sum("runnel_poller_iterator_age_seconds", labels);
    EXPECT_GE(age, 0) << shard;
    EXPECT_LT(age, 60) << shard;
  }

  // The poison mapping: 7 records in one batch, the fourth fails. Bisecting: [0,7) fails ->
  // [0,3) ok, [3,7) fails -> [3,5) fails -> [3,4) fails twice (one retry) and goes to the
  // destination, [4,5) ok, [5,7) ok.
  EXPECT_EQ(scrape.Sum("runnel_poller_records_polled_total", poison_mapping), 7);
  EXPECT_EQ(scrape.Sum("runnel_poller_batch_size_records_count", poison_mapping), 1);
  EXPECT_EQ(scrape.Sum("runnel_poller_records_processed_total", poison_mapping), 6);
  EXPECT_EQ(scrape.Sum("runnel_poller_records_failed_total", poison_mapping), 1);
  EXPECT_EQ(scrape.Sum("runnel_poller_records_sent_to_destination_total", poison_mapping), 1);
  EXPECT_EQ(scrape.Sum("runnel_poller_records_dropped_for_age_total", poison_mapping), 0);
  EXPECT_EQ(scrape.Sum("runnel_poller_invocations_total",
                       {{"mapping", "poisoned/poison"}, {"outcome", "ok"}}),
            3);
  EXPECT_EQ(scrape.Sum("runnel_poller_invocations_total",
                       {{"mapping", "poisoned/poison"}, {"outcome", "error"}}),
            5);
  EXPECT_EQ(scrape.Sum("runnel_poller_invocation_duration_seconds_count", poison_mapping), 8);
  EXPECT_EQ(scrape.Sum("runnel_poller_bisects_total", poison_mapping), 3);
  EXPECT_EQ(scrape.Sum("runnel_poller_retries_total", poison_mapping), 1);
}

TEST(MetricsEndToEndTest, BrokerProcessCountsPutsAndDropsADeletedStream) {
  TempDir dir("metrics-broker");
  auto broker = BrokerProcess::Start(
      dir.File("data"),
      {"--metrics", "127.0.0.1:0", "--metrics-ready-file", dir.File("metrics.ready")});
  ASSERT_TRUE(broker.ok()) << broker.status();
  const std::string metrics = WaitForLine(dir.File("metrics.ready"));
  ASSERT_FALSE(metrics.empty());
  auto stub = (*broker)->Stub();
  ASSERT_TRUE(CreateStream(*stub, "orders", 3).ok());
  size_t bytes = 0;
  int records = 0;
  for (int call = 0; call < 3; ++call) {
    std::vector<std::pair<std::string, std::string>> batch;
    for (int i = 0; i < 100; ++i) {
      batch.push_back(
          {absl::StrCat("customer-", i), std::string(static_cast<size_t>(i + call), 'o')});
      bytes += batch.back().first.size() + batch.back().second.size();
      ++records;
    }
    grpc::Status status;
    PutRecords(*stub, "orders", batch, &status);
    ASSERT_TRUE(status.ok());
  }
  Scrape scrape = MustScrape(metrics);
  EXPECT_EQ(scrape.Sum("runnel_broker_incoming_records_total", {{"stream", "orders"}}), records);
  EXPECT_EQ(scrape.Sum("runnel_broker_incoming_bytes_total", {{"stream", "orders"}}),
            static_cast<double>(bytes));
  EXPECT_EQ(scrape.Sum("runnel_broker_put_latency_seconds_count", {{"stream", "orders"}}), 3);
  EXPECT_GE(scrape.Sum("runnel_broker_disk_bytes", {{"stream", "orders"}}),
            static_cast<double>(bytes));
  EXPECT_EQ(scrape.Count("runnel_broker_disk_bytes", {{"stream", "orders"}}), 3);
  // No poller families in a lone broker.
  EXPECT_EQ(scrape.Count("runnel_poller_records_polled_total"), 0);

  const std::vector<v1::Record> read = ReadShard(*stub, "orders", "shardId-000000000001");
  scrape = MustScrape(metrics);
  EXPECT_EQ(scrape.Sum("runnel_broker_outgoing_records_total",
                       {{"stream", "orders"}, {"shard", "shardId-000000000001"}}),
            static_cast<double>(read.size()));

  v1::DeleteStreamRequest remove;
  remove.set_stream_name("orders");
  v1::DeleteStreamResponse removed;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->DeleteStream(&context, remove, &removed).ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        return MustScrape(metrics).Count("runnel_broker_incoming_records_total",
                                         {{"stream", "orders"}}) == 0;
      },
      absl::Seconds(30)))
      << "a deleted stream's series stay";
}

TEST(MetricsEndToEndTest, MetricsFlagErrorsAreClearAndEveryServerDocumentsIt) {
  TempDir dir("metrics-cli");
  HeldPort held;
  for (const char* command : {"broker", "up"}) {
    CommandResult result =
        RunCommand({RUNNEL_BINARY, command, "--listen", "127.0.0.1:0", "--data-dir",
                    dir.File(absl::StrCat(command, "-data")), "--metrics", held.address()});
    EXPECT_NE(result.exit_code, 0) << command;
    EXPECT_THAT(result.err, HasSubstr("--metrics")) << command;
    EXPECT_THAT(result.err, HasSubstr(held.address())) << command;
    EXPECT_THAT(result.err, HasSubstr("address already in use")) << command;
  }
  CommandResult bad = RunCommand({RUNNEL_BINARY, "broker", "--listen", "127.0.0.1:0", "--data-dir",
                                  dir.File("bad-data"), "--metrics", "9567"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("--metrics: '9567' has no port"));
  for (const char* command : {"broker", "poller", "up"}) {
    CommandResult help = RunCommand({RUNNEL_BINARY, command, "--help"});
    EXPECT_EQ(help.exit_code, 0) << command;
    EXPECT_THAT(help.out, HasSubstr("--metrics")) << command;
    EXPECT_THAT(help.out,
                HasSubstr(std::string(command) == "poller" ? "127.0.0.1:9568" : "127.0.0.1:9567"))
        << command;
  }
}

// Every runnel_* name in `text`; a histogram's _bucket/_sum/_count series are named by their
// family. Names ending in '_' (prose such as `runnel_broker_*`) are skipped.
std::set<std::string> MetricNames(const std::string& text) {
  std::set<std::string> names;
  static const std::regex name("runnel_[a-z0-9_]+");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator();
       ++it) {
    if (it->str().back() != '_') names.insert(it->str());
  }
  return names;
}

// True when `name` is a family of the scrape or a series of one of its histograms.
bool Scraped(const Scrape& scrape, const std::string& name) {
  if (scrape.types().contains(name)) return true;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.ends_with(s)) {
      auto it = scrape.types().find(name.substr(0, name.size() - s.size()));
      if (it != scrape.types().end() && it->second == "histogram") return true;
    }
  }
  return false;
}

void CollectExpressions(const rapidjson::Value& value, std::vector<std::string>* out) {
  if (value.IsObject()) {
    for (auto it = value.MemberBegin(); it != value.MemberEnd(); ++it) {
      if (std::string(it->name.GetString()) == "expr" && it->value.IsString()) {
        out->push_back(it->value.GetString());
      } else if (it->value.IsObject() && it->value.HasMember("query") &&
                 std::string(it->name.GetString()) == "query") {
        CollectExpressions(it->value, out);
      } else {
        CollectExpressions(it->value, out);
      }
    }
  } else if (value.IsArray()) {
    for (const auto& item : value.GetArray()) CollectExpressions(item, out);
  } else if (value.IsString()) {
    // Template variable queries: label_values(runnel_..., label).
    std::string text = value.GetString();
    if (text.starts_with("label_values(")) out->push_back(text);
  }
}

TEST(MetricsEndToEndTest, DashboardScrapeConfigAndDocsNameOnlyRealMetrics) {
  TempDir dir("metrics-assets");
  auto up = Up::Start(dir, TwoMappingsYaml(dir.File("echo.out")));
  ASSERT_NE(up, nullptr);
  const Scrape scrape = MustScrape(up->metrics);
  std::set<std::string> families;
  for (const auto& [family, type] : scrape.types()) {
    if (family.starts_with("runnel_")) families.insert(family);
  }
  ASSERT_GE(families.size(), 25u) << scrape.text();

  // The dashboard: valid JSON, every expression names scraped metrics only, and it shows the
  // latency quantiles, checkpoints and dead letters it promises.
  const std::string dashboard_path = RUNNEL_SOURCE_DIR "/deploy/grafana/runnel-dashboard.json";
  rapidjson::Document dashboard;
  dashboard.Parse(ReadFile(dashboard_path).c_str());
  ASSERT_FALSE(dashboard.HasParseError()) << dashboard_path << " is not valid JSON";
  ASSERT_TRUE(dashboard.IsObject() && dashboard.HasMember("panels") &&
              dashboard["panels"].IsArray());
  std::vector<std::string> expressions;
  CollectExpressions(dashboard, &expressions);
  ASSERT_GE(expressions.size(), 20u);
  std::set<std::string> used;
  for (const std::string& expression : expressions) {
    for (const std::string& name : MetricNames(expression)) {
      used.insert(name);
      EXPECT_TRUE(Scraped(scrape, name))
          << dashboard_path << " uses " << name << ", which no scrape has, in: " << expression;
    }
  }
  std::string all;
  for (const std::string& expression : expressions) absl::StrAppend(&all, expression, "\n");
  EXPECT_THAT(all, HasSubstr("histogram_quantile(0.99"));
  // Every family appears on the dashboard (a histogram through its series).
  for (const std::string& family : families) {
    bool shown = used.contains(family);
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      shown |= used.contains(family + suffix);
    }
    EXPECT_TRUE(shown) << family << " is not on the dashboard";
  }

  // The docs: every family is in deploy/README.md's table, and every name there exists.
  const std::string readme = ReadFile(RUNNEL_SOURCE_DIR "/deploy/README.md");
  const size_t section = readme.find("## Metrics");
  ASSERT_NE(section, std::string::npos) << "deploy/README.md has no Metrics section";
  const size_t next = readme.find("\n## ", section + 1);
  const std::set<std::string> documented =
      MetricNames(readme.substr(section, next == std::string::npos ? next : next - section));
  for (const std::string& family : families) {
    EXPECT_TRUE(documented.contains(family)) << family << " is not documented in deploy/README.md";
  }
  for (const std::string& name : documented) {
    EXPECT_TRUE(Scraped(scrape, name))
        << "deploy/README.md documents " << name << ", which no scrape has";
  }

  // The scrape config: the targets are the --metrics defaults of the broker and the poller.
  const std::string prometheus_path = RUNNEL_SOURCE_DIR "/deploy/prometheus/prometheus.yml";
  YAML::Node config = YAML::LoadFile(prometheus_path);
  std::set<std::string> targets;
  for (const auto& job : config["scrape_configs"]) {
    EXPECT_EQ(job["metrics_path"].as<std::string>("/metrics"), "/metrics");
    for (const auto& statics : job["static_configs"]) {
      for (const auto& target : statics["targets"]) targets.insert(target.as<std::string>());
    }
  }
  EXPECT_EQ(targets, (std::set<std::string>{std::string(kDefaultBrokerMetrics),
                                            std::string(kDefaultPollerMetrics)}));
  // promtool (Debian's `prometheus` package) checks the file when it is installed; the package
  // is ~100 MB, so the suite does not require it.
  // It also parses the dashboard's PromQL: each expression (Grafana's variables replaced) as a
  // recording rule.
  CommandResult which = RunCommand({"/bin/sh", "-c", "command -v promtool"});
  if (which.exit_code == 0) {
    const std::string promtool(absl::StripAsciiWhitespace(which.out));
    CommandResult check = RunCommand({promtool, "check", "config", prometheus_path});
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
    YAML::Emitter rules;
    rules << YAML::BeginMap << YAML::Key << "groups" << YAML::Value << YAML::BeginSeq
          << YAML::BeginMap << YAML::Key << "name" << YAML::Value << "dashboard" << YAML::Key
          << "rules" << YAML::Value << YAML::BeginSeq;
    int n = 0;
    for (std::string expression : expressions) {
      if (expression.starts_with("label_values(")) continue;  // Grafana's, not PromQL
      for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
               {"$__rate_interval", "5m"}, {"$stream", ".*"}, {"$mapping", ".*"}}) {
        for (size_t at; (at = expression.find(from)) != std::string::npos;) {
          expression.replace(at, from.size(), to);
        }
      }
      rules << YAML::BeginMap << YAML::Key << "record" << YAML::Value
            << absl::StrCat("dashboard:expression_", n++) << YAML::Key << "expr" << YAML::Value
            << expression << YAML::EndMap;
    }
    rules << YAML::EndSeq << YAML::EndMap << YAML::EndSeq << YAML::EndMap;
    std::ofstream(dir.File("dashboard-rules.yml")) << rules.c_str();
    check = RunCommand({promtool, "check", "rules", dir.File("dashboard-rules.yml")});
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
    EXPECT_THAT(check.out, HasSubstr(absl::StrCat("SUCCESS: ", n, " rules found")));
    RecordProperty("promtool", "checked");
  } else {
    RecordProperty("promtool", "not installed");
  }
}

}  // namespace
}  // namespace runnel::testing
