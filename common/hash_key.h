// Kinesis hash keys: a partition key's MD5 digest read as a big-endian unsigned 128-bit integer,
// and the decimal strings that carry hash keys on the wire.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/statusor.h"

namespace runnel {

// The hash key Kinesis routes `partition_key` by: MD5 over its UTF-8 bytes, big-endian.
absl::uint128 PartitionKeyHash(std::string_view partition_key);

// Parses a decimal hash key as Kinesis accepts it ("0" or [1-9][0-9]{0,38}, at most 2^128-1).
// `field` names the request field in the error.
absl::StatusOr<absl::uint128> ParseHashKey(std::string_view text, std::string_view field);

std::string FormatHashKey(absl::uint128 key);

struct HashKeyRangeValue {
  absl::uint128 start;
  absl::uint128 end;  // inclusive
  bool Contains(absl::uint128 key) const { return key >= start && key <= end; }
};

// Splits the key space evenly among `shard_count` shards, as Kinesis does at CreateStream:
// size = floor(2^128 / N), shard i gets [i*size, (i+1)*size - 1], the last shard ends at 2^128-1.
std::vector<HashKeyRangeValue> SplitHashKeySpace(int shard_count);

}  // namespace runnel
