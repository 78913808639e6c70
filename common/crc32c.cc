#include "common/crc32c.h"

#include <isa-l/crc.h>

namespace runnel {

uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size) {
  // crc32_iscsi works on the pre-inverted register; CRC32C's definition inverts in and out.
  const auto* bytes = static_cast<const unsigned char*>(const_cast<void*>(data));
  uint32_t reg = ~crc;
  while (size > 0) {
    // crc32_iscsi takes an int length; feed huge buffers in pieces.
    int chunk = size > (1u << 30) ? (1 << 30) : static_cast<int>(size);
    reg = crc32_iscsi(const_cast<unsigned char*>(bytes), chunk, reg);
    bytes += chunk;
    size -= static_cast<size_t>(chunk);
  }
  return ~reg;
}

}  // namespace runnel
