// Sequence numbers: what a record's position looks like on the wire.
//
// A sequence number is the decimal string "1" + the record's offset in its shard (20 digits,
// zero-padded) + the shard's index (6 digits, zero-padded): 27 digits, e.g.
// 100000000000000000042000003 is offset 42 of shardId-000000000003. So numbers
//   - strictly increase within a shard (offsets do), and compare the same as strings or numbers;
//   - are unique within the stream (the shard index is part of them);
//   - are stable across restarts (offsets are stored in the log);
//   - say which shard they came from, so a number used with the wrong shard is refused.
// Offsets start at 1; offset 0 is the position before a shard's first record, which is the
// shard's StartingSequenceNumber.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace runnel::broker {

inline constexpr uint32_t kMaxShardIndex = 999'999;

struct SequencePosition {
  uint64_t offset = 0;
  uint32_t shard_index = 0;
};

std::string FormatSequenceNumber(uint64_t offset, uint32_t shard_index);

// Writes the 27 digits into `out` (no terminator): for hot paths that format many numbers.
void FormatSequenceNumberTo(uint64_t offset, uint32_t shard_index, char out[27]);
inline constexpr size_t kSequenceNumberLength = 27;

// Parses a sequence number; `field` names the request field in the InvalidArgument error.
absl::StatusOr<SequencePosition> ParseSequenceNumber(std::string_view text, std::string_view field);

// "shardId-000000000007".
std::string ShardIdFromIndex(uint32_t shard_index);
// Parses "shardId-000000000007" (exactly that form); false otherwise.
bool ParseShardId(std::string_view shard_id, uint32_t* shard_index);

}  // namespace runnel::broker
