// ShardProgress: the per-lane read-ahead bound (records and bytes), hand-out in shard order only
// (a full lane stops the run, so what is handed out is a prefix), filtered records done at once,
// and the checkpoint that follows completions.
#include "poller/shard_progress.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace runnel::poller {
namespace {

std::vector<SourceRecord> Records(int count, size_t data_bytes = 10) {
  std::vector<SourceRecord> records;
  for (int i = 0; i < count; ++i) {
    records.push_back({"key", absl::StrCat(1000 + i), std::string(data_bytes, 'x'), 0});
  }
  return records;
}

std::vector<QueuedRecord> Queued(const std::vector<SourceRecord>& records, size_t begin,
                                 size_t end) {
  std::vector<QueuedRecord> queued;
  for (size_t i = begin; i < end; ++i) queued.push_back({records[i], i});
  return queued;
}

struct Fixture {
  explicit Fixture(int lanes, ReadAheadLimit limit = {.records = 4, .bytes = 1 << 20})
      : progress("shardId-000000000000", "", lanes, limit, [this] { ++moved; }) {}
  int moved = 0;
  ShardProgress progress;
};

TEST(ShardProgressTest, ALaneTakesRecordsUntilItsBoundThenTheRunStops) {
  Fixture f(2);
  const std::vector<SourceRecord> records = Records(10);
  // Lanes 0 and 1 alternate; each takes 4.
  std::vector<int> lane_of;
  for (int i = 0; i < 10; ++i) lane_of.push_back(i % 2);
  EXPECT_EQ(f.progress.Admit(0, records, lane_of, 0), 8u);
  EXPECT_EQ(f.progress.Admit(0, records, lane_of, 8), 8u) << "lane 0 is full";
  EXPECT_EQ(f.progress.Status().buffered_records, 8);
  EXPECT_FALSE(f.progress.WaitForLaneRoom(0, absl::ZeroDuration()));
  EXPECT_EQ(f.progress.WaitForRoom(absl::ZeroDuration()), 0u);
}

TEST(ShardProgressTest, AFullLaneHoldsBackTheRecordsBehindItForEveryLane) {
  Fixture f(2);
  const std::vector<SourceRecord> records = Records(8);
  // Five records for lane 0, then three for lane 1: the fifth stops the run, and lane 1's records
  // behind it wait too, although lane 1 is empty.
  const std::vector<int> lane_of = {0, 0, 0, 0, 0, 1, 1, 1};
  EXPECT_EQ(f.progress.Admit(0, records, lane_of, 0), 4u);
  EXPECT_TRUE(f.progress.WaitForLaneRoom(1, absl::ZeroDuration()));
  EXPECT_EQ(f.progress.WaitForRoom(absl::ZeroDuration()), 4u) << "lane 1's room";
  const auto done = Queued(records, 0, 1);
  f.progress.Completed(0, done);
  EXPECT_TRUE(f.progress.WaitForLaneRoom(0, absl::ZeroDuration()));
  EXPECT_EQ(f.progress.Admit(0, records, lane_of, 4), 8u);
}

TEST(ShardProgressTest, FilteredRecordsAreDoneAtOnceAndNeverHeldBack) {
  Fixture f(1);
  const std::vector<SourceRecord> records = Records(8);
  const std::vector<int> lane_of = {-1, 0, 0, 0, 0, -1, -1, 0};
  // Lane 0 fills at the fourth of its records; the two filtered after it pass, then lane 0's
  // fifth stops the run.
  EXPECT_EQ(f.progress.Admit(0, records, lane_of, 0), 7u);
  EXPECT_EQ(f.progress.Status().buffered_records, 4);
  std::string checkpoint;
  uint64_t version = 0;
  ASSERT_TRUE(f.progress.PendingCheckpoint(&checkpoint, &version));
  EXPECT_EQ(checkpoint, "1000") << "only the first filtered record is below everything pending";
  EXPECT_GE(f.moved, 1);
}

TEST(ShardProgressTest, TheByteBoundHoldsForLargeRecordsButOneAlwaysGoes) {
  Fixture f(1, {.records = 100, .bytes = 3000});
  const std::vector<SourceRecord> records = Records(4, 1500);  // ~2,500 event bytes each
  const std::vector<int> lane_of = {0, 0, 0, 0};
  EXPECT_EQ(f.progress.Admit(0, records, lane_of, 0), 2u) << "the second crosses the bound";
  EXPECT_EQ(f.progress.Admit(0, records, lane_of, 2), 2u);
  f.progress.Completed(0, Queued(records, 0, 2));
  EXPECT_EQ(f.progress.Admit(0, records, lane_of, 2), 4u);
}

TEST(ShardProgressTest, TheCheckpointFollowsCompletionsInShardOrder) {
  Fixture f(2);
  const std::vector<SourceRecord> records = Records(4);
  const std::vector<int> lane_of = {0, 1, 0, 1};
  ASSERT_EQ(f.progress.Admit(0, records, lane_of, 0), 4u);
  std::string checkpoint;
  uint64_t version = 0;
  f.progress.Completed(1, Queued(records, 1, 2));
  EXPECT_FALSE(f.progress.PendingCheckpoint(&checkpoint, &version)) << "record 0 is not done";
  f.progress.Completed(0, Queued(records, 0, 1));
  ASSERT_TRUE(f.progress.PendingCheckpoint(&checkpoint, &version));
  EXPECT_EQ(checkpoint, "1001");
  f.progress.CheckpointWritten(version);
  EXPECT_FALSE(f.progress.PendingCheckpoint(&checkpoint, &version));
  EXPECT_EQ(f.progress.Status().buffered_records, 2);
}

TEST(ShardProgressTest, AStopEndsEveryWait) {
  Fixture f(1);
  const std::vector<SourceRecord> records = Records(4);
  ASSERT_EQ(f.progress.Admit(0, records, {0, 0, 0, 0}, 0), 4u);
  f.progress.RequestStop();
  EXPECT_FALSE(f.progress.WaitForLaneRoom(0, absl::Hours(1)));
  EXPECT_EQ(f.progress.WaitForRoom(absl::Hours(1)), 0u);
}

TEST(ShardProgressTest, LaneReadAheadIsTwoBatchesAndTwoPayloads) {
  MappingSpec spec;
  spec.batch_size = 100;
  const ReadAheadLimit limit = LaneReadAhead(spec);
  EXPECT_EQ(limit.records, 200u);
  EXPECT_EQ(limit.bytes, 2 * kMaxInvokePayloadBytes + 1);
}

}  // namespace
}  // namespace runnel::poller
