// The checkpoint store keeps checkpoints and leases per stream incarnation: a record written for
// one stream is never returned for another of the same name, older records without an
// incarnation are stamped, and Reconcile deletes (durably) what belongs to no live stream.
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "broker/checkpoint_store.h"
#include "gtest/gtest.h"

namespace runnel::broker {
namespace {

namespace fs = std::filesystem;

class CheckpointIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("checkpoint-identity-", info->name(), "-", ::getpid());
    fs::remove_all(dir_);
    store_ = Open();
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<CheckpointStore> Open() {
    auto store = CheckpointStore::Open(dir_.string());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  // Stores `sequence` for consumer/orders/shard-0 of `stream`, written for `incarnation`.
  void Set(const std::string& consumer, const std::string& stream, uint64_t incarnation,
           const std::string& sequence, const std::string& lease_owner = "") {
    v1::SetCheckpointRequest request;
    request.set_consumer_name(consumer);
    request.set_stream_name(stream);
    request.set_shard_id("shardId-000000000000");
    request.set_sequence_number(sequence);
    request.set_incarnation(incarnation);
    if (!lease_owner.empty()) {
      request.set_lease_owner(lease_owner);
      request.mutable_lease_duration()->set_seconds(3600);
    }
    ASSERT_TRUE(store_->Set(request, now_).ok());
  }

  absl::StatusOr<v1::Checkpoint> Get(const std::string& consumer, const std::string& stream,
                                     uint64_t incarnation) {
    return store_->Get(consumer, stream, "shardId-000000000000", incarnation);
  }

  fs::path dir_;
  std::unique_ptr<CheckpointStore> store_;
  const absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
};

TEST_F(CheckpointIdentityTest, ARecordOfAnotherIncarnationIsAbsentAndReplacedByTheNextWrite) {
  Set("m", "orders", 1, "5", "poller-1");
  ASSERT_TRUE(Get("m", "orders", 1).ok());
  EXPECT_EQ(Get("m", "orders", 1)->incarnation(), 1u);

  // The stream of incarnation 2 has no checkpoint and no lease yet: poller-1's unexpired lease
  // belonged to incarnation 1.
  EXPECT_TRUE(absl::IsNotFound(Get("m", "orders", 2).status()));
  EXPECT_TRUE(store_->List("m", "orders", 2).empty());
  auto taken = store_->AcquireLease("m", "orders", "shardId-000000000000", "poller-2",
                                    absl::Seconds(10), now_, 2);
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->lease_epoch(), 1);
  EXPECT_EQ(taken->sequence_number(), "");
  EXPECT_EQ(taken->incarnation(), 2u);
  // poller-1 cannot renew its lease on the new stream either.
  EXPECT_FALSE(store_
                   ->RenewLease("m", "orders", "shardId-000000000000", "poller-1", 1,
                                absl::Seconds(10), now_, 2)
                   .ok());

  // Replaced for good, also after a restart: incarnation 1's record is gone.
  store_ = Open();
  EXPECT_TRUE(absl::IsNotFound(Get("m", "orders", 1).status()));
  ASSERT_TRUE(Get("m", "orders", 2).ok());
  EXPECT_EQ(Get("m", "orders", 2)->lease_owner(), "poller-2");
}

TEST_F(CheckpointIdentityTest, ARecordWithoutAnIncarnationBelongsToTheCurrentStreamOnce) {
  Set("m", "orders", 0, "5");  // as a broker wrote it before checkpoints carried incarnations
  ASSERT_TRUE(Get("m", "orders", 7).ok());
  auto result = store_->Reconcile({{"orders", 7}});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->stamped, 1);
  EXPECT_EQ(result->deleted, 0);
  // Stamped durably: from now on it is incarnation 7's only.
  store_ = Open();
  ASSERT_TRUE(Get("m", "orders", 7).ok());
  EXPECT_EQ(Get("m", "orders", 7)->incarnation(), 7u);
  EXPECT_EQ(Get("m", "orders", 7)->sequence_number(), "5");
  EXPECT_TRUE(absl::IsNotFound(Get("m", "orders", 8).status()));
}

TEST_F(CheckpointIdentityTest, ReconcileDeletesWhatBelongsToNoLiveStreamDurably) {
  Set("a", "orders", 1, "5", "poller-1");  // an earlier "orders"
  Set("b", "orders", 2, "6");              // the live one
  Set("c", "orders", 0, "7");              // older format, of the live one
  Set("a", "gone", 3, "8");                // a deleted stream
  Set("b", "gone", 0, "9");                // a deleted stream, older format
  auto result = store_->Reconcile({{"orders", 2}});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->deleted, 3);
  EXPECT_EQ(result->stamped, 1);
  store_ = Open();
  // Every incarnation matches 0: what is listed is all the store holds.
  std::vector<std::string> left;
  for (const auto& checkpoint : store_->List("", "orders", 0)) {
    left.push_back(absl::StrCat(checkpoint.consumer_name(), "@", checkpoint.incarnation()));
  }
  EXPECT_EQ(left, (std::vector<std::string>{"b@2", "c@2"}));
  EXPECT_TRUE(store_->List("", "gone", 0).empty());
  // Nothing left to do the second time.
  result = store_->Reconcile({{"orders", 2}});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->deleted + result->stamped, 0);
}

}  // namespace
}  // namespace runnel::broker
