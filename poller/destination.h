// On-failure destinations: where a mapping records the batches it discards (retries exhausted,
// or records too old), before its checkpoint moves past them. `stream:NAME` puts each failure
// record into a runnel stream; `file:PATH` appends it as one JSON line and fsyncs. A write that
// fails is reported, and the lane retries it: a discarded record is never dropped silently. A
// file always ends on a whole line before a write: what a failed or interrupted write left (a
// partial line, on a full disk or after a crash) is cut before the next one.
//
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "poller/config.h"
#include "poller/failure_record.h"

namespace runnel::client {
class BrokerClient;
}

namespace runnel::poller {

class FailureDestination {
 public:
  virtual ~FailureDestination() = default;
  // Stores the records (in order) durably, or fails. A stream destination splits a record
  // whose JSON would pass the 1 MiB record limit into several, each for a part of the range.
  virtual absl::Status Write(const FailureRecord& record) = 0;
  // "stream:order-events-dlq", "file:/var/lib/runnel/dlq.jsonl".
  virtual std::string Describe() const = 0;
};

// `broker` is used for stream destinations.
absl::StatusOr<std::unique_ptr<FailureDestination>> MakeFailureDestination(
    const OnFailureDestination& spec, std::shared_ptr<client::BrokerClient> broker);

// The file destination's system calls that tests replace (to fail a write after part of it).
struct FileDestinationIo {
  std::function<ssize_t(int fd, const void* data, size_t size)> write;  // empty: write(2)
};
std::unique_ptr<FailureDestination> MakeFileDestination(std::string path,
                                                        FileDestinationIo io = {});

// Splits `record` into records whose JSON is at most `max_json_bytes`, each describing its part
// of the discarded range (KinesisBatchInfo and payload), in order. A single record's part is
// never split further.
std::vector<FailureRecord> SplitFailureRecord(const FailureRecord& record, size_t max_json_bytes);

}  // namespace runnel::poller
