// The runner's lease thread: heartbeats, renewals, takes, hand-offs and losses (see "Leases" in
// poller/mapping_runner.h).
#include <set>

#include "absl/strings/str_cat.h"
#include "client/broker_client.h"
#include "poller/lease_assignment.h"
#include "poller/mapping_runner_internal.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {

void MappingRunner::Impl::LeaseLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      // A NOT_FOUND somewhere starts the next round at once: it checks the stream.
      auto done = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return leases_done_ || stream_check_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&done), ScanInterval()) && leases_done_) return;
    }
    LeaseRound();
  }
}

void MappingRunner::Impl::UpdateHeldGauge() {
  int held = 0;
  for (const auto& [id, shard] : shards_) {
    held +=
        shard->state == OwnedShard::State::kRunning || shard->state == OwnedShard::State::kShedding;
  }
  lease_metrics_.held->Set(held);
}

void MappingRunner::Impl::Renew(const std::shared_ptr<OwnedShard>& shard) {
  const absl::Time sent = absl::Now();
  auto renewed = checkpoints_->RenewLease(shard->lease, options_.lease_duration);
  ScopedLogTags shard_tag{{kTagShard, shard->shard_id}};
  if (renewed.ok()) {
    absl::MutexLock lock(&mu_);
    shard->renewed_at = sent;
    shard->local_deadline = sent + options_.lease_duration;
    shard->lease.expiry = renewed->expiry;
    return;
  }
  if (absl::IsFailedPrecondition(renewed.status())) {
    Lose(shard, absl::StrCat("the renewal was refused: ", renewed.status().message()));
    return;
  }
  if (absl::IsNotFound(renewed.status())) return NoteStreamMissing();
  // Retried next round; the local deadline stops the shard if no renewal gets through in time.
  spdlog::warn("lease renewal failed ({}); retrying", std::string(renewed.status().message()));
}

void MappingRunner::Impl::LeaseRound() {
  absl::MutexLock round(&round_mu_);
  Reap();
  if (!CheckStream()) return;
  bool draining;
  {
    absl::MutexLock lock(&mu_);
    draining = draining_;
  }
  if (!draining) {
    if (absl::Status status = checkpoints_->Heartbeat(member_, HeartbeatTtl()); !status.ok()) {
      if (absl::IsNotFound(status)) {
        NoteStreamMissing();
      } else if (absl::Now() - last_list_error_log_ > absl::Seconds(10)) {
        spdlog::warn("heartbeat failed: {}", std::string(status.message()));
      }
    }
  }
  // Renewals first, and the local deadlines: a lease that could not be renewed in time may be
  // another poller's by now, so its shard stops at once.
  for (const auto& shard : Owned()) {
    // Read per shard: the renewals before this one may have taken a while (a slow broker, a
    // pause), and a clock read before them would renew a lease whose deadline passed meanwhile.
    const absl::Time now = absl::Now();
    OwnedShard::State state;
    absl::Time renewed_at, deadline;
    {
      absl::MutexLock lock(&mu_);
      state = shard->state;
      renewed_at = shard->renewed_at;
      deadline = shard->local_deadline;
    }
    if (state != OwnedShard::State::kRunning && state != OwnedShard::State::kShedding) continue;
    if (now >= deadline) {
      LoseAfterDeadline(shard, now - renewed_at);
      continue;
    }
    if (now - renewed_at >= RenewInterval()) Renew(shard);
  }
  if (draining) return;
  auto table = checkpoints_->ListLeases();
  if (!table.ok()) {
    if (absl::IsNotFound(table.status())) return NoteStreamMissing();
    if (absl::Now() - last_list_error_log_ > absl::Seconds(10)) {
      last_list_error_log_ = absl::Now();
      spdlog::warn("cannot read the lease table: {}", std::string(table.status().message()));
    }
    return;
  }
  std::map<std::string, const StoredCheckpoint*> by_shard;
  for (const StoredCheckpoint& stored : table->shards) by_shard[stored.shard_id] = &stored;
  std::set<std::string> mine;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, shard] : shards_) mine.insert(id);
  }
  std::vector<LeaseView> view;
  for (const std::string& shard_id : shard_ids_) {
    LeaseView lease{.shard_id = shard_id};
    if (auto it = by_shard.find(shard_id); it != by_shard.end()) {
      lease.owner = it->second->lease.owner;
      lease.expired = it->second->lease.expiry <= table->now;
    }
    // A lease the store gives this poller's id but that this runner does not run (an earlier
    // runner or process under the same id): free to take again.
    if (lease.owner == member_.id && !mine.contains(shard_id)) lease.owner.clear();
    view.push_back(std::move(lease));
  }
  std::vector<std::string> members;
  for (const FleetMember& member : table->members) members.push_back(member.id);
  const ShardAssignment assignment = AssignShards(member_.id, view, members);
  for (const std::string& shard_id : assignment.shed) {
    std::shared_ptr<OwnedShard> shard;
    {
      absl::MutexLock lock(&mu_);
      auto it = shards_.find(shard_id);
      if (it == shards_.end() || it->second->state != OwnedShard::State::kRunning) continue;
      shard = it->second;
    }
    spdlog::info("shard {}: handing over to rebalance ({} pollers, share {})", shard_id,
                 assignment.members, assignment.share);
    Shed(shard);
  }
  for (const std::string& shard_id : assignment.take) {
    if (mine.contains(shard_id)) continue;  // still draining here
    const StoredCheckpoint* stored = by_shard.contains(shard_id) ? by_shard[shard_id] : nullptr;
    Take(shard_id, stored != nullptr ? stored->lease.owner : "",
         stored != nullptr && stored->lease.expiry <= table->now);
  }
}

void MappingRunner::Impl::Take(const std::string& shard_id, const std::string& previous_owner,
                               bool expired) {
  ScopedLogTags shard_tag{{kTagShard, shard_id}};
  const absl::Time sent = absl::Now();
  auto taken = checkpoints_->TakeLease(shard_id, member_.id, options_.lease_duration);
  if (!taken.ok()) {
    // Another poller was faster, or the broker is away: the next round sees.
    if (absl::IsNotFound(taken.status())) return NoteStreamMissing();
    if (!absl::IsFailedPrecondition(taken.status())) {
      spdlog::warn("cannot take the lease: {}", std::string(taken.status().message()));
    }
    return;
  }
  auto shard = std::make_shared<OwnedShard>();
  shard->shard_id = shard_id;
  shard->lease = taken->lease;
  shard->renewed_at = sent;
  shard->local_deadline = sent + options_.lease_duration;
  std::string checkpoint = taken->sequence_number;
  if (checkpoint.empty()) {
    // Resolve the starting position now, not when the reader thread gets to it (LATEST means
    // the records put after the mapping started, not after some thread woke up), and store it,
    // so that a stop and start before the first record is done resumes there instead of
    // resolving LATEST again and skipping what was put meanwhile.
    auto pinned = PinStartingPosition(shard_id, shard->lease);
    if (absl::IsNotFound(pinned.status())) return NoteStreamMissing();
    if (!pinned.ok()) {
      spdlog::warn("cannot store the starting position ({}); giving the lease back",
                   std::string(pinned.status().message()));
      (void)checkpoints_->ReleaseLease(shard->lease);
      return;
    }
    checkpoint = *pinned;
  }
  LaneContext context = lane_context_;
  context.shard_id = shard_id;
  context.metrics = metrics_.ForShard(shard_id);
  OwnedShard* raw = shard.get();
  context.before_dead_letter = [this, raw] { return CheckLease(raw); };
  shard->consumer = std::make_unique<ShardConsumer>(
      context, &filters_, source_->OpenShard(shard_id, incarnation_), checkpoint,
      LaneReadAhead(options_.spec, options_.read_ahead_batches), [this] { CheckpointMoved(); },
      [this] { NoteStreamMissing(); });
  const bool takeover = expired && !previous_owner.empty() && previous_owner != member_.id;
  bool draining;
  {
    absl::MutexLock lock(&mu_);
    draining = draining_;
    if (!draining) {
      shards_[shard_id] = shard;
      UpdateHeldGauge();
    }
  }
  if (draining) {
    // A stop began meanwhile: give it back untouched.
    (void)checkpoints_->ReleaseLease(shard->lease);
    return;
  }
  (takeover ? lease_metrics_.takeovers : lease_metrics_.acquired)->Increment();
  if (takeover) {
    spdlog::info("shard {}: took over the expired lease of {} at epoch {}; resuming after {}",
                 shard_id, previous_owner, shard->lease.epoch, checkpoint);
  } else {
    spdlog::info("shard {}: lease taken at epoch {}; resuming after {}", shard_id,
                 shard->lease.epoch, checkpoint);
  }
  shard->consumer->Start();
}

void MappingRunner::Impl::Shed(const std::shared_ptr<OwnedShard>& shard) {
  LogTagSnapshot tags = CurrentLogTags();
  absl::MutexLock lock(&mu_);
  if (shard->state != OwnedShard::State::kRunning || draining_) return;
  shard->state = OwnedShard::State::kShedding;
  shard->has_stopper = true;
  shard->stopper = std::thread([this, shard, tags] {
    ScopedLogTags scoped(tags);
    ScopedLogTags shard_tag{{kTagShard, shard->shard_id}};
    shard->consumer->RequestStop();
    shard->consumer->Join();  // the lanes finish what they hold; renewals go on meanwhile
    bool release = false;
    {
      absl::MutexLock write_lock(&write_mu_);
      for (int attempt = 0; attempt < 5; ++attempt) {
        if (WriteCheckpoint(shard)) break;
        absl::SleepFor(absl::Milliseconds(100));
      }
      absl::MutexLock lock(&mu_);
      if (shard->state == OwnedShard::State::kShedding) {
        shard->state = OwnedShard::State::kReleased;
        release = true;
      }
      UpdateHeldGauge();
    }
    if (release) {
      if (absl::Status status = checkpoints_->ReleaseLease(shard->lease); status.ok()) {
        lease_metrics_.handoffs->Increment();
        spdlog::info("shard {}: handed over (checkpoint {}, epoch {} released)", shard->shard_id,
                     shard->consumer->progress().Status().checkpoint, shard->lease.epoch);
      } else {
        spdlog::warn("shard {}: release failed ({}); the lease expires instead", shard->shard_id,
                     std::string(status.message()));
      }
    }
    absl::MutexLock lock(&mu_);
    shard->stopped = true;
  });
}

void MappingRunner::Impl::Lose(const std::shared_ptr<OwnedShard>& shard, const std::string& why) {
  if (!Abandon(shard)) return;
  lease_metrics_.lost->Increment();
  spdlog::error(
      "shard {}: lost the lease (epoch {}): {}. Stopped reading it at once; invocations already "
      "running finish, but nothing more is checkpointed or dead-lettered for this shard",
      shard->shard_id, shard->lease.epoch, why);
}

bool MappingRunner::Impl::Abandon(const std::shared_ptr<OwnedShard>& shard) {
  bool start_stopper;
  {
    absl::MutexLock lock(&mu_);
    if (shard->state == OwnedShard::State::kLost || shard->state == OwnedShard::State::kReleased) {
      return false;
    }
    // A shedding shard has its stopper already; a stop joins the shards itself.
    start_stopper = shard->state == OwnedShard::State::kRunning && !draining_;
    shard->state = OwnedShard::State::kLost;
    UpdateHeldGauge();
  }
  // Not a drain: what the lanes hold is the new owner's to process.
  shard->consumer->Abandon();
  if (!start_stopper) return true;
  absl::MutexLock lock(&mu_);
  shard->has_stopper = true;
  shard->stopper = std::thread([this, shard] {
    shard->consumer->Join();
    absl::MutexLock lock(&mu_);
    shard->stopped = true;
  });
  return true;
}

void MappingRunner::Impl::LoseAfterDeadline(const std::shared_ptr<OwnedShard>& shard,
                                            absl::Duration since_renewal) {
  Lose(shard, absl::StrCat("the lease was not renewed before it expired (last renewal ",
                           absl::FormatDuration(since_renewal), " ago)"));
  // Safe either way: the broker takes a fenced write only while nobody else holds the lease, and
  // then nobody has read past the checkpoint.
  absl::MutexLock write_lock(&write_mu_);
  std::string sequence_number;
  uint64_t version = 0;
  const bool pending = shard->consumer->progress().PendingCheckpoint(&sequence_number, &version);
  absl::Status status =
      checkpoints_->SetCheckpoint(shard->shard_id, pending ? sequence_number : "", &shard->lease);
  ScopedLogTags shard_tag{{kTagShard, shard->shard_id}};
  if (status.ok()) {
    if (pending) shard->consumer->progress().CheckpointWritten(version);
    spdlog::warn("shard {}: nobody had taken the lease yet (epoch {}); checkpoint {} kept",
                 shard->shard_id, shard->lease.epoch,
                 shard->consumer->progress().Status().checkpoint);
  } else if (absl::IsFailedPrecondition(status)) {
    lease_metrics_.fenced_writes->Increment();
    spdlog::error("shard {}: the broker refused the write: {}", shard->shard_id,
                  std::string(status.message()));
  }
}

absl::Status MappingRunner::Impl::CheckLease(OwnedShard* shard) {
  {
    absl::MutexLock lock(&mu_);
    if (shard->state != OwnedShard::State::kRunning &&
        shard->state != OwnedShard::State::kShedding) {
      return absl::FailedPreconditionError("this poller no longer holds the shard's lease");
    }
  }
  // Checked with the broker at the lease's epoch: a poller that was paused past its lease learns
  // here, before writing, that the shard is another's.
  auto renewed = checkpoints_->RenewLease(shard->lease, options_.lease_duration);
  if (renewed.ok()) return absl::OkStatus();
  if (absl::IsFailedPrecondition(renewed.status())) {
    std::shared_ptr<OwnedShard> owned;
    {
      absl::MutexLock lock(&mu_);
      if (auto it = shards_.find(shard->shard_id); it != shards_.end()) owned = it->second;
    }
    if (owned != nullptr && owned.get() == shard) {
      lease_metrics_.fenced_writes->Increment();
      Lose(owned, absl::StrCat("a dead letter was refused: ", renewed.status().message()));
    }
  }
  if (absl::IsNotFound(renewed.status())) NoteStreamMissing();
  return renewed.status();
}

void MappingRunner::Impl::Reap() {
  std::vector<std::shared_ptr<OwnedShard>> done;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = shards_.begin(); it != shards_.end();) {
      if (it->second->stopped) {
        done.push_back(it->second);
        it = shards_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& shard : done) shard->stopper.join();
}

}  // namespace runnel::poller
