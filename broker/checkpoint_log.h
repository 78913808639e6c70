// The entries of checkpoints.log and the scan that replays them (specified in
// broker/LOG_FORMAT.md, "Checkpoints"). An entry is one shard-log frame (broker/log_format.h)
// whose key is the entry kind ('P' put, 'D' delete) and whose data is a serialized
// runnel.v1.Checkpoint. Pure functions: no I/O here.
//
// Only the end of a file can be torn (a write that never completed was never acknowledged). A
// bad entry with a whole entry after it is corruption: the scan skips it and goes on, so one
// flipped byte costs one entry, never the entries that follow. A damaged entry's length cannot be
// trusted, so the scan resynchronises on the next position that holds a whole, valid entry; it
// checks the frame's fixed fields first (a plausible length, a one-byte key that is 'P' or 'D')
// and computes a CRC only where they fit, over at most kMaxCheckpointEntrySize bytes, so a
// garbled region costs about one pass over its bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace runnel::broker {

// A checkpoint entry is at most this big, frame included (names and sequence numbers are a few
// hundred bytes at most; the store refuses larger ones).
inline constexpr size_t kMaxCheckpointEntrySize = 64 * 1024;

inline constexpr char kPutCheckpointEntry = 'P';
inline constexpr char kDeleteCheckpointEntry = 'D';

// Appends one entry: `sequence` numbers the entries of a file (1, 2, ...), `kind` is 'P' or 'D'.
void AppendCheckpointEntry(std::string* out, uint64_t sequence, char kind,
                           std::string_view serialized_checkpoint);

struct CheckpointLogEntry {
  uint64_t sequence = 0;
  char kind = 0;
  std::string_view serialized_checkpoint;  // a view into the scanned buffer
  uint64_t position = 0;                   // where the entry starts in the file
};

// A damaged region before the end of the file: [begin, end), skipped.
struct CorruptRegion {
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct CheckpointLogScan {
  std::vector<CheckpointLogEntry> entries;  // the whole, valid entries, in file order
  std::vector<CorruptRegion> corrupt;       // damaged regions that have valid entries after them
  // The end of the last whole entry: what follows it (a torn tail) is to be cut.
  uint64_t valid_end = 0;
};

CheckpointLogScan ScanCheckpointLog(std::string_view contents);

}  // namespace runnel::broker
