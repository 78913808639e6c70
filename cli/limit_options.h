// What one client may hold in a broker, as `runnel broker` and `runnel up` both offer it:
// subscriptions per shard, a subscription's queue toward a client that does not read and how
// long it may stall, waiting long polls per shard, and on the Kinesis port the request bodies
// being received (in total) and the connections open.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "broker/broker.h"
#include "kinesis/server.h"

namespace CLI {
class App;
}

namespace runnel::cli {

// The flags' values; sizes are parsed by CLI11 (64, 64KiB, 1MiB: KiB and KB both 1024 bytes), the
// duration by ApplyLimitOptions (30s, 500ms).
struct LimitOptions {
  int max_subscriptions_per_shard = 64;
  uint64_t subscription_buffer = uint64_t{1} << 20;
  std::string subscription_stall_timeout = "30s";
  int max_waiting_reads_per_shard = 1024;
  uint64_t max_pending_request_bytes = uint64_t{256} << 20;
  int max_connections = 1024;
};

// Adds --max-subscriptions-per-shard, --subscription-buffer, --subscription-stall-timeout,
// --max-waiting-reads-per-shard, --max-pending-request-bytes and --max-connections.
void AddLimitOptions(CLI::App& command, LimitOptions* options);

// Sets the limits in `broker` and `kinesis`; INVALID_ARGUMENT naming the flag for a bad value.
absl::Status ApplyLimitOptions(const LimitOptions& options, broker::BrokerOptions* broker,
                               kinesis::KinesisHttpOptions* kinesis);

}  // namespace runnel::cli
