// The checkpoint store: checkpoints and leases survive restarts (many of them, with writes
// between, which is where a store that writes at the wrong offset loses entries), compaction, and
// a torn last entry. Each test works in its own folder.
#include "broker/checkpoint_store.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace runnel::broker {
namespace {

namespace fs = std::filesystem;

class CheckpointStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("checkpoint-store-", info->name(), "-", ::getpid());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<CheckpointStore> Open(CheckpointStoreOptions options = {}) {
    auto store = CheckpointStore::Open(dir_.string(), options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  static v1::SetCheckpointRequest Request(const std::string& consumer, const std::string& shard,
                                          const std::string& sequence) {
    v1::SetCheckpointRequest request;
    request.set_consumer_name(consumer);
    request.set_stream_name("orders");
    request.set_shard_id(shard);
    request.set_sequence_number(sequence);
    return request;
  }

  // Every checkpoint the store holds for stream "orders": consumer/shard -> sequence number.
  static std::map<std::string, std::string> Contents(const CheckpointStore& store) {
    std::map<std::string, std::string> out;
    for (const auto& c : store.List("", "orders")) {
      out[absl::StrCat(c.consumer_name(), "/", c.shard_id())] = c.sequence_number();
    }
    return out;
  }

  fs::path dir_;
  const absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
};

TEST_F(CheckpointStoreTest, EveryCheckpointSurvivesRepeatedRestartsWithWritesBetween) {
  std::map<std::string, std::string> expected;
  for (int run = 0; run < 6; ++run) {
    SCOPED_TRACE(absl::StrCat("run ", run));
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_EQ(Contents(*store), expected);
    // New checkpoints, and updates of those of earlier runs (the first write after an open is the
    // one that used to land at offset 0).
    for (int i = 0; i < 5; ++i) {
      const std::string consumer = absl::StrCat("mapping-", (run + i) % 4);
      const std::string shard = absl::StrCat("shardId-00000000000", i);
      const std::string sequence = absl::StrCat(run * 100 + i);
      ASSERT_TRUE(store->Set(Request(consumer, shard, sequence), now_).ok());
      expected[absl::StrCat(consumer, "/", shard)] = sequence;
    }
    if (run % 2 == 1) {
      ASSERT_EQ(*store->Delete("mapping-0", "orders", "shardId-000000000000"),
                expected.erase("mapping-0/shardId-000000000000"));
    }
    ASSERT_EQ(Contents(*store), expected);
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store), expected);
}

TEST_F(CheckpointStoreTest, WritesAfterACompactionAndARestartAreKept) {
  CheckpointStoreOptions options;
  options.compaction_min_entries = 8;
  std::map<std::string, std::string> expected;
  for (int run = 0; run < 4; ++run) {
    SCOPED_TRACE(absl::StrCat("run ", run));
    auto store = Open(options);
    ASSERT_NE(store, nullptr);
    ASSERT_EQ(Contents(*store), expected);
    // 20 writes over 2 keys: compacts (8 entries, 4x the live ones) at least twice per run.
    for (int i = 0; i < 20; ++i) {
      const std::string shard = absl::StrCat("shardId-00000000000", i % 2);
      const std::string sequence = absl::StrCat(run * 100 + i);
      ASSERT_TRUE(store->Set(Request("m", shard, sequence), now_).ok());
      expected[absl::StrCat("m/", shard)] = sequence;
    }
    ASSERT_TRUE(
        store->Set(Request(absl::StrCat("run-", run), "shardId-000000000009", "1"), now_).ok());
    expected[absl::StrCat("run-", run, "/shardId-000000000009")] = "1";
  }
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store), expected);
}

TEST_F(CheckpointStoreTest, ATornLastEntryIsCutAndTheNextWriteFollowsTheWholeEntries) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Set(Request("m", "shardId-000000000000", "1"), now_).ok());
    ASSERT_TRUE(store->Set(Request("m", "shardId-000000000001", "2"), now_).ok());
  }
  const fs::path log = dir_ / "checkpoints.log";
  const auto whole_size = fs::file_size(log);
  {
    // Half an entry, as a crash in the middle of a write leaves it.
    std::ofstream out(log, std::ios::binary | std::ios::app);
    out << std::string("\x12\x34\x56\x78\x40\x00\x00\x00partial", 15);
  }
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(fs::file_size(log), whole_size);
    ASSERT_TRUE(store->Set(Request("m", "shardId-000000000002", "3"), now_).ok());
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store),
            (std::map<std::string, std::string>{{"m/shardId-000000000000", "1"},
                                                {"m/shardId-000000000001", "2"},
                                                {"m/shardId-000000000002", "3"}}));
}

TEST_F(CheckpointStoreTest, AFlippedByteInEntryTwoOfTwentyLosesOnlyThatEntry) {
  std::map<std::string, std::string> expected;
  std::vector<uintmax_t> ends;  // where each entry ends in the file
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 20; ++i) {
      const std::string shard = absl::StrCat("shardId-0000000000", i < 10 ? "0" : "", i);
      ASSERT_TRUE(store->Set(Request("m", shard, absl::StrCat(i)), now_).ok());
      expected[absl::StrCat("m/", shard)] = absl::StrCat(i);
      ends.push_back(fs::file_size(dir_ / "checkpoints.log"));
    }
  }
  const fs::path log = dir_ / "checkpoints.log";
  {
    // A byte in the middle of entry 2 (index 1): a bit rotted on disk.
    std::fstream file(log, std::ios::binary | std::ios::in | std::ios::out);
    const auto at = static_cast<std::streamoff>((ends[0] + ends[1]) / 2);
    file.seekg(at);
    char byte = static_cast<char>(file.get());
    file.seekp(at);
    file.put(static_cast<char>(byte ^ 0x04));
  }
  expected.erase("m/shardId-000000000001");
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(Contents(*store), expected) << "the 18 entries after the damaged one are kept";
    EXPECT_EQ(store->recovery().corrupt_regions, 1u);
    EXPECT_EQ(store->recovery().corrupt_bytes, ends[1] - ends[0]);
    EXPECT_EQ(store->recovery().torn_bytes, 0u);
    EXPECT_EQ(fs::file_size(log), ends[19]) << "damage before the end is not cut as a torn tail";
    // Still appendable: what is written after the damage replays next time.
    ASSERT_TRUE(store->Set(Request("m", "shardId-000000000001", "again"), now_).ok());
    ASSERT_TRUE(store->Set(Request("late", "shardId-000000000000", "21"), now_).ok());
    expected["m/shardId-000000000001"] = "again";
    expected["late/shardId-000000000000"] = "21";
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store), expected);
  EXPECT_EQ(store->recovery().corrupt_regions, 1u);
}

TEST_F(CheckpointStoreTest, GarbageInTheMiddleOfTheLogIsSkippedAndCompactedAway) {
  CheckpointStoreOptions options;
  options.compaction_min_entries = 16;
  {
    auto store = Open(options);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Set(Request("a", "shardId-000000000000", "1"), now_).ok());
  }
  const size_t first_entry_size = fs::file_size(dir_ / "checkpoints.log");
  {
    std::ofstream out(dir_ / "checkpoints.log", std::ios::binary | std::ios::app);
    out << std::string(5000, '\x5a');
  }
  {
    auto store = Open(options);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->recovery().torn_bytes, 5000u) << "garbage at the end is a torn tail";
    ASSERT_TRUE(store->Set(Request("b", "shardId-000000000000", "2"), now_).ok());
  }
  {
    // Garbage between the two entries now: skipped, both entries kept.
    std::string contents;
    {
      std::ifstream in(dir_ / "checkpoints.log", std::ios::binary);
      contents.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream out(dir_ / "checkpoints.log", std::ios::binary | std::ios::trunc);
    out << contents.substr(0, first_entry_size) << std::string(3000, '\0')
        << contents.substr(first_entry_size);
  }
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Contents(*store),
            (std::map<std::string, std::string>{{"a/shardId-000000000000", "1"},
                                                {"b/shardId-000000000000", "2"}}));
  EXPECT_EQ(store->recovery().corrupt_regions, 1u);
  EXPECT_EQ(store->recovery().corrupt_bytes, 3000u);
  // Compaction rewrites the log from memory: the damaged bytes are gone after it.
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(store->Set(Request("a", "shardId-000000000000", absl::StrCat(i)), now_).ok());
  }
  store.reset();
  store = Open(options);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->recovery().corrupt_regions, 0u);
  EXPECT_EQ(Contents(*store),
            (std::map<std::string, std::string>{{"a/shardId-000000000000", "39"},
                                                {"b/shardId-000000000000", "2"}}));
}

TEST_F(CheckpointStoreTest, ACheckpointTooBigForAnEntryIsRefusedAndNothingIsWritten) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  v1::SetCheckpointRequest request = Request("m", "shardId-000000000000", "1");
  request.set_lease_owner(std::string(70'000, 'o'));
  auto refused = store->Set(request, now_);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("65536"));
  EXPECT_TRUE(Contents(*store).empty());
  EXPECT_EQ(fs::file_size(dir_ / "checkpoints.log"), 0u);
}

TEST_F(CheckpointStoreTest, LeasesSurviveARestart) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    v1::SetCheckpointRequest lease = Request("m", "shardId-000000000000", "");
    lease.set_lease_owner("poller-1");
    lease.mutable_lease_duration()->set_seconds(60);
    ASSERT_TRUE(store->Set(lease, now_).ok());
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  v1::SetCheckpointRequest steal = Request("m", "shardId-000000000000", "5");
  steal.set_lease_owner("poller-2");
  EXPECT_EQ(store->Set(steal, now_ + absl::Seconds(59)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store->Set(steal, now_ + absl::Seconds(61)).ok());
}

// Leases with a fake clock: every change of owner moves the epoch, a stale epoch is refused
// with the lease as it stands, and a release frees the shard at once.
TEST_F(CheckpointStoreTest, LeaseEpochsGrowOnEveryChangeOfOwnerAndFenceStaleWriters) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string shard = "shardId-000000000001";
  const absl::Duration lease = absl::Seconds(10);
  absl::Time now = now_;
  auto a = store->AcquireLease("m", "orders", shard, "p1", lease, now);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->lease_owner(), "p1");
  EXPECT_EQ(a->lease_epoch(), 1);
  // Another owner waits while it is live, and is told who holds it.
  auto refused = store->AcquireLease("m", "orders", shard, "p2", lease, now + absl::Seconds(9));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("lease for shard " + shard +
                                   " of mapping m is held by p1 since epoch 1"));
  // The owner taking it again renews at its epoch.
  auto again = store->AcquireLease("m", "orders", shard, "p1", lease, now + absl::Seconds(5));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->lease_epoch(), 1);
  // A fenced checkpoint at the right epoch moves the position and leaves the lease be.
  v1::SetCheckpointRequest write = Request("m", shard, "100");
  write.set_lease_owner("p1");
  write.set_lease_epoch(1);
  auto written = store->Set(write, now + absl::Seconds(6));
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->lease_expiry(), again->lease_expiry());
  // Expired and not taken: still p1's (renewal and fenced writes go through).
  now += absl::Seconds(20);
  ASSERT_TRUE(store->RenewLease("m", "orders", shard, "p1", 1, lease, now).ok());
  // Taken by p2 after expiry: epoch 2; p1's renewal and writes are refused from now on.
  now += absl::Seconds(11);
  auto taken = store->AcquireLease("m", "orders", shard, "p2", lease, now);
  ASSERT_TRUE(taken.ok());
  EXPECT_EQ(taken->lease_epoch(), 2);
  EXPECT_EQ(taken->sequence_number(), "100");  // where the new owner starts
  write.set_sequence_number("200");
  auto stale = store->Set(write, now);
  ASSERT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(stale.status().message()),
              ::testing::HasSubstr("of mapping m is held by p2 since epoch 2"));
  EXPECT_EQ(store->Get("m", "orders", shard)->sequence_number(), "100");
  EXPECT_EQ(store->RenewLease("m", "orders", shard, "p1", 1, lease, now).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->ReleaseLease("m", "orders", shard, "p1", 1, now).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A release frees it at once; the epoch stays until the next owner.
  auto released = store->ReleaseLease("m", "orders", shard, "p2", 2, now + absl::Seconds(1));
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(released->lease_owner(), "");
  EXPECT_EQ(released->lease_epoch(), 2);
  write.set_lease_owner("p2");
  write.set_lease_epoch(2);
  EXPECT_THAT(std::string(store->Set(write, now).status().message()),
              ::testing::HasSubstr("is held by nobody since epoch 2"));
  auto next = store->AcquireLease("m", "orders", shard, "p1", lease, now + absl::Seconds(1));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->lease_epoch(), 3);
  // The old owner taking back what expired is a change of owner too.
  auto back = store->AcquireLease("m", "orders", shard, "p1", lease, now + absl::Seconds(30));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->lease_epoch(), 4);
  // The lease that SetCheckpoint takes by owner (the old interface) moves the epoch as well.
  v1::SetCheckpointRequest by_owner = Request("m", shard, "");
  by_owner.set_lease_owner("p3");
  EXPECT_EQ(store->Set(by_owner, now + absl::Seconds(60))->lease_epoch(), 5);
}

TEST_F(CheckpointStoreTest, AnOperatorsWriteFreesTheLeaseSoTheOwnerCannotWriteOverIt) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string shard = "shardId-000000000000";
  auto taken = store->AcquireLease("m", "orders", shard, "p1", absl::Seconds(10), now_);
  ASSERT_TRUE(taken.ok());
  v1::SetCheckpointRequest progress = Request("m", shard, "500");
  progress.set_lease_owner("p1");
  progress.set_lease_epoch(taken->lease_epoch());
  ASSERT_TRUE(store->Set(progress, now_).ok());
  // A seek: no lease named. It moves the checkpoint back and frees the shard, epoch kept.
  auto seek = store->Set(Request("m", shard, "10"), now_ + absl::Seconds(1));
  ASSERT_TRUE(seek.ok()) << seek.status();
  EXPECT_EQ(seek->sequence_number(), "10");
  EXPECT_EQ(seek->lease_owner(), "");
  EXPECT_EQ(seek->lease_epoch(), taken->lease_epoch());
  // The owner's progress from before the seek is refused, and so is its renewal.
  progress.set_sequence_number("600");
  EXPECT_EQ(store->Set(progress, now_ + absl::Seconds(2)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store
                ->RenewLease("m", "orders", shard, "p1", taken->lease_epoch(), absl::Seconds(10),
                             now_ + absl::Seconds(2))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Get("m", "orders", shard)->sequence_number(), "10");
  // Taking the shard again starts at the seek, under a new epoch.
  auto again =
      store->AcquireLease("m", "orders", shard, "p1", absl::Seconds(10), now_ + absl::Seconds(3));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->sequence_number(), "10");
  EXPECT_EQ(again->lease_epoch(), taken->lease_epoch() + 1);
  // The old interface's lease by owner defaults to 10 s, as the lease RPCs do.
  v1::SetCheckpointRequest by_owner = Request("m", "shardId-000000000009", "");
  by_owner.set_lease_owner("p3");
  auto owned = store->Set(by_owner, now_);
  ASSERT_TRUE(owned.ok());
  EXPECT_EQ(owned->lease_expiry().seconds(), absl::ToUnixSeconds(now_ + absl::Seconds(10)));
}

TEST_F(CheckpointStoreTest, OwnersEpochsAndRenewedExpiriesSurviveARestart) {
  const std::string shard = "shardId-000000000000";
  v1::Checkpoint renewed;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->AcquireLease("m", "orders", shard, "p1", absl::Seconds(10), now_).ok());
    ASSERT_TRUE(store->ReleaseLease("m", "orders", shard, "p1", 1, now_).ok());
    ASSERT_TRUE(store->AcquireLease("m", "orders", shard, "p2", absl::Seconds(10), now_).ok());
    auto r = store->RenewLease("m", "orders", shard, "p2", 2, absl::Seconds(10),
                               now_ + absl::Seconds(8));
    ASSERT_TRUE(r.ok());
    renewed = *r;
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto got = store->Get("m", "orders", shard);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->lease_owner(), "p2");
  EXPECT_EQ(got->lease_epoch(), 2);
  EXPECT_EQ(got->lease_expiry(), renewed.lease_expiry());  // the renewal, not the acquire
  // Still held: p1 cannot take it before the renewed expiry, p2 renews without a gap.
  EXPECT_FALSE(
      store->AcquireLease("m", "orders", shard, "p1", absl::Seconds(10), now_ + absl::Seconds(17))
          .ok());
  EXPECT_TRUE(
      store->RenewLease("m", "orders", shard, "p2", 2, absl::Seconds(10), now_ + absl::Seconds(17))
          .ok());
}

TEST_F(CheckpointStoreTest, HeartbeatsNameLiveMembersUntilTheirTtl) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto member = [](const std::string& id) {
    v1::PollerMember m;
    m.set_poller_id(id);
    m.set_host("host-" + id);
    m.set_pid(42);
    return m;
  };
  store->Heartbeat("m", "orders", member("b"), absl::Seconds(3), now_);
  store->Heartbeat("m", "orders", member("a"), absl::Seconds(10), now_);
  store->Heartbeat("other", "orders", member("c"), absl::Seconds(10), now_);
  auto ids = [&](absl::Time at) {
    std::vector<std::string> out;
    for (const auto& m : store->Members("m", "orders", at)) out.push_back(m.poller_id());
    return out;
  };
  EXPECT_EQ(ids(now_ + absl::Seconds(1)), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(store->Members("m", "orders", now_)[0].host(), "host-a");
  EXPECT_EQ(ids(now_ + absl::Seconds(3)), (std::vector<std::string>{"a"}));
  store->Heartbeat("m", "orders", member("a"), absl::ZeroDuration(), now_ + absl::Seconds(4));
  EXPECT_TRUE(ids(now_ + absl::Seconds(4)).empty());
  EXPECT_EQ(store->Members("other", "orders", now_ + absl::Seconds(4)).size(), 1u);
}

}  // namespace
}  // namespace runnel::broker
