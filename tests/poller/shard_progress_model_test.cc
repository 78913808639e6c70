// A model test of one shard's checkpoint logic (ShardProgress with its CompletionTracker, driven
// as the reader and lanes drive it): random reads, lanes taking batches and finishing them in any
// order across lanes, checkpoint writes, clean stops (the lanes finish what they were handed) and
// crashes (everything in memory lost), each run resuming after the stored checkpoint. Checked
// after every step and at the end: the stored checkpoint never moves back, a lane never holds
// more than its read-ahead, every record is delivered (at least once), each key's records reach
// the handler in order within a run, a clean stop repeats nothing, and a crash repeats only
// records after the checkpoint stored before it.
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "poller/shard_progress.h"

namespace runnel::poller {
namespace {

constexpr int kRecords = 400, kKeys = 7, kLanes = 3, kBatch = 4;

struct Lane {
  std::deque<QueuedRecord> queue;
  std::vector<QueuedRecord> in_flight;
};

class ShardModel {
 public:
  explicit ShardModel(uint32_t seed) : rng_(seed) {
    for (int i = 0; i < kRecords; ++i) {
      stream_.push_back(
          {absl::StrCat("key-", Pick(kKeys)), absl::StrCat(100000 + i), absl::StrCat("r", i), 0});
    }
  }

  void Run() {
    Start();
    while (delivered_.size() < static_cast<size_t>(kRecords) && steps_ < 200'000) {
      ++steps_;
      const int action = Pick(100);
      if (action < 30) {
        Read();
      } else if (action < 55) {
        TakeBatch(Pick(kLanes));
      } else if (action < 85) {
        FinishBatch(Pick(kLanes));
      } else if (action < 96) {
        WriteCheckpoint();
      } else if (action < 99) {
        CleanStop();
      } else {
        Crash();
      }
      CheckLaneBounds();
    }
    CleanStop();
    ASSERT_EQ(delivered_.size(), static_cast<size_t>(kRecords)) << "after " << steps_ << " steps";
    EXPECT_EQ(stored_, kRecords - 1) << "everything done is checkpointed after a clean stop";
  }

 private:
  int Pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  void Start() {
    progress_.emplace("shardId-000000000000", "", kLanes, ReadAheadLimit{2 * kBatch, 1 << 20},
                      [] {});
    lanes_.assign(kLanes, Lane{});
    position_ = stored_ + 1;
    next_ordinal_ = 0;
    last_in_run_.clear();
    run_delivered_.clear();
    pending_.clear();
  }

  // The reader: a read of up to the room the lanes have, handed out in order while lanes have
  // room; what is not handed out is read again later (as the reader keeps it and waits).
  void Read() {
    const size_t room = progress_->WaitForRoom(absl::ZeroDuration());
    if (pending_.empty()) {
      if (room == 0 || position_ >= kRecords) return;
      const int count = 1 + Pick(static_cast<int>(std::min<size_t>(room, 12)));
      for (int i = position_; i < std::min(kRecords, position_ + count); ++i) {
        pending_.push_back(stream_[static_cast<size_t>(i)]);
      }
      position_ += static_cast<int>(pending_.size());
      pending_first_ordinal_ = next_ordinal_;
      next_ordinal_ += pending_.size();
      pending_begin_ = 0;
      pending_lanes_.clear();
      for (const SourceRecord& record : pending_) {
        // Every fifth key is filtered out, as records no filter lets through.
        const int key = std::stoi(record.partition_key.substr(4));
        pending_lanes_.push_back(key % 5 == 4 ? -1 : key % kLanes);
      }
    }
    const size_t end =
        progress_->Admit(pending_first_ordinal_, pending_, pending_lanes_, pending_begin_);
    for (size_t i = pending_begin_; i < end; ++i) {
      const uint64_t ordinal = pending_first_ordinal_ + i;
      if (pending_lanes_[i] < 0) {
        // Done without an invocation.
        delivered_.insert(pending_[i].sequence_number);
        run_delivered_.insert(pending_[i].sequence_number);
        continue;
      }
      lanes_[static_cast<size_t>(pending_lanes_[i])].queue.push_back({pending_[i], ordinal});
    }
    pending_begin_ = end;
    if (pending_begin_ == pending_.size()) pending_.clear();
  }

  void TakeBatch(int lane) {
    Lane& l = lanes_[static_cast<size_t>(lane)];
    if (!l.in_flight.empty() || l.queue.empty()) return;
    const int count = 1 + Pick(kBatch);
    while (!l.queue.empty() && static_cast<int>(l.in_flight.size()) < count) {
      l.in_flight.push_back(std::move(l.queue.front()));
      l.queue.pop_front();
    }
  }

  void FinishBatch(int lane) {
    Lane& l = lanes_[static_cast<size_t>(lane)];
    if (l.in_flight.empty()) return;
    for (const QueuedRecord& queued : l.in_flight) {
      const SourceRecord& record = queued.record;
      std::string& last = last_in_run_[record.partition_key];
      EXPECT_LT(last, record.sequence_number) << "key " << record.partition_key << " out of order";
      last = record.sequence_number;
      run_delivered_.insert(record.sequence_number);
      if (!delivered_.insert(record.sequence_number).second) {
        EXPECT_TRUE(repeatable_.contains(record.sequence_number))
            << record.sequence_number << " delivered again though it was checkpointed or the "
            << "stop before was clean";
      }
    }
    progress_->Completed(lane, l.in_flight);
    l.in_flight.clear();
  }

  void WriteCheckpoint() {
    std::string sequence_number;
    uint64_t version = 0;
    if (!progress_->PendingCheckpoint(&sequence_number, &version)) return;
    const int index = std::stoi(sequence_number) - 100000;
    ASSERT_GE(index, stored_) << "the checkpoint moved back";
    for (int i = stored_ + 1; i <= index; ++i) {
      EXPECT_TRUE(run_delivered_.contains(stream_[static_cast<size_t>(i)].sequence_number))
          << "checkpointed past record " << i << ", which was never done";
    }
    stored_ = index;
    progress_->CheckpointWritten(version);
  }

  // The reader stops (what it holds is dropped), the lanes finish what they were handed, the
  // final checkpoint is written, and the next run starts after it.
  void CleanStop() {
    pending_.clear();
    progress_->RequestStop();
    for (int lane = 0; lane < kLanes; ++lane) {
      Lane& l = lanes_[static_cast<size_t>(lane)];
      while (!l.in_flight.empty() || !l.queue.empty()) {
        TakeBatch(lane);
        FinishBatch(lane);
      }
    }
    WriteCheckpoint();
    for (int i = stored_ + 1; i < kRecords; ++i) {
      EXPECT_FALSE(run_delivered_.contains(stream_[static_cast<size_t>(i)].sequence_number))
          << "record " << i << " was done but is after the final checkpoint: it would repeat";
    }
    Start();
  }

  // Everything in memory is lost; records done after the stored checkpoint may repeat.
  void Crash() {
    for (int i = stored_ + 1; i < kRecords; ++i) {
      const std::string& sequence_number = stream_[static_cast<size_t>(i)].sequence_number;
      if (delivered_.contains(sequence_number)) repeatable_.insert(sequence_number);
    }
    Start();
  }

  void CheckLaneBounds() {
    for (const Lane& l : lanes_) {
      EXPECT_LE(l.queue.size() + l.in_flight.size(), static_cast<size_t>(2 * kBatch));
    }
  }

  std::mt19937 rng_;
  std::vector<SourceRecord> stream_;
  std::optional<ShardProgress> progress_;
  std::vector<Lane> lanes_;
  int position_ = 0;  // next record the reader reads
  int stored_ = -1;   // index of the stored checkpoint's record; -1: none
  uint64_t next_ordinal_ = 0;
  std::vector<SourceRecord> pending_;  // read, not yet all handed out
  std::vector<int> pending_lanes_;
  uint64_t pending_first_ordinal_ = 0;
  size_t pending_begin_ = 0;
  std::set<std::string> delivered_;
  std::set<std::string> run_delivered_;  // in this run
  std::set<std::string> repeatable_;     // done after the checkpoint of a crash
  std::map<std::string, std::string> last_in_run_;
  int steps_ = 0;
};

TEST(ShardProgressModelTest, CheckpointsHoldUnderRandomOrdersStopsAndCrashes) {
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    ShardModel model(seed);
    model.Run();
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace
}  // namespace runnel::poller
