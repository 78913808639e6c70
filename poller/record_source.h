// Where a mapping's records come from, as the shard reader sees it: a stream that lists its shards,
// and per shard a source that is positioned and then read in order. The reader (see
// poller/shard_reader.h) knows nothing else about the transport, so that a stream read over
// runnel's gRPC API (poller/broker_record_source.h: polling, or polling then SubscribeToShard for
// fan_out) and one read elsewhere (a Kinesis endpoint over HTTP) run the same lanes, batching,
// failure policy and checkpoints.
//
// Nothing here names a gRPC or protobuf type. Errors are absl::Status with the codes the reader
// acts on:
//   NOT_FOUND           the stream or the shard does not exist (any more), or the stream of that
//                       name is not the one the source was opened for (see StreamIdentity);
//   FAILED_PRECONDITION the position is no longer valid (an expired iterator, a trimmed record);
//   RESOURCE_EXHAUSTED  a throughput limit; UNAVAILABLE, DEADLINE_EXCEEDED: the source is
//                       unreachable for now;
//   CANCELLED           Cancel() was called.
// Each message starts with the operation that failed ("GetRecords: ..."), for logs and
// `runnel mapping describe`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace runnel::poller {

// A position in a shard, as Kinesis's shard iterator types name them.
struct StreamPosition {
  enum class Kind { kTrimHorizon, kLatest, kAtTimestamp, kAtSequenceNumber, kAfterSequenceNumber };
  Kind kind = Kind::kTrimHorizon;
  std::string sequence_number;  // kAtSequenceNumber, kAfterSequenceNumber
  absl::Time timestamp;         // kAtTimestamp

  static StreamPosition After(std::string sequence_number) {
    return {Kind::kAfterSequenceNumber, std::move(sequence_number), absl::InfinitePast()};
  }
};

// One record as a handler will see it.
struct SourceRecord {
  std::string partition_key;
  std::string sequence_number;
  std::string data;
  int64_t approximate_arrival_ms = 0;  // Unix milliseconds
};

// A shard that follows a closed one (after a split or a merge).
struct ChildShard {
  std::string shard_id;
  std::vector<std::string> parent_shards;
};

// What one Read returned.
struct SourceRead {
  std::vector<SourceRecord> records;  // in sequence order, after everything read before
  int64_t millis_behind_latest = -1;  // -1: not known
  // The shard is closed and every record of it has been returned; its children follow.
  bool shard_ended = false;
  std::vector<ChildShard> child_shards;
};

// One shard's records, read in order. Seek and Read are called from one thread (the shard's
// reader); Cancel from any thread.
class RecordSource {
 public:
  virtual ~RecordSource() = default;

  // Positions the source: the next Read returns records from `position` on. A failed Seek leaves
  // it unpositioned (the caller backs off and seeks again).
  virtual absl::Status Seek(const StreamPosition& position) = 0;

  // The next records after those returned before, waiting a while (seconds) for some to arrive:
  // an empty result is not an error. At most `max_records` when the source can bound a read
  // (a pushed event carries what it carries). An error leaves the source unpositioned: Seek again,
  // after the last record returned.
  virtual absl::StatusOr<SourceRead> Read(size_t max_records) = 0;

  // Makes a Read or Seek under way return CANCELLED at once, and every later one too.
  virtual void Cancel() = 0;
};

// A shard of a stream, as listed.
struct SourceShard {
  std::string shard_id;
  std::string parent_shard_id;           // "" : none
  std::string adjacent_parent_shard_id;  // "" : none
};

// Which stream a name means now. A stream deleted and created again under its name is another
// stream, with another incarnation: its records, positions and checkpoints have nothing to do
// with its predecessor's.
struct StreamIdentity {
  // As the handler event's eventSourceARN carries it.
  std::string arn;
  // Tells apart streams of the same name; 0: the source cannot tell them apart.
  uint64_t incarnation = 0;
};

// The stream a mapping reads: its identity, its shards, and a source per shard.
class StreamSource {
 public:
  virtual ~StreamSource() = default;
  // The stream that has the name now: NOT_FOUND when there is none.
  virtual absl::StatusOr<StreamIdentity> Describe() = 0;
  // The shards of the stream of `incarnation` (0: whichever has the name): NOT_FOUND once that
  // one is gone.
  virtual absl::StatusOr<std::vector<SourceShard>> ListShards(uint64_t incarnation) = 0;
  // A source for one shard of the stream of `incarnation`, not yet positioned. Its Seek and Read
  // fail NOT_FOUND once that stream is gone, also when another of the name replaced it.
  virtual std::unique_ptr<RecordSource> OpenShard(const std::string& shard_id,
                                                  uint64_t incarnation) = 0;
};

}  // namespace runnel::poller
