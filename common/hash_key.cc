#include "common/hash_key.h"

// MD5's one-shot function, not EVP: EVP_DigestInit/Update/Final goes through the provider
// layer on every call (a context reset, an allocation, a cleanse), which costs more than hashing
// a short key. MD5() is deprecated in OpenSSL 3 only as a nudge towards EVP; it is the same
// OpenSSL implementation, and it is there for as long as OpenSSL ships MD5 for Kinesis routing.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/md5.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace runnel {

absl::uint128 PartitionKeyHash(std::string_view partition_key) {
  unsigned char digest[MD5_DIGEST_LENGTH];
  MD5(reinterpret_cast<const unsigned char*>(partition_key.data()), partition_key.size(), digest);
  uint64_t high = 0, low = 0;
  for (int i = 0; i < 8; ++i) high = (high << 8) | digest[i];
  for (int i = 8; i < 16; ++i) low = (low << 8) | digest[i];
  return absl::MakeUint128(high, low);
}

absl::StatusOr<absl::uint128> ParseHashKey(std::string_view text, std::string_view field) {
  auto invalid = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("InvalidArgumentException: Invalid ", Sv(field), " '", Sv(text), "'. ",
                     Sv(field), " must be a decimal integer in the range: [0, 2^128-1]."));
  };
  if (text.empty() || text.size() > 39) return invalid();
  if (text.size() > 1 && text[0] == '0') return invalid();
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return invalid();
  }
  absl::uint128 value;
  if (!absl::SimpleAtoi(Sv(text), &value)) return invalid();  // overflow past 2^128-1
  return value;
}

std::string FormatHashKey(absl::uint128 key) {
  if (key == 0) return "0";
  std::string digits;
  while (key > 0) {
    digits.push_back(static_cast<char>('0' + static_cast<int>(key % 10)));
    key /= 10;
  }
  return std::string(digits.rbegin(), digits.rend());
}

std::vector<HashKeyRangeValue> SplitHashKeySpace(int shard_count) {
  std::vector<HashKeyRangeValue> ranges;
  if (shard_count <= 0) return ranges;
  // floor(2^128 / N) computed without 2^128 itself: (2^128-1)/N, plus one when N divides 2^128.
  absl::uint128 max = absl::Uint128Max();
  absl::uint128 n = static_cast<uint64_t>(shard_count);
  absl::uint128 size = max / n + ((max % n) == n - 1 ? 1 : 0);
  for (int i = 0; i < shard_count; ++i) {
    absl::uint128 start = size * static_cast<uint64_t>(i);
    absl::uint128 end = i + 1 == shard_count ? max : size * static_cast<uint64_t>(i + 1) - 1;
    ranges.push_back({start, end});
  }
  return ranges;
}

}  // namespace runnel
