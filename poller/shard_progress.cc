#include "poller/shard_progress.h"

namespace runnel::poller {

ShardProgress::ShardProgress(std::string shard_id, std::string checkpoint, size_t max_buffered,
                             std::function<void()> checkpoint_moved)
    : shard_id_(std::move(shard_id)),
      initial_checkpoint_(std::move(checkpoint)),
      max_buffered_(max_buffered),
      checkpoint_moved_(std::move(checkpoint_moved)) {}

void ShardProgress::Dispatched(uint64_t first_ordinal, const std::vector<SourceRecord>& records,
                               const std::vector<int>& lane_of) {
  bool filtered = false;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < records.size(); ++i) {
      const uint64_t ordinal = first_ordinal + i;
      tracker_.Dispatched(ordinal, records[i].sequence_number);
      if (lane_of[i] < 0) {
        tracker_.Completed(ordinal);
        filtered = true;
      } else {
        ++buffered_;
      }
    }
  }
  if (filtered) checkpoint_moved_();
}

void ShardProgress::Completed(std::span<const QueuedRecord> records) {
  {
    absl::MutexLock lock(&mu_);
    for (const QueuedRecord& record : records) tracker_.Completed(record.ordinal);
    buffered_ -= records.size();
  }
  checkpoint_moved_();
}

size_t ShardProgress::WaitForRoom(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || buffered_ < max_buffered_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&has_room), timeout);
  if (stopping_ || buffered_ >= max_buffered_) return 0;
  return max_buffered_ - buffered_;
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
