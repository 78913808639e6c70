// The broker's Kinesis semantics, exercised over real gRPC on a loopback ephemeral port: stream
// control plane, routing, every limit, every iterator type, long polls, subscriptions,
// retention, throughput limits, checkpoints, restarts, concurrent producers.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "broker/sequence_number.h"
#include "common/hash_key.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::Seconds(30)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

class BrokerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { broker_ = std::make_unique<InProcessBroker>(dir_.File("data")); }

  v1::StreamBroker::Stub& stub() { return broker_->stub(); }

  absl::StatusOr<v1::GetRecordsResponse> GetRecords(const std::string& iterator, int limit = 0,
                                                    absl::Duration wait = absl::ZeroDuration()) {
    v1::GetRecordsRequest request;
    request.set_shard_iterator(iterator);
    request.set_limit(limit);
    request.mutable_wait_time()->set_seconds(absl::ToInt64Seconds(wait));
    request.mutable_wait_time()->set_nanos(
        static_cast<int>(absl::ToInt64Nanoseconds(wait % absl::Seconds(1))));
    v1::GetRecordsResponse response;
    grpc::Status status = stub().GetRecords(Context().get(), request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return response;
  }

  std::string Put(const std::string& stream, const std::string& key, const std::string& data) {
    grpc::Status status;
    auto response = PutRecords(stub(), stream, {{key, data}}, &status);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.records_size() ? response.records(0).sequence_number() : "";
  }

  TempDir dir_{"service"};
  std::unique_ptr<InProcessBroker> broker_;
};

TEST_F(BrokerServiceTest, CreateDescribeListDelete) {
  ASSERT_TRUE(CreateStream(stub(), "orders", 3).ok());
  grpc::Status again = CreateStream(stub(), "orders", 3);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(again.error_message(), HasSubstr("ResourceInUseException"));

  v1::DescribeStreamSummaryRequest describe;
  describe.set_stream_name("orders");
  v1::DescribeStreamSummaryResponse summary;
  ASSERT_TRUE(stub().DescribeStreamSummary(Context().get(), describe, &summary).ok());
  EXPECT_EQ(summary.stream_description_summary().open_shard_count(), 3);
  EXPECT_EQ(summary.stream_description_summary().retention_period_hours(), 24);
  EXPECT_EQ(summary.stream_description_summary().stream_arn(),
            "arn:aws:kinesis:us-east-1:000000000000:stream/orders");

  v1::ListShardsRequest list_shards;
  list_shards.set_stream_name("orders");
  v1::ListShardsResponse shards;
  ASSERT_TRUE(stub().ListShards(Context().get(), list_shards, &shards).ok());
  ASSERT_EQ(shards.shards_size(), 3);
  EXPECT_EQ(shards.shards(0).shard_id(), "shardId-000000000000");
  EXPECT_EQ(shards.shards(0).hash_key_range().starting_hash_key(), "0");
  EXPECT_EQ(shards.shards(2).hash_key_range().ending_hash_key(),
            "340282366920938463463374607431768211455");

  ASSERT_TRUE(CreateStream(stub(), "another", 1).ok());
  v1::ListStreamsResponse streams;
  ASSERT_TRUE(stub().ListStreams(Context().get(), v1::ListStreamsRequest(), &streams).ok());
  EXPECT_THAT(streams.stream_names(), ::testing::ElementsAre("another", "orders"));

  v1::DeleteStreamRequest remove;
  remove.set_stream_name("orders");
  v1::DeleteStreamResponse removed;
  ASSERT_TRUE(stub().DeleteStream(Context().get(), remove, &removed).ok());
  grpc::Status gone = stub().DescribeStreamSummary(Context().get(), describe, &summary);
  EXPECT_EQ(gone.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(gone.error_message(), HasSubstr("ResourceNotFoundException"));
}

TEST_F(BrokerServiceTest, ListShardsPagesWithNextToken) {
  ASSERT_TRUE(CreateStream(stub(), "wide", 5).ok());
  v1::ListShardsRequest request;
  request.set_stream_name("wide");
  request.set_max_results(2);
  std::vector<std::string> seen;
  for (int page = 0; page < 10; ++page) {
    v1::ListShardsResponse response;
    ASSERT_TRUE(stub().ListShards(Context().get(), request, &response).ok());
    for (const auto& shard : response.shards()) seen.push_back(shard.shard_id());
    if (response.next_token().empty()) break;
    request = v1::ListShardsRequest();
    request.set_next_token(response.next_token());
    request.set_max_results(2);
  }
  EXPECT_THAT(seen, ::testing::ElementsAre("shardId-000000000000", "shardId-000000000001",
                                           "shardId-000000000002", "shardId-000000000003",
                                           "shardId-000000000004"));
}

TEST_F(BrokerServiceTest, InvalidStreamSettingsAreRefusedWithTheFieldNamed) {
  struct Case {
    std::string name;
    int shards;
    int retention;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {"", 1, 0, "streamName"},
           {std::string(129, 'a'), 1, 0, "less than or equal to 128"},
           {"has space", 1, 0, "[a-zA-Z0-9_.-]+"},
           {"ok", 0, 0, "shardCount"},
           {"ok", 1, 23, "between 24 and 8760"},
           {"ok", 1, 8761, "between 24 and 8760"},
       }) {
    v1::CreateStreamRequest request;
    request.set_stream_name(c.name);
    request.set_shard_count(c.shards);
    request.set_retention_period_hours(c.retention);
    v1::CreateStreamResponse response;
    grpc::Status status = stub().CreateStream(Context().get(), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_THAT(status.error_message(), HasSubstr(c.expected));
  }
}

TEST_F(BrokerServiceTest, RecordsRouteByMd5OrExplicitHashKey) {
  ASSERT_TRUE(CreateStream(stub(), "routed", 4).ok());
  std::vector<HashKeyRangeValue> ranges = SplitHashKeySpace(4);
  for (int i = 0; i < 200; ++i) {
    const std::string key = absl::StrCat("key-", i);
    grpc::Status status;
    auto response = PutRecords(stub(), "routed", {{key, "x"}}, &status);
    ASSERT_TRUE(status.ok());
    const absl::uint128 hash = PartitionKeyHash(key);
    int expected = 0;
    while (!ranges[static_cast<size_t>(expected)].Contains(hash)) ++expected;
    EXPECT_EQ(response.records(0).shard_id(), broker::ShardIdFromIndex(expected)) << key;
  }
  v1::PutRecordsRequest request;
  request.set_stream_name("routed");
  auto* low = request.add_records();
  low->set_partition_key("any");
  low->set_explicit_hash_key("0");
  auto* high = request.add_records();
  high->set_partition_key("any");
  high->set_explicit_hash_key("340282366920938463463374607431768211455");
  v1::PutRecordsResponse response;
  ASSERT_TRUE(stub().PutRecords(Context().get(), request, &response).ok());
  EXPECT_EQ(response.records(0).shard_id(), "shardId-000000000000");
  EXPECT_EQ(response.records(1).shard_id(), "shardId-000000000003");

  request.mutable_records(1)->set_explicit_hash_key("340282366920938463463374607431768211456");
  grpc::Status status = stub().PutRecords(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("records.2.member.explicitHashKey"));
}

TEST_F(BrokerServiceTest, EveryPutLimitIsEnforcedAndNamed) {
  ASSERT_TRUE(CreateStream(stub(), "limits", 1).ok());
  auto put = [&](const std::vector<std::pair<std::string, std::string>>& records) {
    grpc::Status status;
    PutRecords(stub(), "limits", records, &status);
    return status;
  };
  EXPECT_THAT(put({}).error_message(), HasSubstr("greater than or equal to 1"));
  std::vector<std::pair<std::string, std::string>> many(501, {"k", "v"});
  grpc::Status too_many = put(many);
  EXPECT_EQ(too_many.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_many.error_message(), HasSubstr("less than or equal to 500"));
  many.resize(500);
  EXPECT_TRUE(put(many).ok());

  EXPECT_THAT(put({{"", "v"}}).error_message(), HasSubstr("records.1.member.partitionKey"));
  EXPECT_THAT(put({{"k", "v"}, {std::string(257, 'k'), "v"}}).error_message(),
              HasSubstr("records.2.member.partitionKey"));
  // 256 characters of two bytes each: the limit counts characters.
  std::string wide;
  for (int i = 0; i < 256; ++i) wide += "\xc3\xa9";
  EXPECT_TRUE(put({{wide, "v"}}).ok());

  const std::string key = "key";
  EXPECT_TRUE(put({{key, std::string((1 << 20) - key.size(), 'd')}}).ok());
  grpc::Status too_big = put({{key, std::string((1 << 20) - key.size() + 1, 'd')}});
  EXPECT_EQ(too_big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_big.error_message(), HasSubstr("1048576"));
  // Six records of 1 MiB - 3 bytes each pass one by one, but not together (> 5 MiB).
  std::vector<std::pair<std::string, std::string>> heavy(
      6, {key, std::string((1 << 20) - key.size(), 'd')});
  grpc::Status too_much = put(heavy);
  EXPECT_EQ(too_much.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_much.error_message(), HasSubstr("5 MB"));
  // An empty record is allowed, as in Kinesis.
  EXPECT_TRUE(put({{key, ""}}).ok());

  grpc::Status unknown;
  PutRecords(stub(), "nope", {{"k", "v"}}, &unknown);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("Stream nope under account"));
}

TEST_F(BrokerServiceTest, PutRecordAnswersForOneRecord) {
  ASSERT_TRUE(CreateStream(stub(), "single", 2).ok());
  v1::PutRecordRequest request;
  request.set_stream_name("single");
  request.set_partition_key("user-1");
  request.set_data("hello");
  v1::PutRecordResponse response;
  ASSERT_TRUE(stub().PutRecord(Context().get(), request, &response).ok());
  EXPECT_EQ(response.sequence_number().size(), broker::kSequenceNumberLength);
  request.set_partition_key("");
  grpc::Status status = stub().PutRecord(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("'partitionKey'"));
}

TEST_F(BrokerServiceTest, EveryIteratorTypeStartsWhereKinesisSays) {
  ASSERT_TRUE(CreateStream(stub(), "it", 1).ok());
  const std::string shard = "shardId-000000000000";
  std::vector<std::string> sequence;
  for (int i = 0; i < 5; ++i) sequence.push_back(Put("it", "k", absl::StrCat("r", i)));
  for (size_t i = 1; i < sequence.size(); ++i) EXPECT_LT(sequence[i - 1], sequence[i]);

  auto first_data = [&](const std::string& iterator) -> std::string {
    auto response = GetRecords(iterator, 1);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() && response->records_size() ? response->records(0).data() : "<none>";
  };
  EXPECT_EQ(first_data(ShardIterator(stub(), "it", shard, v1::TRIM_HORIZON)), "r0");
  EXPECT_EQ(first_data(ShardIterator(stub(), "it", shard, v1::AT_SEQUENCE_NUMBER, sequence[2])),
            "r2");
  EXPECT_EQ(first_data(ShardIterator(stub(), "it", shard, v1::AFTER_SEQUENCE_NUMBER, sequence[2])),
            "r3");
  const std::string latest = ShardIterator(stub(), "it", shard, v1::LATEST);
  EXPECT_EQ(first_data(latest), "<none>");
  Put("it", "k", "r5");
  EXPECT_EQ(first_data(latest), "r5");

  // AT_TIMESTAMP: the first record at or after the time.
  broker_->AdvanceClock(absl::Seconds(10));
  const absl::Time mark = absl::Now() + absl::Seconds(10);
  broker_->AdvanceClock(absl::Seconds(1));
  Put("it", "k", "r6");
  v1::GetShardIteratorRequest at_time;
  at_time.set_stream_name("it");
  at_time.set_shard_id(shard);
  at_time.set_shard_iterator_type(v1::AT_TIMESTAMP);
  *at_time.mutable_timestamp() = TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(mark));
  v1::GetShardIteratorResponse iterator;
  ASSERT_TRUE(stub().GetShardIterator(Context().get(), at_time, &iterator).ok());
  EXPECT_EQ(first_data(iterator.shard_iterator()), "r6");
  // A timestamp before everything reads from the start; one after everything reads nothing yet.
  *at_time.mutable_timestamp() = TimeUtil::MillisecondsToTimestamp(1000);
  ASSERT_TRUE(stub().GetShardIterator(Context().get(), at_time, &iterator).ok());
  EXPECT_EQ(first_data(iterator.shard_iterator()), "r0");
}

TEST_F(BrokerServiceTest, IteratorMistakesGetKinesisErrors) {
  ASSERT_TRUE(CreateStream(stub(), "errs", 2).ok());
  const std::string sequence = Put("errs", "k", "v");
  grpc::Status status;
  auto try_iterator = [&](const std::string& shard, v1::ShardIteratorType type,
                          const std::string& seq) {
    v1::GetShardIteratorRequest request;
    request.set_stream_name("errs");
    request.set_shard_id(shard);
    request.set_shard_iterator_type(type);
    request.set_starting_sequence_number(seq);
    v1::GetShardIteratorResponse response;
    return stub().GetShardIterator(Context().get(), request, &response);
  };
  uint32_t shard_index = broker::ParseSequenceNumber(sequence, "s")->shard_index;
  const std::string own = broker::ShardIdFromIndex(shard_index);
  const std::string other = broker::ShardIdFromIndex(1 - shard_index);
  status = try_iterator(own, v1::AT_SEQUENCE_NUMBER, "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("Must either specify"));
  status = try_iterator(own, v1::TRIM_HORIZON, sequence);
  EXPECT_THAT(status.error_message(), HasSubstr("Must either specify"));
  status = try_iterator(other, v1::AT_SEQUENCE_NUMBER, sequence);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("It encodes " + own));
  status = try_iterator(own, v1::AT_SEQUENCE_NUMBER, "12345");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  status = try_iterator("shardId-000000000009", v1::LATEST, "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("Shard shardId-000000000009 in stream errs"));
  status = try_iterator(own, v1::SHARD_ITERATOR_TYPE_UNSPECIFIED, "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(GetRecords("garbage").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(GetRecords("garbage").status().message(), HasSubstr("Invalid ShardIterator"));
  const std::string iterator = ShardIterator(stub(), "errs", own, v1::TRIM_HORIZON);
  EXPECT_THAT(GetRecords(iterator, 10'001).status().message(), HasSubstr("'limit'"));
  broker_->AdvanceClock(absl::Seconds(301));
  auto expired = GetRecords(iterator);
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(expired.status().message(), HasSubstr("ExpiredIteratorException"));
}

TEST_F(BrokerServiceTest, GetRecordsHonoursLimitAndChainsIterators) {
  ASSERT_TRUE(CreateStream(stub(), "chain", 1).ok());
  std::vector<std::pair<std::string, std::string>> records;
  for (int i = 0; i < 250; ++i) records.push_back({"k", absl::StrCat(i)});
  grpc::Status status;
  PutRecords(stub(), "chain", records, &status);
  ASSERT_TRUE(status.ok());
  std::string iterator = ShardIterator(stub(), "chain", "shardId-000000000000", v1::TRIM_HORIZON);
  int next = 0;
  for (int call = 0; call < 10 && next < 250; ++call) {
    auto response = GetRecords(iterator, 100);
    ASSERT_TRUE(response.ok());
    EXPECT_LE(response->records_size(), 100);
    for (const auto& record : response->records()) EXPECT_EQ(record.data(), absl::StrCat(next++));
    iterator = response->next_shard_iterator();
  }
  EXPECT_EQ(next, 250);
  auto tail = GetRecords(iterator);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->records_size(), 0);
  EXPECT_EQ(tail->millis_behind_latest(), 0);
  EXPECT_FALSE(tail->next_shard_iterator().empty());
}

TEST_F(BrokerServiceTest, LongPollAnswersAsSoonAsARecordArrives) {
  ASSERT_TRUE(CreateStream(stub(), "poll", 1).ok());
  const std::string iterator = ShardIterator(stub(), "poll", "shardId-000000000000", v1::LATEST);
  // Nothing arrives: answered empty once the wait is over, not before.
  absl::Time start = absl::Now();
  auto empty = GetRecords(iterator, 0, absl::Milliseconds(300));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->records_size(), 0);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290));

  std::atomic<bool> put_done{false};
  std::thread producer([&] {
    // Wait until the poll has been issued for a while, then put.
    absl::SleepFor(absl::Milliseconds(100));
    Put("poll", "k", "wake");
    put_done = true;
  });
  start = absl::Now();
  auto woken = GetRecords(iterator, 0, absl::Seconds(10));
  const absl::Duration took = absl::Now() - start;
  producer.join();
  ASSERT_TRUE(woken.ok());
  ASSERT_EQ(woken->records_size(), 1);
  EXPECT_EQ(woken->records(0).data(), "wake");
  EXPECT_LT(took, absl::Seconds(5)) << "the long poll waited for its deadline";
}

TEST_F(BrokerServiceTest, SubscribeToShardPushesRecordsInOrder) {
  ASSERT_TRUE(CreateStream(stub(), "sub", 1).ok());
  Put("sub", "k", "before");
  v1::SubscribeToShardRequest request;
  request.set_stream_name("sub");
  request.set_shard_id("shardId-000000000000");
  request.mutable_starting_position()->set_type(v1::TRIM_HORIZON);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto reader = stub().SubscribeToShard(&context, request);
  std::vector<std::string> received;
  std::string continuation;
  std::thread producer([&] {
    for (int i = 0; i < 20; ++i) Put("sub", "k", absl::StrCat("after-", i));
  });
  v1::SubscribeToShardEvent event;
  while (received.size() < 21 && reader->Read(&event)) {
    for (const auto& record : event.records()) received.push_back(record.data());
    EXPECT_GE(event.continuation_sequence_number(), continuation);
    continuation = event.continuation_sequence_number();
  }
  producer.join();
  ASSERT_EQ(received.size(), 21u);
  EXPECT_EQ(received[0], "before");
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(received[static_cast<size_t>(i + 1)], absl::StrCat("after-", i));
  // Resuming after the continuation number yields nothing older.
  context.TryCancel();
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(
      ShardIterator(stub(), "sub", "shardId-000000000000", v1::AFTER_SEQUENCE_NUMBER, continuation)
          .empty(),
      false);
}

TEST_F(BrokerServiceTest, SubscribeToUnknownShardFails) {
  ASSERT_TRUE(CreateStream(stub(), "sub2", 1).ok());
  v1::SubscribeToShardRequest request;
  request.set_stream_name("sub2");
  request.set_shard_id("shardId-000000000005");
  request.mutable_starting_position()->set_type(v1::LATEST);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto reader = stub().SubscribeToShard(&context, request);
  v1::SubscribeToShardEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(BrokerServiceTest, RetentionHidesAndDeletesExpiredRecords) {
  broker_.reset();
  broker_ = std::make_unique<InProcessBroker>(dir_.File("small"), [](broker::BrokerOptions& o) {
    o.segment_bytes = 4096;  // many small segments, so whole ones can be deleted
  });
  ASSERT_TRUE(CreateStream(stub(), "old", 1).ok());
  std::vector<std::pair<std::string, std::string>> batch(50, {"k", std::string(200, 'o')});
  grpc::Status status;
  for (int i = 0; i < 4; ++i) PutRecords(stub(), "old", batch, &status);
  broker_->AdvanceClock(absl::Hours(25));
  Put("old", "k", "fresh");
  EXPECT_EQ(ReadShard(stub(), "old", "shardId-000000000000").size(), 1u);
  const auto segments = [&] {
    int count = 0;
    for (const auto& entry : std::filesystem::directory_iterator(
             dir_.File("small") + "/streams/old/shardId-000000000000")) {
      count += entry.path().extension() == ".log";
    }
    return count;
  };
  const int before = segments();
  broker_->broker().EnforceRetention();
  EXPECT_LT(segments(), before);
  EXPECT_GE(segments(), 1);
  auto remaining = ReadShard(stub(), "old", "shardId-000000000000");
  ASSERT_EQ(remaining.size(), 1u);
  EXPECT_EQ(remaining[0].data(), "fresh");

  v1::IncreaseStreamRetentionPeriodRequest longer;
  longer.set_stream_name("old");
  longer.set_retention_period_hours(12);
  v1::IncreaseStreamRetentionPeriodResponse longer_response;
  EXPECT_EQ(
      stub().IncreaseStreamRetentionPeriod(Context().get(), longer, &longer_response).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  longer.set_retention_period_hours(48);
  EXPECT_TRUE(stub().IncreaseStreamRetentionPeriod(Context().get(), longer, &longer_response).ok());
}

TEST_F(BrokerServiceTest, ThroughputLimitsThrottlePerRecordAndPerRead) {
  v1::CreateStreamRequest create;
  create.set_stream_name("limited");
  create.set_shard_count(1);
  create.set_enforce_throughput_limits(true);
  v1::CreateStreamResponse created;
  ASSERT_TRUE(stub().CreateStream(Context().get(), create, &created).ok());
  std::vector<std::pair<std::string, std::string>> batch(500, {"k", "v"});
  int throttled = 0, accepted = 0;
  grpc::Status status;
  for (int i = 0; i < 3; ++i) {
    auto response = PutRecords(stub(), "limited", batch, &status);
    ASSERT_TRUE(status.ok());
    throttled += response.failed_record_count();
    for (const auto& record : response.records()) {
      if (record.error_code().empty()) {
        ++accepted;
      } else {
        EXPECT_EQ(record.error_code(), "ProvisionedThroughputExceededException");
        EXPECT_THAT(record.error_message(), HasSubstr("Rate exceeded for shard"));
      }
    }
  }
  EXPECT_GT(throttled, 0);
  EXPECT_GE(accepted, 1000);
  EXPECT_LT(accepted, 1500);
  // Five reads a second: the sixth in the same instant is throttled.
  const std::string iterator = ShardIterator(stub(), "limited", "shardId-000000000000", v1::LATEST);
  int read_throttled = 0;
  for (int i = 0; i < 8; ++i) {
    auto response = GetRecords(iterator, 1);
    if (!response.ok()) {
      EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
      ++read_throttled;
    }
  }
  EXPECT_GE(read_throttled, 2);
}

TEST_F(BrokerServiceTest, CheckpointsAndLeasesAreDurable) {
  ASSERT_TRUE(CreateStream(stub(), "cp", 2).ok());
  const std::string sequence = Put("cp", "k", "v");
  const std::string shard =
      broker::ShardIdFromIndex(broker::ParseSequenceNumber(sequence, "s")->shard_index);
  v1::SetCheckpointRequest set;
  set.set_consumer_name("mapping-a");
  set.set_stream_name("cp");
  set.set_shard_id(shard);
  set.set_sequence_number(sequence);
  set.set_lease_owner("poller-1");
  set.mutable_lease_duration()->set_seconds(30);
  v1::SetCheckpointResponse set_response;
  ASSERT_TRUE(stub().SetCheckpoint(Context().get(), set, &set_response).ok());

  // Another owner cannot write while the lease holds; it can once it has expired.
  set.set_lease_owner("poller-2");
  grpc::Status held = stub().SetCheckpoint(Context().get(), set, &set_response);
  EXPECT_EQ(held.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(held.error_message(), HasSubstr("poller-1"));
  broker_->AdvanceClock(absl::Seconds(31));
  ASSERT_TRUE(stub().SetCheckpoint(Context().get(), set, &set_response).ok());
  EXPECT_EQ(set_response.checkpoint().lease_owner(), "poller-2");

  // A sequence number of another shard, or from the future, is refused.
  v1::SetCheckpointRequest bad = set;
  bad.set_shard_id(shard == "shardId-000000000000" ? "shardId-000000000001"
                                                   : "shardId-000000000000");
  EXPECT_EQ(stub().SetCheckpoint(Context().get(), bad, &set_response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  broker_->Restart();
  v1::GetCheckpointRequest get;
  get.set_consumer_name("mapping-a");
  get.set_stream_name("cp");
  get.set_shard_id(shard);
  v1::GetCheckpointResponse got;
  ASSERT_TRUE(stub().GetCheckpoint(Context().get(), get, &got).ok());
  EXPECT_EQ(got.checkpoint().sequence_number(), sequence);
  EXPECT_EQ(got.checkpoint().lease_owner(), "poller-2");

  v1::ListCheckpointsRequest list;
  list.set_stream_name("cp");
  v1::ListCheckpointsResponse listed;
  ASSERT_TRUE(stub().ListCheckpoints(Context().get(), list, &listed).ok());
  EXPECT_EQ(listed.checkpoints_size(), 1);

  // Deleting the stream deletes its checkpoints; a new stream of that name starts clean.
  v1::DeleteStreamRequest remove;
  remove.set_stream_name("cp");
  v1::DeleteStreamResponse removed;
  ASSERT_TRUE(stub().DeleteStream(Context().get(), remove, &removed).ok());
  ASSERT_TRUE(CreateStream(stub(), "cp", 2).ok());
  EXPECT_EQ(stub().GetCheckpoint(Context().get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(BrokerServiceTest, IteratorOfADeletedStreamDoesNotReadItsSuccessor) {
  ASSERT_TRUE(CreateStream(stub(), "reborn", 1).ok());
  Put("reborn", "k", "old");
  const std::string iterator =
      ShardIterator(stub(), "reborn", "shardId-000000000000", v1::TRIM_HORIZON);
  v1::DeleteStreamRequest remove;
  remove.set_stream_name("reborn");
  v1::DeleteStreamResponse removed;
  ASSERT_TRUE(stub().DeleteStream(Context().get(), remove, &removed).ok());
  ASSERT_TRUE(CreateStream(stub(), "reborn", 1).ok());
  Put("reborn", "k", "new");
  EXPECT_EQ(GetRecords(iterator).status().code(), absl::StatusCode::kNotFound);
  auto records = ReadShard(stub(), "reborn", "shardId-000000000000");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].data(), "new");
}

TEST_F(BrokerServiceTest, RecordsAndSequenceNumbersSurviveARestart) {
  ASSERT_TRUE(CreateStream(stub(), "durable", 2).ok());
  std::map<std::string, std::string> written;  // sequence number -> data
  for (int i = 0; i < 100; ++i) {
    const std::string data = absl::StrCat("d", i);
    written[Put("durable", absl::StrCat("k", i % 7), data)] = data;
  }
  broker_->Restart();
  for (int i = 100; i < 120; ++i) {
    const std::string data = absl::StrCat("d", i);
    written[Put("durable", absl::StrCat("k", i % 7), data)] = data;
  }
  std::map<std::string, std::string> read;
  for (const char* shard : {"shardId-000000000000", "shardId-000000000001"}) {
    for (const auto& record : ReadShard(stub(), "durable", shard)) {
      read[record.sequence_number()] = record.data();
    }
  }
  EXPECT_EQ(read, written);
}

TEST_F(BrokerServiceTest, ConcurrentProducersKeepPerKeyOrder) {
  ASSERT_TRUE(CreateStream(stub(), "busy", 4).ok());
  constexpr int kProducers = 8, kBatches = 20, kBatchSize = 50, kKeysPerProducer = 10;
  std::vector<std::thread> producers;
  std::atomic<int> failures{0};
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      auto stub = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(broker_->address()));
      int counter = 0;
      for (int b = 0; b < kBatches; ++b) {
        std::vector<std::pair<std::string, std::string>> batch;
        for (int i = 0; i < kBatchSize; ++i, ++counter) {
          batch.push_back(
              {absl::StrCat("p", p, "-k", counter % kKeysPerProducer), absl::StrCat(counter)});
        }
        grpc::Status status;
        auto response = PutRecords(*stub, "busy", batch, &status);
        if (!status.ok() || response.failed_record_count() != 0) ++failures;
      }
    });
  }
  for (auto& producer : producers) producer.join();
  ASSERT_EQ(failures.load(), 0);
  std::map<std::string, std::vector<int>> by_key;
  size_t total = 0;
  for (int s = 0; s < 4; ++s) {
    for (const auto& record : ReadShard(stub(), "busy", broker::ShardIdFromIndex(s))) {
      by_key[record.partition_key()].push_back(std::stoi(record.data()));
      ++total;
    }
  }
  EXPECT_EQ(total, static_cast<size_t>(kProducers * kBatches * kBatchSize));
  EXPECT_EQ(by_key.size(), static_cast<size_t>(kProducers * kKeysPerProducer));
  for (const auto& [key, counters] : by_key) {
    EXPECT_EQ(counters.size(), static_cast<size_t>(kBatches * kBatchSize / kKeysPerProducer));
    EXPECT_TRUE(std::is_sorted(counters.begin(), counters.end())) << key;
    EXPECT_EQ(std::set<int>(counters.begin(), counters.end()).size(), counters.size()) << key;
  }
}

TEST(BrokerDataDirectoryTest, ASecondBrokerCannotOpenTheSameDirectory) {
  TempDir dir("lock");
  auto first = broker::Broker::Open({.data_dir = dir.File("data")});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = broker::Broker::Open({.data_dir = dir.File("data")});
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
}

TEST(BrokerDataDirectoryTest, UnknownFormatVersionIsRefused) {
  TempDir dir("version");
  { ASSERT_TRUE(broker::Broker::Open({.data_dir = dir.File("data")}).ok()); }
  std::ofstream(dir.File("data/MANIFEST")) << "format_version: 99\n";
  auto reopened = broker::Broker::Open({.data_dir = dir.File("data")});
  ASSERT_FALSE(reopened.ok());
  EXPECT_THAT(reopened.status().message(), HasSubstr("format version 99"));
}

TEST(BrokerDataDirectoryTest, AFolderRunnelDidNotCreateIsRefused) {
  TempDir dir("foreign");
  std::ofstream(dir.File("precious.txt")) << "not yours";
  auto opened = broker::Broker::Open({.data_dir = dir.path()});
  ASSERT_FALSE(opened.ok());
  EXPECT_THAT(opened.status().message(), HasSubstr("has no MANIFEST"));
}

}  // namespace
}  // namespace runnel::testing
