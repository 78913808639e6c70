// What a running mapping reports about itself (for `runnel mapping describe` and the
// EventSourceMappings service): per shard, its checkpoint, backlog, batches in flight and last
// error. Plain structs, apart from the runner so that the parts that fill them (the shard's
// progress, its lanes) need not include the runner.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace runnel::poller {

// A batch being invoked, or waiting to be retried, right now.
struct InFlightBatchStatus {
  std::string first_sequence_number;
  std::string last_sequence_number;
  int records = 0;
  int attempt = 0;  // of the invocation under way (1 = first)
  absl::Time started = absl::InfinitePast();
};

// Where one shard of a running mapping stands.
struct ShardRunStatus {
  std::string shard_id;
  // Every record up to and including it is done (written to the broker moments later).
  std::string checkpoint;
  int64_t millis_behind_latest = -1;  // at the last read; -1 before the first
  std::vector<InFlightBatchStatus> in_flight;
  int64_t buffered_records = 0;  // read, not yet done
  std::string last_error;
  absl::Time last_error_time = absl::InfinitePast();
};

struct MappingRunnerStatus {
  std::vector<ShardRunStatus> shards;
  // Lambda's LastProcessingResult: "No records processed", "OK" or
  // "PROBLEM: Function call failed" (the outcome of the last invocation).
  std::string last_processing_result;
};

}  // namespace runnel::poller
