// What `runnel broker` and `runnel up` both run: the broker, its /metrics, its gRPC server and
// (with --kinesis-listen) its Kinesis HTTP endpoint, started and stopped in one order; and the
// --fsync option both offer.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "broker/broker.h"
#include "broker/server.h"
#include "cli/metrics_option.h"
#include "common/metrics_server.h"
#include "kinesis/server.h"
#include "runnel/v1/broker.pb.h"

namespace CLI {
class App;
}

namespace runnel::cli {

// Adds --fsync (always | interval | never, default whatever `*fsync` holds) with `help`.
void AddFsyncOption(CLI::App& command, std::string* fsync, const std::string& help);

// The policy an --fsync value names (one of the three AddFsyncOption accepts).
v1::FsyncPolicy FsyncPolicyNamed(const std::string& fsync);

struct BrokerStackOptions {
  // Its `metrics` registry is the one /metrics serves.
  broker::BrokerOptions broker;
  MetricsOptions metrics;
  broker::ServerOptions server;
  // --kinesis-listen: "" for no Kinesis endpoint (see StartKinesis).
  std::string kinesis_listen;
  // The Kinesis endpoint's other settings (its `listen` is kinesis_listen's).
  kinesis::KinesisHttpOptions kinesis;
};

// Checks that every address `options` will listen on (--listen, --metrics, --kinesis-listen) is
// free, so that a second process on a taken port exits before it creates or locks anything:
// "--listen 127.0.0.1:4567: address already in use".
absl::Status CheckListenersFree(const BrokerStackOptions& options);

class BrokerStack {
 public:
  // Checks that every listener's address is free (CheckListenersFree), opens the broker, serves
  // its metrics (each scrape updates the broker's gauges first), then starts the gRPC server.
  // Errors carry the failing part's own message.
  static absl::StatusOr<BrokerStack> Start(const BrokerStackOptions& options);

  // Starts the Kinesis endpoint on the options' `kinesis_listen` (none when empty). Apart from
  // Start so the commands can announce the gRPC server before this may fail.
  absl::Status StartKinesis();

  broker::Broker& broker() { return *broker_; }
  broker::BrokerServer& server() { return *server_; }
  // nullptr when --metrics is off.
  const MetricsServer* metrics() const { return metrics_.get(); }
  // nullptr without --kinesis-listen.
  const kinesis::KinesisHttpServer* kinesis() const { return kinesis_.get(); }

  // --metrics-ready-file, then --kinesis-ready-file and `ready_file`: whoever waits for the last
  // may read the others at once.
  absl::Status WriteReadyFiles(const std::string& ready_file,
                               const std::string& kinesis_ready_file) const;

  // Stops serving: the Kinesis endpoint, then the gRPC server. Calls in flight get 500 ms: puts
  // finish in milliseconds, and an idle client connection would otherwise hold the whole grace.
  void StopServing();
  // StopServing(), then frees the server, the metrics and the broker, in that order (the metrics
  // scrape reads the broker; the broker, last, completes pending appends and syncs every shard).
  void Shutdown();

 private:
  BrokerStack() = default;

  MetricsOptions metrics_options_;
  kinesis::KinesisHttpOptions kinesis_options_;
  // Declared in start order, so an early return destroys them in reverse.
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<broker::BrokerServer> server_;
  std::unique_ptr<kinesis::KinesisHttpServer> kinesis_;
};

}  // namespace runnel::cli
