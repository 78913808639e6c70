// The operations on what only the Kinesis layer keeps, in memory: registered stream consumers
// (and SubscribeToShard, which needs one), tags, enhanced-monitoring names; and DescribeLimits.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "kinesis/api_impl.h"
#include "kinesis/event_stream.h"
#include "kinesis/wire.h"

namespace runnel::kinesis {

Json KinesisApi::Impl::ConsumerJson(const Consumer& consumer, WireFormat format) {
  return Json{{"ConsumerName", consumer.name},
              {"ConsumerARN", consumer.arn},
              {"ConsumerStatus", "ACTIVE"},
              {"ConsumerCreationTimestamp", Time(consumer.creation_ms, format)}};
}

absl::StatusOr<std::string> KinesisApi::Impl::RequiredStreamArn(Reader& in) {
  if (!in.Has("StreamARN")) {
    RETURN_IF_ERROR(in.status());
    return MissingMember("streamARN");
  }
  return StreamNameFromArn(in.String("StreamARN"));
}

absl::Status KinesisApi::Impl::ValidateConsumerName(const std::string& name) {
  if (name.empty() || name.size() > 128 || !std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
               c == '-';
      })) {
    return KinesisStatus(
        "ValidationException",
        absl::StrCat("1 validation error detected: Value '", name,
                     "' at 'consumerName' failed to satisfy constraint: Member must satisfy "
                     "regular expression pattern: [a-zA-Z0-9_.-]+ and have length 1 to 128"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Json> KinesisApi::Impl::RegisterStreamConsumer(Reader& in) {
  ASSIGN_OR_RETURN(std::string stream, RequiredStreamArn(in));
  if (!in.Has("ConsumerName")) return MissingMember("consumerName");
  const std::string name = in.String("ConsumerName");
  RETURN_IF_ERROR(in.status());
  RETURN_IF_ERROR(ValidateConsumerName(name));
  ASSIGN_OR_RETURN(auto summary, Summary(stream));
  absl::MutexLock lock(&mu);
  StreamExtras& entry = ExtrasFor(summary);
  if (entry.consumers.contains(name)) {
    return absl::AlreadyExistsError(absl::StrCat("ResourceInUseException: Consumer ", name,
                                                 " under stream ", stream, " already exists."));
  }
  if (entry.consumers.size() >= kMaxConsumersPerStream) {
    return KinesisStatus("LimitExceededException",
                         absl::StrCat("Stream ", stream, " already has ", kMaxConsumersPerStream,
                                      " registered consumers, the limit"));
  }
  Consumer consumer;
  consumer.name = name;
  consumer.creation_ms = absl::ToUnixMillis(absl::Now());
  consumer.arn =
      absl::StrCat(summary.stream_arn(), "/consumer/", name, ":", consumer.creation_ms / 1000);
  entry.consumers[name] = consumer;
  return Json{{"Consumer", ConsumerJson(consumer, in.format())}};
}

// The consumer a request names: ConsumerARN, or StreamARN + ConsumerName.
absl::StatusOr<std::pair<v1::StreamDescriptionSummary, KinesisApi::Impl::Consumer>>
KinesisApi::Impl::FindConsumer(Reader& in) {
  std::string stream;
  std::string name;
  const std::string arn = in.String("ConsumerARN");
  if (in.Has("ConsumerARN")) {
    ASSIGN_OR_RETURN(ConsumerArnParts parts, ParseConsumerArn(arn));
    stream = parts.stream_name;
    name = parts.consumer_name;
  } else if (in.Has("StreamARN") && in.Has("ConsumerName")) {
    ASSIGN_OR_RETURN(stream, StreamNameFromArn(in.String("StreamARN")));
    name = in.String("ConsumerName");
  } else {
    RETURN_IF_ERROR(in.status());
    return KinesisStatus("InvalidArgumentException",
                         "Either ConsumerARN or both StreamARN and ConsumerName must be given");
  }
  RETURN_IF_ERROR(in.status());
  ASSIGN_OR_RETURN(auto summary, Summary(stream));
  absl::MutexLock lock(&mu);
  StreamExtras& entry = ExtrasFor(summary);
  auto it = entry.consumers.find(name);
  if (it == entry.consumers.end() || (!arn.empty() && it->second.arn != arn)) {
    return absl::NotFoundError(absl::StrCat("ResourceNotFoundException: Consumer ",
                                            arn.empty() ? name : arn, " under stream ", stream,
                                            " not found."));
  }
  return std::make_pair(summary, it->second);
}

absl::StatusOr<Json> KinesisApi::Impl::DescribeStreamConsumer(Reader& in) {
  ASSIGN_OR_RETURN(auto found, FindConsumer(in));
  Json description = ConsumerJson(found.second, in.format());
  description["StreamARN"] = found.first.stream_arn();
  return Json{{"ConsumerDescription", std::move(description)}};
}

absl::StatusOr<Json> KinesisApi::Impl::DeregisterStreamConsumer(Reader& in) {
  ASSIGN_OR_RETURN(auto found, FindConsumer(in));
  absl::MutexLock lock(&mu);
  ExtrasFor(found.first).consumers.erase(found.second.name);
  return Json::object();
}

absl::StatusOr<Json> KinesisApi::Impl::ListStreamConsumers(Reader& in) {
  ASSIGN_OR_RETURN(std::string stream, RequiredStreamArn(in));
  const int64_t max_results = in.Int("MaxResults", 100, 1, 10000);
  const std::string after = in.String("NextToken");  // the last name of the previous page
  (void)in.TimestampMs("StreamCreationTimestamp");
  RETURN_IF_ERROR(in.status());
  ASSIGN_OR_RETURN(auto summary, Summary(stream));
  absl::MutexLock lock(&mu);
  Json consumers = Json::array();
  Json out = Json::object();
  for (const auto& [name, consumer] : ExtrasFor(summary).consumers) {
    if (!after.empty() && name <= after) continue;
    if (static_cast<int64_t>(consumers.size()) >= max_results) {
      out["NextToken"] = consumers.back()["ConsumerName"];
      break;
    }
    consumers.push_back(ConsumerJson(consumer, in.format()));
  }
  out["Consumers"] = std::move(consumers);
  return out;
}

absl::StatusOr<ApiResponse> KinesisApi::Impl::SubscribeToShard(Reader& in) {
  if (!in.Has("ConsumerARN")) return MissingMember("consumerARN");
  if (!in.Has("ShardId")) return MissingMember("shardId");
  const Json* position = in.Object("StartingPosition");
  RETURN_IF_ERROR(in.status());
  if (position == nullptr) return MissingMember("startingPosition");
  Reader position_in(position, in.format());
  ASSIGN_OR_RETURN(v1::ShardIteratorType type,
                   IteratorType(position_in.String("Type"), "startingPosition.type"));
  ASSIGN_OR_RETURN(auto found, FindConsumer(in));
  v1::SubscribeToShardRequest request;
  request.set_stream_name(found.first.stream_name());
  request.set_shard_id(in.String("ShardId"));
  // The consumer's ARN names the subscriber, so the broker keeps one subscription per consumer
  // and shard (a consumer deregistered and registered again is a new one, as its ARN says).
  request.set_consumer_name(found.second.arn);
  auto* start = request.mutable_starting_position();
  start->set_type(type);
  start->set_sequence_number(position_in.String("SequenceNumber"));
  if (auto ms = position_in.TimestampMs("Timestamp"))
    *start->mutable_timestamp() = MillisToProto(*ms);
  RETURN_IF_ERROR(position_in.status());
  ASSIGN_OR_RETURN(std::unique_ptr<broker::Subscription> subscription,
                   broker->SubscribeToShard(request));
  ApiResponse response;
  response.content_type = std::string(kEventStreamContentType);
  response.format = in.format();
  response.body = EncodeEventStreamMessage({{":message-type", "event"},
                                            {":event-type", "initial-response"},
                                            {":content-type", ContentType(in.format())}},
                                           Serialize(Json::object(), in.format()));
  response.subscription = std::move(subscription);
  return response;
}

absl::StatusOr<Json> KinesisApi::Impl::AddTags(const std::string& stream, const Json* tag_map) {
  if (tag_map == nullptr) return MissingMember("tags");
  std::map<std::string, std::string> tags;
  for (const auto& [key, value] : tag_map->items()) {
    if (!value.is_string()) {
      return KinesisStatus("SerializationException", "Tags: expected a map of strings");
    }
    if (key.empty() || key.size() > 128) {
      return KinesisStatus("InvalidArgumentException",
                           absl::StrCat("Tag key '", key, "' must be 1 to 128 characters"));
    }
    tags[key] = value.get<std::string>();
  }
  ASSIGN_OR_RETURN(auto summary, Summary(stream));
  absl::MutexLock lock(&mu);
  StreamExtras& entry = ExtrasFor(summary);
  std::map<std::string, std::string> merged = entry.tags;
  for (auto& [key, value] : tags) merged[key] = value;
  if (merged.size() > kMaxTagsPerStream) {
    return KinesisStatus("LimitExceededException",
                         absl::StrCat("A stream has at most ", kMaxTagsPerStream, " tags; ", stream,
                                      " would have ", merged.size()));
  }
  entry.tags = std::move(merged);
  return Json::object();
}

absl::StatusOr<Json> KinesisApi::Impl::RemoveTags(const std::string& stream,
                                                  const std::vector<std::string>& keys) {
  ASSIGN_OR_RETURN(auto summary, Summary(stream));
  absl::MutexLock lock(&mu);
  StreamExtras& entry = ExtrasFor(summary);
  for (const std::string& key : keys) entry.tags.erase(key);
  return Json::object();
}

absl::StatusOr<std::map<std::string, std::string>> KinesisApi::Impl::Tags(
    const std::string& stream) {
  ASSIGN_OR_RETURN(auto summary, Summary(stream));
  absl::MutexLock lock(&mu);
  return ExtrasFor(summary).tags;
}

Json KinesisApi::Impl::TagList(const std::map<std::string, std::string>& tags,
                               const std::string& after, int64_t limit, bool* more) {
  Json list = Json::array();
  *more = false;
  for (const auto& [key, value] : tags) {
    if (!after.empty() && key <= after) continue;
    if (static_cast<int64_t>(list.size()) >= limit) {
      *more = true;
      break;
    }
    list.push_back({{"Key", key}, {"Value", value}});
  }
  return list;
}

absl::StatusOr<Json> KinesisApi::Impl::DescribeLimits() {
  v1::ListStreamsRequest request;
  ASSIGN_OR_RETURN(auto streams, broker->ListStreams(request));
  int64_t open_shards = 0;
  for (const std::string& name : streams.stream_names()) {
    auto summary = Summary(name);
    if (summary.ok()) open_shards += summary->open_shard_count();
  }
  // runnel has no account-wide shard limit; the per-stream one (1,024) is reported.
  return Json{{"ShardLimit", std::max<int64_t>(1024, open_shards)},
              {"OpenShardCount", open_shards},
              {"OnDemandStreamCount", 0},
              {"OnDemandStreamCountLimit", 50}};
}

absl::StatusOr<Json> KinesisApi::Impl::EnhancedMonitoring(Reader& in, bool enable) {
  ASSIGN_OR_RETURN(std::string name, StreamName(in));
  if (!in.Has("ShardLevelMetrics")) return MissingMember("shardLevelMetrics");
  std::vector<std::string> metrics = in.StringList("ShardLevelMetrics");
  RETURN_IF_ERROR(in.status());
  ASSIGN_OR_RETURN(auto summary, Summary(name));
  absl::MutexLock lock(&mu);
  StreamExtras& entry = ExtrasFor(summary);
  Json current(std::vector<std::string>(entry.metrics.begin(), entry.metrics.end()));
  for (const std::string& metric : metrics) {
    if (enable) {
      entry.metrics.insert(metric);
    } else {
      entry.metrics.erase(metric);
    }
  }
  return Json{{"StreamName", name},
              {"StreamARN", summary.stream_arn()},
              {"CurrentShardLevelMetrics", std::move(current)},
              {"DesiredShardLevelMetrics",
               Json(std::vector<std::string>(entry.metrics.begin(), entry.metrics.end()))}};
}

// Calls that change nothing here but must name an existing stream.
absl::StatusOr<Json> KinesisApi::Impl::AcceptForStream(Reader& in) {
  ASSIGN_OR_RETURN(std::string name, StreamName(in));
  RETURN_IF_ERROR(Summary(name).status());
  return Json::object();
}

}  // namespace runnel::kinesis
