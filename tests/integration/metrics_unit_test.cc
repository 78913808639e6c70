// The metrics' parts that need no `runnel` process: the --metrics address rules, the HTTP server
// (scraped over a real socket), the poller's label and sequence-number logic, and the broker's
// series as a stream is created, used, deleted and created again (read from its registry).
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "common/metrics_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "poller/metrics.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

using ::testing::HasSubstr;

Scrape Collect(prometheus::Registry& registry) {
  auto scrape = Scrape::Parse(prometheus::TextSerializer().Serialize(registry.Collect()));
  EXPECT_TRUE(scrape.ok()) << scrape.status();
  return scrape.ok() ? *scrape : Scrape();
}

TEST(MetricsAddressTest, OffAndEmptyDisable) {
  for (const char* off : {"", "off", "OFF", "none", "false"}) {
    auto parsed = ParseMetricsAddress(off, "--metrics");
    ASSERT_TRUE(parsed.ok()) << off;
    EXPECT_FALSE(parsed->has_value()) << off;
  }
}

TEST(MetricsAddressTest, HostPortForms) {
  for (const char* good : {"127.0.0.1:9567", "0.0.0.0:0", "localhost:1", "[::1]:9567"}) {
    auto parsed = ParseMetricsAddress(good, "--metrics");
    ASSERT_TRUE(parsed.ok()) << good << ": " << parsed.status();
    EXPECT_EQ(parsed->value_or(""), good);
  }
}

TEST(MetricsAddressTest, BadValuesNameTheFlagAndTheValue) {
  for (const char* bad : {"9567", "127.0.0.1:", ":9567", "127.0.0.1:70000", "::1:9567", "h:x"}) {
    auto parsed = ParseMetricsAddress(bad, "--metrics");
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("--metrics"));
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(bad));
  }
}

TEST(MetricsAddressTest, FlagThenEnvironmentThenDefault) {
  const char* saved = std::getenv(kMetricsEnv);
  const std::string restore = saved ? saved : "";
  ::unsetenv(kMetricsEnv);
  EXPECT_EQ(MetricsAddressOrDefault("", kDefaultBrokerMetrics), "127.0.0.1:9567");
  EXPECT_EQ(MetricsAddressOrDefault("", kDefaultPollerMetrics), "127.0.0.1:9568");
  ::setenv(kMetricsEnv, "off", 1);
  EXPECT_EQ(MetricsAddressOrDefault("", kDefaultBrokerMetrics), "off");
  EXPECT_EQ(MetricsAddressOrDefault("10.0.0.1:1", kDefaultBrokerMetrics), "10.0.0.1:1");
  if (saved) {
    ::setenv(kMetricsEnv, restore.c_str(), 1);
  } else {
    ::unsetenv(kMetricsEnv);
  }
}

TEST(MetricsServerTest, ServesTheRegistryOnAFreePortAndRunsTheHookFirst) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& counter = prometheus::BuildCounter().Name("test_things_total").Register(*registry).Add({});
  auto server = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->address(), ::testing::StartsWith("127.0.0.1:"));
  EXPECT_NE((*server)->address(), "127.0.0.1:0");
  int hooks = 0;
  (*server)->SetBeforeScrape([&] {
    ++hooks;
    counter.Increment(5);
  });
  auto scrape = Scrape::From((*server)->address());
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(hooks, 1);
  EXPECT_EQ(scrape->Sum("test_things_total"), 5);
  EXPECT_EQ(scrape->types().at("test_things_total"), "counter");
  (*server)->SetBeforeScrape(nullptr);
  scrape = Scrape::From((*server)->address());
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(hooks, 1);
  EXPECT_EQ(scrape->Sum("test_things_total"), 5);
}

TEST(MetricsServerTest, APortInUseIsAClearError) {
  HeldPort held;
  auto server = MetricsServer::Start(held.address(), std::make_shared<prometheus::Registry>());
  ASSERT_FALSE(server.ok());
  const std::string message(server.status().message());
  EXPECT_THAT(message, HasSubstr("--metrics"));
  EXPECT_THAT(message, HasSubstr(held.address()));
  EXPECT_THAT(message, HasSubstr("address already in use"));
}

TEST(PollerMetricsTest, EveryInvokeStatusHasItsOwnOutcome) {
  std::set<std::string> outcomes;
  for (size_t i = 0; i < poller::kInvokeOutcomes; ++i) {
    outcomes.insert(std::string(poller::OutcomeLabel(static_cast<runtime::InvokeStatus>(i))));
  }
  EXPECT_EQ(outcomes.size(), poller::kInvokeOutcomes);
  EXPECT_FALSE(outcomes.contains("unknown"));
  EXPECT_EQ(poller::OutcomeLabel(runtime::InvokeStatus::kSuccess), "ok");
  EXPECT_EQ(poller::OutcomeLabel(runtime::InvokeStatus::kFunctionError), "error");
  EXPECT_EQ(poller::OutcomeLabel(runtime::InvokeStatus::kBatchItemFailures), "partial");
  EXPECT_EQ(poller::OutcomeLabel(runtime::InvokeStatus::kUnavailable), "unavailable");
}

TEST(PollerMetricsTest, SequenceOffsetReadsRunnelSequenceNumbersOnly) {
  EXPECT_EQ(poller::SequenceOffset("100000000000000000042000003"), 42u);
  EXPECT_EQ(poller::SequenceOffset("100000000000000000001000000"), 1u);
  EXPECT_EQ(poller::SequenceOffset("118446744073709551615999999"), 18446744073709551615ull);
  EXPECT_EQ(poller::SequenceOffset("118446744073709551616000000"), std::nullopt);  // > uint64
  EXPECT_EQ(poller::SequenceOffset(""), std::nullopt);
  EXPECT_EQ(poller::SequenceOffset("10000000000000000004200000"), std::nullopt);   // 26 digits
  EXPECT_EQ(poller::SequenceOffset("200000000000000000042000003"), std::nullopt);  // not "1..."
  EXPECT_EQ(poller::SequenceOffset("10000000000000000004200000x"), std::nullopt);  // not digits
  EXPECT_EQ(poller::SequenceOffset("49654321098765432109876543210987654321098765432109876543"),
            std::nullopt);  // a Kinesis sequence number
}

TEST(PollerMetricsTest, ShardsOfAMappingShareItsHistogramsAndKeepTheirOwnCounters) {
  auto registry = std::make_shared<prometheus::Registry>();
  poller::MappingSpec spec;
  spec.stream = "events";
  spec.function = "echo";
  poller::MappingMetrics metrics(registry, spec);
  poller::ShardMetrics* a = metrics.ForShard("shardId-000000000000");
  poller::ShardMetrics* b = metrics.ForShard("shardId-000000000001");
  EXPECT_EQ(metrics.ForShard("shardId-000000000000"), a);
  EXPECT_NE(a->records_polled, b->records_polled);
  EXPECT_EQ(a->invocation_duration, b->invocation_duration);
  a->records_polled->Increment(3);
  a->Invoked(runtime::InvokeStatus::kFunctionError, absl::Milliseconds(20), 1);
  a->Invoked(runtime::InvokeStatus::kSuccess, absl::Milliseconds(10), 2);
  b->Invoked(runtime::InvokeStatus::kSuccess, absl::Milliseconds(30), 1);
  a->Checkpointed("100000000000000000042000000");
  a->Checkpointed("not a runnel sequence number");  // left alone
  const Scrape scrape = Collect(*registry);
  const std::map<std::string, std::string> shard_a{{"mapping", spec.Id()},
                                                   {"function", "echo"},
                                                   {"stream", "events"},
                                                   {"shard", "shardId-000000000000"}};
  EXPECT_EQ(scrape.Sum("runnel_poller_records_polled_total", shard_a), 3);
  EXPECT_EQ(scrape.Sum("runnel_poller_records_polled_total"), 3);
  EXPECT_EQ(scrape.Sum("runnel_poller_invocations_total", {{"outcome", "ok"}}), 2);
  EXPECT_EQ(scrape.Sum("runnel_poller_invocations_total", {{"outcome", "error"}}), 1);
  EXPECT_EQ(scrape.Count("runnel_poller_invocations_total", shard_a),
            static_cast<int>(poller::kInvokeOutcomes));
  EXPECT_EQ(scrape.Sum("runnel_poller_retries_total"), 1);
  EXPECT_EQ(scrape.Sum("runnel_poller_invocation_duration_seconds_count"), 3);
  EXPECT_NEAR(scrape.Sum("runnel_poller_invocation_duration_seconds_sum"), 0.06, 1e-9);
  EXPECT_EQ(scrape.Sum("runnel_poller_checkpoint_offset", shard_a), 42);
}

TEST(PollerMetricsTest, WithoutARegistryEverythingStillCounts) {
  poller::MappingSpec spec;
  spec.stream = "events";
  spec.function = "echo";
  poller::MappingMetrics metrics(nullptr, spec);
  poller::ShardMetrics* shard = metrics.ForShard("shardId-000000000000");
  shard->records_polled->Increment();
  shard->Invoked(runtime::InvokeStatus::kTimeout, absl::Seconds(3), 1);
  EXPECT_EQ(shard->records_polled->Value(), 1);
}

class BrokerMetricsTest : public ::testing::Test {
 protected:
  TempDir dir_{"broker-metrics"};
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  InProcessBroker broker_{dir_.File("data"),
                          [this](broker::BrokerOptions& options) { options.metrics = registry_; }};
};

TEST_F(BrokerMetricsTest, PutsAndReadsAreCountedPerShardAndDeletedStreamsDisappear) {
  ASSERT_TRUE(CreateStream(broker_.stub(), "counted", 2).ok());
  std::vector<std::pair<std::string, std::string>> records;
  size_t bytes = 0;
  for (int i = 0; i < 40; ++i) {
    records.push_back({absl::StrCat("k", i), std::string(static_cast<size_t>(i), 'x')});
    bytes += records.back().first.size() + records.back().second.size();
  }
  grpc::Status status;
  v1::PutRecordsResponse response = PutRecords(broker_.stub(), "counted", records, &status);
  ASSERT_TRUE(status.ok());
  std::map<std::string, int> per_shard;
  for (const auto& entry : response.records()) ++per_shard[entry.shard_id()];
  ASSERT_EQ(per_shard.size(), 2u) << "40 keys should reach both shards";

  broker_.broker().UpdateMetrics();
  Scrape scrape = Collect(*registry_);
  EXPECT_EQ(scrape.Sum("runnel_broker_incoming_records_total", {{"stream", "counted"}}), 40);
  EXPECT_EQ(scrape.Sum("runnel_broker_incoming_bytes_total", {{"stream", "counted"}}),
            static_cast<double>(bytes));
  for (const auto& [shard, count] : per_shard) {
    EXPECT_EQ(scrape.Sum("runnel_broker_incoming_records_total",
                         {{"stream", "counted"}, {"shard", shard}}),
              count);
    EXPECT_GT(scrape.Sum("runnel_broker_disk_bytes", {{"stream", "counted"}, {"shard", shard}}), 0);
  }
  EXPECT_EQ(scrape.Sum("runnel_broker_put_latency_seconds_count", {{"stream", "counted"}}), 1);

  const std::vector<v1::Record> read = ReadShard(broker_.stub(), "counted", "shardId-000000000000");
  scrape = Collect(*registry_);
  EXPECT_EQ(scrape.Sum("runnel_broker_outgoing_records_total",
                       {{"stream", "counted"}, {"shard", "shardId-000000000000"}}),
            static_cast<double>(read.size()));
  EXPECT_GE(scrape.Sum("runnel_broker_get_records_latency_seconds_count"), 1);

  v1::DeleteStreamRequest remove;
  remove.set_stream_name("counted");
  ASSERT_TRUE(broker_.broker().DeleteStream(remove).ok());
  scrape = Collect(*registry_);
  EXPECT_EQ(scrape.Count("runnel_broker_incoming_records_total", {{"stream", "counted"}}), 0)
      << scrape.text();
  EXPECT_EQ(scrape.Count("runnel_broker_put_latency_seconds_count", {{"stream", "counted"}}), 0);
}

TEST_F(BrokerMetricsTest, AStreamRecreatedWhileTheOldOneIsHeldKeepsItsSeries) {
  ASSERT_TRUE(CreateStream(broker_.stub(), "again", 1).ok());
  v1::SubscribeToShardRequest subscribe;
  subscribe.set_stream_name("again");
  subscribe.set_shard_id("shardId-000000000000");
  subscribe.mutable_starting_position()->set_type(v1::LATEST);
  auto subscription = broker_.broker().SubscribeToShard(subscribe);
  ASSERT_TRUE(subscription.ok());
  EXPECT_EQ(Collect(*registry_).Sum("runnel_broker_subscribers", {{"stream", "again"}}), 1);
  v1::DeleteStreamRequest remove;
  remove.set_stream_name("again");
  ASSERT_TRUE(broker_.broker().DeleteStream(remove).ok());
  // The subscription holds the old stream: its series stay while it lives.
  EXPECT_EQ(Collect(*registry_).Count("runnel_broker_subscribers", {{"stream", "again"}}), 1);
  ASSERT_TRUE(CreateStream(broker_.stub(), "again", 1).ok());
  subscription->reset();  // the old stream goes; the new one's series must stay, usable
  Scrape scrape = Collect(*registry_);
  EXPECT_EQ(scrape.Count("runnel_broker_incoming_records_total", {{"stream", "again"}}), 1);
  EXPECT_EQ(scrape.Sum("runnel_broker_subscribers", {{"stream", "again"}}), 0);
  grpc::Status status;
  PutRecords(broker_.stub(), "again", {{"k", "v"}}, &status);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(Collect(*registry_).Sum("runnel_broker_incoming_records_total", {{"stream", "again"}}),
            1);
}

TEST_F(BrokerMetricsTest, ThrottledPutsAreCountedByRecordAndRequest) {
  v1::CreateStreamRequest create;
  create.set_stream_name("limited");
  create.set_shard_count(1);
  create.set_enforce_throughput_limits(true);
  ASSERT_TRUE(broker_.broker().CreateStream(create).ok());
  std::vector<std::pair<std::string, std::string>> records;
  for (int i = 0; i < 500; ++i) records.push_back({absl::StrCat("k", i), "v"});
  int refused = 0, throttled_requests = 0;
  for (int call = 0; call < 4; ++call) {  // 2,000 records: past 1,000 records/s at once
    grpc::Status status;
    v1::PutRecordsResponse response = PutRecords(broker_.stub(), "limited", records, &status);
    ASSERT_TRUE(status.ok());
    refused += response.failed_record_count();
    throttled_requests += response.failed_record_count() > 0;
  }
  ASSERT_GT(refused, 0);
  const Scrape scrape = Collect(*registry_);
  EXPECT_EQ(scrape.Sum("runnel_broker_throttled_records_total", {{"stream", "limited"}}), refused);
  EXPECT_EQ(scrape.Sum("runnel_broker_throttled_requests_total",
                       {{"stream", "limited"}, {"operation", "PutRecords"}}),
            throttled_requests);
  EXPECT_EQ(scrape.Sum("runnel_broker_incoming_records_total", {{"stream", "limited"}}),
            2000 - refused);
}

}  // namespace
}  // namespace runnel::testing
