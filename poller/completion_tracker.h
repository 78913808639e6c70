// Which of a shard's records are done, and so where its checkpoint may go: the highest offset
// at or below which every record handed out is done. With several lanes finishing out of order,
// a record done early does not move the checkpoint past one still in flight.
//
// Not thread-safe: the shard consumer serialises access. Pure.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>

namespace runnel::poller {

// Records are named by the order they were handed out in (an ordinal the caller counts), and
// carry their sequence number, which is what a checkpoint stores: nothing here assumes a
// sequence number format, so any Kinesis-compatible source works.
class CompletionTracker {
 public:
  // A record was handed out. Ordinals must increase from call to call.
  void Dispatched(uint64_t ordinal, std::string sequence_number) {
    outstanding_.push_back({ordinal, std::move(sequence_number), false});
  }

  // A handed-out record is done (processed, filtered out or discarded). Returns false when the
  // ordinal was never handed out or is already done.
  bool Completed(uint64_t ordinal) {
    auto it = std::lower_bound(outstanding_.begin(), outstanding_.end(), ordinal,
                               [](const Entry& e, uint64_t o) { return e.ordinal < o; });
    if (it == outstanding_.end() || it->ordinal != ordinal || it->done) return false;
    it->done = true;
    while (!outstanding_.empty() && outstanding_.front().done) {
      checkpoint_ = std::move(outstanding_.front().sequence_number);
      ++advances_;
      outstanding_.pop_front();
    }
    return true;
  }

  // The sequence number at and below which every record handed out is done ("" : none yet).
  const std::string& Checkpoint() const { return checkpoint_; }
  // Grows each time the checkpoint moves, so a writer can tell whether it has news.
  uint64_t Version() const { return advances_; }
  // Records handed out and not yet done, or done behind one that is not.
  size_t Outstanding() const { return outstanding_.size(); }

 private:
  struct Entry {
    uint64_t ordinal;
    std::string sequence_number;
    bool done;
  };
  std::deque<Entry> outstanding_;
  std::string checkpoint_;
  uint64_t advances_ = 0;
};

}  // namespace runnel::poller
