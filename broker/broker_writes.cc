// PutRecords and PutRecord: validation, routing by hash key, appends to the shard logs.
#include "broker/broker.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "broker/broker_internal.h"
#include "broker/message_pool.h"
#include "broker/metrics.h"
#include "broker/sequence_number.h"
#include "broker/throughput.h"
#include "common/hash_key.h"

namespace runnel::broker {

absl::Status Broker::ThrottledError(const Stream& stream, const ShardState& shard) const {
  return absl::ResourceExhaustedError(
      absl::StrCat("ProvisionedThroughputExceededException: Rate exceeded for shard ", shard.id,
                   " in stream ", stream.name, " under account ", options_.account_id, "."));
}

namespace {

// Everything a PutRecords needs once its shards have written; no reference to the stream, so
// the last reference to a deleted stream is never dropped on a shard's writer thread.
struct PutState {
  absl::Mutex mu;
  v1::PutRecordsResponse response;
  // Records of the batch that failed to write, by request index, with the error.
  std::vector<std::pair<std::vector<int>, absl::Status>> failures;
  std::atomic<int> remaining{1};
  Broker::PutRecordsDone done;
  // Metrics on: where the latency goes, and when the request came.
  prometheus::Histogram* latency = nullptr;
  absl::Time start;

  void Release() {
    if (remaining.fetch_sub(1) != 1) return;
    if (latency != nullptr) latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    int failed = response.failed_record_count();
    for (auto& [indices, status] : failures) {
      for (int i : indices) {
        auto* entry = response.mutable_records(i);
        entry->Clear();
        entry->set_error_code("InternalFailure");
        entry->set_error_message(absl::StrCat("Internal service failure: ", status.message()));
        ++failed;
      }
    }
    response.set_failed_record_count(failed);
    done(std::move(response));
  }
};

}  // namespace

void Broker::PutRecords(const v1::PutRecordsRequest& request, PutRecordsDone done) {
  const int count = request.records_size();
  if (count < 1 || count > kMaxRecordsPerPut) {
    return done(ValidationError("records", absl::StrCat("[", count, " records]"),
                                count < 1 ? "Member must have length greater than or equal to 1"
                                          : "Member must have length less than or equal to 500"));
  }
  size_t total_bytes = 0;
  std::vector<absl::uint128> hash_keys(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    const auto& record = request.records(i);
    const int key_chars = Utf8Length(record.partition_key());
    if (key_chars < 1 || key_chars > kMaxPartitionKeyChars) {
      const std::string field = absl::StrCat("records.", i + 1, ".member.partitionKey");
      return done(ValidationError(field, record.partition_key(),
                                  key_chars < 1
                                      ? "Member must have length greater than or equal to 1"
                                      : "Member must have length less than or equal to 256"));
    }
    const size_t record_bytes = record.data().size() + record.partition_key().size();
    if (record_bytes > kMaxRecordBytes) {
      return done(ValidationError(
          absl::StrCat("records.", i + 1, ".member.data"),
          absl::StrCat("[", record.data().size(), " bytes of data + ",
                       record.partition_key().size(), " bytes of partition key]"),
          "Member must have length less than or equal to 1048576 bytes, partition key "
          "included"));
    }
    total_bytes += record_bytes;
    if (record.explicit_hash_key().empty()) {
      hash_keys[static_cast<size_t>(i)] = PartitionKeyHash(record.partition_key());
    } else {
      auto key = ParseHashKey(record.explicit_hash_key(),
                              absl::StrCat("records.", i + 1, ".member.explicitHashKey"));
      if (!key.ok()) return done(key.status());
      hash_keys[static_cast<size_t>(i)] = *key;
    }
  }
  if (total_bytes > kMaxPutRecordsBytes) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "InvalidArgumentException: Records size exceeds 5 MB limit: the request carries ",
        total_bytes, " bytes of data and partition keys (at most 5242880)")));
  }
  auto stream_or = FindStream(request.stream_name());
  if (!stream_or.ok()) return done(stream_or.status());
  const Stream& stream = **stream_or;
  StreamMetrics* const stream_metrics = stream.metrics.get();
  const bool limited = stream.enforce_throughput_limits || options_.enforce_throughput_limits;
  const int64_t now = limited ? NowMs() : 0;

  // Group by shard, keeping request order within each shard.
  std::vector<std::vector<int>> by_shard(stream.shards.size());
  auto state = std::make_shared<PutState>();
  state->response = MessagePool<v1::PutRecordsResponse>::Get().Take();
  state->done = std::move(done);
  if (stream_metrics != nullptr) {
    state->latency = stream_metrics->put_latency;
    state->start = absl::Now();
  }
  state->response.mutable_records()->Reserve(count);
  for (int i = 0; i < count; ++i) state->response.add_records();
  int throttled = 0;
  for (int i = 0; i < count; ++i) {
    ShardState& shard = stream.Route(hash_keys[static_cast<size_t>(i)]);
    if (limited) {
      const auto& record = request.records(i);
      const double bytes =
          static_cast<double>(record.data().size() + record.partition_key().size());
      if (!shard.throughput.write_records.TryTake(1, now) ||
          !shard.throughput.write_bytes.TryTake(bytes, now)) {
        auto* entry = state->response.mutable_records(i);
        entry->set_error_code("ProvisionedThroughputExceededException");
        entry->set_error_message(
            std::string(ThrottledError(stream, shard)
                            .message()
                            .substr(sizeof("ProvisionedThroughputExceededException: ") - 1)));
        ++throttled;
        if (shard.metrics) shard.metrics->throttled_records->Increment();
        continue;
      }
    }
    by_shard[shard.index].push_back(i);
  }
  if (throttled > 0 && stream_metrics != nullptr)
    stream_metrics->throttled_put_records->Increment();
  state->response.set_failed_record_count(throttled);
  state->response.set_encryption_type("NONE");

  std::vector<AppendRecord> records;
  for (size_t s = 0; s < by_shard.size(); ++s) {
    std::vector<int>& indices = by_shard[s];
    if (indices.empty()) continue;
    records.clear();
    size_t bytes = 0;
    for (int i : indices) {
      const auto& record = request.records(i);
      records.push_back({record.partition_key(), record.data()});
      bytes += record.partition_key().size() + record.data().size();
    }
    state->remaining.fetch_add(1);
    ShardState& shard = *stream.shards[s];
    // The callback may run before Append returns; it only records a failure, and the response
    // is completed by whoever releases last. The shard's metrics outlive its log (ShardState).
    auto on_durable = [state, indices, metrics = shard.metrics.get(),
                       bytes](const absl::Status& status) {
      if (!status.ok()) {
        absl::MutexLock lock(&state->mu);
        state->failures.emplace_back(indices, status);
      } else if (metrics != nullptr) {
        metrics->incoming_records->Increment(static_cast<double>(indices.size()));
        metrics->incoming_bytes->Increment(static_cast<double>(bytes));
      }
      state->Release();
    };
    auto ticket = shard.log->Append(records, on_durable);
    if (!ticket.ok()) {
      on_durable(ticket.status());
      continue;
    }
    char sequence[kSequenceNumberLength];
    for (size_t k = 0; k < indices.size(); ++k) {
      auto* entry = state->response.mutable_records(indices[k]);
      FormatSequenceNumberTo(ticket->first_offset + k, shard.index, sequence);
      entry->mutable_sequence_number()->assign(sequence, kSequenceNumberLength);  // see FillRecord
      entry->set_shard_id(shard.id);
    }
  }
  state->Release();
}

void Broker::PutRecord(const v1::PutRecordRequest& request, PutRecordDone done) {
  v1::PutRecordsRequest batch;
  batch.set_stream_name(request.stream_name());
  auto* entry = batch.add_records();
  entry->set_data(request.data());
  entry->set_partition_key(request.partition_key());
  entry->set_explicit_hash_key(request.explicit_hash_key());
  PutRecords(batch, [done = std::move(done)](absl::StatusOr<v1::PutRecordsResponse> result) {
    if (!result.ok()) {
      // Name the single-record fields as Kinesis's PutRecord does.
      std::string message(result.status().message());
      for (std::string_view from : {"records.1.member.partitionKey", "records.1.member.data",
                                    "records.1.member.explicitHashKey"}) {
        if (auto pos = message.find(from); pos != std::string::npos) {
          message.replace(pos, from.size(), from.substr(sizeof("records.1.member.") - 1));
        }
      }
      return done(absl::Status(result.status().code(), message));
    }
    const auto& record = result->records(0);
    if (record.error_code() == "ProvisionedThroughputExceededException") {
      return done(absl::ResourceExhaustedError(
          absl::StrCat(record.error_code(), ": ", record.error_message())));
    }
    if (!record.error_code().empty()) {
      return done(
          absl::UnavailableError(absl::StrCat("InternalFailure: ", record.error_message())));
    }
    v1::PutRecordResponse response;
    response.set_shard_id(record.shard_id());
    response.set_sequence_number(record.sequence_number());
    response.set_encryption_type("NONE");
    done(std::move(response));
  });
}

}  // namespace runnel::broker
