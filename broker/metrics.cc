#include "broker/metrics.h"

namespace runnel::broker {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

std::shared_ptr<BrokerMetrics> BrokerMetrics::Create(
    std::shared_ptr<prometheus::Registry> registry) {
  return std::shared_ptr<BrokerMetrics>(new BrokerMetrics(std::move(registry)));
}

BrokerMetrics::BrokerMetrics(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)),
      incoming_records_(BuildCounter()
                            .Name("runnel_broker_incoming_records_total")
                            .Help("Records written (durable), per stream and shard")
                            .Register(*registry_)),
      incoming_bytes_(BuildCounter()
                          .Name("runnel_broker_incoming_bytes_total")
                          .Help("Bytes of data and partition keys written (durable)")
                          .Register(*registry_)),
      outgoing_records_(BuildCounter()
                            .Name("runnel_broker_outgoing_records_total")
                            .Help("Records returned by GetRecords and SubscribeToShard")
                            .Register(*registry_)),
      outgoing_bytes_(BuildCounter()
                          .Name("runnel_broker_outgoing_bytes_total")
                          .Help("Bytes of data and partition keys returned by reads")
                          .Register(*registry_)),
      throttled_records_(BuildCounter()
                             .Name("runnel_broker_throttled_records_total")
                             .Help("Records refused by the shard's write throughput limit")
                             .Register(*registry_)),
      throttled_requests_(BuildCounter()
                              .Name("runnel_broker_throttled_requests_total")
                              .Help("Requests throttled (ProvisionedThroughputExceeded): "
                                    "PutRecords with at least one refused record, refused "
                                    "GetRecords calls")
                              .Register(*registry_)),
      iterator_age_(BuildGauge()
                        .Name("runnel_broker_iterator_age_milliseconds")
                        .Help("millisBehindLatest of the shard's latest read answer")
                        .Register(*registry_)),
      disk_bytes_(BuildGauge()
                      .Name("runnel_broker_disk_bytes")
                      .Help("Bytes in the shard's segment files")
                      .Register(*registry_)),
      subscribers_(BuildGauge()
                       .Name("runnel_broker_subscribers")
                       .Help("Open SubscribeToShard subscriptions")
                       .Register(*registry_)),
      put_latency_(BuildHistogram()
                       .Name("runnel_broker_put_latency_seconds")
                       .Help("PutRecords and PutRecord, from the request to durable, per stream")
                       .Register(*registry_)),
      get_records_latency_(BuildHistogram()
                               .Name("runnel_broker_get_records_latency_seconds")
                               .Help("GetRecords, from the request to the answer (a long poll "
                                     "included), per stream")
                               .Register(*registry_)),
      subscription_queued_bytes_(BuildGauge()
                                     .Name("runnel_broker_subscription_queued_bytes")
                                     .Help("Bytes of records handed to subscribers' transports "
                                           "and not yet written to their clients")
                                     .Register(*registry_)),
      subscriptions_refused_(BuildCounter()
                                 .Name("runnel_broker_subscriptions_refused_total")
                                 .Help("SubscribeToShard calls refused: reason in_use (the "
                                       "consumer is subscribed to the shard already), "
                                       "shard_limit (--max-subscriptions-per-shard)")
                                 .Register(*registry_)),
      subscriptions_ended_(BuildCounter()
                               .Name("runnel_broker_subscriptions_ended_total")
                               .Help("Subscriptions the broker ended: reason stalled (the client "
                                     "took nothing for --subscription-stall-timeout)")
                               .Register(*registry_)),
      refused_in_use_(&subscriptions_refused_.Add({{"reason", "in_use"}})),
      refused_shard_limit_(&subscriptions_refused_.Add({{"reason", "shard_limit"}})),
      ended_stalled_(&subscriptions_ended_.Add({{"reason", "stalled"}})) {}

prometheus::Histogram::BucketBoundaries BrokerMetrics::PutLatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
}

prometheus::Histogram::BucketBoundaries BrokerMetrics::GetRecordsLatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,    0.5,    1,     2.5,    5,     10,   20};
}

std::shared_ptr<StreamMetrics> BrokerMetrics::ForStream(const std::string& stream) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(stream);
  if (it != streams_.end()) {
    if (auto live = it->second.lock()) return live;
  }
  auto* metrics = new StreamMetrics;
  metrics->put_latency = &put_latency_.Add({{"stream", stream}}, PutLatencyBuckets());
  metrics->get_records_latency =
      &get_records_latency_.Add({{"stream", stream}}, GetRecordsLatencyBuckets());
  metrics->throttled_put_records =
      &throttled_requests_.Add({{"stream", stream}, {"operation", "PutRecords"}});
  metrics->throttled_get_records =
      &throttled_requests_.Add({{"stream", stream}, {"operation", "GetRecords"}});
  std::shared_ptr<StreamMetrics> shared(
      metrics, [self = shared_from_this(), stream](StreamMetrics* m) { self->Release(stream, m); });
  streams_[stream] = shared;
  stream_raw_[stream] = metrics;
  return shared;
}

void BrokerMetrics::Release(const std::string& stream, StreamMetrics* metrics) {
  {
    absl::MutexLock lock(&mu_);
    auto raw = stream_raw_.find(stream);
    if (raw != stream_raw_.end() && raw->second == metrics) {
      stream_raw_.erase(raw);
      streams_.erase(stream);
      put_latency_.Remove(metrics->put_latency);
      get_records_latency_.Remove(metrics->get_records_latency);
      throttled_requests_.Remove(metrics->throttled_put_records);
      throttled_requests_.Remove(metrics->throttled_get_records);
    }
  }
  delete metrics;
}

std::shared_ptr<ShardMetrics> BrokerMetrics::ForShard(const std::string& stream,
                                                      const std::string& shard_id) {
  auto key = std::make_pair(stream, shard_id);
  absl::MutexLock lock(&mu_);
  auto it = shards_.find(key);
  if (it != shards_.end()) {
    if (auto live = it->second.lock()) return live;
  }
  const prometheus::Labels labels{{"stream", stream}, {"shard", shard_id}};
  auto* metrics = new ShardMetrics;
  metrics->incoming_records = &incoming_records_.Add(labels);
  metrics->incoming_bytes = &incoming_bytes_.Add(labels);
  metrics->outgoing_records = &outgoing_records_.Add(labels);
  metrics->outgoing_bytes = &outgoing_bytes_.Add(labels);
  metrics->throttled_records = &throttled_records_.Add(labels);
  metrics->iterator_age_ms = &iterator_age_.Add(labels);
  metrics->disk_bytes = &disk_bytes_.Add(labels);
  metrics->subscribers = &subscribers_.Add(labels);
  metrics->subscription_queued_bytes = &subscription_queued_bytes_.Add(labels);
  std::shared_ptr<ShardMetrics> shared(
      metrics, [self = shared_from_this(), key](ShardMetrics* m) { self->Release(key, m); });
  shards_[key] = shared;
  shard_raw_[key] = metrics;
  return shared;
}

void BrokerMetrics::Release(const std::pair<std::string, std::string>& key, ShardMetrics* metrics) {
  {
    absl::MutexLock lock(&mu_);
    auto raw = shard_raw_.find(key);
    if (raw != shard_raw_.end() && raw->second == metrics) {
      shard_raw_.erase(raw);
      shards_.erase(key);
      incoming_records_.Remove(metrics->incoming_records);
      incoming_bytes_.Remove(metrics->incoming_bytes);
      outgoing_records_.Remove(metrics->outgoing_records);
      outgoing_bytes_.Remove(metrics->outgoing_bytes);
      throttled_records_.Remove(metrics->throttled_records);
      iterator_age_.Remove(metrics->iterator_age_ms);
      disk_bytes_.Remove(metrics->disk_bytes);
      subscribers_.Remove(metrics->subscribers);
      subscription_queued_bytes_.Remove(metrics->subscription_queued_bytes);
    }
  }
  delete metrics;
}

}  // namespace runnel::broker
