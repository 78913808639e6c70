#include "poller/shard_progress.h"

namespace runnel::poller {

namespace {

size_t RecordBytes(const SourceRecord& record) {
  return EventBytes(record.partition_key.size(), record.data.size(), record.sequence_number.size());
}

}  // namespace

ReadAheadLimit LaneReadAhead(const MappingSpec& spec, int batches) {
  ReadAheadLimit limit;
  limit.records = static_cast<size_t>(batches) * static_cast<size_t>(spec.batch_size);
  limit.bytes = static_cast<size_t>(batches) * kMaxInvokePayloadBytes + 1;
  return limit;
}

ShardProgress::ShardProgress(std::string shard_id, std::string checkpoint, int lanes,
                             ReadAheadLimit per_lane, std::function<void()> checkpoint_moved)
    : shard_id_(std::move(shard_id)),
      initial_checkpoint_(std::move(checkpoint)),
      per_lane_(per_lane),
      checkpoint_moved_(std::move(checkpoint_moved)),
      lanes_(static_cast<size_t>(lanes)) {}

size_t ShardProgress::Admit(uint64_t first_ordinal, const std::vector<SourceRecord>& records,
                            const std::vector<int>& lane_of, size_t begin) {
  bool filtered = false;
  size_t end = begin;
  {
    absl::MutexLock lock(&mu_);
    for (; end < records.size(); ++end) {
      const uint64_t ordinal = first_ordinal + end;
      if (lane_of[end] < 0) {
        tracker_.Dispatched(ordinal, records[end].sequence_number);
        tracker_.Completed(ordinal);
        filtered = true;
        continue;
      }
      LaneLoad& load = lanes_[static_cast<size_t>(lane_of[end])];
      if (!HasRoom(load)) break;
      tracker_.Dispatched(ordinal, records[end].sequence_number);
      ++load.records;
      load.bytes += RecordBytes(records[end]);
      ++buffered_;
    }
  }
  if (filtered) checkpoint_moved_();
  return end;
}

void ShardProgress::Completed(int lane, std::span<const QueuedRecord> records) {
  {
    absl::MutexLock lock(&mu_);
    LaneLoad& load = lanes_[static_cast<size_t>(lane)];
    for (const QueuedRecord& record : records) {
      tracker_.Completed(record.ordinal);
      load.bytes -= RecordBytes(record.record);
    }
    load.records -= records.size();
    buffered_ -= records.size();
  }
  checkpoint_moved_();
}

size_t ShardProgress::WaitForRoom(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t total = 0;
    for (const LaneLoad& load : lanes_) {
      if (HasRoom(load)) total += per_lane_.records - load.records;
    }
    return total;
  };
  auto has_room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || room() > 0; };
  mu_.AwaitWithTimeout(absl::Condition(&has_room), timeout);
  return stopping_ ? 0 : room();
}

bool ShardProgress::WaitForLaneRoom(int lane, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const LaneLoad& load = lanes_[static_cast<size_t>(lane)];
  auto has_room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || HasRoom(load); };
  mu_.AwaitWithTimeout(absl::Condition(&has_room), timeout);
  return !stopping_ && HasRoom(load);
}

void ShardProgress::RequestStop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

bool ShardProgress::PendingCheckpoint(std::string* sequence_number, uint64_t* version) {
  absl::MutexLock lock(&mu_);
  if (tracker_.Version() == written_version_ || tracker_.Checkpoint().empty()) return false;
  *sequence_number = tracker_.Checkpoint();
  *version = tracker_.Version();
  return true;
}

void ShardProgress::CheckpointWritten(uint64_t version) {
  absl::MutexLock lock(&mu_);
  written_version_ = std::max(written_version_, version);
}

void ShardProgress::SetMillisBehindLatest(int64_t millis) {
  absl::MutexLock lock(&mu_);
  millis_behind_latest_ = millis;
}

void ShardProgress::NoteError(std::string error) {
  absl::MutexLock lock(&mu_);
  last_error_ = std::move(error);
  last_error_time_ = absl::Now();
}

void ShardProgress::BatchStarted(uint64_t key, InFlightBatchStatus status) {
  absl::MutexLock lock(&mu_);
  in_flight_[key] = std::move(status);
}

void ShardProgress::BatchAttempt(uint64_t key, int attempt) {
  absl::MutexLock lock(&mu_);
  in_flight_[key].attempt = attempt;
}

void ShardProgress::BatchEnded(uint64_t key) {
  absl::MutexLock lock(&mu_);
  in_flight_.erase(key);
}

ShardRunStatus ShardProgress::Status() const {
  ShardRunStatus status;
  status.shard_id = shard_id_;
  absl::MutexLock lock(&mu_);
  status.checkpoint = tracker_.Checkpoint().empty() ? initial_checkpoint_ : tracker_.Checkpoint();
  status.millis_behind_latest = millis_behind_latest_;
  for (const auto& [key, batch] : in_flight_) status.in_flight.push_back(batch);
  status.buffered_records = static_cast<int64_t>(buffered_);
  status.last_error = last_error_;
  status.last_error_time = last_error_time_;
  return status;
}

}  // namespace runnel::poller
