#include "broker/sequence_number.h"

#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/strings.h"

namespace runnel::broker {

void FormatSequenceNumberTo(uint64_t offset, uint32_t shard_index, char out[27]) {
  out[0] = '1';
  for (int i = 20; i >= 1; --i) {
    out[i] = static_cast<char>('0' + offset % 10);
    offset /= 10;
  }
  for (int i = 26; i >= 21; --i) {
    out[i] = static_cast<char>('0' + shard_index % 10);
    shard_index /= 10;
  }
}

std::string FormatSequenceNumber(uint64_t offset, uint32_t shard_index) {
  std::string text(kSequenceNumberLength, '0');
  FormatSequenceNumberTo(offset, shard_index, text.data());
  return text;
}

absl::StatusOr<SequencePosition> ParseSequenceNumber(std::string_view text,
                                                     std::string_view field) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("InvalidArgumentException: Invalid ", Sv(field),
                                                   " '", Sv(text), "': ", Sv(why)));
  };
  if (text.size() != kSequenceNumberLength || text[0] != '1') {
    return invalid("not a sequence number issued by this broker (expected 27 digits)");
  }
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return invalid("not a number");
  }
  SequencePosition position;
  if (!absl::SimpleAtoi(Sv(text.substr(1, 20)), &position.offset) ||
      !absl::SimpleAtoi(Sv(text.substr(21, 6)), &position.shard_index)) {
    return invalid("out of range");
  }
  return position;
}

std::string ShardIdFromIndex(uint32_t shard_index) {
  return absl::StrFormat("shardId-%012u", shard_index);
}

bool ParseShardId(std::string_view shard_id, uint32_t* shard_index) {
  constexpr std::string_view kPrefix = "shardId-";
  if (shard_id.size() != kPrefix.size() + 12 || shard_id.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  uint64_t index = 0;
  for (char c : shard_id.substr(kPrefix.size())) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    index = index * 10 + static_cast<uint64_t>(c - '0');
  }
  if (index > kMaxShardIndex) return false;
  *shard_index = static_cast<uint32_t>(index);
  return true;
}

}  // namespace runnel::broker
