// KinesisApi's implementation, private to kinesis/: the state this layer keeps and one member
// per Kinesis operation. The operations are split by what they translate: kinesis/api.cc has the
// streams' control and data plane (onto broker::Broker) and the dispatch; kinesis/api_extras.cc
// has what only this layer keeps (registered consumers and SubscribeToShard, tags, enhanced
// monitoring names, DescribeLimits).
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "broker/broker.h"
#include "kinesis/api.h"
#include "kinesis/wire.h"

namespace runnel::kinesis {

// Kinesis's limits for what only this layer keeps.
inline constexpr size_t kMaxConsumersPerStream = 20;
inline constexpr size_t kMaxTagsPerStream = 50;

struct KinesisApi::Impl {
  broker::Broker* const broker;
  // What the core does not keep: registered consumers, tags, the enhanced-monitoring metric
  // names. In memory, per stream, and forgotten when the stream is deleted or replaced by one
  // of the same name (told apart by creation time).
  struct Consumer {
    std::string name;
    std::string arn;
    int64_t creation_ms = 0;
  };
  struct StreamExtras {
    int64_t stream_creation_ms = 0;
    std::map<std::string, std::string> tags;
    std::map<std::string, Consumer> consumers;
    std::set<std::string> metrics;
  };
  absl::Mutex mu;
  absl::flat_hash_map<std::string, StreamExtras> extras ABSL_GUARDED_BY(mu);

  explicit Impl(broker::Broker* b) : broker(b) {}

  using Reply = std::function<void(absl::StatusOr<Json>)>;
  // StreamName, or the name inside StreamARN (the two must agree when both are set).
  absl::StatusOr<std::string> StreamName(Reader& in, bool name_only = false);
  absl::StatusOr<v1::StreamDescriptionSummary> Summary(const std::string& stream);
  StreamExtras& ExtrasFor(const v1::StreamDescriptionSummary& summary)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  Json StreamMode() { return Json{{"StreamMode", "PROVISIONED"}}; }

  Json MetricsJson(const std::set<std::string>& metrics);

  // ---- Control plane ----

  absl::StatusOr<Json> CreateStream(Reader& in);
  absl::StatusOr<Json> DeleteStream(Reader& in);
  absl::StatusOr<Json> ListStreams(Reader& in);
  Json SummaryJson(const v1::StreamDescriptionSummary& summary, WireFormat format);
  absl::StatusOr<Json> DescribeStreamSummary(Reader& in);
  absl::StatusOr<Json> DescribeStream(Reader& in);
  absl::StatusOr<Json> ListShards(Reader& in);
  absl::StatusOr<Json> Retention(Reader& in, bool increase);

  // ---- Data plane ----

  void PutRecord(Reader& in, Reply reply);
  void PutRecords(Reader& in, Reply reply);
  absl::StatusOr<Json> GetShardIterator(Reader& in);
  void GetRecords(Reader& in, Reply reply);

  // ---- Consumers (kept by this layer) ----

  Json ConsumerJson(const Consumer& consumer, WireFormat format);
  absl::StatusOr<std::string> RequiredStreamArn(Reader& in);
  absl::Status ValidateConsumerName(const std::string& name);
  absl::StatusOr<Json> RegisterStreamConsumer(Reader& in);
  // The consumer a request names: ConsumerARN, or StreamARN + ConsumerName.
  absl::StatusOr<std::pair<v1::StreamDescriptionSummary, Consumer>> FindConsumer(Reader& in);
  absl::StatusOr<Json> DescribeStreamConsumer(Reader& in);
  absl::StatusOr<Json> DeregisterStreamConsumer(Reader& in);
  absl::StatusOr<Json> ListStreamConsumers(Reader& in);
  absl::StatusOr<ApiResponse> SubscribeToShard(Reader& in);

  // ---- Tags (kept by this layer) ----

  absl::StatusOr<Json> AddTags(const std::string& stream, const Json* tag_map);
  absl::StatusOr<Json> RemoveTags(const std::string& stream, const std::vector<std::string>& keys);
  absl::StatusOr<std::map<std::string, std::string>> Tags(const std::string& stream);
  static Json TagList(const std::map<std::string, std::string>& tags, const std::string& after,
                      int64_t limit, bool* more);

  // ---- Everything else ----

  absl::StatusOr<Json> DescribeLimits();
  absl::StatusOr<Json> EnhancedMonitoring(Reader& in, bool enable);
  // Calls that change nothing here but must name an existing stream.
  absl::StatusOr<Json> AcceptForStream(Reader& in);
  void Dispatch(const std::string& op, Reader& in, Reply reply);
};

}  // namespace runnel::kinesis
