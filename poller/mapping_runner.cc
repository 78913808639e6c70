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
#include "poller/metrics.h"
#include "poller/shard_progress.h"
#include "poller/shard_reader.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {

// One shard of the mapping: its progress, its lanes and its reader, and their threads.
class ShardConsumer {
 public:
  ShardConsumer(const LaneContext& lane_context, const FilterSet* filters,
                std::unique_ptr<RecordSource> source, std::string checkpoint,
                ReadAheadLimit read_ahead, std::function<void()> checkpoint_moved);

  void Start();
  // Stops reading; the lanes finish the records already read (see Lane::Run), except batches
  // that need a retry.
  void RequestStop();
  void Join();

  ShardProgress& progress() { return progress_; }
  ShardMetrics& metrics() { return *lane_context_.metrics; }
  const std::string& shard_id() const { return lane_context_.shard_id; }

 private:
  LaneContext lane_context_;
  ShardProgress progress_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::unique_ptr<ShardReader> reader_;
  const std::string mapping_id_;
  std::thread reader_thread_;
  std::vector<std::thread> lane_threads_;

  // What every line of this shard's threads is about.
  ScopedLogTags LogTags() const {
    const MappingSpec& spec = *lane_context_.spec;
    return ScopedLogTags{{kTagComponent, "poller"},
                         {kTagMapping, mapping_id_},
                         {kTagStream, spec.stream},
                         {kTagShard, lane_context_.shard_id},
                         {kTagFunction, spec.function}};
  }
};

// A shard this runner holds the lease of, and consumes.
struct OwnedShard {
  enum class State {
    kRunning,   // reading and checkpointing
    kShedding,  // handing over: draining, then the final checkpoint, then the release
    kReleased,  // handed over (or being released): nothing more is written
    kLost,      // the lease is gone: stopped at once, nothing more is written
  };
  std::string shard_id;
  ShardLease lease;  // owner and epoch fixed; expiry moves with renewals (under the runner's mu)
  std::unique_ptr<ShardConsumer> consumer;
  State state = State::kRunning;
  absl::Time renewed_at;      // local time the last successful renewal (or the take) was sent
  absl::Time local_deadline;  // renewed_at + lease duration: past it the lease may be another's
  // Drains a shed or lost shard. Created under the runner's mu (has_stopper says so); joined by
  // Reap on the lease thread, or by Stop once the lease thread has ended.
  std::thread stopper;
  bool has_stopper = false;
  bool stopped = false;  // the stopper finished: to be reaped
};

class MappingRunner::Impl {
 public:
  explicit Impl(MappingRunnerOptions options)
      : options_(std::move(options)), metrics_(options_.metrics, options_.spec) {
    if (options_.poller_id.empty()) options_.poller_id = DefaultPollerId();
    if (options_.lease_duration <= absl::ZeroDuration())
      options_.lease_duration = absl::Seconds(10);
    member_.id = options_.poller_id;
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    member_.host = host;
    member_.pid = ::getpid();
  }
  ~Impl() { Stop(absl::Seconds(0)); }

  absl::Status Init();
  void Start();
  void Stop(absl::Duration grace);
  // A shard's checkpoint moved: wake the checkpoint writer.
  void CheckpointMoved() {
    absl::MutexLock lock(&mu_);
    dirty_ = true;
  }

  const MappingRunnerOptions& options() const { return options_; }
  // Tags for lines about the whole mapping (its shards add their own).
  ScopedLogTags LogTags() const {
    return ScopedLogTags{{kTagComponent, "poller"},
                         {kTagMapping, mapping_id_},
                         {kTagStream, options_.spec.stream},
                         {kTagFunction, options_.spec.function}};
  }
  // Writes every checkpoint that moved now (see MappingRunner::FlushCheckpoints).
  bool FlushCheckpoints() {
    ScopedLogTags tags = LogTags();
    return WriteCheckpoints();
  }
  // Stops reading and starting batches in every shard, and taking shards; does not wait.
  void RequestStop();
  MappingRunnerStatus Status() const;

 private:
  using Shards = std::vector<std::shared_ptr<OwnedShard>>;
  // Stores the mapping's starting position as the shard's checkpoint; returns it.
  absl::StatusOr<std::string> PinStartingPosition(const std::string& shard_id);
  void CheckpointLoop();
  // Writes every shard checkpoint that moved; false if a write failed.
  bool WriteCheckpoints();
  // Writes one shard's moved checkpoint, fenced by its lease; false if the write failed. A
  // refusal (the lease moved on) stops the shard at once.
  bool WriteCheckpoint(const std::shared_ptr<OwnedShard>& shard)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  Shards Owned() const ABSL_LOCKS_EXCLUDED(mu_);

  // The lease thread: one round every scan interval until the stop.
  void LeaseLoop();
  // Heartbeat, renewals, local deadlines, then takes and sheds by the assignment rule (unless
  // stopping).
  void LeaseRound();
  void Renew(const std::shared_ptr<OwnedShard>& shard);
  // Takes the shard's lease and starts consuming it after the stored checkpoint.
  void Take(const std::string& shard_id, const std::string& previous_owner, bool expired);
  // Hands the shard over: drain, final checkpoint, release (on a thread of its own).
  void Shed(const std::shared_ptr<OwnedShard>& shard);
  // The lease is gone: stop the shard at once; what still finishes is not checkpointed.
  void Lose(const std::shared_ptr<OwnedShard>& shard, const std::string& why);
  // The lease was not renewed before its local deadline: stop the shard at once, then ask the
  // broker with one fenced write whether the lease is still this poller's (it then keeps what
  // was done) or another's (the refusal names the new owner).
  void LoseAfterDeadline(const std::shared_ptr<OwnedShard>& shard, absl::Duration since_renewal);
  // Joins the stoppers that finished and forgets their shards.
  void Reap();
  void UpdateHeldGauge() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checked by the lanes before each dead letter (LaneContext::before_dead_letter).
  absl::Status CheckLease(OwnedShard* shard);
  absl::Duration ScanInterval() const {
    return std::min(options_.lease_duration / 5, absl::Milliseconds(500));
  }
  absl::Duration RenewInterval() const { return options_.lease_duration / 3; }
  // Three scans: a live poller survives two lost heartbeats, a dead one drops out of the shares
  // about when its leases expire (until then its unexpired leases count it anyway).
  absl::Duration HeartbeatTtl() const { return 3 * ScanInterval(); }

  MappingRunnerOptions options_;
  MappingMetrics metrics_;
  const LeaseMetrics& lease_metrics_ = metrics_.leases();
  FleetMember member_;
  std::shared_ptr<StreamSource> source_;
  std::shared_ptr<CheckpointClient> checkpoints_;
  std::string stream_arn_;
  const std::string mapping_id_ = options_.spec.Id();
  FilterSet filters_;
  std::unique_ptr<FailureDestination> destination_;  // null: none configured
  std::vector<std::string> shard_ids_;               // every shard of the stream
  LaneContext lane_context_;                         // shared by all shards, shard fields aside

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<OwnedShard>> shards_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;     // the checkpoint writer ends
  bool draining_ ABSL_GUARDED_BY(mu_) = false;     // no more takes or sheds
  bool leases_done_ ABSL_GUARDED_BY(mu_) = false;  // the lease thread ends
  bool stopped_ = false;
  absl::Mutex write_mu_;
  // Serialises lease rounds (the first runs in Start, the others on the lease thread).
  absl::Mutex round_mu_;
  std::thread checkpointer_;
  std::thread lease_thread_;
  absl::Time last_list_error_log_ = absl::InfinitePast();
  static constexpr int kResultNone = 0, kResultOk = 1, kResultProblem = 2;
  std::atomic<int> last_result_{kResultNone};
};

std::string DefaultPollerId() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::random_device random;
  return absl::StrCat(host, ":", ::getpid(), ":", absl::Hex(random() & 0xffffff, absl::kZeroPad6));
}

ShardConsumer::ShardConsumer(const LaneContext& lane_context, const FilterSet* filters,
                             std::unique_ptr<RecordSource> source, std::string checkpoint,
                             ReadAheadLimit read_ahead, std::function<void()> checkpoint_moved)
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
                                          std::move(lanes), &progress_, lane_context_.metrics);
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

void ShardConsumer::Join() {
  if (reader_thread_.joinable()) reader_thread_.join();
  for (std::thread& thread : lane_threads_) {
    if (thread.joinable()) thread.join();
  }
}

absl::StatusOr<std::string> MappingRunner::Impl::PinStartingPosition(const std::string& shard_id) {
  auto stored = checkpoints_->SetCheckpointAt(shard_id, MappingStartingPosition(options_.spec));
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
  ASSIGN_OR_RETURN(stream_arn_, source_->StreamArn());
  ASSIGN_OR_RETURN(std::vector<SourceShard> shards, source_->ListShards());
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

void MappingRunner::Impl::LeaseLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return leases_done_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&done), ScanInterval())) return;
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
  // Retried next round; the local deadline stops the shard if no renewal gets through in time.
  spdlog::warn("lease renewal failed ({}); retrying", std::string(renewed.status().message()));
}

void MappingRunner::Impl::LeaseRound() {
  absl::MutexLock round(&round_mu_);
  Reap();
  bool draining;
  {
    absl::MutexLock lock(&mu_);
    draining = draining_;
  }
  if (!draining) {
    if (absl::Status status = checkpoints_->Heartbeat(member_, HeartbeatTtl());
        !status.ok() && absl::Now() - last_list_error_log_ > absl::Seconds(10)) {
      spdlog::warn("heartbeat failed: {}", std::string(status.message()));
    }
  }
  // Renewals first, and the local deadlines: a lease that could not be renewed in time may be
  // another poller's by now, so its shard stops at once.
  const absl::Time now = absl::Now();
  for (const auto& shard : Owned()) {
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
    auto pinned = PinStartingPosition(shard_id);
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
      context, &filters_, source_->OpenShard(shard_id), checkpoint,
      LaneReadAhead(options_.spec, options_.read_ahead_batches), [this] { CheckpointMoved(); });
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
  bool start_stopper;
  {
    absl::MutexLock lock(&mu_);
    if (shard->state == OwnedShard::State::kLost || shard->state == OwnedShard::State::kReleased) {
      return;
    }
    // A shedding shard has its stopper already; a stop joins the shards itself.
    start_stopper = shard->state == OwnedShard::State::kRunning && !draining_;
    shard->state = OwnedShard::State::kLost;
    UpdateHeldGauge();
  }
  lease_metrics_.lost->Increment();
  spdlog::error(
      "shard {}: lost the lease (epoch {}): {}. Stopped reading it at once; invocations already "
      "running finish, but nothing more is checkpointed or dead-lettered for this shard",
      shard->shard_id, shard->lease.epoch, why);
  shard->consumer->RequestStop();
  if (!start_stopper) return;
  absl::MutexLock lock(&mu_);
  shard->has_stopper = true;
  shard->stopper = std::thread([this, shard] {
    shard->consumer->Join();
    absl::MutexLock lock(&mu_);
    shard->stopped = true;
  });
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
