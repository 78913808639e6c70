// Shard iterators: opaque strings that carry a read position. Self-contained (nothing is kept
// per iterator on the broker), checksummed so a mangled one is refused, and stamped with the
// stream's incarnation so an iterator of a deleted stream never reads its successor.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace runnel::broker {

// Kinesis iterators live five minutes.
inline constexpr int64_t kIteratorLifetimeMs = 300'000;

struct IteratorToken {
  std::string stream_name;
  uint64_t incarnation = 0;
  uint32_t shard_index = 0;
  uint64_t offset = 0;  // next record to read
  int64_t issued_ms = 0;
};

std::string EncodeIterator(const IteratorToken& token);
// INVALID_ARGUMENT "InvalidArgumentException: Invalid ShardIterator." for anything not made by
// EncodeIterator.
absl::StatusOr<IteratorToken> DecodeIterator(std::string_view text);

}  // namespace runnel::broker
