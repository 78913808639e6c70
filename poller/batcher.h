// Lambda's batching rules for one lane, as a pure unit (no threads, no clock of its own): a
// batch is invoked when it holds batch_size records, when maximum_batching_window has passed
// since its first record arrived, or when one more record would take the invocation payload past
// 6 MiB; with a window of 0 it is invoked as soon as records are there.
//
// Not thread-safe: the lane that owns it serialises access.
#pragma once

#include <cstddef>
#include <deque>

#include "absl/time/time.h"

namespace runnel::poller {

// Lambda's synchronous invocation payload limit.
inline constexpr size_t kMaxInvokePayloadBytes = 6 * 1024 * 1024;

// What one record adds to Lambda's Kinesis event JSON: its data in base64, its partition key
// and sequence number (the latter twice, in eventID too), and the fixed fields and ARNs.
inline size_t EventBytes(size_t partition_key_bytes, size_t data_bytes,
                         size_t sequence_number_bytes = 27) {
  constexpr size_t kFixedFieldBytes = 420;
  return (data_bytes + 2) / 3 * 4 + partition_key_bytes + 2 * sequence_number_bytes +
         kFixedFieldBytes;
}

struct BatchingRules {
  int batch_size = 100;
  absl::Duration window = absl::ZeroDuration();
  size_t max_payload_bytes = kMaxInvokePayloadBytes;
};

class Batcher {
 public:
  explicit Batcher(BatchingRules rules) : rules_(rules) {}

  // A record joined the back of the lane's queue at `now`, adding `event_bytes` to a payload.
  void Add(size_t event_bytes, absl::Time now) { queue_.push_back({event_bytes, now}); }

  // How many records from the front of the queue to invoke now; 0: not yet. A single record
  // larger than the payload limit is invoked alone (it cannot be split).
  size_t Ready(absl::Time now) const {
    if (queue_.empty()) return 0;
    size_t count = 0, bytes = 0;
    while (count < queue_.size() && count < static_cast<size_t>(rules_.batch_size) &&
           (count == 0 || bytes + queue_[count].bytes <= rules_.max_payload_bytes)) {
      bytes += queue_[count].bytes;
      ++count;
    }
    const bool full = count == static_cast<size_t>(rules_.batch_size) || count < queue_.size();
    if (full || now >= Deadline()) return count;
    return 0;
  }

  // When Ready() turns non-zero by time alone: the front record's arrival plus the window
  // (InfiniteFuture when the queue is empty).
  absl::Time Deadline() const {
    return queue_.empty() ? absl::InfiniteFuture() : queue_.front().arrival + rules_.window;
  }

  // The first `count` records left for an invocation.
  void Take(size_t count) {
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(count));
  }

  size_t size() const { return queue_.size(); }
  bool empty() const { return queue_.empty(); }
  const BatchingRules& rules() const { return rules_; }

 private:
  struct Entry {
    size_t bytes;
    absl::Time arrival;
  };
  const BatchingRules rules_;
  std::deque<Entry> queue_;
};

}  // namespace runnel::poller
