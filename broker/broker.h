// The broker's core: streams of shards on disk, with Kinesis's data-plane semantics, and consumer
// checkpoints. Transport-neutral: it takes and returns the messages of broker.proto, so the gRPC
// service and the Kinesis-compatible HTTP endpoint are thin translations of one implementation.
//
// Errors are absl::Status with gRPC's codes; messages start with the Kinesis exception name
// ("ResourceNotFoundException: ...") so every transport can recover it.
//
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "runnel/v1/broker.pb.h"

namespace prometheus {
class Registry;
}

namespace runnel {
class Scheduler;
}

namespace runnel::broker {

class BrokerMetrics;
class CheckpointStore;
struct Stream;
struct ShardState;

inline constexpr uint32_t kDataFormatVersion = 1;

struct BrokerOptions {
  std::string data_dir = "./runnel-data";
  // Used when a stream does not choose its own.
  v1::FsyncPolicy default_fsync = v1::FSYNC_ALWAYS;
  absl::Duration fsync_interval = absl::Seconds(1);
  // Enforce Kinesis's per-shard throughput limits on every stream.
  bool enforce_throughput_limits = false;
  uint64_t segment_bytes = 64ull << 20;
  // How often expired segments are looked for and deleted.
  absl::Duration retention_check_interval = absl::Minutes(1);
  // For ARNs: arn:aws:kinesis:<region>:<account>:stream/<name>.
  std::string region = "us-east-1";
  std::string account_id = "000000000000";
  // Wall clock, unless a test sets its own.
  std::function<absl::Time()> clock = {};
  // Where the broker's metrics go (runnel_broker_*, see deploy/README.md); null: none kept.
  std::shared_ptr<prometheus::Registry> metrics = {};

  // What subscribers and long polls may hold (docs/aws-semantics.md#subscribe-to-shard). Kinesis
  // allows one subscription per consumer and shard at a time; runnel also bounds how many
  // subscriptions and waiting reads one shard carries, and what a subscriber that stops
  // reading pins in memory.
  // Subscriptions open at once on one shard; beyond: LimitExceededException.
  int max_subscriptions_per_shard = 64;
  // The most bytes of records (data + partition keys) one subscription event carries. The
  // transports hand a subscription's next event out only once the last one was written to its
  // client, so this is also what a subscription whose client stops reading holds queued: past
  // it the log is no longer read for that subscription until the client drains. An event
  // always carries at least one record (a record may be up to 1 MiB).
  size_t subscription_buffer_bytes = 1u << 20;
  // A subscription whose client has taken nothing for this long (an event's write did not
  // complete) is ended by its transport.
  absl::Duration subscription_stall_timeout = absl::Seconds(30);
  // GetRecords calls with a wait_time (long polls) in progress on one shard; beyond, a long
  // poll is refused at once with ProvisionedThroughputExceededException (RESOURCE_EXHAUSTED),
  // which clients already back off from.
  int max_waiting_reads_per_shard = 1024;
};

// A subscription to one shard (SubscribeToShard): a cursor that hands out events.
class Subscription {
 public:
  virtual ~Subscription() = default;
  using EventDone = std::function<void(absl::StatusOr<v1::SubscribeToShardEvent>)>;
  // Produces the next event: the records after the cursor, waiting up to the heartbeat interval
  // for some to arrive (an event without records still carries the continuation sequence
  // number). At most one Next may be pending. `done` runs on a broker thread.
  virtual void Next(EventDone done) = 0;
  // Makes a pending Next complete soon (with whatever it has) and later ones fail CANCELLED.
  // Frees the subscription's place on its shard at once (its consumer may subscribe again).
  virtual void Cancel() = 0;
  // Cancel(), for a transport that ends the subscription because its client took nothing for
  // subscription_stall_timeout; counted as such in the metrics.
  virtual void CancelStalled() = 0;
};

class Broker {
 public:
  // Opens (or initialises) the data directory: takes its lock, checks the manifest's format
  // version, recovers every stream's logs and the checkpoints.
  static absl::StatusOr<std::unique_ptr<Broker>> Open(BrokerOptions options);
  ~Broker();

  absl::Status CreateStream(const v1::CreateStreamRequest& request);
  absl::Status DeleteStream(const v1::DeleteStreamRequest& request);
  absl::StatusOr<v1::ListStreamsResponse> ListStreams(const v1::ListStreamsRequest& request);
  absl::StatusOr<v1::DescribeStreamSummaryResponse> DescribeStreamSummary(
      const v1::DescribeStreamSummaryRequest& request);
  absl::StatusOr<v1::ListShardsResponse> ListShards(const v1::ListShardsRequest& request);
  absl::Status IncreaseStreamRetentionPeriod(
      const v1::IncreaseStreamRetentionPeriodRequest& request);
  absl::Status DecreaseStreamRetentionPeriod(
      const v1::DecreaseStreamRetentionPeriodRequest& request);

  // `done` runs once every record is durable (or failed), possibly on a shard writer thread or
  // before PutRecords returns. Per-record failures are in the response, as Kinesis does.
  using PutRecordsDone = std::function<void(absl::StatusOr<v1::PutRecordsResponse>)>;
  void PutRecords(const v1::PutRecordsRequest& request, PutRecordsDone done);
  using PutRecordDone = std::function<void(absl::StatusOr<v1::PutRecordResponse>)>;
  void PutRecord(const v1::PutRecordRequest& request, PutRecordDone done);

  absl::StatusOr<v1::GetShardIteratorResponse> GetShardIterator(
      const v1::GetShardIteratorRequest& request);
  // With a wait_time, waits (without holding a thread) until a record arrives or the time
  // passes. `done` may run on a broker thread. The returned function (empty when the call was
  // answered at once) makes a waiting call answer now, with what it has: call it when the
  // caller goes away.
  using GetRecordsDone = std::function<void(absl::StatusOr<v1::GetRecordsResponse>)>;
  using CancelFn = std::function<void()>;
  CancelFn GetRecords(const v1::GetRecordsRequest& request, GetRecordsDone done);

  // One subscription per (consumer_name, shard) at a time: a second is ALREADY_EXISTS
  // (ResourceInUseException) until the first ends or is cancelled; an empty consumer_name is
  // anonymous and not exclusive. Beyond max_subscriptions_per_shard: RESOURCE_EXHAUSTED
  // (LimitExceededException).
  absl::StatusOr<std::unique_ptr<Subscription>> SubscribeToShard(
      const v1::SubscribeToShardRequest& request);

  absl::StatusOr<v1::GetCheckpointResponse> GetCheckpoint(const v1::GetCheckpointRequest& request);
  absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(
      const v1::ListCheckpointsRequest& request);
  absl::StatusOr<v1::SetCheckpointResponse> SetCheckpoint(const v1::SetCheckpointRequest& request);
  absl::StatusOr<v1::DeleteCheckpointsResponse> DeleteCheckpoints(
      const v1::DeleteCheckpointsRequest& request);
  // Shard leases of a poller fleet (see broker.proto and CheckpointStore).
  absl::StatusOr<v1::AcquireLeaseResponse> AcquireLease(const v1::AcquireLeaseRequest& request);
  absl::StatusOr<v1::RenewLeaseResponse> RenewLease(const v1::RenewLeaseRequest& request);
  absl::StatusOr<v1::ReleaseLeaseResponse> ReleaseLease(const v1::ReleaseLeaseRequest& request);
  absl::StatusOr<v1::ListLeasesResponse> ListLeases(const v1::ListLeasesRequest& request);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request);

  // Answers every waiting read (long polls, subscriptions) with UNAVAILABLE, and every later
  // one at once: for shutting down.
  void CancelAllReads();

  // Deletes expired segments now (the broker also does it every retention_check_interval).
  void EnforceRetention();

  // Brings the gauges that are read rather than tracked (bytes on disk) up to date: call before
  // a scrape. Nothing when metrics are off.
  void UpdateMetrics();

  std::string StreamArn(const std::string& stream_name) const;
  const BrokerOptions& options() const { return options_; }

 private:
  friend class ShardSubscription;
  struct ReadRequest;

  Broker(BrokerOptions options, DirectoryLock lock);
  absl::Status LoadStreams();
  // Deletes the checkpoints and leases of streams that are gone or of another incarnation (what
  // a crash in the middle of DeleteStream leaves), and stamps older ones with their stream's.
  absl::Status ReconcileCheckpoints();
  absl::StatusOr<std::shared_ptr<Stream>> FindStream(const std::string& name) const;
  // The stream named `name` while it is `incarnation` (0: whichever stream has the name now);
  // NOT_FOUND (ResourceNotFoundException) once that one was deleted, even when another of the
  // same name replaced it.
  absl::StatusOr<std::shared_ptr<Stream>> FindStream(const std::string& name,
                                                     uint64_t incarnation) const;
  absl::StatusOr<ShardState*> FindShard(const Stream& stream, const std::string& shard_id) const;
  absl::Status UpdateRetention(const std::string& stream_name, int hours, bool increase);
  absl::Status SaveMetadata(const Stream& stream);
  // Opens (recovering) one shard's log in `directory`, with the stream's fsync policy.
  absl::Status OpenShardLog(const Stream& stream, ShardState& shard, const std::string& directory);
  absl::StatusOr<uint64_t> ResolvePosition(const Stream& stream, ShardState& shard,
                                           v1::ShardIteratorType type,
                                           const std::string& sequence_number,
                                           const google::protobuf::Timestamp& timestamp,
                                           const char* sequence_field);
  // Reads from `offset`; with time left before `deadline` and nothing to return, waits for an
  // append (or the deadline, or `cancelled`) and tries again.
  void ReadWithWait(std::shared_ptr<ReadRequest> request);
  // Makes a waiting read answer now.
  void CancelRead(const std::shared_ptr<ReadRequest>& request);
  int64_t NowMs() const;
  // The clock checkpoints and leases are judged by (options_.clock, else the wall clock).
  absl::Time CheckpointClock() const;
  int64_t RetentionCutoffMs(const Stream& stream) const;
  absl::Status ThrottledError(const Stream& stream, const ShardState& shard) const;
  void ScheduleRetention();
  // Resolves the stream's and its shards' metric series (when metrics are on).
  void AttachMetrics(Stream& stream);

  const BrokerOptions options_;
  std::shared_ptr<BrokerMetrics> metrics_;  // null: metrics off
  DirectoryLock lock_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<CheckpointStore> checkpoints_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
  // Serialises control-plane changes (create, delete, retention) against each other.
  absl::Mutex control_mu_;
  // Reads waiting for records, owned here while they wait (their wake-ups hold them weakly).
  absl::Mutex waits_mu_;
  bool reads_cancelled_ ABSL_GUARDED_BY(waits_mu_) = false;
  absl::flat_hash_map<ReadRequest*, std::shared_ptr<ReadRequest>> waiting_reads_
      ABSL_GUARDED_BY(waits_mu_);
};

}  // namespace runnel::broker
