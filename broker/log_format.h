// The on-disk framing of one record in a shard's segment file (specified in broker/LOG_FORMAT.md).
//
//   frame   := masked_crc32c:u32le  length:u32le  payload[length]
//   payload := offset:u64le  arrival_ms:i64le  key_length:u16le  key[key_length]  data[...]
//
// The CRC covers the length field and the payload, so a torn or flipped length is caught before
// it is trusted. A frame never spans segment files. Pure functions: no I/O here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace runnel::broker {

inline constexpr size_t kFrameHeaderSize = 8;
inline constexpr size_t kPayloadFixedSize = 8 + 8 + 2;
// Records are at most 1 MiB of key + data today; leave room for Kinesis's 10 MiB records.
inline constexpr size_t kMaxPayloadSize = 10 * 1024 * 1024 + 64 * 1024;

struct RecordView {
  uint64_t offset = 0;
  int64_t arrival_ms = 0;
  std::string_view partition_key;
  std::string_view data;
};

inline size_t FrameSize(size_t key_size, size_t data_size) {
  return kFrameHeaderSize + kPayloadFixedSize + key_size + data_size;
}

// Appends the frame of one record to `out`.
void AppendFrame(std::string* out, uint64_t offset, int64_t arrival_ms,
                 std::string_view partition_key, std::string_view data);

enum class FrameStatus {
  kOk,
  // `buffer` ends before the frame does: read more, or at the end of a file, a torn tail.
  kTruncated,
  // Header, length or checksum is wrong.
  kCorrupt,
};

// Decodes the frame at the start of `buffer`. On kOk fills `record` (views into `buffer`) and
// `frame_size`. On kTruncated, `frame_size` is the size the frame claims (when the header was
// complete and plausible) or 0, so a reader knows how much to read.
FrameStatus DecodeFrame(std::string_view buffer, RecordView* record, size_t* frame_size);

}  // namespace runnel::broker
