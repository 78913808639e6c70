// The reader of one shard: positions its RecordSource (after the last record handed out, else
// after the checkpoint, else at the mapping's starting position), reads as far as the shard's
// read-ahead allows, and hands each record to its lane by a stable hash of the partition key
// (so a key always stays in one lane, in order), or marks it done at once when no filter lets it
// through. A lane whose read-ahead is full holds the reader back (see poller/shard_progress.h).
// Read errors are retried with back-off from where it left off; it knows nothing about
// the transport (see poller/record_source.h). NOT_FOUND (the stream is gone, or is another of
// the same name) is not logged here: the reader tells its mapping, which checks the stream,
// says so once and stops the readers.
//
// Run is the reader's own thread; RequestStop is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "poller/config.h"
#include "poller/record_source.h"

namespace runnel::poller {

class FilterSet;
class Lane;
class ShardProgress;
struct ShardMetrics;

// FNV-1a: a stable hash, so a key maps to the same lane in every run (easier to reason about
// when reading logs), and cheap for short keys.
uint64_t LaneHash(std::string_view key);

// Where a mapping without a checkpoint starts reading.
StreamPosition MappingStartingPosition(const MappingSpec& spec);

class ShardReader {
 public:
  // `checkpoint`: where reading resumes ("" : at the mapping's starting position).
  // `stream_missing` runs (on the reader's thread) when the source answers NOT_FOUND. Everything
  // pointed to outlives the reader.
  ShardReader(const MappingSpec* spec, std::unique_ptr<RecordSource> source, std::string checkpoint,
              const FilterSet* filters, std::vector<Lane*> lanes, ShardProgress* progress,
              ShardMetrics* metrics, std::function<void()> stream_missing = {});

  // Reads until RequestStop.
  void Run();
  // Stops reading: a read under way is cancelled.
  void RequestStop();

 private:
  // Hands the records of one read to their lanes, in order and as far as each lane's read-ahead
  // allows (waiting for room when one is full): the shard's bookkeeping under one lock, then each
  // lane's share under one lock of that lane, so that a lane wakes once per run of records, not
  // once per record (which made batches of a few records at high rates).
  void Dispatch(std::vector<SourceRecord> records);

  const MappingSpec& spec_;
  const std::unique_ptr<RecordSource> source_;
  const FilterSet& filters_;
  const std::vector<Lane*> lanes_;
  ShardProgress& progress_;
  ShardMetrics& metrics_;
  const std::function<void()> stream_missing_;
  std::string resume_after_;  // the last sequence number handed out, else the checkpoint
  uint64_t next_ordinal_ = 0;
  std::atomic<bool> stopping_{false};
};

}  // namespace runnel::poller
