// Kinesis's per-shard throughput limits as token buckets, so users can exercise their back-off
// before production: 1 MiB/s and 1,000 records/s written, 2 MiB/s and 5 GetRecords calls/s read.
// A read may overdraw the byte bucket (one 10 MiB read is allowed, then reads wait for the
// deficit to refill, as Kinesis's "big read penalty").
//
// Thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace runnel::broker {

class TokenBucket {
 public:
  TokenBucket(double rate_per_second, double capacity)
      : rate_(rate_per_second), capacity_(capacity), tokens_(capacity) {}

  // Takes `amount` if the bucket holds it now (or, when `may_overdraw`, if it is not in debt).
  bool TryTake(double amount, int64_t now_ms, bool may_overdraw = false) {
    absl::MutexLock lock(&mu_);
    Refill(now_ms);
    if (tokens_ >= amount || (may_overdraw && tokens_ > 0)) {
      tokens_ -= amount;
      return true;
    }
    return false;
  }
  // Takes `amount` unconditionally (the bucket may go into debt).
  void Take(double amount, int64_t now_ms) {
    absl::MutexLock lock(&mu_);
    Refill(now_ms);
    tokens_ -= amount;
  }
  // True when a take of at least one token could succeed now.
  bool HasTokens(int64_t now_ms) {
    absl::MutexLock lock(&mu_);
    Refill(now_ms);
    return tokens_ > 0;
  }

 private:
  void Refill(int64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (last_ms_ != 0 && now_ms > last_ms_) {
      tokens_ =
          std::min(capacity_, tokens_ + rate_ * static_cast<double>(now_ms - last_ms_) / 1000.0);
    }
    last_ms_ = std::max(last_ms_, now_ms);
  }

  absl::Mutex mu_;
  const double rate_;
  const double capacity_;
  double tokens_ ABSL_GUARDED_BY(mu_);
  int64_t last_ms_ ABSL_GUARDED_BY(mu_) = 0;
};

struct ShardThroughput {
  TokenBucket write_records{1000, 1000};
  TokenBucket write_bytes{1 << 20, 1 << 20};
  TokenBucket read_calls{5, 5};
  TokenBucket read_bytes{2 << 20, 2 << 20};
};

}  // namespace runnel::broker
