// Serves gRPC services on one address with what every runnel server offers: server reflection,
// the standard health service, and message limits large enough for the broker's records. Used
// by the broker (StreamBroker, plus the poller's admin service in `runnel up`) and by
// `runnel poller --listen` (EventSourceMappings).
//
// No gRPC header here: callers that only serve need the forward declarations.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace runnel {

class GrpcServer {
 public:
  // Serves `services` (not owned; they must outlive the server) on `listen` (HOST:PORT; port 0
  // picks a free one, see address()). Binds without SO_REUSEPORT, which gRPC sets by default on
  // Linux: with it a second process on the same port would start and share the clients. A
  // failure reads "FLAG LISTEN: reason", `flag` naming the option `listen` came from.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const std::string& listen, const std::vector<grpc::Service*>& services, int max_message_bytes,
      std::string_view flag = "--listen");
  // Shuts down (see Shutdown) with a one-second grace.
  ~GrpcServer();

  // The address actually bound, e.g. "127.0.0.1:40123".
  const std::string& address() const { return address_; }
  grpc::Server& server() { return *server_; }
  // Stops accepting calls; open calls get `grace` to finish, then are cancelled.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer() = default;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  bool shut_down_ = false;
};

}  // namespace runnel
