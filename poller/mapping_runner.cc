#include "poller/mapping_runner.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "poller/batcher.h"
#include "poller/broker_calls.h"
#include "poller/completion_tracker.h"
#include "poller/destination.h"
#include "poller/failure_policy.h"
#include "poller/failure_record.h"
#include "poller/filter.h"
#include "poller/metrics.h"
#include "runnel/runtime/function.h"
#include "runnel/v1/broker.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {
namespace {

using google::protobuf::util::TimeUtil;

// How long one GetRecords waits for records before answering empty (a long poll: it answers as
// soon as one arrives).
constexpr absl::Duration kPollWait = absl::Seconds(2);
constexpr absl::Duration kMinBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(10);

absl::Duration NextBackoff(absl::Duration backoff) {
  return std::min(kMaxBackoff, std::max(kMinBackoff, backoff * 2));
}

// FNV-1a: a stable hash, so a key maps to the same lane in every run (easier to reason about
// when reading logs), and cheap for short keys.
uint64_t LaneHash(std::string_view key) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

v1::ShardIteratorType IteratorType(StartingPosition position) {
  switch (position) {
    case StartingPosition::kLatest:
      return v1::LATEST;
    case StartingPosition::kAtTimestamp:
      return v1::AT_TIMESTAMP;
    default:
      return v1::TRIM_HORIZON;
  }
}

// A record taken from the stream, owned by the lane until its batch is done.
struct QueuedRecord {
  v1::Record record;
  uint64_t ordinal;  // dispatch order within the shard (see CompletionTracker)
};

}  // namespace

class ShardConsumer;

class MappingRunner::Impl {
 public:
  explicit Impl(MappingRunnerOptions options)
      : options_(std::move(options)),
        stub_(v1::StreamBroker::NewStub(options_.broker)),
        metrics_(options_.metrics, options_.spec) {}
  ~Impl() { Stop(absl::Seconds(0)); }

  absl::Status Init();
  // Stores the mapping's starting position as the shard's checkpoint; returns it.
  absl::StatusOr<std::string> PinStartingPosition(const std::string& shard_id);
  void Start();
  void Stop(absl::Duration grace);
  // A shard's checkpoint moved: wake the checkpoint writer.
  void CheckpointMoved() {
    absl::MutexLock lock(&mu_);
    dirty_ = true;
  }

  const MappingRunnerOptions& options() const { return options_; }
  v1::StreamBroker::Stub& stub() { return *stub_; }
  const std::string& stream_arn() const { return stream_arn_; }
  const FilterSet& filters() const { return filters_; }
  FailureDestination* destination() const { return destination_.get(); }
  const std::string& mapping_id() const { return mapping_id_; }
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
  MappingMetrics& metrics() { return metrics_; }
  MappingRunnerStatus Status() const;
  // The outcome of an invocation, for LastProcessingResult.
  void InvocationFinished(bool ok) { last_result_ = ok ? kResultOk : kResultProblem; }

 private:
  void CheckpointLoop();
  // Writes every shard checkpoint that moved; false if a write failed.
  bool WriteCheckpoints();

  const MappingRunnerOptions options_;
  const std::unique_ptr<v1::StreamBroker::Stub> stub_;
  MappingMetrics metrics_;
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

class ShardConsumer {
 public:
  ShardConsumer(MappingRunner::Impl* runner, std::string shard_id, std::string checkpoint)
      : runner_(runner),
        spec_(runner->options().spec),
        shard_id_(std::move(shard_id)),
        resume_after_(checkpoint),
        initial_checkpoint_(std::move(checkpoint)),
        metrics_(runner->metrics().ForShard(shard_id_)),
        max_buffered_(static_cast<size_t>(
            std::clamp(2 * spec_.batch_size * spec_.parallelization_factor, 10'000, 100'000))) {
    BatchingRules rules;
    rules.batch_size = spec_.batch_size;
    rules.window = spec_.maximum_batching_window;
    for (int i = 0; i < spec_.parallelization_factor; ++i) {
      lanes_.push_back(std::make_unique<Lane>(rules));
    }
  }

  void Start() {
    reader_ = std::thread([this] {
      ScopedLogTags tags = LogTags();
      ReaderLoop();
    });
    for (size_t i = 0; i < lanes_.size(); ++i) {
      lanes_[i]->thread = std::thread([this, i] {
        ScopedLogTags tags = LogTags();
        LaneLoop(*lanes_[i]);
      });
    }
  }

  // Stops reading; the lanes finish the records already read (see LaneLoop), except batches
  // that need a retry.
  void RequestStop() {
    stopping_ = true;
    {
      absl::MutexLock lock(&mu_);
      if (poll_context_ != nullptr) poll_context_->TryCancel();
    }
    for (auto& lane : lanes_) {
      absl::MutexLock lock(&lane->mu);
      lane->stopping = true;
    }
  }

  void Join() {
    if (reader_.joinable()) reader_.join();
    for (auto& lane : lanes_) {
      if (lane->thread.joinable()) lane->thread.join();
    }
  }

  // The checkpoint to write, if it moved since the last write.
  bool PendingCheckpoint(std::string* sequence_number, uint64_t* version) {
    absl::MutexLock lock(&mu_);
    if (tracker_.Version() == written_version_ || tracker_.Checkpoint().empty()) return false;
    *sequence_number = tracker_.Checkpoint();
    *version = tracker_.Version();
    return true;
  }
  void CheckpointWritten(uint64_t version) {
    absl::MutexLock lock(&mu_);
    written_version_ = std::max(written_version_, version);
  }

  const std::string& shard_id() const { return shard_id_; }
  ShardMetrics& metrics() { return *metrics_; }

  ShardRunStatus Status() {
    ShardRunStatus status;
    status.shard_id = shard_id_;
    absl::MutexLock lock(&mu_);
    status.checkpoint = tracker_.Checkpoint().empty() ? initial_checkpoint_ : tracker_.Checkpoint();
    status.millis_behind_latest = millis_behind_latest_;
    for (const auto& [ordinal, batch] : in_flight_) status.in_flight.push_back(batch);
    status.buffered_records = static_cast<int64_t>(buffered_);
    status.last_error = last_error_;
    status.last_error_time = last_error_time_;
    return status;
  }

  // Remembers the last failure seen on this shard, for Status().
  void NoteError(std::string error) {
    absl::MutexLock lock(&mu_);
    last_error_ = std::move(error);
    last_error_time_ = absl::Now();
  }

 private:
  // What every line of this shard's threads is about.
  ScopedLogTags LogTags() const {
    return ScopedLogTags{{kTagComponent, "poller"},
                         {kTagMapping, runner_->mapping_id()},
                         {kTagStream, spec_.stream},
                         {kTagShard, shard_id_},
                         {kTagFunction, spec_.function}};
  }
  // Marks a batch in flight (for Status()) for as long as it lives.
  class InFlight {
   public:
    InFlight(ShardConsumer* shard, const std::vector<QueuedRecord>& batch)
        : shard_(shard), key_(batch.front().ordinal) {
      InFlightBatchStatus status;
      status.first_sequence_number = batch.front().record.sequence_number();
      status.last_sequence_number = batch.back().record.sequence_number();
      status.records = static_cast<int>(batch.size());
      status.started = absl::Now();
      absl::MutexLock lock(&shard_->mu_);
      shard_->in_flight_[key_] = std::move(status);
    }
    ~InFlight() {
      absl::MutexLock lock(&shard_->mu_);
      shard_->in_flight_.erase(key_);
    }
    void Attempt(int attempt) {
      absl::MutexLock lock(&shard_->mu_);
      shard_->in_flight_[key_].attempt = attempt;
    }

   private:
    ShardConsumer* const shard_;
    const uint64_t key_;
  };

  struct Lane {
    explicit Lane(BatchingRules rules) : batcher(rules) {}
    absl::Mutex mu;
    Batcher batcher ABSL_GUARDED_BY(mu);
    std::deque<QueuedRecord> records ABSL_GUARDED_BY(mu);
    bool stopping ABSL_GUARDED_BY(mu) = false;
    std::thread thread;
  };

  // Where to (re)start reading: after the last record handed out, else after the checkpoint,
  // else the mapping's starting position.
  v1::GetShardIteratorRequest IteratorRequest() {
    v1::GetShardIteratorRequest request;
    request.set_stream_name(spec_.stream);
    request.set_shard_id(shard_id_);
    if (!resume_after_.empty()) {
      request.set_shard_iterator_type(v1::AFTER_SEQUENCE_NUMBER);
      request.set_starting_sequence_number(resume_after_);
    } else {
      request.set_shard_iterator_type(IteratorType(spec_.starting_position));
      if (spec_.starting_position == StartingPosition::kAtTimestamp) {
        *request.mutable_timestamp() = TimeUtil::MillisecondsToTimestamp(
            absl::ToUnixMillis(spec_.starting_position_timestamp));
      }
    }
    return request;
  }

  void ReaderLoop() {
    std::string iterator;
    absl::Duration backoff = absl::ZeroDuration();
    auto back_off = [&] {
      backoff = NextBackoff(backoff);
      const absl::Time until = absl::Now() + backoff;
      while (!stopping_ && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
    };
    while (!stopping_) {
      if (iterator.empty()) {
        v1::GetShardIteratorResponse response;
        grpc::ClientContext context;
        SetDeadline(context, kBrokerRpcTimeout);
        grpc::Status status =
            runner_->stub().GetShardIterator(&context, IteratorRequest(), &response);
        if (!status.ok()) {
          spdlog::warn("cannot position the reader: {}", status.error_message());
          NoteError(absl::StrCat("GetShardIterator: ", status.error_message()));
          back_off();
          continue;
        }
        iterator = response.shard_iterator();
      }
      const size_t room = WaitForRoom();
      if (room == 0) continue;
      v1::GetRecordsRequest request;
      request.set_shard_iterator(iterator);
      request.set_limit(static_cast<int>(std::min<size_t>(room, 10'000)));
      request.mutable_wait_time()->set_seconds(absl::ToInt64Seconds(kPollWait));
      v1::GetRecordsResponse response;
      grpc::ClientContext context;
      SetDeadline(context, kBrokerRpcTimeout);
      {
        absl::MutexLock lock(&mu_);
        poll_context_ = &context;
      }
      if (stopping_) context.TryCancel();
      grpc::Status status = runner_->stub().GetRecords(&context, request, &response);
      {
        absl::MutexLock lock(&mu_);
        poll_context_ = nullptr;
      }
      if (!status.ok()) {
        if (stopping_) break;
        spdlog::warn("GetRecords failed ({}); repositioning after {}", status.error_message(),
                     resume_after_.empty() ? "the starting position" : resume_after_);
        NoteError(absl::StrCat("GetRecords: ", status.error_message()));
        iterator.clear();
        back_off();
        continue;
      }
      backoff = absl::ZeroDuration();
      iterator = response.next_shard_iterator();
      {
        absl::MutexLock lock(&mu_);
        millis_behind_latest_ = response.millis_behind_latest();
      }
      Dispatch(response.mutable_records());
      // fan_out: once caught up by polling (which also settles where LATEST or AT_TIMESTAMP
      // start), switch to records pushed by SubscribeToShard. If the subscription ends, poll
      // from where it left off and subscribe again.
      if (spec_.consumer == ConsumerType::kFanOut && response.millis_behind_latest() == 0 &&
          !resume_after_.empty()) {
        Subscribe();
        iterator.clear();
      }
    }
  }

  // Room for more records in the lanes; 0 when there is none yet (or we are stopping). Lanes
  // that fall behind slow the reader down rather than fill memory.
  size_t WaitForRoom() {
    absl::MutexLock lock(&mu_);
    auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_.load() || buffered_ < max_buffered_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&has_room), absl::Seconds(1));
    if (stopping_ || buffered_ >= max_buffered_) return 0;
    return max_buffered_ - buffered_;
  }

  // Reads pushed events after resume_after_ until the subscription ends or we stop.
  void Subscribe() {
    v1::SubscribeToShardRequest request;
    request.set_stream_name(spec_.stream);
    request.set_shard_id(shard_id_);
    request.set_consumer_name(spec_.Id());
    request.mutable_starting_position()->set_type(v1::AFTER_SEQUENCE_NUMBER);
    request.mutable_starting_position()->set_sequence_number(resume_after_);
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      poll_context_ = &context;
    }
    if (stopping_) context.TryCancel();
    auto reader = runner_->stub().SubscribeToShard(&context, request);
    spdlog::info("caught up; records are pushed from after {} (SubscribeToShard)", resume_after_);
    v1::SubscribeToShardEvent event;
    while (!stopping_ && reader->Read(&event)) {
      {
        absl::MutexLock lock(&mu_);
        millis_behind_latest_ = event.millis_behind_latest();
      }
      Dispatch(event.mutable_records());
      // gRPC's flow control holds the broker back while we wait for room.
      while (!stopping_ && WaitForRoom() == 0) {
      }
    }
    if (!stopping_) context.TryCancel();
    grpc::Status status = reader->Finish();
    {
      absl::MutexLock lock(&mu_);
      poll_context_ = nullptr;
    }
    if (!stopping_ && !status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      spdlog::warn("subscription ended ({}); polling until caught up", status.error_message());
    }
  }

  // Hands the records of one response (or pushed event) to their lanes: the shard's bookkeeping
  // under one lock, then each lane's share under one lock of that lane, so that a lane wakes
  // once per response, not once per record (which made batches of a few records at high rates).
  void Dispatch(google::protobuf::RepeatedPtrField<v1::Record>* records) {
    if (records->empty()) return;
    resume_after_ = records->Get(records->size() - 1).sequence_number();
    const absl::Time now = absl::Now();
    // The lane of each record, or -1 when no filter lets it through: such a record is not
    // invoked and counts as processed (B.10).
    std::vector<int> lane_of(static_cast<size_t>(records->size()));
    bool filtered = false;
    for (int i = 0; i < records->size(); ++i) {
      const v1::Record& record = records->Get(i);
      if (!runner_->filters().empty() && !runner_->filters().Matches(record.data())) {
        lane_of[i] = -1;
        filtered = true;
      } else {
        lane_of[i] = static_cast<int>(LaneHash(record.partition_key()) % lanes_.size());
      }
    }
    metrics_->records_polled->Increment(static_cast<double>(records->size()));
    if (filtered) {
      metrics_->records_filtered->Increment(
          static_cast<double>(std::count(lane_of.begin(), lane_of.end(), -1)));
    }
    const uint64_t first_ordinal = next_ordinal_;
    next_ordinal_ += static_cast<uint64_t>(records->size());
    {
      absl::MutexLock lock(&mu_);
      for (int i = 0; i < records->size(); ++i) {
        const uint64_t ordinal = first_ordinal + static_cast<uint64_t>(i);
        tracker_.Dispatched(ordinal, records->Get(i).sequence_number());
        if (lane_of[i] < 0) {
          tracker_.Completed(ordinal);
        } else {
          ++buffered_;
        }
      }
      if (filtered) runner_->CheckpointMoved();
    }
    for (size_t l = 0; l < lanes_.size(); ++l) {
      Lane& lane = *lanes_[l];
      absl::MutexLock lock(&lane.mu);
      for (int i = 0; i < records->size(); ++i) {
        if (lane_of[i] != static_cast<int>(l)) continue;
        v1::Record& record = *records->Mutable(i);
        lane.batcher.Add(EventBytes(record.partition_key().size(), record.data().size(),
                                    record.sequence_number().size()),
                         now);
        lane.records.push_back({std::move(record), first_ordinal + static_cast<uint64_t>(i)});
      }
    }
  }

  void LaneLoop(Lane& lane) {
    for (;;) {
      std::vector<QueuedRecord> batch;
      {
        absl::MutexLock lock(&lane.mu);
        for (;;) {
          // Stopping drains what was already read, without waiting for batching windows: a
          // record left behind would hold the checkpoint below records other lanes finished,
          // and those would be delivered again after a restart.
          if (lane.stopping && lane.batcher.empty()) return;
          const absl::Time now = lane.stopping ? absl::InfiniteFuture() : absl::Now();
          const size_t ready = lane.batcher.Ready(now);
          if (ready > 0) {
            lane.batcher.Take(ready);
            batch.reserve(ready);
            for (size_t i = 0; i < ready; ++i) {
              batch.push_back(std::move(lane.records.front()));
              lane.records.pop_front();
            }
            break;
          }
          // Sleep until the window closes, a record arrives, or we are stopped.
          const size_t queued = lane.batcher.size();
          auto changed = [&lane, queued]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lane.mu) {
            return lane.stopping || lane.batcher.size() != queued;
          };
          lane.mu.AwaitWithDeadline(absl::Condition(&changed), lane.batcher.Deadline());
        }
      }
      // Process marks records done as the failure policy settles them; when stopped first,
      // the rest stays unfinished and is read again after a restart.
      if (!Process(batch)) return;
    }
  }

  void MarkDone(const std::vector<QueuedRecord>& batch, size_t begin, size_t end) {
    absl::MutexLock lock(&mu_);
    for (size_t i = begin; i < end; ++i) tracker_.Completed(batch[i].ordinal);
    buffered_ -= end - begin;
    runner_->CheckpointMoved();
  }

  // Sleeps until `until_ms` (Unix milliseconds); false when stopped first.
  bool SleepUntil(int64_t until_ms) {
    while (absl::ToUnixMillis(absl::Now()) < until_ms) {
      if (stopping_) return false;
      absl::SleepFor(std::min(absl::Milliseconds(20),
                              absl::Milliseconds(until_ms - absl::ToUnixMillis(absl::Now()))));
    }
    return true;
  }

  // Writes the on-failure record of a discarded range, retrying until it is stored: the
  // checkpoint must not pass records that are neither processed nor recorded. False when stopped
  // first.
  bool RecordDiscard(const FailurePolicy::Action& discard,
                     std::span<const runtime::RecordView> records) {
    const MappingSpec& spec = spec_;
    const std::string function_arn = absl::StrCat("arn:aws:lambda:", runner_->options().region,
                                                  ":000000000000:function:", spec.function);
    const std::string& role = runner_->options().function->config().role;
    FailureRecordContext context{function_arn, shard_id_, runner_->stream_arn(),
                                 runner_->options().region,
                                 role.empty() ? runtime::kDefaultRoleArn : role};
    const FailureRecord record =
        MakeFailureRecord(discard, records.subspan(discard.begin, discard.size()), context,
                          absl::ToUnixMillis(absl::Now()), discard.request_id);
    FailureDestination* destination = runner_->destination();
    if (destination == nullptr) {
      // As Lambda without a destination: the records are dropped, but not silently.
      spdlog::error(
          "discarded {} records {}..{} ({}, {} invocations, last error {}: {}{}); no "
          "on_failure destination is set",
          discard.size(), record.start_sequence_number, record.end_sequence_number,
          record.condition, discard.approximate_invoke_count, discard.error_type,
          discard.error_message, discard.ReportedFailedNote());
      return true;
    }
    absl::Duration backoff = absl::ZeroDuration();
    for (;;) {
      absl::Status status = destination->Write(record);
      if (status.ok()) break;
      backoff = NextBackoff(backoff);
      NoteError(absl::StrCat("on-failure destination ", destination->Describe(), ": ",
                             status.ToString()));
      spdlog::error(
          "cannot write {} discarded records to {} ({}); the shard waits and retries in {}",
          discard.size(), destination->Describe(), status.ToString(),
          absl::FormatDuration(backoff));
      if (!SleepUntil(absl::ToUnixMillis(absl::Now() + backoff))) return false;
    }
    metrics_->records_to_destination->Increment(static_cast<double>(discard.size()));
    spdlog::warn("discarded {} records {}..{} to {} ({}, {} invocations, last error {}: {}{})",
                 discard.size(), record.start_sequence_number, record.end_sequence_number,
                 destination->Describe(), record.condition, discard.approximate_invoke_count,
                 discard.error_type, discard.error_message, discard.ReportedFailedNote());
    return true;
  }

  // Invokes the function on `batch` until it succeeds. Returns false when stopped first (the
  // batch stays unfinished and is read again after a restart).
  // Runs one batch through Lambda's failure semantics (FailurePolicy): invocations, retries,
  // bisection, partial responses, record age and discards. Returns false when stopped first.
  bool Process(const std::vector<QueuedRecord>& batch) {
    std::vector<runtime::RecordView> views;
    std::vector<PolicyRecord> policy_records;
    views.reserve(batch.size());
    policy_records.reserve(batch.size());
    for (const QueuedRecord& queued : batch) {
      const v1::Record& record = queued.record;
      const int64_t arrival =
          TimeUtil::TimestampToMilliseconds(record.approximate_arrival_timestamp());
      views.push_back({record.partition_key(), record.sequence_number(), record.data(), arrival});
      policy_records.push_back({record.sequence_number(), arrival});
    }
    FailurePolicy policy(FailurePolicyOptions::FromSpec(spec_), std::move(policy_records));
    metrics_->batch_size->Observe(static_cast<double>(batch.size()));
    metrics_->in_flight_batches->Increment();
    struct InFlightGauge {
      prometheus::Gauge* gauge;
      ~InFlightGauge() { gauge->Decrement(); }
    } in_flight_gauge{metrics_->in_flight_batches};
    runtime::InvokeRequest request;
    request.shard_id = shard_id_;
    request.event_source_arn = runner_->stream_arn();
    request.aws_region = runner_->options().region;
    const std::span<const runtime::RecordView> records(views);
    InFlight in_flight(this, batch);
    for (;;) {
      const FailurePolicy::Action action = policy.Next(absl::ToUnixMillis(absl::Now()));
      switch (action.kind) {
        case FailurePolicy::Action::Kind::kFinished:
          return true;
        case FailurePolicy::Action::Kind::kDone:
          metrics_->records_processed->Increment(static_cast<double>(action.size()));
          MarkDone(batch, action.begin, action.end);
          break;
        case FailurePolicy::Action::Kind::kWait:
          if (!SleepUntil(action.until_ms)) return false;
          break;
        case FailurePolicy::Action::Kind::kDiscard:
          if (!RecordDiscard(action, records)) return false;
          (action.condition == DiscardCondition::kRecordAgeExceeded
               ? metrics_->records_dropped_for_age
               : metrics_->records_failed)
              ->Increment(static_cast<double>(action.size()));
          MarkDone(batch, action.begin, action.end);
          break;
        case FailurePolicy::Action::Kind::kInvoke: {
          if (stopping_ && action.attempt > 1) return false;  // no new retries while stopping
          request.records = records.subspan(action.begin, action.size());
          request.attempt = action.attempt;
          in_flight.Attempt(action.attempt);
          // Lambda's IteratorAge: how old the batch's last record is when it is invoked.
          metrics_->iterator_age_seconds->Set(
              static_cast<double>(absl::ToUnixMillis(absl::Now()) -
                                  records[action.end - 1].approximate_arrival_ms) /
              1000.0);
          metrics_->concurrent_executions->Increment();
          runtime::InvokeResult result = runner_->options().function->Invoke(request);
          metrics_->concurrent_executions->Decrement();
          metrics_->Invoked(result.status, result.duration, action.attempt);
          const bool partial = result.status == runtime::InvokeStatus::kBatchItemFailures;
          runner_->InvocationFinished(result.ok() || partial);
          if (partial) {
            NoteError(absl::StrCat("invocation #", action.attempt, " of ", action.size(),
                                   " records reported ", result.batch_item_failures.size(),
                                   " batch item failures"));
          } else if (!result.ok()) {
            NoteError(absl::StrCat("invocation #", action.attempt, " of ", action.size(),
                                   " records: ", result.error_type, ": ", result.error_message));
          }
          if (!result.ok() && result.status != runtime::InvokeStatus::kBatchItemFailures) {
            ScopedLogTags invocation{{kTagRequestId, result.request_id}};
            spdlog::warn("invocation #{} of {} records failed ({}: {})", action.attempt,
                         action.size(), result.error_type, result.error_message);
          }
          const int bisections = policy.bisections();
          policy.OnResult(result);
          if (policy.bisections() > bisections) metrics_->bisects->Increment();
          break;
        }
      }
    }
  }

  MappingRunner::Impl* const runner_;
  const MappingSpec& spec_;
  const std::string shard_id_;
  std::string resume_after_;  // reader thread only: the last sequence number handed out
  const std::string initial_checkpoint_;
  ShardMetrics* const metrics_;  // owned by the runner's MappingMetrics
  uint64_t next_ordinal_ = 0;    // reader thread only
  const size_t max_buffered_;
  std::atomic<bool> stopping_{false};
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::thread reader_;

  absl::Mutex mu_;
  CompletionTracker tracker_ ABSL_GUARDED_BY(mu_);
  size_t buffered_ ABSL_GUARDED_BY(mu_) = 0;  // handed to lanes, not yet done
  uint64_t written_version_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::ClientContext* poll_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  // For Status().
  int64_t millis_behind_latest_ ABSL_GUARDED_BY(mu_) = -1;
  std::map<uint64_t, InFlightBatchStatus> in_flight_ ABSL_GUARDED_BY(mu_);  // by first ordinal
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  absl::Time last_error_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

absl::StatusOr<std::string> MappingRunner::Impl::PinStartingPosition(const std::string& shard_id) {
  const MappingSpec& spec = options_.spec;
  v1::SetCheckpointRequest request;
  request.set_consumer_name(spec.Id());
  request.set_stream_name(spec.stream);
  request.set_shard_id(shard_id);
  request.mutable_position()->set_type(IteratorType(spec.starting_position));
  if (spec.starting_position == StartingPosition::kAtTimestamp) {
    *request.mutable_position()->mutable_timestamp() =
        TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(spec.starting_position_timestamp));
  }
  v1::SetCheckpointResponse response;
  grpc::ClientContext context;
  SetDeadline(context, kBrokerRpcTimeout);
  grpc::Status status = stub_->SetCheckpoint(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, shard_id);
  return response.checkpoint().sequence_number();
}

absl::Status MappingRunner::Impl::Init() {
  const MappingSpec& spec = options_.spec;
  std::vector<std::string> patterns;
  for (const FilterSpec& filter : spec.filters) patterns.push_back(filter.pattern_json);
  ASSIGN_OR_RETURN(filters_, FilterSet::Compile(patterns));
  ASSIGN_OR_RETURN(destination_, MakeFailureDestination(spec.on_failure, options_.broker));
  {
    v1::DescribeStreamSummaryRequest request;
    request.set_stream_name(spec.stream);
    v1::DescribeStreamSummaryResponse response;
    grpc::ClientContext context;
    SetDeadline(context, kBrokerRpcTimeout);
    grpc::Status status = stub_->DescribeStreamSummary(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    stream_arn_ = response.stream_description_summary().stream_arn();
  }
  absl::flat_hash_map<std::string, std::string> checkpoints;
  {
    v1::ListCheckpointsRequest request;
    request.set_consumer_name(spec.Id());
    request.set_stream_name(spec.stream);
    v1::ListCheckpointsResponse response;
    grpc::ClientContext context;
    SetDeadline(context, kBrokerRpcTimeout);
    grpc::Status status = stub_->ListCheckpoints(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    for (const auto& checkpoint : response.checkpoints()) {
      checkpoints[checkpoint.shard_id()] = checkpoint.sequence_number();
    }
  }
  ASSIGN_OR_RETURN(std::vector<v1::Shard> shards,
                   ListAllShards(*stub_, spec.stream, kBrokerRpcTimeout));
  for (const v1::Shard& shard : shards) {
    std::string checkpoint = checkpoints[shard.shard_id()];
    if (checkpoint.empty()) {
      // Resolve the starting position now, not when the reader thread gets to it (LATEST
      // means the records put after the mapping started, not after some thread woke up), and
      // store it, so that a stop and start before the first record is done resumes there
      // instead of resolving LATEST again and skipping what was put meanwhile.
      ASSIGN_OR_RETURN(checkpoint, PinStartingPosition(shard.shard_id()));
    }
    shards_.push_back(std::make_unique<ShardConsumer>(this, shard.shard_id(), checkpoint));
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
    if (!shard->PendingCheckpoint(&sequence_number, &version)) continue;
    v1::SetCheckpointRequest request;
    request.set_consumer_name(options_.spec.Id());
    request.set_stream_name(options_.spec.stream);
    request.set_shard_id(shard->shard_id());
    request.set_sequence_number(sequence_number);
    v1::SetCheckpointResponse response;
    grpc::ClientContext context;
    SetDeadline(context, kBrokerRpcTimeout);
    grpc::Status status = stub_->SetCheckpoint(&context, request, &response);
    if (status.ok()) {
      shard->CheckpointWritten(version);
      shard->metrics().Checkpointed(sequence_number);
    } else {
      shard->NoteError(absl::StrCat("SetCheckpoint: ", status.error_message()));
      ScopedLogTags shard_tag{{kTagShard, shard->shard_id()}};
      spdlog::warn("checkpoint not written ({}); will retry", status.error_message());
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

MappingRunnerStatus MappingRunner::Impl::Status() const {
  MappingRunnerStatus status;
  for (const auto& shard : shards_) status.shards.push_back(shard->Status());
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

MappingRunnerStatus MappingRunner::Status() const { return impl_->Status(); }

}  // namespace runnel::poller
