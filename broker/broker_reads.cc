// Iterators, GetRecords (with long polls) and SubscribeToShard.
#include "broker/broker.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"
#include "broker/broker_internal.h"
#include "broker/iterator.h"
#include "broker/message_pool.h"
#include "broker/metrics.h"
#include "broker/sequence_number.h"
#include "broker/shard_log.h"
#include "broker/throughput.h"
#include "common/scheduler.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace runnel::broker {

using google::protobuf::util::TimeUtil;

// Answers a call at once; there is nothing to cancel.
template <typename Done, typename Result>
Broker::CancelFn Answer(Done& done, Result&& result) {
  done(std::forward<Result>(result));
  return {};
}

absl::StatusOr<uint64_t> Broker::ResolvePosition(const Stream& stream, ShardState& shard,
                                                 v1::ShardIteratorType type,
                                                 const std::string& sequence_number,
                                                 const google::protobuf::Timestamp& timestamp,
                                                 const char* sequence_field) {
  const bool by_sequence = type == v1::AT_SEQUENCE_NUMBER || type == v1::AFTER_SEQUENCE_NUMBER;
  if (by_sequence == sequence_number.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("InvalidArgumentException: Must either specify (1) AT_SEQUENCE_NUMBER or "
                     "AFTER_SEQUENCE_NUMBER and ",
                     sequence_field,
                     " or (2) TRIM_HORIZON, LATEST or "
                     "AT_TIMESTAMP and no ",
                     sequence_field, ". Request specified ", v1::ShardIteratorType_Name(type),
                     (sequence_number.empty() ? " and no " : " and "), sequence_field, "."));
  }
  const uint64_t end = shard.log->EndOffset();
  switch (type) {
    case v1::TRIM_HORIZON: {
      const int64_t cutoff = RetentionCutoffMs(stream);
      return shard.log->OffsetAtTimestamp(cutoff);
    }
    case v1::LATEST:
      return end;
    case v1::AT_TIMESTAMP: {
      if (!timestamp.IsInitialized() || (timestamp.seconds() == 0 && timestamp.nanos() == 0)) {
        return absl::InvalidArgumentError(
            "InvalidArgumentException: Must specify timestampInMillis parameter for iterator "
            "of type AT_TIMESTAMP.");
      }
      const int64_t ms =
          std::max(TimeUtil::TimestampToMilliseconds(timestamp), RetentionCutoffMs(stream));
      return shard.log->OffsetAtTimestamp(ms);
    }
    case v1::AT_SEQUENCE_NUMBER:
    case v1::AFTER_SEQUENCE_NUMBER: {
      ASSIGN_OR_RETURN(SequencePosition position,
                       ParseSequenceNumber(sequence_number, sequence_field));
      if (position.shard_index != shard.index) {
        return absl::InvalidArgumentError(
            absl::StrCat("InvalidArgumentException: Invalid ", sequence_field, ". It encodes ",
                         ShardIdFromIndex(position.shard_index),
                         ", while it was used in a call to a shard with ", shard.id));
      }
      const uint64_t offset = position.offset + (type == v1::AFTER_SEQUENCE_NUMBER ? 1 : 0);
      if (offset > end) {
        return absl::InvalidArgumentError(
            absl::StrCat("InvalidArgumentException: ", sequence_field, " ", sequence_number,
                         " is past the end of shard ", shard.id, " in stream ", stream.name,
                         " (its last record is ", FormatSequenceNumber(end - 1, shard.index), ")"));
      }
      return offset;
    }
    default:
      return ValidationError("shardIteratorType", v1::ShardIteratorType_Name(type),
                             "Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, "
                             "AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]");
  }
}

absl::StatusOr<v1::GetShardIteratorResponse> Broker::GetShardIterator(
    const v1::GetShardIteratorRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream,
                   FindStream(request.stream_name(), request.incarnation()));
  ASSIGN_OR_RETURN(ShardState * shard, FindShard(*stream, request.shard_id()));
  ASSIGN_OR_RETURN(uint64_t offset, ResolvePosition(*stream, *shard, request.shard_iterator_type(),
                                                    request.starting_sequence_number(),
                                                    request.timestamp(), "StartingSequenceNumber"));
  IteratorToken token;
  token.stream_name = stream->name;
  token.incarnation = stream->incarnation;
  token.shard_index = shard->index;
  token.offset = offset;
  token.issued_ms = NowMs();
  v1::GetShardIteratorResponse response;
  response.set_shard_iterator(EncodeIterator(token));
  return response;
}

void Broker::CancelAllReads() {
  std::vector<std::shared_ptr<ReadRequest>> waiting;
  {
    absl::MutexLock lock(&waits_mu_);
    reads_cancelled_ = true;
    for (auto& [key, request] : waiting_reads_) waiting.push_back(request);
  }
  for (const auto& request : waiting) CancelRead(request);
}

void Broker::ReadWithWait(std::shared_ptr<ReadRequest> request) {
  {
    absl::MutexLock lock(&waits_mu_);
    if (reads_cancelled_) {
      return request->done(absl::UnavailableError("the broker is shutting down"));
    }
  }
  request->limits.min_arrival_ms = RetentionCutoffMs(*request->stream);
  ShardLog& log = *request->shard->log;
  absl::StatusOr<ReadBatch> batch = log.Read(request->offset, request->limits);
  const absl::Time now = options_.clock ? options_.clock() : absl::Now();
  if (!batch.ok() || !batch->records.empty() || now >= request->deadline ||
      request->cancelled.load() || request->stream->deleted.load()) {
    return request->done(std::move(batch));
  }
  request->offset = batch->next_offset;
  if (request->offset < log.EndOffset()) {
    // Only expired records were skipped; more may follow at once.
    scheduler_->Post([this, request] { ReadWithWait(request); });
    return;
  }
  // Wait. The callbacks hold the request weakly and only post to the scheduler, so no shard
  // writer thread ever holds (and might drop) the last reference to a stream.
  request->woken = false;
  {
    absl::MutexLock lock(&waits_mu_);
    waiting_reads_[request.get()] = request;
  }
  std::weak_ptr<ReadRequest> weak = request;
  auto wake = [this, weak] {
    scheduler_->Post([this, weak] {
      std::shared_ptr<ReadRequest> request = weak.lock();
      if (request == nullptr || request->woken.exchange(true)) return;
      {
        absl::MutexLock lock(&request->mu);
        request->shard->log->RemoveWaiter(request->waiter_id);
        scheduler_->Cancel(request->timer);
        request->wake = nullptr;
      }
      {
        absl::MutexLock lock(&waits_mu_);
        waiting_reads_.erase(request.get());
      }
      ReadWithWait(request);
    });
  };
  {
    absl::MutexLock lock(&request->mu);
    request->waiter_id = log.AddWaiter(wake);
    request->timer = scheduler_->PostAt(request->deadline, wake);
    request->wake = wake;
  }
  // Records may have landed (or a cancel come) between the read and AddWaiter.
  if (log.EndOffset() > request->offset || request->cancelled.load()) wake();
}

Broker::CancelFn Broker::GetRecords(const v1::GetRecordsRequest& request, GetRecordsDone done) {
  if (request.limit() < 0 || request.limit() > kMaxGetRecordsLimit) {
    return Answer(done, ValidationError("limit", std::to_string(request.limit()),
                                        "Member must have value between 1 and 10000"));
  }
  const absl::Duration wait =
      absl::Seconds(request.wait_time().seconds()) + absl::Nanoseconds(request.wait_time().nanos());
  if (wait < absl::ZeroDuration() || wait > kMaxWaitTime) {
    return Answer(done, ValidationError("waitTime", absl::FormatDuration(wait),
                                        "Member must be between 0s and 20s"));
  }
  auto token = DecodeIterator(request.shard_iterator());
  if (!token.ok()) return Answer(done, token.status());
  const int64_t now_ms = NowMs();
  if (now_ms - token->issued_ms > kIteratorLifetimeMs) {
    return Answer(
        done,
        absl::FailedPreconditionError(absl::StrCat(
            "ExpiredIteratorException: Iterator expired. The iterator was created at time ",
            absl::FormatTime(absl::FromUnixMillis(token->issued_ms), absl::UTCTimeZone()),
            " while right now it is ",
            absl::FormatTime(absl::FromUnixMillis(now_ms), absl::UTCTimeZone()),
            " which is further in the future than the tolerated delay of 300000 milliseconds.")));
  }
  auto stream = FindStream(token->stream_name);
  if (!stream.ok()) return Answer(done, stream.status());
  if ((*stream)->incarnation != token->incarnation ||
      token->shard_index >= (*stream)->shards.size()) {
    return Answer(done,
                  absl::NotFoundError(absl::StrCat(
                      "ResourceNotFoundException: the iterator belongs to an earlier stream named ",
                      token->stream_name, ", since deleted")));
  }
  ShardState* shard = (*stream)->shards[token->shard_index].get();
  const bool limited = (*stream)->enforce_throughput_limits || options_.enforce_throughput_limits;
  if (limited && (!shard->throughput.read_calls.TryTake(1, now_ms) ||
                  !shard->throughput.read_bytes.HasTokens(now_ms))) {
    if ((*stream)->metrics) (*stream)->metrics->throttled_get_records->Increment();
    return Answer(done, ThrottledError(**stream, *shard));
  }
  // Each waiting long poll costs little, but a shard must not collect them without bound.
  const bool long_poll = wait > absl::ZeroDuration();
  if (long_poll && shard->long_polls.fetch_add(1) >= options_.max_waiting_reads_per_shard) {
    shard->long_polls.fetch_sub(1);
    if ((*stream)->metrics) (*stream)->metrics->throttled_get_records->Increment();
    return Answer(done,
                  absl::ResourceExhaustedError(absl::StrCat(
                      "ProvisionedThroughputExceededException: Rate exceeded for shard ", shard->id,
                      " in stream ", (*stream)->name, ": ", options_.max_waiting_reads_per_shard,
                      " GetRecords calls with a wait time already wait on it "
                      "(--max-waiting-reads-per-shard)")));
  }
  const absl::Time start = (*stream)->metrics ? absl::Now() : absl::InfinitePast();

  auto read = std::make_shared<ReadRequest>();
  read->stream = *stream;
  read->shard = shard;
  read->offset = token->offset;
  read->limits.max_records = request.limit() == 0 ? kMaxGetRecordsLimit : request.limit();
  read->limits.max_bytes = kMaxGetRecordsBytes;
  read->deadline = (options_.clock ? options_.clock() : absl::Now()) + wait;
  read->done = [this, stream = *stream, shard, limited, long_poll, issued = *token, start,
                done = std::move(done)](absl::StatusOr<ReadBatch> batch) {
    if (long_poll) shard->long_polls.fetch_sub(1);
    if (stream->metrics) {
      stream->metrics->get_records_latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    }
    if (!batch.ok()) return done(batch.status());
    v1::GetRecordsResponse response = MessagePool<v1::GetRecordsResponse>::Get().Take();
    response.mutable_records()->Reserve(static_cast<int>(batch->records.size()));
    size_t bytes = 0;
    for (const RecordView& view : batch->records) {
      FillRecord(view, shard->index, response.add_records());
      bytes += view.data.size() + view.partition_key.size();
    }
    const int64_t now = NowMs();
    if (limited) shard->throughput.read_bytes.Take(static_cast<double>(bytes), now);
    IteratorToken next = issued;
    next.offset = batch->next_offset;
    next.issued_ms = now;
    response.set_next_shard_iterator(EncodeIterator(next));
    const bool caught_up = batch->next_offset >= shard->log->EndOffset();
    response.set_millis_behind_latest(
        caught_up || batch->records.empty()
            ? 0
            : std::max<int64_t>(0, now - batch->records.back().arrival_ms));
    if (shard->metrics) {
      shard->metrics->outgoing_records->Increment(static_cast<double>(batch->records.size()));
      shard->metrics->outgoing_bytes->Increment(static_cast<double>(bytes));
      shard->metrics->iterator_age_ms->Set(static_cast<double>(response.millis_behind_latest()));
    }
    done(std::move(response));
  };
  std::weak_ptr<ReadRequest> weak = read;
  ReadWithWait(std::move(read));
  return [this, weak] {
    if (auto read = weak.lock()) CancelRead(read);
  };
}

void Broker::CancelRead(const std::shared_ptr<ReadRequest>& request) {
  request->cancelled = true;
  std::function<void()> wake;
  {
    absl::MutexLock lock(&request->mu);
    wake = request->wake;
  }
  if (wake) wake();
}

class ShardSubscription : public Subscription {
 public:
  // Holds one of the shard's subscriber places (taken by Broker::SubscribeToShard) until it
  // ends, is cancelled or is destroyed.
  ShardSubscription(Broker* broker, std::shared_ptr<Stream> stream, ShardState* shard,
                    uint64_t offset, std::string consumer)
      : broker_(broker),
        stream_(std::move(stream)),
        shard_(shard),
        consumer_(std::move(consumer)),
        offset_(offset) {
    if (shard_->metrics) shard_->metrics->subscribers->Increment();
  }
  ~ShardSubscription() override {
    Cancel();
    Drained();
    if (shard_->metrics) shard_->metrics->subscribers->Decrement();
  }

  void Next(EventDone done) override {
    // The transport asks for the next event only once it has written the last one.
    Drained();
    if (cancelled_.load()) return done(absl::CancelledError("subscription cancelled"));
    auto read = std::make_shared<Broker::ReadRequest>();
    read->stream = stream_;
    read->shard = shard_;
    read->offset = offset_;
    read->limits.max_records = kMaxGetRecordsLimit;
    // One event is all a subscription has queued toward its client: its size is the bound.
    read->limits.max_bytes =
        std::clamp<size_t>(broker_->options_.subscription_buffer_bytes, 1, kMaxGetRecordsBytes);
    read->deadline = absl::Now() + kSubscriptionHeartbeat;
    read->done = [this, done = std::move(done)](absl::StatusOr<ReadBatch> batch) {
      {
        absl::MutexLock lock(&mu_);
        pending_.reset();
      }
      if (!batch.ok()) {
        Release();
        return done(batch.status());
      }
      if (stream_->deleted.load()) {
        Release();
        return done(absl::NotFoundError(
            absl::StrCat("ResourceNotFoundException: Stream ", stream_->name, " was deleted")));
      }
      v1::SubscribeToShardEvent event;
      size_t bytes = 0;
      for (const RecordView& view : batch->records) {
        FillRecord(view, shard_->index, event.add_records());
        bytes += view.data.size() + view.partition_key.size();
      }
      offset_ = batch->next_offset;
      event.set_continuation_sequence_number(FormatSequenceNumber(offset_ - 1, shard_->index));
      const bool caught_up = offset_ >= shard_->log->EndOffset();
      event.set_millis_behind_latest(
          caught_up || batch->records.empty()
              ? 0
              : std::max<int64_t>(0, broker_->NowMs() - batch->records.back().arrival_ms));
      if (shard_->metrics) {
        shard_->metrics->outgoing_records->Increment(static_cast<double>(batch->records.size()));
        shard_->metrics->outgoing_bytes->Increment(static_cast<double>(bytes));
        shard_->metrics->iterator_age_ms->Set(static_cast<double>(event.millis_behind_latest()));
      }
      Queued(bytes);
      done(std::move(event));
    };
    {
      absl::MutexLock lock(&mu_);
      pending_ = read;
    }
    broker_->ReadWithWait(std::move(read));
  }

  void Cancel() override {
    cancelled_ = true;
    Release();
    std::shared_ptr<Broker::ReadRequest> pending;
    {
      absl::MutexLock lock(&mu_);
      pending = pending_;
    }
    if (pending != nullptr) broker_->CancelRead(pending);
  }

  void CancelStalled() override {
    if (!stalled_.exchange(true) && broker_->metrics_ != nullptr) {
      broker_->metrics_->subscriptions_ended_stalled().Increment();
    }
    Cancel();
  }

 private:
  // Gives the shard's subscriber place back (once): the consumer may subscribe again.
  void Release() {
    if (released_.exchange(true)) return;
    absl::MutexLock lock(&shard_->subscribers.mu);
    --shard_->subscribers.count;
    if (!consumer_.empty()) shard_->subscribers.consumers.erase(consumer_);
  }
  // The event of `bytes` handed to the transport is queued toward the client until the next
  // Next (or the end).
  void Queued(size_t bytes) {
    queued_bytes_ = bytes;
    if (shard_->metrics) {
      shard_->metrics->subscription_queued_bytes->Increment(static_cast<double>(bytes));
    }
  }
  void Drained() {
    const size_t bytes = queued_bytes_.exchange(0);
    if (bytes > 0 && shard_->metrics) {
      shard_->metrics->subscription_queued_bytes->Decrement(static_cast<double>(bytes));
    }
  }

  Broker* const broker_;
  const std::shared_ptr<Stream> stream_;
  ShardState* const shard_;
  const std::string consumer_;  // "": anonymous
  uint64_t offset_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> released_{false};
  std::atomic<bool> stalled_{false};
  std::atomic<size_t> queued_bytes_{0};
  absl::Mutex mu_;
  std::shared_ptr<Broker::ReadRequest> pending_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<Subscription>> Broker::SubscribeToShard(
    const v1::SubscribeToShardRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream,
                   FindStream(request.stream_name(), request.incarnation()));
  ASSIGN_OR_RETURN(ShardState * shard, FindShard(*stream, request.shard_id()));
  const auto& position = request.starting_position();
  ASSIGN_OR_RETURN(uint64_t offset,
                   ResolvePosition(*stream, *shard, position.type(), position.sequence_number(),
                                   position.timestamp(), "StartingPosition.SequenceNumber"));
  const std::string& consumer = request.consumer_name();
  {
    absl::MutexLock lock(&shard->subscribers.mu);
    if (!consumer.empty() && shard->subscribers.consumers.contains(consumer)) {
      if (metrics_ != nullptr) metrics_->subscriptions_refused_in_use().Increment();
      return absl::AlreadyExistsError(absl::StrCat(
          "ResourceInUseException: Consumer ", consumer, " is already subscribed to ", shard->id,
          " of stream ", stream->name,
          "; a consumer has one subscription per shard at a time (subscribe again once it "
          "ends)"));
    }
    if (shard->subscribers.count >= options_.max_subscriptions_per_shard) {
      if (metrics_ != nullptr) metrics_->subscriptions_refused_shard_limit().Increment();
      return absl::ResourceExhaustedError(
          absl::StrCat("LimitExceededException: ", shard->id, " of stream ", stream->name,
                       " already has ", shard->subscribers.count,
                       " subscriptions, the most one shard takes (--max-subscriptions-per-shard)"));
    }
    ++shard->subscribers.count;
    if (!consumer.empty()) shard->subscribers.consumers.insert(consumer);
  }
  return std::make_unique<ShardSubscription>(this, std::move(stream), shard, offset, consumer);
}

}  // namespace runnel::broker
