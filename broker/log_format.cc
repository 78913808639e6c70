#include "broker/log_format.h"

#include <cstring>

#include "absl/base/internal/endian.h"
#include "common/crc32c.h"

namespace runnel::broker {
namespace {

void PutU16(char* p, uint16_t v) { absl::little_endian::Store16(p, v); }
void PutU32(char* p, uint32_t v) { absl::little_endian::Store32(p, v); }
void PutU64(char* p, uint64_t v) { absl::little_endian::Store64(p, v); }

}  // namespace

void AppendFrame(std::string* out, uint64_t offset, int64_t arrival_ms,
                 std::string_view partition_key, std::string_view data) {
  const size_t payload_size = kPayloadFixedSize + partition_key.size() + data.size();
  const size_t start = out->size();
  out->resize(start + kFrameHeaderSize + payload_size);
  char* frame = out->data() + start;
  char* payload = frame + kFrameHeaderSize;
  PutU32(frame + 4, static_cast<uint32_t>(payload_size));
  PutU64(payload, offset);
  PutU64(payload + 8, static_cast<uint64_t>(arrival_ms));
  PutU16(payload + 16, static_cast<uint16_t>(partition_key.size()));
  std::memcpy(payload + kPayloadFixedSize, partition_key.data(), partition_key.size());
  std::memcpy(payload + kPayloadFixedSize + partition_key.size(), data.data(), data.size());
  uint32_t crc = Crc32cExtend(0, frame + 4, 4 + payload_size);
  PutU32(frame, MaskCrc(crc));
}

FrameStatus DecodeFrame(std::string_view buffer, RecordView* record, size_t* frame_size) {
  *frame_size = 0;
  if (buffer.size() < kFrameHeaderSize) return FrameStatus::kTruncated;
  const char* frame = buffer.data();
  const uint32_t length = absl::little_endian::Load32(frame + 4);
  if (length < kPayloadFixedSize || length > kMaxPayloadSize) return FrameStatus::kCorrupt;
  *frame_size = kFrameHeaderSize + length;
  if (buffer.size() < *frame_size) return FrameStatus::kTruncated;
  const uint32_t expected = UnmaskCrc(absl::little_endian::Load32(frame));
  if (Crc32cExtend(0, frame + 4, 4 + length) != expected) return FrameStatus::kCorrupt;
  const char* payload = frame + kFrameHeaderSize;
  const uint16_t key_size = absl::little_endian::Load16(payload + 16);
  if (kPayloadFixedSize + key_size > length) return FrameStatus::kCorrupt;
  record->offset = absl::little_endian::Load64(payload);
  record->arrival_ms = static_cast<int64_t>(absl::little_endian::Load64(payload + 8));
  record->partition_key = std::string_view(payload + kPayloadFixedSize, key_size);
  record->data = std::string_view(payload + kPayloadFixedSize + key_size,
                                  length - kPayloadFixedSize - key_size);
  return FrameStatus::kOk;
}

}  // namespace runnel::broker
