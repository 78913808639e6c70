// Runs one event-source mapping: a consumer per shard that reads records (poller/shard_reader.h,
// from a RecordSource: long-poll GetRecords, or SubscribeToShard), spreads them over
// `parallelization_factor` lanes by a hash of the partition key (so a key always stays in one
// lane, in order), batches them per lane by Lambda's rules and runs each batch through the
// failure policy with at most one batch in flight per lane (poller/lane.h), and checkpoints each
// shard at the highest sequence number below which every record is done (poller/shard_progress.h,
// written through a CheckpointClient). This file is the runner: start-up (shards, checkpoints,
// starting positions), the checkpoint writer, stop and status, and the shard leases that let a
// fleet of pollers share the mapping's shards (see "Leases" below).
//
// Leases: the runner consumes only the shards whose lease it holds. A lease thread heartbeats,
// reads the lease table every scan interval (lease_duration / 5, at most 500 ms), renews each
// held lease every lease_duration / 3, and applies the fleet's assignment rule
// (poller/lease_assignment.h): it takes free or expired shards up to its fair share (starting
// after the checkpoint stored at the moment of the take), and hands its surplus over gracefully
// (stop reading, let the lanes finish what they hold, write the checkpoint, release). Every
// checkpoint write carries the lease's epoch; when the broker refuses one, or a renewal fails and
// the lease's local deadline passes, the shard stops at once: invocations already running finish
// but nothing more is invoked, checkpointed or dead-lettered for it. A stop drains, writes the
// final checkpoints and releases every lease, so the rest of the fleet takes over within one scan
// interval. A poller alone takes every shard at start, before Start returns.
//
// Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "poller/config.h"
#include "poller/run_status.h"

namespace runnel::client {
class BrokerClient;
}

namespace prometheus {
class Registry;
}

namespace runnel::runtime {
class Function;
}

namespace runnel::poller {

class CheckpointClient;
class StreamSource;

struct MappingRunnerOptions {
  MappingSpec spec;
  runtime::Function* function = nullptr;  // not owned; outlives the runner
  // Where the stream, the checkpoints and an on-failure stream live.
  std::shared_ptr<client::BrokerClient> broker;
  // Where the records come from; null: the stream on `broker`, read as spec.consumer says.
  std::shared_ptr<StreamSource> source;
  // Where the checkpoints are stored; null: in `broker`, under the mapping's id.
  std::shared_ptr<CheckpointClient> checkpoints;
  std::string region = "us-east-1";
  // How many batches each lane may hold read ahead, its batch in flight included (see
  // poller/shard_progress.h): what bounds memory, and what a stop waits for.
  int read_ahead_batches = 2;
  // Where the mapping's runnel_poller_* metrics go (see poller/metrics.h); null: not exposed.
  std::shared_ptr<prometheus::Registry> metrics;
  // This poller's id in the fleet (the owner of its leases); empty: DefaultPollerId().
  std::string poller_id;
  // How long a lease lasts without a renewal: how soon a dead poller's shards move.
  absl::Duration lease_duration = absl::Seconds(10);
};

// "host:pid:random": unique per process, so that a restarted poller is a new owner.
std::string DefaultPollerId();

class MappingRunner {
 public:
  // Lists the stream's shards, reads the mapping's checkpoints, and starts consuming. Each
  // shard without a checkpoint starts at the mapping's starting position, which is stored at
  // once as its checkpoint (so LATEST or AT_TIMESTAMP means the same after a stop and start,
  // e.g. a disable and enable, before the first record is done).
  static absl::StatusOr<std::unique_ptr<MappingRunner>> Start(MappingRunnerOptions options);

  // Stops reading, lets the lanes finish the records already handed to them (at most about two
  // batches per lane, the one in flight included; invoked at once, without waiting for batching
  // windows; a batch that fails is not retried but left for after a
  // restart), and writes the final checkpoints. `grace` bounds the retries of the final
  // checkpoint writes; the wait for invocations is bounded by the function's timeout (process
  // isolation) — a process that must exit sooner uses FlushCheckpoints (see `runnel poller
  // --shutdown-timeout`).
  void Stop(absl::Duration grace);
  ~MappingRunner();

  // Stops reading and starting new batches in every shard, without waiting: what Stop does
  // first. Lets a process stop all its mappings at once before waiting for any.
  void RequestStop();

  // Writes the checkpoints that moved since the last write, now. Safe beside Stop from another
  // thread: a shutdown whose deadline passes while an invocation still runs records what did
  // finish before the process exits. False if a write failed.
  bool FlushCheckpoints();

  const MappingSpec& spec() const;
  // A consistent-per-shard snapshot; callable from any thread while the runner runs or stops.
  MappingRunnerStatus Status() const;

  class Impl;

 private:
  explicit MappingRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace runnel::poller
