// What the broker's implementation files share: the in-memory streams and shards, Kinesis's
// limits, request validation, and the read-request record. Private to broker/: nothing outside
// this folder includes it.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "broker/broker.h"
#include "broker/metrics.h"
#include "broker/sequence_number.h"
#include "broker/shard_log.h"
#include "broker/throughput.h"
#include "common/hash_key.h"
#include "common/scheduler.h"
#include "google/protobuf/util/time_util.h"

namespace runnel::broker {

// Kinesis limits (docs/aws-semantics.md#limits, #retention).
inline constexpr int kMaxRecordsPerPut = 500;
inline constexpr size_t kMaxPutRecordsBytes = 5u << 20;
inline constexpr size_t kMaxRecordBytes = 1u << 20;  // data + partition key
inline constexpr int kMaxPartitionKeyChars = 256;
inline constexpr int kMaxStreamNameLength = 128;
inline constexpr int kMinRetentionHours = 24;
inline constexpr int kMaxRetentionHours = 8760;
inline constexpr int kMaxGetRecordsLimit = 10'000;
inline constexpr size_t kMaxGetRecordsBytes = 10u << 20;
// One writer thread per shard bounds how many a broker can carry well.
inline constexpr int kMaxShardsPerStream = 1024;
inline constexpr absl::Duration kMaxWaitTime = absl::Seconds(20);
// A subscription sends an event at least this often, records or not.
inline constexpr absl::Duration kSubscriptionHeartbeat = absl::Seconds(2);

// Who is subscribed to a shard (Broker::SubscribeToShard's exclusivity and cap).
struct ShardSubscribers {
  absl::Mutex mu;
  int count ABSL_GUARDED_BY(mu) = 0;
  absl::flat_hash_set<std::string> consumers ABSL_GUARDED_BY(mu);  // the named ones
};

struct ShardState {
  uint32_t index = 0;
  std::string id;
  HashKeyRangeValue range;
  std::string parent_shard_id;
  std::string adjacent_parent_shard_id;
  // Before `log`: the log's destructor completes pending appends, whose callbacks count.
  std::shared_ptr<ShardMetrics> metrics;  // null: metrics off
  std::unique_ptr<ShardLog> log;
  ShardThroughput throughput;
  ShardSubscribers subscribers;
  // GetRecords long polls in progress (max_waiting_reads_per_shard).
  std::atomic<int> long_polls{0};
};

struct Stream {
  std::string name;
  std::string directory;
  uint64_t incarnation = 0;
  int64_t creation_time_ms = 0;
  v1::FsyncPolicy fsync_policy = v1::FSYNC_ALWAYS;
  bool enforce_throughput_limits = false;
  std::atomic<int> retention_hours{24};
  std::vector<std::unique_ptr<ShardState>> shards;  // by index; ranges ascending
  std::atomic<bool> deleted{false};
  std::shared_ptr<StreamMetrics> metrics;  // null: metrics off

  ShardState& Route(absl::uint128 hash_key) const {
    auto it = std::upper_bound(shards.begin(), shards.end(), hash_key,
                               [](absl::uint128 key, const std::unique_ptr<ShardState>& s) {
                                 return key < s->range.start;
                               });
    return **std::prev(it);
  }
};

// A read that may wait for records (GetRecords with wait_time, and subscriptions).
struct Broker::ReadRequest {
  std::shared_ptr<Stream> stream;
  ShardState* shard = nullptr;
  uint64_t offset = 0;
  ReadLimits limits;
  absl::Time deadline;
  std::function<void(absl::StatusOr<ReadBatch>)> done;
  std::atomic<bool> cancelled{false};
  // The current wait: woken exactly once, by an append, the deadline, or a cancel.
  std::atomic<bool> woken{false};
  absl::Mutex mu;
  uint64_t waiter_id ABSL_GUARDED_BY(mu) = 0;
  Scheduler::TaskId timer ABSL_GUARDED_BY(mu) = 0;
  std::function<void()> wake ABSL_GUARDED_BY(mu);
};

// A ValidationException naming the field, the (shortened) value and the constraint, in Kinesis's
// words.
absl::Status ValidationError(std::string_view field, std::string_view value,
                             std::string_view constraint);
absl::Status ValidateStreamName(const std::string& name, std::string_view field = "streamName");
absl::Status ValidateRetention(int hours, std::string_view field);
FsyncMode ToFsyncMode(v1::FsyncPolicy policy);

// Kinesis counts partition keys in Unicode characters: count UTF-8 lead bytes.
inline int Utf8Length(std::string_view text) {
  int count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;
  return count;
}

inline google::protobuf::Timestamp MillisToProto(int64_t ms) {
  return google::protobuf::util::TimeUtil::MillisecondsToTimestamp(ms);
}

// Protobuf 3.21's set_x(const char*, size_t) builds a temporary std::string (an allocation past
// 15 bytes) and copies it; mutable_x()->assign() copies once, into a recycled message's storage.
inline void FillRecord(const RecordView& view, uint32_t shard_index, v1::Record* record) {
  char sequence[kSequenceNumberLength];
  FormatSequenceNumberTo(view.offset, shard_index, sequence);
  record->mutable_sequence_number()->assign(sequence, kSequenceNumberLength);
  // Set the fields in place: assigning the Timestamp would copy a whole message.
  const google::protobuf::Timestamp arrival = MillisToProto(view.arrival_ms);
  auto* timestamp = record->mutable_approximate_arrival_timestamp();
  timestamp->set_seconds(arrival.seconds());
  timestamp->set_nanos(arrival.nanos());
  record->mutable_data()->assign(view.data.data(), view.data.size());
  record->mutable_partition_key()->assign(view.partition_key.data(), view.partition_key.size());
}

}  // namespace runnel::broker
