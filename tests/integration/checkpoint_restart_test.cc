// Checkpoints through restarts of a real `runnel broker` process: checkpoints are written over
// gRPC between several restarts (clean SIGTERM, and a SIGKILL), and after each restart every
// checkpoint ever acknowledged must read back as last written. One restart cannot show a store
// that overwrites its oldest entries on the first write after an open; three or more do.
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

constexpr int kShards = 3;

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return context;
}

void Stop(BrokerProcess& broker, int signal_number) {
  broker.process().Signal(signal_number);
  auto status = broker.process().Wait(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << status.status();
  if (signal_number == SIGTERM) {
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "no clean stop on SIGTERM";
  }
}

TEST(CheckpointRestartTest, EveryCheckpointSurvivesRepeatedBrokerRestarts) {
  TempDir dir("checkpoint-restarts");
  const std::string data_dir = dir.File("data");
  // (consumer, shard) -> sequence number last acknowledged.
  std::map<std::pair<std::string, std::string>, std::string> expected;
  constexpr int kRuns = 5;
  for (int run = 0; run < kRuns; ++run) {
    SCOPED_TRACE(absl::StrCat("run ", run));
    auto broker = BrokerProcess::Start(data_dir);
    ASSERT_TRUE(broker.ok()) << broker.status();
    auto stub = (*broker)->Stub();
    if (run == 0) ASSERT_TRUE(CreateStream(*stub, "orders", kShards).ok());

    // Every checkpoint of the earlier runs reads back as it was last written.
    v1::ListCheckpointsRequest list;
    list.set_stream_name("orders");
    v1::ListCheckpointsResponse listed;
    ASSERT_TRUE(stub->ListCheckpoints(Context().get(), list, &listed).ok());
    std::map<std::pair<std::string, std::string>, std::string> found;
    for (const auto& c : listed.checkpoints()) {
      found[{c.consumer_name(), c.shard_id()}] = c.sequence_number();
    }
    EXPECT_EQ(found, expected);
    for (const auto& [where, sequence] : expected) {
      v1::GetCheckpointRequest get;
      get.set_consumer_name(where.first);
      get.set_stream_name("orders");
      get.set_shard_id(where.second);
      v1::GetCheckpointResponse got;
      grpc::Status status = stub->GetCheckpoint(Context().get(), get, &got);
      ASSERT_TRUE(status.ok()) << where.first << "/" << where.second << ": "
                               << status.error_message();
      EXPECT_EQ(got.checkpoint().sequence_number(), sequence) << where.first << "/" << where.second;
    }

    // Records to checkpoint at, then checkpoints: new consumers each run, and moves of older ones.
    std::vector<std::pair<std::string, std::string>> records;
    for (int i = 0; i < 30; ++i) records.emplace_back(absl::StrCat("key-", run, "-", i), "x");
    grpc::Status put_status;
    auto put = PutRecords(*stub, "orders", records, &put_status);
    ASSERT_TRUE(put_status.ok()) << put_status.error_message();
    for (int i = 0; i < put.records_size(); ++i) {
      const auto& record = put.records(i);
      const std::string consumer = absl::StrCat("mapping-", (run + i) % (run + 2));
      v1::SetCheckpointRequest set;
      set.set_consumer_name(consumer);
      set.set_stream_name("orders");
      set.set_shard_id(record.shard_id());
      set.set_sequence_number(record.sequence_number());
      v1::SetCheckpointResponse set_response;
      grpc::Status status = stub->SetCheckpoint(Context().get(), set, &set_response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      expected[{consumer, record.shard_id()}] = record.sequence_number();
    }
    // Clean stops, and one SIGKILL: both must keep every acknowledged checkpoint.
    Stop(**broker, run == 2 ? SIGKILL : SIGTERM);
  }
  auto broker = BrokerProcess::Start(data_dir);
  ASSERT_TRUE(broker.ok()) << broker.status();
  v1::ListCheckpointsRequest list;
  list.set_stream_name("orders");
  v1::ListCheckpointsResponse listed;
  ASSERT_TRUE((*broker)->Stub()->ListCheckpoints(Context().get(), list, &listed).ok());
  std::map<std::pair<std::string, std::string>, std::string> found;
  for (const auto& c : listed.checkpoints()) {
    found[{c.consumer_name(), c.shard_id()}] = c.sequence_number();
  }
  EXPECT_EQ(found, expected);
  EXPECT_GE(expected.size(), 12u) << "the test should cover many consumers and shards";
  Stop(**broker, SIGTERM);
}

}  // namespace
}  // namespace runnel::testing
