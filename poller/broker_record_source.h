// The record source of a stream served by a runnel broker over gRPC (see poller/record_source.h):
// `polling` reads each shard with long-poll GetRecords; `fan_out` polls until it has caught up
// (which also settles where LATEST or AT_TIMESTAMP start) and then takes records pushed by
// SubscribeToShard, polling again from where a subscription left off whenever one ends. The two
// are the RecordSource implementations of a runnel stream; both hide the broker's messages from
// the shard reader.
#pragma once

#include <memory>
#include <string>

#include "poller/config.h"
#include "poller/record_source.h"
#include "runnel/v1/broker.pb.h"

namespace runnel::client {
class BrokerClient;
}

namespace runnel::poller {

// The shards of `stream` on the broker behind `broker`, read as `consumer` says. `consumer_name`
// names the subscriber in the broker's logs and metrics (the mapping's id).
std::unique_ptr<StreamSource> MakeBrokerStreamSource(std::shared_ptr<client::BrokerClient> broker,
                                                     std::string stream, ConsumerType consumer,
                                                     std::string consumer_name);

// The broker's iterator type for a position's kind (GetShardIterator, and SetCheckpoint's
// `position`, which the broker resolves the same way).
v1::ShardIteratorType ShardIteratorTypeOf(StreamPosition::Kind kind);

// One shard of the stream of `incarnation` (0: whichever has the name) read by long-poll
// GetRecords.
std::unique_ptr<RecordSource> MakePollingSource(std::shared_ptr<client::BrokerClient> broker,
                                                std::string stream, uint64_t incarnation,
                                                std::string shard_id);

// One shard read by polling until caught up, then SubscribeToShard.
std::unique_ptr<RecordSource> MakeFanOutSource(std::shared_ptr<client::BrokerClient> broker,
                                               std::string stream, uint64_t incarnation,
                                               std::string shard_id, std::string consumer_name);

}  // namespace runnel::poller
