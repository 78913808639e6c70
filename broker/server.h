// Serves a Broker over gRPC (service runnel.v1.StreamBroker, plus server reflection and the
// standard health service), and makes client channels that accept the broker's large messages.
//
// Include this instead of gRPC headers where a forward declaration does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace grpc {
class Channel;
class Server;
class Service;
}  // namespace grpc

namespace runnel::broker {

class Broker;

// Largest message either side sends: a 10 MiB GetRecords answer or a 5 MiB PutRecords request,
// with room for their framing.
inline constexpr int kMaxGrpcMessageBytes = 16 << 20;

struct ServerOptions {
  // HOST:PORT; port 0 picks a free one (see BrokerServer::address()).
  std::string listen = "127.0.0.1:4567";
  // More services to serve on the same port (e.g. the poller's admin service in `runnel up`).
  // Not owned; must outlive the server.
  std::vector<grpc::Service*> extra_services;
};

class BrokerServer {
 public:
  // Starts serving `broker` (not owned; must outlive the server).
  static absl::StatusOr<std::unique_ptr<BrokerServer>> Start(Broker* broker,
                                                             const ServerOptions& options);
  // Shuts down, cancelling calls still open after a short grace period.
  ~BrokerServer();

  // The address actually bound, e.g. "127.0.0.1:40123".
  const std::string& address() const { return address_; }
  // A channel to this server that does not go through the network (for `runnel up`).
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // Stops accepting calls; open calls get `grace` to finish, then are cancelled.
  void Shutdown(absl::Duration grace);

 private:
  BrokerServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

// A client channel to `address` with deadlines-friendly defaults and the broker's message limits.
std::shared_ptr<grpc::Channel> MakeBrokerChannel(const std::string& address);

}  // namespace runnel::broker
