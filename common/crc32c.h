// CRC32C (Castagnoli, as in iSCSI, RFC 3720), computed by ISA-L's crc32_iscsi.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace runnel {

// Returns the CRC32C of `data` continued from `crc` (the CRC of what came before, 0 at the start).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

// A CRC stored inside data that is itself checksummed is masked (as LevelDB does): a CRC of a
// string that contains embedded CRCs is otherwise prone to degenerate cases.
inline uint32_t MaskCrc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline uint32_t UnmaskCrc(uint32_t masked) {
  uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace runnel
