// The poller's one back-off rule for retrying a broker call, a read or a destination write:
// doubling from 100 ms up to 10 s, so a broker that is down is asked about every 10 s, not in a
// loop, and one that comes back is used again within a fraction of a second.
#pragma once

#include <algorithm>

#include "absl/time/time.h"

namespace runnel::poller {

inline constexpr absl::Duration kMinBackoff = absl::Milliseconds(100);
inline constexpr absl::Duration kMaxBackoff = absl::Seconds(10);

// The wait after `backoff` (zero before the first retry).
inline absl::Duration NextBackoff(absl::Duration backoff) {
  return std::min(kMaxBackoff, std::max(kMinBackoff, backoff * 2));
}

}  // namespace runnel::poller
