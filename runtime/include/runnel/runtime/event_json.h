// Lambda's JSON on the runtime's edges: reading a Kinesis event file (for `runnel invoke
// --event`) and printing an invocation's result the way Lambda returns it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runnel/runtime/function.h"

namespace runnel::runtime {

// A batch that owns its bytes; views() gives the records as Invoke takes them.
struct OwnedEvent {
  struct Record {
    std::string partition_key;
    std::string sequence_number;
    std::string data;
    int64_t approximate_arrival_ms = 0;
  };
  std::string shard_id;
  std::string event_source_arn;
  std::string aws_region;
  std::vector<Record> records;

  std::vector<RecordView> views() const;
};

// Parses Lambda's Kinesis event ({"Records":[{"kinesis":{...},"eventID":...,...}]}, the shape
// Event::ToJson writes). `data` is base64; the shard id is taken from eventID ("<shard>:<seq>").
// Errors name the record and the field.
absl::StatusOr<OwnedEvent> ParseKinesisEventJson(std::string_view json);

// A batch built from lines of data (`runnel invoke --data`): partition key `partition_key` for
// every record (empty: "pk-<n>", one per record), sequence numbers in increasing Kinesis-like
// form, arrival time now.
OwnedEvent EventFromData(const std::vector<std::string>& lines, std::string_view shard_id,
                         std::string_view event_source_arn, std::string_view aws_region,
                         std::string_view partition_key = "");

// The result as Lambda's response: {"batchItemFailures":[{"itemIdentifier":"…"}]} for item
// failures (an empty list on success) or {"errorType":…,"errorMessage":…} for every failure.
std::string InvokeResultToJson(const InvokeResult& result);

}  // namespace runnel::runtime
