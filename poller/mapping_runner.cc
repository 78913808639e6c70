#include "poller/mapping_runner.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/broker_client.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "poller/backoff.h"
#include "poller/batcher.h"
#include "poller/broker_record_source.h"
#include "poller/checkpoint_client.h"
#include "poller/destination.h"
#include "poller/filter.h"
#include "poller/lane.h"
#include "poller/lease_assignment.h"
#include "poller/mapping_runner_internal.h"
#include "poller/metrics.h"
#include "poller/shard_progress.h"
#include "poller/shard_reader.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {

std::string DefaultPollerId() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::random_device random;
  return absl::StrCat(host, ":", ::getpid(), ":", absl::Hex(random() & 0xffffff, absl::kZeroPad6));
}

ShardConsumer::ShardConsumer(const LaneContext& lane_context, const FilterSet* filters,
                             std::unique_ptr<RecordSource> source, std::string checkpoint,
                             ReadAheadLimit read_ahead, std::function<void()> checkpoint_moved,
                             std::function<void()> stream_missing)
    : lane_context_(lane_context),
      progress_(lane_context.shard_id, checkpoint, lane_context.spec->parallelization_factor,
                read_ahead, std::move(checkpoint_moved)),
      mapping_id_(lane_context.spec->Id()) {
  lane_context_.progress = &progress_;
  const MappingSpec& spec = *lane_context_.spec;
  BatchingRules rules;
  rules.batch_size = spec.batch_size;
  rules.window = spec.maximum_batching_window;
  std::vector<Lane*> lanes;
  for (int i = 0; i < spec.parallelization_factor; ++i) {
    lanes_.push_back(std::make_unique<Lane>(&lane_context_, i, rules));
    lanes.push_back(lanes_.back().get());
  }
  reader_ = std::make_unique<ShardReader>(&spec, std::move(source), std::move(checkpoint), filters,
                                          std::move(lanes), &progress_, lane_context_.metrics,
                                          std::move(stream_missing));
}

void ShardConsumer::Start() {
  reader_thread_ = std::thread([this] {
    ScopedLogTags tags = LogTags();
    reader_->Run();
  });
  for (auto& lane : lanes_) {
    lane_threads_.emplace_back([this, lane = lane.get()] {
      ScopedLogTags tags = LogTags();
      lane->Run();
    });
  }
}

void ShardConsumer::RequestStop() {
  reader_->RequestStop();
  progress_.RequestStop();
  for (auto& lane : lanes_) lane->RequestStop();
}

void ShardConsumer::Abandon() {
  reader_->RequestStop();
  progress_.RequestStop();
  for (auto& lane : lanes_) lane->Abandon();
}

void ShardConsumer::Join() {
  if (reader_thread_.joinable()) reader_thread_.join();
  for (std::thread& thread : lane_threads_) {
    if (thread.joinable()) thread.join();
  }
}

absl::StatusOr<std::string> MappingRunner::Impl::PinStartingPosition(const std::string& shard_id,
                                                                     const ShardLease& lease) {
  // Fenced by the lease just taken: an unfenced write would free it again.
  auto stored =
      checkpoints_->SetCheckpointAt(shard_id, MappingStartingPosition(options_.spec), &lease);
  if (!stored.ok()) return client::WithContext(stored.status(), shard_id);
  return stored->sequence_number;
}

absl::Status MappingRunner::Impl::Init() {
  const MappingSpec& spec = options_.spec;
  source_ = options_.source;
  if (source_ == nullptr) {
    source_ = MakeBrokerStreamSource(options_.broker, spec.stream, spec.consumer, spec.Id());
  }
  checkpoints_ = options_.checkpoints;
  if (checkpoints_ == nullptr) {
    checkpoints_ = MakeBrokerCheckpointClient(options_.broker, spec.Id(), spec.stream);
  }
  std::vector<std::string> patterns;
  for (const FilterSpec& filter : spec.filters) patterns.push_back(filter.pattern_json);
  ASSIGN_OR_RETURN(filters_, FilterSet::Compile(patterns));
  ASSIGN_OR_RETURN(destination_, MakeFailureDestination(spec.on_failure, options_.broker));
  // The stream as it is now: everything later names this incarnation of it, so that a stream
  // deleted and created again under its name is noticed, not read as if it were the old one.
  ASSIGN_OR_RETURN(StreamIdentity identity, source_->Describe());
  stream_arn_ = identity.arn;
  incarnation_ = identity.incarnation;
  checkpoints_->SetStreamIncarnation(identity.incarnation);
  ASSIGN_OR_RETURN(std::vector<SourceShard> shards, source_->ListShards(identity.incarnation));
  for (const SourceShard& shard : shards) shard_ids_.push_back(shard.shard_id);
  // A broker that cannot keep leases cannot share shards: fail here, not in the first round.
  RETURN_IF_ERROR(checkpoints_->ListLeases().status());
  lane_context_.spec = &options_.spec;
  lane_context_.function = options_.function;
  lane_context_.region = options_.region;
  lane_context_.stream_arn = stream_arn_;
  lane_context_.destination = destination_.get();
  lane_context_.invocation_finished = [this](bool ok) {
    last_result_ = ok ? kResultOk : kResultProblem;
  };
  return absl::OkStatus();
}

void MappingRunner::Impl::Start() {
  ScopedLogTags tags = LogTags();
  // The first round before Start returns: a poller alone consumes every shard at once, as a
  // single poller always did.
  LeaseRound();
  size_t held;
  {
    absl::MutexLock lock(&mu_);
    held = shards_.size();
  }
  checkpointer_ = std::thread([this] {
    ScopedLogTags tags = LogTags();
    CheckpointLoop();
  });
  lease_thread_ = std::thread([this] {
    ScopedLogTags tags = LogTags();
    LeaseLoop();
  });
  spdlog::info(
      "mapping {}: poller {} consuming {} of {} shards of {} into function {} (batch {}, window "
      "{}, parallelization {}, lease {})",
      mapping_id_, member_.id, held, shard_ids_.size(), options_.spec.stream,
      options_.spec.function, options_.spec.batch_size,
      absl::FormatDuration(options_.spec.maximum_batching_window),
      options_.spec.parallelization_factor, absl::FormatDuration(options_.lease_duration));
}

MappingRunner::Impl::Shards MappingRunner::Impl::Owned() const {
  absl::MutexLock lock(&mu_);
  Shards out;
  for (const auto& [id, shard] : shards_) out.push_back(shard);
  return out;
}

bool MappingRunner::Impl::WriteCheckpoint(const std::shared_ptr<OwnedShard>& shard) {
  {
    absl::MutexLock lock(&mu_);
    // A lost shard's results are not checkpointed; a released one is another's now.
    if (shard->state != OwnedShard::State::kRunning &&
        shard->state != OwnedShard::State::kShedding) {
      return true;
    }
  }
  ShardConsumer& consumer = *shard->consumer;
  std::string sequence_number;
  uint64_t version;
  if (!consumer.progress().PendingCheckpoint(&sequence_number, &version)) return true;
  absl::Status status =
      checkpoints_->SetCheckpoint(shard->shard_id, sequence_number, &shard->lease);
  if (status.ok()) {
    consumer.progress().CheckpointWritten(version);
    consumer.metrics().Checkpointed(sequence_number);
    return true;
  }
  if (absl::IsNotFound(status)) {
    // The stream is gone: no retry can store this; the lease thread says so and stops the shard.
    consumer.progress().NoteError(absl::StrCat("SetCheckpoint: ", status.message()));
    NoteStreamMissing();
    return true;
  }
  ScopedLogTags shard_tag{{kTagShard, shard->shard_id}};
  if (absl::IsFailedPrecondition(status)) {
    lease_metrics_.fenced_writes->Increment();
    Lose(shard,
         absl::StrCat("the broker refused checkpoint ", sequence_number, ": ", status.message()));
    return true;
  }
  consumer.progress().NoteError(absl::StrCat("SetCheckpoint: ", status.message()));
  spdlog::warn("checkpoint not written ({}); will retry", std::string(status.message()));
  return false;
}

bool MappingRunner::Impl::WriteCheckpoints() {
  // One writer at a time: two writers could land an older checkpoint after a newer one.
  absl::MutexLock write_lock(&write_mu_);
  bool ok = true;
  for (const auto& shard : Owned()) ok &= WriteCheckpoint(shard);
  return ok;
}

void MappingRunner::Impl::CheckpointLoop() {
  // One write per shard whose checkpoint moved; completions that land meanwhile ride on the
  // next write, so checkpoint cost does not grow with the record rate.
  absl::Duration backoff = absl::ZeroDuration();
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return dirty_ || stopping_; };
      mu_.Await(absl::Condition(&wake));
      if (stopping_) return;
      dirty_ = false;
    }
    if (WriteCheckpoints()) {
      backoff = absl::ZeroDuration();
    } else {
      backoff = NextBackoff(backoff);
      absl::SleepFor(backoff);
      CheckpointMoved();
    }
  }
}

void MappingRunner::Impl::RequestStop() {
  Shards shards;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    for (const auto& [id, shard] : shards_) shards.push_back(shard);
  }
  for (auto& shard : shards) shard->consumer->RequestStop();
}

void MappingRunner::Impl::Stop(absl::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  ScopedLogTags tags = LogTags();
  RequestStop();
  // The lease thread goes on renewing while the lanes drain (which may outlast a lease).
  {
    absl::MutexLock round(&round_mu_);  // no round is halfway through a take or a shed
  }
  for (const auto& shard : Owned()) {
    bool has_stopper;
    {
      absl::MutexLock lock(&mu_);
      has_stopper = shard->has_stopper;
    }
    // Draining: no new stoppers start, so a shard without one is joined only here.
    if (!has_stopper) shard->consumer->Join();
  }
  {
    absl::MutexLock lock(&mu_);
    auto stoppers_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& [id, shard] : shards_) {
        if (shard->has_stopper && !shard->stopped) return false;
      }
      return true;
    };
    mu_.Await(absl::Condition(&stoppers_done));
    stopping_ = true;
  }
  if (checkpointer_.joinable()) checkpointer_.join();
  // Final checkpoints, so a restart (or the next owner) does not repeat what finished.
  const absl::Time deadline = absl::Now() + std::max(grace, absl::Seconds(5));
  while (!WriteCheckpoints() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(100));
  {
    absl::MutexLock lock(&mu_);
    leases_done_ = true;
  }
  if (lease_thread_.joinable()) lease_thread_.join();
  for (const auto& shard : Owned()) {
    if (shard->stopper.joinable()) shard->stopper.join();  // the lease thread no longer reaps
  }
  // Leave the fleet, then hand every lease over: the rest takes the shards at its next scan.
  if (checkpoints_ != nullptr) (void)checkpoints_->Heartbeat(member_, absl::ZeroDuration());
  int released = 0;
  for (const auto& shard : Owned()) {
    bool release;
    {
      absl::MutexLock lock(&mu_);
      release = shard->state == OwnedShard::State::kRunning ||
                shard->state == OwnedShard::State::kShedding;
      if (release) shard->state = OwnedShard::State::kReleased;
    }
    if (!release) continue;
    if (absl::Status status = checkpoints_->ReleaseLease(shard->lease); status.ok()) {
      ++released;
      lease_metrics_.handoffs->Increment();
    } else {
      spdlog::warn("shard {}: release failed ({}); the lease expires instead", shard->shard_id,
                   std::string(status.message()));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    UpdateHeldGauge();
  }
  spdlog::info("mapping {} stopped ({} leases released)", mapping_id_, released);
}

MappingRunnerStatus MappingRunner::Impl::Status() const {
  MappingRunnerStatus status;
  for (const auto& shard : Owned()) {
    {
      absl::MutexLock lock(&mu_);
      if (shard->state == OwnedShard::State::kLost ||
          shard->state == OwnedShard::State::kReleased) {
        continue;
      }
    }
    status.shards.push_back(shard->consumer->progress().Status());
  }
  switch (last_result_.load()) {
    case kResultOk:
      status.last_processing_result = "OK";
      break;
    case kResultProblem:
      status.last_processing_result = "PROBLEM: Function call failed";
      break;
    default:
      status.last_processing_result = "No records processed";
  }
  return status;
}

MappingRunner::MappingRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MappingRunner::~MappingRunner() { Stop(absl::Seconds(0)); }

absl::StatusOr<std::unique_ptr<MappingRunner>> MappingRunner::Start(MappingRunnerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status status = impl->Init(); !status.ok()) {
    return absl::Status(
        status.code(), absl::StrCat("mapping ", impl->options().spec.Id(), ": ", status.message()));
  }
  impl->Start();
  return std::unique_ptr<MappingRunner>(new MappingRunner(std::move(impl)));
}

void MappingRunner::Stop(absl::Duration grace) {
  if (impl_) impl_->Stop(grace);
}

void MappingRunner::RequestStop() { impl_->RequestStop(); }

bool MappingRunner::FlushCheckpoints() { return impl_->FlushCheckpoints(); }

const MappingSpec& MappingRunner::spec() const { return impl_->options().spec; }

MappingRunnerStatus MappingRunner::Status() const { return impl_->Status(); }

}  // namespace runnel::poller
