// The broker's Prometheus metrics (internal to the broker; broker.h only forward-declares
// prometheus::Registry). Names and labels are listed in deploy/README.md ("Metrics").
//
// Hot paths never look anything up: a stream and each of its shards resolve their label
// children once, when the stream is opened or created, and keep the pointers (StreamMetrics,
// ShardMetrics). Those are shared by name: a stream deleted and created again while a reader
// still holds the old one shares the series, and a series is removed from the registry when the
// last holder lets go, so a deleted stream's series disappear once its last reader is done.
//
// Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace runnel::broker {

// Per stream and shard.
struct ShardMetrics {
  prometheus::Counter* incoming_records = nullptr;
  prometheus::Counter* incoming_bytes = nullptr;
  prometheus::Counter* outgoing_records = nullptr;
  prometheus::Counter* outgoing_bytes = nullptr;
  prometheus::Counter* throttled_records = nullptr;
  prometheus::Gauge* iterator_age_ms = nullptr;
  prometheus::Gauge* disk_bytes = nullptr;
  prometheus::Gauge* subscribers = nullptr;
  prometheus::Gauge* subscription_queued_bytes = nullptr;
};

// Per stream.
struct StreamMetrics {
  prometheus::Histogram* put_latency = nullptr;
  prometheus::Histogram* get_records_latency = nullptr;
  prometheus::Counter* throttled_put_records = nullptr;  // operation="PutRecords" requests
  prometheus::Counter* throttled_get_records = nullptr;  // operation="GetRecords" requests
};

class BrokerMetrics : public std::enable_shared_from_this<BrokerMetrics> {
 public:
  // Registers the broker's families in `registry` (kept alive by this object).
  static std::shared_ptr<BrokerMetrics> Create(std::shared_ptr<prometheus::Registry> registry);

  std::shared_ptr<StreamMetrics> ForStream(const std::string& stream);
  // Broker-wide: subscriptions refused (reason "in_use": the consumer is already subscribed to
  // the shard; "shard_limit": max_subscriptions_per_shard) and ended by the broker (reason
  // "stalled": the client took nothing for subscription_stall_timeout).
  prometheus::Counter& subscriptions_refused_in_use() { return *refused_in_use_; }
  prometheus::Counter& subscriptions_refused_shard_limit() { return *refused_shard_limit_; }
  prometheus::Counter& subscriptions_ended_stalled() { return *ended_stalled_; }
  std::shared_ptr<ShardMetrics> ForShard(const std::string& stream, const std::string& shard_id);

  // Histogram buckets, in seconds.
  static prometheus::Histogram::BucketBoundaries PutLatencyBuckets();
  static prometheus::Histogram::BucketBoundaries GetRecordsLatencyBuckets();

 private:
  explicit BrokerMetrics(std::shared_ptr<prometheus::Registry> registry);
  void Release(const std::string& stream, StreamMetrics* metrics);
  void Release(const std::pair<std::string, std::string>& key, ShardMetrics* metrics);

  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& incoming_records_;
  prometheus::Family<prometheus::Counter>& incoming_bytes_;
  prometheus::Family<prometheus::Counter>& outgoing_records_;
  prometheus::Family<prometheus::Counter>& outgoing_bytes_;
  prometheus::Family<prometheus::Counter>& throttled_records_;
  prometheus::Family<prometheus::Counter>& throttled_requests_;
  prometheus::Family<prometheus::Gauge>& iterator_age_;
  prometheus::Family<prometheus::Gauge>& disk_bytes_;
  prometheus::Family<prometheus::Gauge>& subscribers_;
  prometheus::Family<prometheus::Histogram>& put_latency_;
  prometheus::Family<prometheus::Histogram>& get_records_latency_;
  prometheus::Family<prometheus::Gauge>& subscription_queued_bytes_;
  prometheus::Family<prometheus::Counter>& subscriptions_refused_;
  prometheus::Family<prometheus::Counter>& subscriptions_ended_;
  prometheus::Counter* refused_in_use_;
  prometheus::Counter* refused_shard_limit_;
  prometheus::Counter* ended_stalled_;

  absl::Mutex mu_;
  // The live holders, by name; a holder's deleter removes its series unless a newer holder of
  // the same name took over.
  absl::flat_hash_map<std::string, std::weak_ptr<StreamMetrics>> streams_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<std::string, std::string>, std::weak_ptr<ShardMetrics>> shards_
      ABSL_GUARDED_BY(mu_);
  // Which object each entry is (an expired weak_ptr no longer says).
  absl::flat_hash_map<std::string, StreamMetrics*> stream_raw_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<std::string, std::string>, ShardMetrics*> shard_raw_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace runnel::broker
