#include "broker/iterator.h"

#include "absl/base/internal/endian.h"
#include "absl/strings/escaping.h"
#include "common/crc32c.h"
#include "common/strings.h"

namespace runnel::broker {
namespace {

constexpr uint8_t kVersion = 1;
// version, incarnation, shard, offset, issued, then the name, then a CRC32C of all that.
constexpr size_t kFixedSize = 1 + 8 + 4 + 8 + 8;

absl::Status InvalidIterator() {
  return absl::InvalidArgumentError("InvalidArgumentException: Invalid ShardIterator.");
}

}  // namespace

std::string EncodeIterator(const IteratorToken& token) {
  std::string raw(kFixedSize, '\0');
  raw[0] = static_cast<char>(kVersion);
  absl::little_endian::Store64(raw.data() + 1, token.incarnation);
  absl::little_endian::Store32(raw.data() + 9, token.shard_index);
  absl::little_endian::Store64(raw.data() + 13, token.offset);
  absl::little_endian::Store64(raw.data() + 21, static_cast<uint64_t>(token.issued_ms));
  raw += token.stream_name;
  char crc[4];
  absl::little_endian::Store32(crc, MaskCrc(Crc32c(raw)));
  raw.append(crc, 4);
  std::string out;
  absl::WebSafeBase64Escape(raw, &out);
  return out;
}

absl::StatusOr<IteratorToken> DecodeIterator(std::string_view text) {
  if (text.empty() || text.size() > 512) return InvalidIterator();
  std::string raw;
  if (!absl::WebSafeBase64Unescape(Sv(text), &raw)) return InvalidIterator();
  if (raw.size() < kFixedSize + 1 + 4 || static_cast<uint8_t>(raw[0]) != kVersion) {
    return InvalidIterator();
  }
  const uint32_t crc = UnmaskCrc(absl::little_endian::Load32(raw.data() + raw.size() - 4));
  if (Crc32c(std::string_view(raw).substr(0, raw.size() - 4)) != crc) return InvalidIterator();
  IteratorToken token;
  token.incarnation = absl::little_endian::Load64(raw.data() + 1);
  token.shard_index = absl::little_endian::Load32(raw.data() + 9);
  token.offset = absl::little_endian::Load64(raw.data() + 13);
  token.issued_ms = static_cast<int64_t>(absl::little_endian::Load64(raw.data() + 21));
  token.stream_name = raw.substr(kFixedSize, raw.size() - kFixedSize - 4);
  return token;
}

}  // namespace runnel::broker
