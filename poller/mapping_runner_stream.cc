// The runner and its stream's identity: a mapping whose stream is deleted says so once, stops
// its shards and waits; when a stream of that name appears (another incarnation) it says so and
// consumes the new stream from the mapping's starting position. Its checkpoints and leases are
// the new stream's (the broker never returns an earlier incarnation's), so no record of the new
// stream is skipped for a position that belonged to the old one.
#include "absl/strings/str_cat.h"
#include "poller/mapping_runner_internal.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {
namespace {

// How often a mapping whose stream is gone asks whether one of that name exists again.
constexpr absl::Duration kStreamPollInterval = absl::Seconds(1);

}  // namespace

void MappingRunner::Impl::NoteStreamMissing() {
  absl::MutexLock lock(&mu_);
  stream_check_ = true;
}

bool MappingRunner::Impl::CheckStream() {
  bool gone, check;
  {
    absl::MutexLock lock(&mu_);
    gone = stream_gone_;
    check = stream_check_;
    stream_check_ = false;
  }
  if (!gone && !check) return true;
  const absl::Time now = absl::Now();
  if (gone && now < next_describe_) return false;
  next_describe_ = now + kStreamPollInterval;
  absl::StatusOr<StreamIdentity> described = source_->Describe();
  if (!described.ok()) {
    if (absl::IsNotFound(described.status())) {
      if (!gone) StreamDeleted();
      return false;
    }
    // Nothing is known (the broker is away, say): carry on as before; the next NOT_FOUND (or,
    // while the stream is gone, the next second) asks again.
    if (gone && now - last_list_error_log_ > absl::Seconds(10)) {
      last_list_error_log_ = now;
      spdlog::warn("cannot describe stream {}: {}", options_.spec.stream,
                   std::string(described.status().message()));
    }
    return !gone;
  }
  if (described->incarnation == incarnation_) {
    // Not deleted after all (a NOT_FOUND about something else), or back as it was.
    if (gone) {
      spdlog::info("stream {} is back (incarnation {}); mapping {} resumes from its checkpoints",
                   options_.spec.stream, described->incarnation, mapping_id_);
      absl::MutexLock lock(&mu_);
      stream_gone_ = false;
    }
    return true;
  }
  if (!gone) StreamDeleted();
  return StreamRecreated(*described);
}

void MappingRunner::Impl::StreamDeleted() {
  spdlog::warn("stream {} was deleted; mapping {} waits for a stream of that name",
               options_.spec.stream, mapping_id_);
  {
    absl::MutexLock lock(&mu_);
    stream_gone_ = true;
  }
  // Its shards stop at once: nothing of a deleted stream is checkpointed (there is nowhere to
  // put it), and a handler still running finishes. Reap forgets them once they have.
  for (const auto& shard : Owned()) Abandon(shard);
}

bool MappingRunner::Impl::StreamRecreated(const StreamIdentity& identity) {
  auto shards = source_->ListShards(identity.incarnation);
  if (!shards.ok()) return false;  // deleted again meanwhile, or unreachable: asked next second
  spdlog::info(
      "stream {} was re-created (incarnation {}); mapping {} starts at its "
      "starting_position {}",
      options_.spec.stream, identity.incarnation, mapping_id_,
      StartingPositionName(options_.spec.starting_position));
  incarnation_ = identity.incarnation;
  checkpoints_->SetStreamIncarnation(identity.incarnation);
  stream_arn_ = identity.arn;
  lane_context_.stream_arn = identity.arn;
  shard_ids_.clear();
  for (const SourceShard& shard : *shards) shard_ids_.push_back(shard.shard_id);
  absl::MutexLock lock(&mu_);
  stream_gone_ = false;
  return true;
}

}  // namespace runnel::poller
