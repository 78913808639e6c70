#include "poller/broker_record_source.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "client/broker_client.h"
#include "google/protobuf/util/time_util.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {

v1::ShardIteratorType ShardIteratorTypeOf(StreamPosition::Kind kind) {
  switch (kind) {
    case StreamPosition::Kind::kLatest:
      return v1::LATEST;
    case StreamPosition::Kind::kAtTimestamp:
      return v1::AT_TIMESTAMP;
    case StreamPosition::Kind::kAtSequenceNumber:
      return v1::AT_SEQUENCE_NUMBER;
    case StreamPosition::Kind::kAfterSequenceNumber:
      return v1::AFTER_SEQUENCE_NUMBER;
    default:
      return v1::TRIM_HORIZON;
  }
}

namespace {

using google::protobuf::util::TimeUtil;

// How long one GetRecords waits for records before answering empty (a long poll: it answers as
// soon as one arrives).
constexpr absl::Duration kPollWait = absl::Seconds(2);
// The most records one GetRecords returns (Kinesis's limit).
constexpr size_t kMaxGetRecords = 10'000;

void AppendRecords(google::protobuf::RepeatedPtrField<v1::Record>* records, SourceRead& read) {
  read.records.reserve(read.records.size() + static_cast<size_t>(records->size()));
  for (v1::Record& record : *records) {
    read.records.push_back(
        {std::move(*record.mutable_partition_key()), std::move(*record.mutable_sequence_number()),
         std::move(*record.mutable_data()),
         TimeUtil::TimestampToMilliseconds(record.approximate_arrival_timestamp())});
  }
}

void AppendChildren(const google::protobuf::RepeatedPtrField<v1::ChildShard>& children,
                    SourceRead& read) {
  for (const v1::ChildShard& child : children) {
    read.child_shards.push_back(
        {child.shard_id(), {child.parent_shards().begin(), child.parent_shards().end()}});
  }
}

class PollingSource : public RecordSource {
 public:
  PollingSource(std::shared_ptr<client::BrokerClient> broker, std::string stream,
                uint64_t incarnation, std::string shard_id)
      : broker_(std::move(broker)),
        stream_(std::move(stream)),
        incarnation_(incarnation),
        shard_id_(std::move(shard_id)) {}

  absl::Status Seek(const StreamPosition& position) override {
    iterator_.clear();
    v1::GetShardIteratorRequest request;
    request.set_stream_name(stream_);
    request.set_incarnation(incarnation_);
    request.set_shard_id(shard_id_);
    request.set_shard_iterator_type(ShardIteratorTypeOf(position.kind));
    request.set_starting_sequence_number(position.sequence_number);
    if (position.kind == StreamPosition::Kind::kAtTimestamp) {
      *request.mutable_timestamp() =
          TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(position.timestamp));
    }
    auto response = broker_->GetShardIterator(request, {.canceller = &canceller_});
    if (!response.ok()) return client::WithContext(response.status(), "GetShardIterator");
    iterator_ = response->shard_iterator();
    return absl::OkStatus();
  }

  absl::StatusOr<SourceRead> Read(size_t max_records) override {
    if (iterator_.empty()) return absl::FailedPreconditionError("GetRecords: not positioned");
    v1::GetRecordsRequest request;
    request.set_shard_iterator(iterator_);
    request.set_limit(static_cast<int>(std::min(max_records, kMaxGetRecords)));
    request.mutable_wait_time()->set_seconds(absl::ToInt64Seconds(kPollWait));
    auto response = broker_->GetRecords(request, {.canceller = &canceller_});
    if (!response.ok()) {
      iterator_.clear();
      return client::WithContext(response.status(), "GetRecords");
    }
    SourceRead read;
    read.millis_behind_latest = response->millis_behind_latest();
    iterator_ = response->next_shard_iterator();
    read.shard_ended = iterator_.empty();
    AppendRecords(response->mutable_records(), read);
    AppendChildren(response->child_shards(), read);
    return read;
  }

  void Cancel() override { canceller_.Cancel(); }

 private:
  const std::shared_ptr<client::BrokerClient> broker_;
  const std::string stream_;
  const uint64_t incarnation_;
  const std::string shard_id_;
  // Carries the incarnation too: GetRecords of a deleted stream is NOT_FOUND.
  std::string iterator_;  // "" : not positioned
  client::CallCanceller canceller_;
};

class FanOutSource : public RecordSource {
 public:
  FanOutSource(std::shared_ptr<client::BrokerClient> broker, std::string stream,
               uint64_t incarnation, std::string shard_id, std::string consumer_name)
      : broker_(broker),
        stream_(stream),
        incarnation_(incarnation),
        shard_id_(shard_id),
        consumer_name_(std::move(consumer_name)),
        polling_(std::move(broker), std::move(stream), incarnation, std::move(shard_id)) {}

  absl::Status Seek(const StreamPosition& position) override {
    subscription_.reset();
    if (position.kind == StreamPosition::Kind::kAfterSequenceNumber) {
      last_sequence_number_ = position.sequence_number;
    }
    return polling_.Seek(position);
  }

  absl::StatusOr<SourceRead> Read(size_t max_records) override {
    if (subscription_ != nullptr) {
      v1::SubscribeToShardEvent event;
      if (subscription_->Read(&event)) {
        SourceRead read;
        read.millis_behind_latest = event.millis_behind_latest();
        AppendRecords(event.mutable_records(), read);
        AppendChildren(event.child_shards(), read);
        read.shard_ended = !event.child_shards().empty();
        if (!read.records.empty()) last_sequence_number_ = read.records.back().sequence_number;
        return read;
      }
      absl::Status status = subscription_->Finish();
      subscription_.reset();
      if (canceller_.cancelled()) return absl::CancelledError("SubscribeToShard: cancelled");
      // The stream is gone: the reader hands that to its mapping, which says so once.
      if (absl::IsNotFound(status)) return client::WithContext(status, "SubscribeToShard");
      if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
        spdlog::warn("subscription ended ({}); polling until caught up",
                     std::string(status.message()));
      }
      // Poll from where the subscription left off.
      if (absl::Status seek = polling_.Seek(StreamPosition::After(last_sequence_number_));
          !seek.ok()) {
        return seek;
      }
    }
    auto read = polling_.Read(max_records);
    if (!read.ok()) return read;
    if (!read->records.empty()) last_sequence_number_ = read->records.back().sequence_number;
    // Caught up by polling: switch to records pushed by SubscribeToShard.
    if (read->millis_behind_latest == 0 && !last_sequence_number_.empty()) Subscribe();
    return read;
  }

  void Cancel() override {
    canceller_.Cancel();
    polling_.Cancel();
  }

 private:
  void Subscribe() {
    v1::SubscribeToShardRequest request;
    request.set_stream_name(stream_);
    request.set_incarnation(incarnation_);
    request.set_shard_id(shard_id_);
    request.set_consumer_name(consumer_name_);
    request.mutable_starting_position()->set_type(v1::AFTER_SEQUENCE_NUMBER);
    request.mutable_starting_position()->set_sequence_number(last_sequence_number_);
    subscription_ = broker_->SubscribeToShard(request, &canceller_);
    spdlog::info("caught up; records are pushed from after {} (SubscribeToShard)",
                 last_sequence_number_);
  }

  const std::shared_ptr<client::BrokerClient> broker_;
  const std::string stream_;
  const uint64_t incarnation_;
  const std::string shard_id_;
  const std::string consumer_name_;
  PollingSource polling_;
  std::string last_sequence_number_;  // of the last record returned, or the position sought
  std::unique_ptr<client::Subscription> subscription_;  // null: polling
  client::CallCanceller canceller_;                     // of the subscription
};

class BrokerStreamSource : public StreamSource {
 public:
  BrokerStreamSource(std::shared_ptr<client::BrokerClient> broker, std::string stream,
                     ConsumerType consumer, std::string consumer_name)
      : broker_(std::move(broker)),
        stream_(std::move(stream)),
        consumer_(consumer),
        consumer_name_(std::move(consumer_name)) {}

  absl::StatusOr<StreamIdentity> Describe() override {
    auto summary = broker_->DescribeStreamSummary(stream_);
    if (!summary.ok()) return summary.status();
    return StreamIdentity{summary->stream_arn(), summary->incarnation()};
  }

  absl::StatusOr<std::vector<SourceShard>> ListShards(uint64_t incarnation) override {
    auto shards = broker_->ListAllShards(stream_, incarnation);
    if (!shards.ok()) return shards.status();
    std::vector<SourceShard> out;
    out.reserve(shards->size());
    for (const v1::Shard& shard : *shards) {
      out.push_back({shard.shard_id(), shard.parent_shard_id(), shard.adjacent_parent_shard_id()});
    }
    return out;
  }

  std::unique_ptr<RecordSource> OpenShard(const std::string& shard_id,
                                          uint64_t incarnation) override {
    if (consumer_ == ConsumerType::kFanOut) {
      return MakeFanOutSource(broker_, stream_, incarnation, shard_id, consumer_name_);
    }
    return MakePollingSource(broker_, stream_, incarnation, shard_id);
  }

 private:
  const std::shared_ptr<client::BrokerClient> broker_;
  const std::string stream_;
  const ConsumerType consumer_;
  const std::string consumer_name_;
};

}  // namespace

std::unique_ptr<StreamSource> MakeBrokerStreamSource(std::shared_ptr<client::BrokerClient> broker,
                                                     std::string stream, ConsumerType consumer,
                                                     std::string consumer_name) {
  return std::make_unique<BrokerStreamSource>(std::move(broker), std::move(stream), consumer,
                                              std::move(consumer_name));
}

std::unique_ptr<RecordSource> MakePollingSource(std::shared_ptr<client::BrokerClient> broker,
                                                std::string stream, uint64_t incarnation,
                                                std::string shard_id) {
  return std::make_unique<PollingSource>(std::move(broker), std::move(stream), incarnation,
                                         std::move(shard_id));
}

std::unique_ptr<RecordSource> MakeFanOutSource(std::shared_ptr<client::BrokerClient> broker,
                                               std::string stream, uint64_t incarnation,
                                               std::string shard_id, std::string consumer_name) {
  return std::make_unique<FanOutSource>(std::move(broker), std::move(stream), incarnation,
                                        std::move(shard_id), std::move(consumer_name));
}

}  // namespace runnel::poller
