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

}  // namespace
}  // namespace runnel::broker
