// What the mapping runner's files share (poller/mapping_runner.cc: start-up, checkpoints,
// stop and status; mapping_runner_leases.cc: the lease thread; mapping_runner_stream.cc: the
// stream's identity, deletion and re-creation): the runner's parts and its Impl. Private to
// poller/.
#pragma once

#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "poller/checkpoint_client.h"
#include "poller/destination.h"
#include "poller/filter.h"
#include "poller/lane.h"
#include "poller/mapping_runner.h"
#include "poller/metrics.h"
#include "poller/record_source.h"
#include "poller/shard_progress.h"
#include "poller/shard_reader.h"

namespace runnel::poller {

// One shard of the mapping: its progress, its lanes and its reader, and their threads.
class ShardConsumer {
 public:
  // `stream_missing`: the reader's source answered NOT_FOUND (see ShardReader).
  ShardConsumer(const LaneContext& lane_context, const FilterSet* filters,
                std::unique_ptr<RecordSource> source, std::string checkpoint,
                ReadAheadLimit read_ahead, std::function<void()> checkpoint_moved,
                std::function<void()> stream_missing);

  void Start();
  // Stops reading; the lanes finish the records already read (see Lane::Run), except batches
  // that need a retry.
  void RequestStop();
  // Stops reading and invoking at once (the lease is lost): only invocations in flight finish.
  void Abandon();
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
  absl::StatusOr<std::string> PinStartingPosition(const std::string& shard_id,
                                                  const ShardLease& lease);
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
  // Stops the shard at once (what Lose does, without a word): invocations already running
  // finish, nothing more is invoked, checkpointed or dead-lettered for it. False when it was
  // stopped already.
  bool Abandon(const std::shared_ptr<OwnedShard>& shard);
  // The lease was not renewed before its local deadline: stop the shard at once, then ask the
  // broker with one fenced write whether the lease is still this poller's (it then keeps what
  // was done) or another's (the refusal names the new owner).
  void LoseAfterDeadline(const std::shared_ptr<OwnedShard>& shard, absl::Duration since_renewal);
  // Joins the stoppers that finished and forgets their shards.
  void Reap();
  void UpdateHeldGauge() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checked by the lanes before each dead letter (LaneContext::before_dead_letter).
  absl::Status CheckLease(OwnedShard* shard);

  // The stream's identity (mapping_runner_stream.cc). A call answered NOT_FOUND: the lease
  // thread checks the stream at once.
  void NoteStreamMissing();
  // At the start of each lease round: when asked to (or while the stream is gone, about once a
  // second), describes the stream. Deleted: says so once, stops every shard, and waits. Created
  // again (another incarnation): says so, and the round goes on with the new stream, whose
  // shards start at the mapping's starting position. False while there is no stream to consume.
  bool CheckStream();
  void StreamDeleted();
  bool StreamRecreated(const StreamIdentity& identity);
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
  // The incarnation of the stream consumed (or last consumed, while it is gone): set by Init,
  // then only on the lease thread.
  std::atomic<uint64_t> incarnation_{0};
  const std::string mapping_id_ = options_.spec.Id();
  FilterSet filters_;
  std::unique_ptr<FailureDestination> destination_;  // null: none configured
  std::vector<std::string> shard_ids_;               // every shard of the stream
  LaneContext lane_context_;                         // shared by all shards, shard fields aside

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<OwnedShard>> shards_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;       // the checkpoint writer ends
  bool draining_ ABSL_GUARDED_BY(mu_) = false;       // no more takes or sheds
  bool leases_done_ ABSL_GUARDED_BY(mu_) = false;    // the lease thread ends
  bool stream_check_ ABSL_GUARDED_BY(mu_) = false;   // a NOT_FOUND came back: check the stream
  bool stream_gone_ ABSL_GUARDED_BY(mu_) = false;    // waiting for a stream of the name
  absl::Time next_describe_ = absl::InfinitePast();  // lease thread only
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

}  // namespace runnel::poller
