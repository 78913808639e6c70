// A stream's identity includes its creation: a stream deleted and created again under its name is
// another stream, over real gRPC. Requests naming the old incarnation are NOT_FOUND, checkpoints
// and leases of the old one are never seen by the new one, and what a crash in the middle of a
// delete leaves in the checkpoint log is swept at the next start.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "broker/checkpoint_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kShard[] = "shardId-000000000000";

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  return context;
}

uint64_t Incarnation(v1::StreamBroker::Stub& stub, const std::string& stream) {
  v1::DescribeStreamSummaryRequest request;
  request.set_stream_name(stream);
  v1::DescribeStreamSummaryResponse response;
  grpc::Status status = stub.DescribeStreamSummary(Context().get(), request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.stream_description_summary().incarnation();
}

void DeleteStream(v1::StreamBroker::Stub& stub, const std::string& stream) {
  v1::DeleteStreamRequest request;
  request.set_stream_name(stream);
  v1::DeleteStreamResponse response;
  grpc::Status status = stub.DeleteStream(Context().get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
}

// Stores a checkpoint of `consumer` on the stream's first shard, with a lease held by `owner`
// for an hour.
v1::Checkpoint SetCheckpoint(v1::StreamBroker::Stub& stub, const std::string& stream,
                             const std::string& consumer, const std::string& sequence,
                             const std::string& owner) {
  v1::SetCheckpointRequest request;
  request.set_consumer_name(consumer);
  request.set_stream_name(stream);
  request.set_shard_id(kShard);
  request.set_sequence_number(sequence);
  request.set_lease_owner(owner);
  request.mutable_lease_duration()->set_seconds(3600);
  v1::SetCheckpointResponse response;
  grpc::Status status = stub.SetCheckpoint(Context().get(), request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.checkpoint();
}

grpc::Status GetCheckpoint(v1::StreamBroker::Stub& stub, const std::string& stream,
                           const std::string& consumer, v1::Checkpoint* out = nullptr) {
  v1::GetCheckpointRequest request;
  request.set_consumer_name(consumer);
  request.set_stream_name(stream);
  request.set_shard_id(kShard);
  v1::GetCheckpointResponse response;
  grpc::Status status = stub.GetCheckpoint(Context().get(), request, &response);
  if (out != nullptr) *out = response.checkpoint();
  return status;
}

grpc::Status AcquireLease(v1::StreamBroker::Stub& stub, const std::string& stream,
                          const std::string& consumer, const std::string& owner,
                          v1::Checkpoint* out = nullptr) {
  v1::AcquireLeaseRequest request;
  request.set_consumer_name(consumer);
  request.set_stream_name(stream);
  request.set_shard_id(kShard);
  request.set_owner(owner);
  v1::AcquireLeaseResponse response;
  grpc::Status status = stub.AcquireLease(Context().get(), request, &response);
  if (out != nullptr) *out = response.checkpoint();
  return status;
}

std::string Put(v1::StreamBroker::Stub& stub, const std::string& stream) {
  grpc::Status status;
  v1::PutRecordsResponse response = PutRecords(stub, stream, {{"k", "v"}}, &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.records_size() > 0 ? response.records(0).sequence_number() : "";
}

// Every request kind that takes an incarnation: what it answers when it names `incarnation`.
std::map<std::string, grpc::Status> CallEveryKind(v1::StreamBroker::Stub& stub,
                                                  const std::string& stream, uint64_t incarnation,
                                                  const std::string& sequence) {
  std::map<std::string, grpc::Status> out;
  {
    v1::GetShardIteratorRequest request;
    request.set_stream_name(stream);
    request.set_shard_id(kShard);
    request.set_shard_iterator_type(v1::TRIM_HORIZON);
    request.set_incarnation(incarnation);
    v1::GetShardIteratorResponse response;
    out["GetShardIterator"] = stub.GetShardIterator(Context().get(), request, &response);
  }
  {
    v1::SubscribeToShardRequest request;
    request.set_stream_name(stream);
    request.set_shard_id(kShard);
    request.mutable_starting_position()->set_type(v1::TRIM_HORIZON);
    request.set_incarnation(incarnation);
    auto context = Context();
    auto reader = stub.SubscribeToShard(context.get(), request);
    v1::SubscribeToShardEvent event;
    if (reader->Read(&event)) {
      context->TryCancel();
      while (reader->Read(&event)) {
      }
      (void)reader->Finish();
      out["SubscribeToShard"] = grpc::Status::OK;
    } else {
      out["SubscribeToShard"] = reader->Finish();
    }
  }
  {
    v1::ListShardsRequest request;
    request.set_stream_name(stream);
    request.set_incarnation(incarnation);
    v1::ListShardsResponse response;
    out["ListShards"] = stub.ListShards(Context().get(), request, &response);
  }
  {
    v1::SetCheckpointRequest request;
    request.set_consumer_name("m");
    request.set_stream_name(stream);
    request.set_shard_id(kShard);
    request.set_sequence_number(sequence);
    request.set_incarnation(incarnation);
    v1::SetCheckpointResponse response;
    out["SetCheckpoint"] = stub.SetCheckpoint(Context().get(), request, &response);
  }
  {
    v1::GetCheckpointRequest request;
    request.set_consumer_name("m");
    request.set_stream_name(stream);
    request.set_shard_id(kShard);
    request.set_incarnation(incarnation);
    v1::GetCheckpointResponse response;
    out["GetCheckpoint"] = stub.GetCheckpoint(Context().get(), request, &response);
  }
  {
    v1::ListCheckpointsRequest request;
    request.set_stream_name(stream);
    request.set_incarnation(incarnation);
    v1::ListCheckpointsResponse response;
    out["ListCheckpoints"] = stub.ListCheckpoints(Context().get(), request, &response);
  }
  {
    v1::AcquireLeaseRequest request;
    request.set_consumer_name("m");
    request.set_stream_name(stream);
    request.set_shard_id(kShard);
    request.set_owner("p");
    request.set_incarnation(incarnation);
    v1::AcquireLeaseResponse response;
    out["AcquireLease"] = stub.AcquireLease(Context().get(), request, &response);
    v1::RenewLeaseRequest renew;
    renew.set_consumer_name("m");
    renew.set_stream_name(stream);
    renew.set_shard_id(kShard);
    renew.set_owner("p");
    renew.set_lease_epoch(response.checkpoint().lease_epoch());
    renew.set_incarnation(incarnation);
    v1::RenewLeaseResponse renewed;
    out["RenewLease"] = stub.RenewLease(Context().get(), renew, &renewed);
    v1::ReleaseLeaseRequest release;
    release.set_consumer_name("m");
    release.set_stream_name(stream);
    release.set_shard_id(kShard);
    release.set_owner("p");
    release.set_lease_epoch(response.checkpoint().lease_epoch());
    release.set_incarnation(incarnation);
    v1::ReleaseLeaseResponse released;
    out["ReleaseLease"] = stub.ReleaseLease(Context().get(), release, &released);
  }
  {
    v1::ListLeasesRequest request;
    request.set_consumer_name("m");
    request.set_stream_name(stream);
    request.set_incarnation(incarnation);
    v1::ListLeasesResponse response;
    out["ListLeases"] = stub.ListLeases(Context().get(), request, &response);
  }
  {
    v1::HeartbeatRequest request;
    request.set_consumer_name("m");
    request.set_stream_name(stream);
    request.mutable_member()->set_poller_id("p");
    request.mutable_ttl()->set_seconds(5);
    request.set_incarnation(incarnation);
    v1::HeartbeatResponse response;
    out["Heartbeat"] = stub.Heartbeat(Context().get(), request, &response);
  }
  {
    v1::DeleteCheckpointsRequest request;
    request.set_consumer_name("m");
    request.set_stream_name(stream);
    request.set_incarnation(incarnation);
    v1::DeleteCheckpointsResponse response;
    out["DeleteCheckpoints"] = stub.DeleteCheckpoints(Context().get(), request, &response);
  }
  return out;
}

TEST(StreamIdentityTest, EveryRequestNamingADeletedIncarnationIsNotFound) {
  TempDir dir("identity-requests");
  InProcessBroker broker(dir.File("data"));
  auto& stub = broker.stub();
  ASSERT_TRUE(CreateStream(stub, "s", 1).ok());
  const uint64_t first = Incarnation(stub, "s");
  ASSERT_NE(first, 0u);
  const std::string old_sequence = Put(stub, "s");
  for (const auto& [kind, status] : CallEveryKind(stub, "s", first, old_sequence)) {
    EXPECT_TRUE(status.ok()) << kind << ": " << status.error_message();
  }

  DeleteStream(stub, "s");
  ASSERT_TRUE(CreateStream(stub, "s", 1).ok());
  const uint64_t second = Incarnation(stub, "s");
  ASSERT_NE(second, first);
  const std::string sequence = Put(stub, "s");
  for (const auto& [kind, status] : CallEveryKind(stub, "s", first, sequence)) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << kind;
    EXPECT_THAT(status.error_message(), HasSubstr("ResourceNotFoundException: Stream s")) << kind;
    EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat("incarnation ", first))) << kind;
  }
  // The current incarnation, and 0 (whatever stream has the name now), are answered.
  for (uint64_t incarnation : {second, uint64_t{0}}) {
    for (const auto& [kind, status] : CallEveryKind(stub, "s", incarnation, sequence)) {
      EXPECT_TRUE(status.ok()) << kind << " " << incarnation << ": " << status.error_message();
    }
  }

  // A ListShards page token of the deleted stream does not page through its successor.
  DeleteStream(stub, "s");
  ASSERT_TRUE(CreateStream(stub, "s", 3).ok());
  v1::ListShardsRequest first_page;
  first_page.set_stream_name("s");
  first_page.set_max_results(1);
  v1::ListShardsResponse page;
  ASSERT_TRUE(stub.ListShards(Context().get(), first_page, &page).ok());
  ASSERT_FALSE(page.next_token().empty());
  DeleteStream(stub, "s");
  ASSERT_TRUE(CreateStream(stub, "s", 3).ok());
  v1::ListShardsRequest next_page;
  next_page.set_next_token(page.next_token());
  EXPECT_EQ(stub.ListShards(Context().get(), next_page, &page).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST(StreamIdentityTest, CheckpointsAndLeasesCarryTheIncarnationTheyWereWrittenFor) {
  TempDir dir("identity-checkpoints");
  InProcessBroker broker(dir.File("data"));
  auto& stub = broker.stub();
  ASSERT_TRUE(CreateStream(stub, "s", 1).ok());
  const uint64_t incarnation = Incarnation(stub, "s");
  v1::Checkpoint stored = SetCheckpoint(stub, "s", "m", Put(stub, "s"), "poller-1");
  EXPECT_EQ(stored.incarnation(), incarnation);
  v1::Checkpoint got;
  ASSERT_TRUE(GetCheckpoint(stub, "s", "m", &got).ok());
  EXPECT_EQ(got.incarnation(), incarnation);
  v1::Checkpoint leased;
  ASSERT_TRUE(AcquireLease(stub, "s", "m2", "poller-2", &leased).ok());
  EXPECT_EQ(leased.incarnation(), incarnation);
}

// The folder of the stream named `name` under the data directory (found by its stream.meta, so
// the test does not depend on how folders are named).
fs::path StreamFolder(const std::string& data_dir, const std::string& name) {
  for (const auto& entry : fs::recursive_directory_iterator(data_dir)) {
    if (entry.path().filename() != "stream.meta") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    if (text.str().find(absl::StrCat("stream_name: \"", name, "\"")) != std::string::npos) {
      return entry.path().parent_path();
    }
  }
  return {};
}

// DeleteStream moves the stream's folder away before it deletes the checkpoints: a crash in
// between left checkpoints and leases of a stream that no longer exists, and a stream created
// again under the name found them (a mapping resumed at the old position, a live-looking lease of
// a dead stream blocked its shard). The start-up sweep deletes them, durably.
TEST(StreamIdentityTest, CheckpointsLeftByAnInterruptedDeleteAreSweptAtStart) {
  TempDir dir("identity-sweep");
  const std::string data = dir.File("data");
  auto broker = std::make_unique<InProcessBroker>(data);
  ASSERT_TRUE(CreateStream(broker->stub(), "s", 1).ok());
  ASSERT_TRUE(CreateStream(broker->stub(), "kept", 1).ok());
  std::string sequence;
  for (int i = 0; i < 5; ++i) sequence = Put(broker->stub(), "s");
  SetCheckpoint(broker->stub(), "s", "m", sequence, "poller-1");
  SetCheckpoint(broker->stub(), "s", "m-other", sequence, "poller-1");
  SetCheckpoint(broker->stub(), "kept", "m", Put(broker->stub(), "kept"), "poller-1");
  broker.reset();

  // The crash: the stream's folder is gone (moved to the trash, which the next start empties),
  // its checkpoints are not.
  const fs::path folder = StreamFolder(data, "s");
  ASSERT_FALSE(folder.empty());
  fs::remove_all(folder);

  broker = std::make_unique<InProcessBroker>(data);
  ASSERT_TRUE(CreateStream(broker->stub(), "s", 1).ok());
  EXPECT_EQ(GetCheckpoint(broker->stub(), "s", "m").error_code(), grpc::StatusCode::NOT_FOUND);
  v1::Checkpoint taken;
  grpc::Status acquired = AcquireLease(broker->stub(), "s", "m", "poller-2", &taken);
  EXPECT_TRUE(acquired.ok()) << acquired.error_message();
  EXPECT_EQ(taken.lease_epoch(), 1);
  EXPECT_EQ(taken.sequence_number(), "");
  // The live stream's checkpoint is kept.
  EXPECT_TRUE(GetCheckpoint(broker->stub(), "kept", "m").ok());
  broker.reset();

  // Durably: the log holds nothing of the deleted stream any more (m-other's was not replaced by
  // a write for the new stream, so only the sweep removes it).
  auto store = broker::CheckpointStore::Open(data + "/checkpoints");
  ASSERT_TRUE(store.ok()) << store.status();
  const std::vector<v1::Checkpoint> left = (*store)->List("", "s");
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].lease_owner(), "poller-2");  // the new stream's, nothing of the old one
  EXPECT_EQ((*store)->List("", "kept").size(), 1u);
}

// Checkpoints written before they carried an incarnation belong to the stream of their name at
// the first start (and are stamped with it); those of streams that are gone are deleted.
TEST(StreamIdentityTest, OlderCheckpointsAreStampedOrSweptAtTheFirstStart) {
  TempDir dir("identity-upgrade");
  const std::string data = dir.File("data");
  auto broker = std::make_unique<InProcessBroker>(data);
  ASSERT_TRUE(CreateStream(broker->stub(), "kept", 1).ok());
  const uint64_t kept = Incarnation(broker->stub(), "kept");
  const std::string sequence = Put(broker->stub(), "kept");
  broker.reset();
  {
    // As an older broker wrote them: no incarnation.
    auto store = broker::CheckpointStore::Open(data + "/checkpoints");
    ASSERT_TRUE(store.ok()) << store.status();
    for (const char* stream : {"kept", "gone"}) {
      v1::SetCheckpointRequest request;
      request.set_consumer_name("m");
      request.set_stream_name(stream);
      request.set_shard_id(kShard);
      request.set_sequence_number(sequence);
      ASSERT_TRUE((*store)->Set(request, absl::Now()).ok());
    }
  }
  broker = std::make_unique<InProcessBroker>(data);
  v1::Checkpoint got;
  ASSERT_TRUE(GetCheckpoint(broker->stub(), "kept", "m", &got).ok());
  EXPECT_EQ(got.sequence_number(), sequence);
  EXPECT_EQ(got.incarnation(), kept);
  ASSERT_TRUE(CreateStream(broker->stub(), "gone", 1).ok());
  EXPECT_EQ(GetCheckpoint(broker->stub(), "gone", "m").error_code(), grpc::StatusCode::NOT_FOUND);
  broker.reset();
  auto store = broker::CheckpointStore::Open(data + "/checkpoints");
  ASSERT_TRUE(store.ok()) << store.status();
  auto stamped = (*store)->Get("m", "kept", kShard);
  ASSERT_TRUE(stamped.ok());
  EXPECT_EQ(stamped->incarnation(), kept);
  EXPECT_TRUE((*store)->List("", "gone").empty());
}

}  // namespace
}  // namespace runnel::testing
