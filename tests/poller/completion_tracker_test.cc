// The checkpoint moves only over a prefix of done records, whatever order lanes finish in.
#include "poller/completion_tracker.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace runnel::poller {
namespace {

TEST(CompletionTrackerTest, CheckpointFollowsTheDonePrefix) {
  CompletionTracker tracker;
  for (uint64_t i = 0; i < 5; ++i) tracker.Dispatched(i, absl::StrCat("s", i));
  EXPECT_EQ(tracker.Checkpoint(), "");
  EXPECT_TRUE(tracker.Completed(1));
  EXPECT_TRUE(tracker.Completed(2));
  EXPECT_EQ(tracker.Checkpoint(), "");  // 0 is still in flight
  EXPECT_EQ(tracker.Version(), 0u);
  EXPECT_TRUE(tracker.Completed(0));
  EXPECT_EQ(tracker.Checkpoint(), "s2");
  EXPECT_EQ(tracker.Outstanding(), 2u);
  EXPECT_TRUE(tracker.Completed(4));
  EXPECT_EQ(tracker.Checkpoint(), "s2");
  EXPECT_TRUE(tracker.Completed(3));
  EXPECT_EQ(tracker.Checkpoint(), "s4");
  EXPECT_EQ(tracker.Outstanding(), 0u);
}

TEST(CompletionTrackerTest, UnknownOrRepeatedCompletionsAreRefused) {
  CompletionTracker tracker;
  tracker.Dispatched(10, "a");
  tracker.Dispatched(11, "b");
  EXPECT_FALSE(tracker.Completed(9));
  EXPECT_FALSE(tracker.Completed(12));
  EXPECT_TRUE(tracker.Completed(11));
  EXPECT_FALSE(tracker.Completed(11));
  EXPECT_TRUE(tracker.Completed(10));
  EXPECT_FALSE(tracker.Completed(10));  // already popped
  EXPECT_EQ(tracker.Checkpoint(), "b");
}

TEST(CompletionTrackerTest, RandomCompletionOrderNeverPassesAnOpenRecord) {
  std::mt19937 random(7);
  for (int round = 0; round < 50; ++round) {
    CompletionTracker tracker;
    const int n = 1 + static_cast<int>(random() % 200);
    for (int i = 0; i < n; ++i) tracker.Dispatched(static_cast<uint64_t>(i), absl::StrCat(i));
    std::vector<int> order(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), random);
    std::vector<bool> done(static_cast<size_t>(n), false);
    for (int index : order) {
      ASSERT_TRUE(tracker.Completed(static_cast<uint64_t>(index)));
      done[static_cast<size_t>(index)] = true;
      int prefix = -1;
      while (prefix + 1 < n && done[static_cast<size_t>(prefix + 1)]) ++prefix;
      EXPECT_EQ(tracker.Checkpoint(), prefix < 0 ? "" : absl::StrCat(prefix));
    }
    EXPECT_EQ(tracker.Outstanding(), 0u);
  }
}

}  // namespace
}  // namespace runnel::poller
