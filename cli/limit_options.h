// What one client may hold in a broker, as `runnel broker` and `runnel up` both offer it:
// subscriptions per shard, a subscription's queue toward a client that does not read and how
// long it may stall, waiting long polls per shard, and on the Kinesis port the request bodies
// being received (in total) and the connections open.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "broker/broker.h"
#include "kinesis/server.h"

namespace CLI {
class App;
}

namespace runnel::cli {

// The flags' text, parsed by ApplyLimitOptions (sizes like 64, 64KiB, 1MiB; durations like 30s).
struct LimitOptions {
  int max_subscriptions_per_shard = 64;
  std::string subscription_buffer = "1MiB";
  std::string subscription_stall_timeout = "30s";
  int max_waiting_reads_per_shard = 1024;
  std::string max_pending_request_bytes = "256MiB";
  int max_connections = 1024;
};

// Adds --max-subscriptions-per-shard, --subscription-buffer, --subscription-stall-timeout,
// --max-waiting-reads-per-shard, --max-pending-request-bytes and --max-connections.
void AddLimitOptions(CLI::App& command, LimitOptions* options);

// Sets the limits in `broker` and `kinesis`; INVALID_ARGUMENT naming the flag for a bad value.
absl::Status ApplyLimitOptions(const LimitOptions& options, broker::BrokerOptions* broker,
                               kinesis::KinesisHttpOptions* kinesis);

// "64" (bytes), "64KiB", "1MiB", "2GiB" (also K, M, G, KB, MB, GB: powers of 1024) -> bytes;
// INVALID_ARGUMENT naming `flag` otherwise. Zero is refused.
absl::StatusOr<size_t> ParseByteSize(const std::string& text, std::string_view flag);

}  // namespace runnel::cli
