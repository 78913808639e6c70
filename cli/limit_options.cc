#include "cli/limit_options.h"

#include <CLI/CLI.hpp>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace runnel::cli {

void AddLimitOptions(CLI::App& command, LimitOptions* options) {
  command
      .add_option("--max-subscriptions-per-shard", options->max_subscriptions_per_shard,
                  "SubscribeToShard subscriptions one shard carries at once (beyond: "
                  "LimitExceededException); a consumer has one per shard in any case")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  command
      .add_option("--subscription-buffer", options->subscription_buffer,
                  "Bytes of records a subscription may have queued toward a client that has not "
                  "read them (the largest event); past it the shard is not read for that "
                  "subscription until the client drains (e.g. 64KiB, 1MiB)")
      ->transform(CLI::AsSizeValue(/*kb_is_1000=*/false))
      ->check(CLI::Range(uint64_t{1}, std::numeric_limits<uint64_t>::max()))
      ->default_str("1MiB");
  command
      .add_option("--subscription-stall-timeout", options->subscription_stall_timeout,
                  "End a subscription whose client has taken nothing for this long")
      ->capture_default_str();
  command
      .add_option("--max-waiting-reads-per-shard", options->max_waiting_reads_per_shard,
                  "GetRecords long polls (with a wait time) waiting on one shard; beyond, one is "
                  "refused at once with ProvisionedThroughputExceededException")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  command
      .add_option("--max-pending-request-bytes", options->max_pending_request_bytes,
                  "Kinesis endpoint: request bodies being received, in total over all "
                  "connections; past it the largest are answered 503 and closed (e.g. 256MiB)")
      ->transform(CLI::AsSizeValue(/*kb_is_1000=*/false))
      ->check(CLI::Range(uint64_t{1}, std::numeric_limits<uint64_t>::max()))
      ->default_str("256MiB");
  command
      .add_option("--max-connections", options->max_connections,
                  "Kinesis endpoint: connections open at once; beyond, a new one is answered 503 "
                  "and closed")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
}

absl::Status ApplyLimitOptions(const LimitOptions& options, broker::BrokerOptions* broker,
                               kinesis::KinesisHttpOptions* kinesis) {
  broker->max_subscriptions_per_shard = options.max_subscriptions_per_shard;
  broker->max_waiting_reads_per_shard = options.max_waiting_reads_per_shard;
  broker->subscription_buffer_bytes = options.subscription_buffer;
  if (!absl::ParseDuration(options.subscription_stall_timeout,
                           &broker->subscription_stall_timeout) ||
      broker->subscription_stall_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--subscription-stall-timeout: '", options.subscription_stall_timeout,
                     "' is not a positive duration like 30s or 500ms"));
  }
  kinesis->max_pending_request_bytes = options.max_pending_request_bytes;
  kinesis->max_connections = options.max_connections;
  return absl::OkStatus();
}

}  // namespace runnel::cli
