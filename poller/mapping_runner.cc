#include "poller/mapping_runner.h"

#include <algorithm>
#include <atomic>
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

class MappingRunner::Impl {
 public:
  explicit Impl(MappingRunnerOptions options)
      : options_(std::move(options)), metrics_(options_.metrics, options_.spec) {}
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
  // Stops reading and starting batches in every shard; does not wait.
  void RequestStop();
  MappingRunnerStatus Status() const;

 private:
  // Stores the mapping's starting position as the shard's checkpoint; returns it.
  absl::StatusOr<std::string> PinStartingPosition(const std::string& shard_id);
  void CheckpointLoop();
  // Writes every shard checkpoint that moved; false if a write failed.
  bool WriteCheckpoints();

  MappingRunnerOptions options_;
  MappingMetrics metrics_;
  std::shared_ptr<StreamSource> source_;
  std::shared_ptr<CheckpointClient> checkpoints_;
  std::string stream_arn_;
  const std::string mapping_id_ = options_.spec.Id();
  FilterSet filters_;
  std::unique_ptr<FailureDestination> destination_;  // null: none configured
  std::vector<std::unique_ptr<ShardConsumer>> shards_;

  absl::Mutex mu_;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ = false;
  absl::Mutex write_mu_;
  std::thread checkpointer_;
  static constexpr int kResultNone = 0, kResultOk = 1, kResultProblem = 2;
  std::atomic<int> last_result_{kResultNone};
};

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
  absl::flat_hash_map<std::string, std::string> checkpoints;
  {
    ASSIGN_OR_RETURN(std::vector<StoredCheckpoint> stored, checkpoints_->ListCheckpoints());
    for (StoredCheckpoint& checkpoint : stored) {
      checkpoints[checkpoint.shard_id] = std::move(checkpoint.sequence_number);
    }
  }
  ASSIGN_OR_RETURN(std::vector<SourceShard> shards, source_->ListShards());
  LaneContext lane_context;
  lane_context.spec = &options_.spec;
  lane_context.function = options_.function;
  lane_context.region = options_.region;
  lane_context.stream_arn = stream_arn_;
  lane_context.destination = destination_.get();
  lane_context.invocation_finished = [this](bool ok) {
    last_result_ = ok ? kResultOk : kResultProblem;
  };
  for (const SourceShard& shard : shards) {
    std::string checkpoint = checkpoints[shard.shard_id];
    if (checkpoint.empty()) {
      // Resolve the starting position now, not when the reader thread gets to it (LATEST
      // means the records put after the mapping started, not after some thread woke up), and
      // store it, so that a stop and start before the first record is done resumes there
      // instead of resolving LATEST again and skipping what was put meanwhile.
      ASSIGN_OR_RETURN(checkpoint, PinStartingPosition(shard.shard_id));
    }
    lane_context.shard_id = shard.shard_id;
    lane_context.metrics = metrics_.ForShard(shard.shard_id);
    shards_.push_back(std::make_unique<ShardConsumer>(
        lane_context, &filters_, source_->OpenShard(shard.shard_id), checkpoint,
        LaneReadAhead(spec, options_.read_ahead_batches), [this] { CheckpointMoved(); }));
  }
  return absl::OkStatus();
}

void MappingRunner::Impl::Start() {
  for (auto& shard : shards_) shard->Start();
  checkpointer_ = std::thread([this] {
    ScopedLogTags tags = LogTags();
    CheckpointLoop();
  });
  ScopedLogTags tags = LogTags();
  spdlog::info(
      "mapping {}: consuming {} shards of {} into function {} (batch {}, window {}, "
      "parallelization {})",
      mapping_id_, shards_.size(), options_.spec.stream, options_.spec.function,
      options_.spec.batch_size, absl::FormatDuration(options_.spec.maximum_batching_window),
      options_.spec.parallelization_factor);
}

bool MappingRunner::Impl::WriteCheckpoints() {
  // One writer at a time: two writers could land an older checkpoint after a newer one.
  absl::MutexLock write_lock(&write_mu_);
  bool ok = true;
  for (auto& shard : shards_) {
    std::string sequence_number;
    uint64_t version;
    if (!shard->progress().PendingCheckpoint(&sequence_number, &version)) continue;
    absl::Status status = checkpoints_->SetCheckpoint(shard->shard_id(), sequence_number);
    if (status.ok()) {
      shard->progress().CheckpointWritten(version);
      shard->metrics().Checkpointed(sequence_number);
    } else {
      shard->progress().NoteError(absl::StrCat("SetCheckpoint: ", status.message()));
      ScopedLogTags shard_tag{{kTagShard, shard->shard_id()}};
      spdlog::warn("checkpoint not written ({}); will retry", std::string(status.message()));
      ok = false;
    }
  }
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
  for (auto& shard : shards_) shard->RequestStop();
}

void MappingRunner::Impl::Stop(absl::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  ScopedLogTags tags = LogTags();
  RequestStop();
  for (auto& shard : shards_) shard->Join();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (checkpointer_.joinable()) checkpointer_.join();
  // Final checkpoints, so a restart does not repeat what finished.
  const absl::Time deadline = absl::Now() + std::max(grace, absl::Seconds(5));
  while (!WriteCheckpoints() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(100));
  spdlog::info("mapping {} stopped", mapping_id_);
}

MappingRunnerStatus MappingRunner::Impl::Status() const {
  MappingRunnerStatus status;
  for (const auto& shard : shards_) status.shards.push_back(shard->progress().Status());
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
