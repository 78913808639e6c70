// What subscribers may hold in a broker, over real gRPC on a loopback ephemeral port: one
// subscription per consumer and shard, the per-shard cap, and a subscriber that stops reading
// (it stops being fed at the buffer bound and is ended after the stall timeout). Each refusal
// and end is counted in the broker's metrics, read here from its registry.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kShard[] = "shardId-000000000000";

// An open SubscribeToShard call.
struct Subscriber {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<v1::SubscribeToShardEvent>> reader;

  // Reads one event: the subscription is live.
  bool ReadOne() {
    v1::SubscribeToShardEvent event;
    return reader->Read(&event);
  }
  grpc::Status Cancel() {
    context->TryCancel();
    v1::SubscribeToShardEvent event;
    while (reader->Read(&event)) {
    }
    return reader->Finish();
  }
};

class SubscriptionLimitsTest : public ::testing::Test {
 protected:
  void Start(std::function<void(broker::BrokerOptions&)> configure = nullptr) {
    broker_ = std::make_unique<InProcessBroker>(dir_.File("data"),
                                                [this, configure](broker::BrokerOptions& o) {
                                                  o.metrics = registry_;
                                                  o.default_fsync = v1::FSYNC_NEVER;
                                                  if (configure) configure(o);
                                                });
  }

  Subscriber Subscribe(const std::string& stream, const std::string& consumer,
                       const std::string& shard = kShard) {
    v1::SubscribeToShardRequest request;
    request.set_stream_name(stream);
    request.set_shard_id(shard);
    request.set_consumer_name(consumer);
    request.mutable_starting_position()->set_type(v1::TRIM_HORIZON);
    Subscriber subscriber;
    subscriber.context = std::make_unique<grpc::ClientContext>();
    subscriber.context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    subscriber.reader = broker_->stub().SubscribeToShard(subscriber.context.get(), request);
    return subscriber;
  }

  double Metric(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    auto scrape = Scrape::Parse(prometheus::TextSerializer().Serialize(registry_->Collect()));
    EXPECT_TRUE(scrape.ok()) << scrape.status();
    return scrape.ok() ? scrape->Sum(name, labels) : -1;
  }

  void Put(const std::string& stream, int records, size_t bytes_each) {
    const std::string data(bytes_each, 'x');
    for (int done = 0; done < records;) {
      std::vector<std::pair<std::string, std::string>> batch;
      while (done < records && batch.size() * bytes_each < (4u << 20)) {
        batch.emplace_back(absl::StrCat("k", done++), data);
      }
      grpc::Status status;
      PutRecords(broker_->stub(), stream, batch, &status);
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
  }

  TempDir dir_{"subscription-limits"};
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<InProcessBroker> broker_;
};

TEST_F(SubscriptionLimitsTest, AConsumerHasOneSubscriptionPerShardAtATime) {
  Start();
  ASSERT_TRUE(CreateStream(broker_->stub(), "s", 1).ok());
  Put("s", 1, 10);
  Subscriber first = Subscribe("s", "orders");
  ASSERT_TRUE(first.ReadOne());

  Subscriber second = Subscribe("s", "orders");
  EXPECT_FALSE(second.ReadOne());
  grpc::Status refused = second.reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(refused.error_message(), HasSubstr("ResourceInUseException"));
  EXPECT_EQ(Metric("runnel_broker_subscriptions_refused_total", {{"reason", "in_use"}}), 1);

  // Other consumers, and anonymous subscribers (no consumer name), are not in its way.
  Subscriber other = Subscribe("s", "audit");
  EXPECT_TRUE(other.ReadOne());
  Subscriber anonymous1 = Subscribe("s", "");
  Subscriber anonymous2 = Subscribe("s", "");
  EXPECT_TRUE(anonymous1.ReadOne());
  EXPECT_TRUE(anonymous2.ReadOne());

  // Once the first is cancelled (its client went away), the consumer subscribes again. The
  // broker hears of the cancel a moment after the client: retry until then.
  EXPECT_EQ(first.Cancel().error_code(), grpc::StatusCode::CANCELLED);
  int refusals = 1;
  Subscriber again;
  ASSERT_TRUE(WaitFor(
      [&] {
        again = Subscribe("s", "orders");
        if (again.ReadOne()) return true;
        ++refusals;
        EXPECT_EQ(again.reader->Finish().error_code(), grpc::StatusCode::ALREADY_EXISTS);
        return false;
      },
      absl::Seconds(5)));
  EXPECT_EQ(Metric("runnel_broker_subscriptions_refused_total", {{"reason", "in_use"}}), refusals);
  // The cancelled subscription gives its consumer's place up before it is torn down, so the
  // gauge may count it a moment longer.
  EXPECT_TRUE(WaitFor(
      [&] {
        return Metric("runnel_broker_subscribers", {{"stream", "s"}}) == 4;
      },
      absl::Seconds(5)))
      << Metric("runnel_broker_subscribers", {{"stream", "s"}});
}

TEST_F(SubscriptionLimitsTest, AShardCarriesAtMostTheSubscriptionsItsCapAllows) {
  Start([](broker::BrokerOptions& o) { o.max_subscriptions_per_shard = 3; });
  ASSERT_TRUE(CreateStream(broker_->stub(), "capped", 2).ok());
  Put("capped", 20, 10);
  std::vector<Subscriber> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(Subscribe("capped", absl::StrCat("c", i)));
    ASSERT_TRUE(open.back().ReadOne()) << i;
  }
  Subscriber fourth = Subscribe("capped", "c3");
  EXPECT_FALSE(fourth.ReadOne());
  grpc::Status refused = fourth.reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("LimitExceededException"));
  EXPECT_EQ(Metric("runnel_broker_subscriptions_refused_total", {{"reason", "shard_limit"}}), 1);
  // The cap is per shard.
  Subscriber elsewhere = Subscribe("capped", "c3", "shardId-000000000001");
  EXPECT_TRUE(elsewhere.ReadOne());
  // A place freed is taken again.
  open[0].Cancel();
  int refusals = 1;
  Subscriber again;
  ASSERT_TRUE(WaitFor(
      [&] {
        again = Subscribe("capped", "c3");
        if (again.ReadOne()) return true;
        ++refusals;
        EXPECT_EQ(again.reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
        return false;
      },
      absl::Seconds(5)));
  EXPECT_EQ(Metric("runnel_broker_subscriptions_refused_total", {{"reason", "shard_limit"}}),
            refusals);
}

TEST_F(SubscriptionLimitsTest, ASubscriberThatStopsReadingIsNoLongerFedAndIsEnded) {
  constexpr size_t kBuffer = 64 << 10;
  constexpr int kRecords = 1536;  // 24 MiB of 16 KiB records
  constexpr size_t kRecordBytes = 16 << 10;
  Start([](broker::BrokerOptions& o) {
    o.subscription_buffer_bytes = kBuffer;
    o.subscription_stall_timeout = absl::Seconds(1);
  });
  ASSERT_TRUE(CreateStream(broker_->stub(), "big", 1).ok());
  Put("big", kRecords, kRecordBytes);
  const double put_bytes = Metric("runnel_broker_incoming_bytes_total", {{"stream", "big"}});

  Subscriber stalled = Subscribe("big", "slow");
  ASSERT_TRUE(stalled.ReadOne());
  // It reads nothing more. While it is stalled, the broker holds at most one event for it.
  double queued_max = 0;
  const absl::Time start = absl::Now();
  ASSERT_TRUE(WaitFor(
      [&] {
        queued_max = std::max(
            queued_max, Metric("runnel_broker_subscription_queued_bytes", {{"stream", "big"}}));
        return Metric("runnel_broker_subscriptions_ended_total", {{"reason", "stalled"}}) == 1;
      },
      absl::Seconds(15)))
      << "the stalled subscription was not ended";
  EXPECT_GE(absl::Now() - start, absl::Seconds(1));
  EXPECT_LE(queued_max, kBuffer);
  // What it was fed stops far short of the shard: the transport's windows and one event.
  const double sent = Metric("runnel_broker_outgoing_bytes_total", {{"stream", "big"}});
  EXPECT_LT(sent, put_bytes / 2) << "sent " << sent << " of " << put_bytes;
  EXPECT_EQ(stalled.Cancel().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor(
      [&] {
        return Metric("runnel_broker_subscribers", {{"stream", "big"}}) == 0;
      },
      absl::Seconds(5)));
  EXPECT_EQ(Metric("runnel_broker_subscription_queued_bytes", {{"stream", "big"}}), 0);

  // Its consumer's place is free again, and a reading subscriber gets every record.
  Subscriber reading = Subscribe("big", "slow");
  int received = 0;
  v1::SubscribeToShardEvent event;
  while (received < kRecords && reading.reader->Read(&event)) {
    received += event.records_size();
    EXPECT_LE(static_cast<size_t>(event.records_size()) * kRecordBytes, kBuffer);
  }
  EXPECT_EQ(received, kRecords);
  reading.Cancel();
}

// GetRecords calls with a wait time are capped per shard: one more is refused at once as a
// throttle, another shard is not affected, and the place is free again once the waits end.
TEST_F(SubscriptionLimitsTest, LongPollsBeyondTheShardsCapAreThrottled) {
  constexpr int kCap = 3;
  Start([](broker::BrokerOptions& o) { o.max_waiting_reads_per_shard = kCap; });
  ASSERT_TRUE(CreateStream(broker_->stub(), "s", 2).ok());
  const std::string idle = ShardIterator(broker_->stub(), "s", kShard, v1::LATEST);
  auto long_poll = [&](const std::string& iterator, absl::Duration wait) {
    v1::GetRecordsRequest request;
    request.set_shard_iterator(iterator);
    request.mutable_wait_time()->set_seconds(absl::ToInt64Seconds(wait));
    request.mutable_wait_time()->set_nanos(
        static_cast<int>(absl::ToInt64Nanoseconds(wait % absl::Seconds(1))));
    v1::GetRecordsResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + wait + absl::Seconds(30)));
    return broker_->stub().GetRecords(&context, request, &response);
  };
  // One call more than the cap, all waiting for records that do not come: exactly one of them
  // is refused, at once, and the others keep waiting.
  std::vector<std::thread> waiting;
  std::vector<grpc::Status> answers(kCap + 1);
  std::vector<std::atomic<bool>> answered(kCap + 1);
  for (int i = 0; i <= kCap; ++i) {
    waiting.emplace_back([&, i] {
      answers[i] = long_poll(idle, absl::Seconds(20));
      answered[i] = true;
    });
  }
  auto refused = [&] {
    std::vector<int> out;
    for (int i = 0; i <= kCap; ++i) {
      if (answered[i] && answers[i].error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        out.push_back(i);
      }
    }
    return out;
  };
  const bool one_refused = WaitFor([&] { return !refused().empty(); }, absl::Seconds(15));
  EXPECT_TRUE(one_refused);
  if (one_refused) {
    const grpc::Status& refusal = answers[refused()[0]];
    EXPECT_THAT(refusal.error_message(), HasSubstr("ProvisionedThroughputExceededException"));
    EXPECT_THAT(refusal.error_message(), HasSubstr("--max-waiting-reads-per-shard"));
  }
  EXPECT_EQ(refused().size(), 1u);
  EXPECT_EQ(Metric("runnel_broker_throttled_requests_total", {{"stream", "s"}}), 1);
  // The other shard takes long polls as usual.
  const std::string other = ShardIterator(broker_->stub(), "s", "shardId-000000000001", v1::LATEST);
  EXPECT_TRUE(long_poll(other, absl::Milliseconds(100)).ok());
  // A record on the shard ends the waits; the shard takes long polls again.
  std::vector<std::pair<std::string, std::string>> records;
  for (int k = 0; k < 20; ++k) records.emplace_back(absl::StrCat("key-", k), "x");
  grpc::Status put;
  PutRecords(broker_->stub(), "s", records, &put);
  ASSERT_TRUE(put.ok()) << put.error_message();
  for (std::thread& thread : waiting) thread.join();
  int ok = 0;
  for (const grpc::Status& answer : answers) ok += answer.ok();
  EXPECT_EQ(ok, kCap);
  EXPECT_TRUE(long_poll(idle, absl::Milliseconds(100)).ok());
}

}  // namespace
}  // namespace runnel::testing
