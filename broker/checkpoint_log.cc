#include "broker/checkpoint_log.h"

#include "absl/base/internal/endian.h"
#include "broker/log_format.h"

namespace runnel::broker {
namespace {

// Smallest entry: a frame with a one-byte key and no data.
constexpr size_t kMinEntrySize = kFrameHeaderSize + kPayloadFixedSize + 1;

// The frame's fixed fields at `position` could be an entry's: checked before any CRC, so a scan
// over garbage computes a CRC only where a plausible length and kind happen to line up.
bool Plausible(std::string_view contents, size_t position) {
  const size_t left = contents.size() - position;
  if (left < kMinEntrySize) return false;
  const char* frame = contents.data() + position;
  const uint32_t length = absl::little_endian::Load32(frame + 4);
  if (length < kPayloadFixedSize + 1 || length > kMaxCheckpointEntrySize - kFrameHeaderSize ||
      length > left - kFrameHeaderSize) {
    return false;
  }
  const char* payload = frame + kFrameHeaderSize;
  if (absl::little_endian::Load16(payload + 16) != 1) return false;
  const char kind = payload[kPayloadFixedSize];
  return kind == kPutCheckpointEntry || kind == kDeleteCheckpointEntry;
}

bool DecodeAt(std::string_view contents, size_t position, CheckpointLogEntry* entry, size_t* size) {
  if (!Plausible(contents, position)) return false;
  RecordView record;
  if (DecodeFrame(contents.substr(position), &record, size) != FrameStatus::kOk) return false;
  entry->sequence = record.offset;
  entry->kind = record.partition_key[0];
  entry->serialized_checkpoint = record.data;
  entry->position = position;
  return true;
}

}  // namespace

void AppendCheckpointEntry(std::string* out, uint64_t sequence, char kind,
                           std::string_view serialized_checkpoint) {
  AppendFrame(out, sequence, 0, std::string_view(&kind, 1), serialized_checkpoint);
}

CheckpointLogScan ScanCheckpointLog(std::string_view contents) {
  CheckpointLogScan scan;
  size_t position = 0;
  CheckpointLogEntry entry;
  size_t size = 0;
  while (position < contents.size()) {
    if (DecodeAt(contents, position, &entry, &size)) {
      scan.entries.push_back(entry);
      position += size;
      continue;
    }
    // Not a whole entry. If one starts further on, this is damage before the end: skip to it.
    size_t next = position + 1;
    while (next < contents.size() && !DecodeAt(contents, next, &entry, &size)) ++next;
    if (next >= contents.size()) break;  // nothing valid follows: a torn tail
    scan.corrupt.push_back({position, next});
    position = next;
  }
  scan.valid_end = position;
  return scan;
}

}  // namespace runnel::broker
