#include "poller/shard_reader.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "poller/backoff.h"
#include "poller/filter.h"
#include "poller/lane.h"
#include "poller/metrics.h"
#include "poller/shard_progress.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {

uint64_t LaneHash(std::string_view key) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

StreamPosition MappingStartingPosition(const MappingSpec& spec) {
  StreamPosition position;
  switch (spec.starting_position) {
    case StartingPosition::kLatest:
      position.kind = StreamPosition::Kind::kLatest;
      break;
    case StartingPosition::kAtTimestamp:
      position.kind = StreamPosition::Kind::kAtTimestamp;
      position.timestamp = spec.starting_position_timestamp;
      break;
    default:
      position.kind = StreamPosition::Kind::kTrimHorizon;
  }
  return position;
}

ShardReader::ShardReader(const MappingSpec* spec, std::unique_ptr<RecordSource> source,
                         std::string checkpoint, const FilterSet* filters, std::vector<Lane*> lanes,
                         ShardProgress* progress, ShardMetrics* metrics,
                         std::function<void()> stream_missing)
    : spec_(*spec),
      source_(std::move(source)),
      filters_(*filters),
      lanes_(std::move(lanes)),
      progress_(*progress),
      metrics_(*metrics),
      stream_missing_(std::move(stream_missing)),
      resume_after_(std::move(checkpoint)) {}

void ShardReader::RequestStop() {
  stopping_ = true;
  source_->Cancel();
}

void ShardReader::Run() {
  bool positioned = false;
  absl::Duration backoff = absl::ZeroDuration();
  auto back_off = [&] {
    backoff = NextBackoff(backoff);
    const absl::Time until = absl::Now() + backoff;
    while (!stopping_ && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
  };
  // The stream is gone (or is another of the same name): the mapping says so once and stops
  // this reader; until then, wait without a line per attempt.
  auto missing = [&](const absl::Status& status) {
    if (!absl::IsNotFound(status) || !stream_missing_) return false;
    progress_.NoteError(std::string(status.message()));
    stream_missing_();
    back_off();
    return true;
  };
  while (!stopping_) {
    if (!positioned) {
      // After the last record handed out, else after the checkpoint, else the mapping's
      // starting position.
      absl::Status status =
          source_->Seek(resume_after_.empty() ? MappingStartingPosition(spec_)
                                              : StreamPosition::After(resume_after_));
      if (!status.ok()) {
        if (stopping_) break;
        if (missing(status)) continue;
        spdlog::warn("cannot position the reader: {}", std::string(status.message()));
        progress_.NoteError(std::string(status.message()));
        back_off();
        continue;
      }
      positioned = true;
    }
    const size_t room = progress_.WaitForRoom(absl::Seconds(1));
    if (room == 0) continue;
    absl::StatusOr<SourceRead> read = source_->Read(room);
    if (!read.ok()) {
      if (stopping_) break;
      positioned = false;
      if (missing(read.status())) continue;
      spdlog::warn("read failed ({}); repositioning after {}", std::string(read.status().message()),
                   resume_after_.empty() ? "the starting position" : resume_after_);
      progress_.NoteError(std::string(read.status().message()));
      back_off();
      continue;
    }
    backoff = absl::ZeroDuration();
    progress_.SetMillisBehindLatest(read->millis_behind_latest);
    Dispatch(std::move(read->records));
    // Resharding does not exist yet: a shard that ends is positioned again after its last
    // record (a later issue follows read->child_shards).
    if (read->shard_ended) positioned = false;
  }
}

void ShardReader::Dispatch(std::vector<SourceRecord> records) {
  if (records.empty()) return;
  const absl::Time now = absl::Now();
  // The lane of each record, or -1 when no filter lets it through: such a record is not
  // invoked and counts as processed (docs/aws-semantics.md#filters).
  std::vector<int> lane_of(records.size());
  bool filtered = false;
  for (size_t i = 0; i < records.size(); ++i) {
    if (!filters_.empty() && !filters_.Matches(records[i].data)) {
      lane_of[i] = -1;
      filtered = true;
    } else {
      lane_of[i] = static_cast<int>(LaneHash(records[i].partition_key) % lanes_.size());
    }
  }
  metrics_.records_polled->Increment(static_cast<double>(records.size()));
  if (filtered) {
    metrics_.records_filtered->Increment(
        static_cast<double>(std::count(lane_of.begin(), lane_of.end(), -1)));
  }
  const uint64_t first_ordinal = next_ordinal_;
  next_ordinal_ += records.size();
  // In shard order, as far as the lanes have room; at a record whose lane is full, wait for
  // that lane (never skip ahead: what is handed out must stay a prefix of the shard, see
  // poller/shard_progress.h). A stop abandons the rest, which is read again after a restart.
  size_t begin = 0;
  while (begin < records.size()) {
    const size_t end = progress_.Admit(first_ordinal, records, lane_of, begin);
    if (end == begin) {
      if (!progress_.WaitForLaneRoom(lane_of[begin], absl::Seconds(1)) && stopping_) return;
      continue;
    }
    resume_after_ = records[end - 1].sequence_number;
    std::vector<std::vector<QueuedRecord>> by_lane(lanes_.size());
    for (size_t i = begin; i < end; ++i) {
      if (lane_of[i] < 0) continue;
      by_lane[static_cast<size_t>(lane_of[i])].push_back(
          {std::move(records[i]), first_ordinal + static_cast<uint64_t>(i)});
    }
    for (size_t l = 0; l < lanes_.size(); ++l) {
      if (!by_lane[l].empty()) lanes_[l]->Add(std::move(by_lane[l]), now);
    }
    begin = end;
  }
}

}  // namespace runnel::poller
