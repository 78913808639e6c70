// The Kinesis-compatible HTTP endpoint: the Kinesis API (kinesis/api.h) served over HTTP/1.1
// (keep-alive) and HTTP/2 over cleartext (prior knowledge, as the AWS SDK for JavaScript v3
// speaks it) on one port, with h2o. `POST /`, the operation in X-Amz-Target.
//
// One event-loop thread does the HTTP; a few worker threads decode requests and call the
// broker core (which may block on fsync), and post the answers back to the loop.
//
// Include this instead of h2o headers: it needs none.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace runnel::broker {
class Broker;
}

namespace runnel::kinesis {

struct KinesisHttpOptions {
  // HOST:PORT; port 0 picks a free one (see address()).
  std::string listen = "127.0.0.1:4569";
  // Threads that decode requests and call the broker.
  int worker_threads = 4;
  // Largest request body accepted (413 beyond): a 5 MiB PutRecords is ~7 MiB of base64 JSON.
  size_t max_request_bytes = 16u << 20;
  // Request bodies being received, in total over every connection: past it the connections
  // with the largest bodies in progress are answered 503 (HTTP/1.1) and closed.
  size_t max_pending_request_bytes = 256u << 20;
  // Connections open at once; one more is answered 503 and closed.
  int max_connections = 1024;
};

class KinesisHttpServer {
 public:
  // Binds and starts serving `broker` (not owned; must outlive the server).
  static absl::StatusOr<std::unique_ptr<KinesisHttpServer>> Start(
      broker::Broker* broker, const KinesisHttpOptions& options);
  // Shutdown(), then frees everything.
  ~KinesisHttpServer();

  // The address actually bound, e.g. "127.0.0.1:40123"; endpoint() is "http://" + address().
  const std::string& address() const { return address_; }
  std::string endpoint() const { return "http://" + address_; }

  // Stops accepting connections, ends subscriptions, lets calls in flight finish (puts are
  // answered once durable) and closes connections, waiting up to `grace` for idle ones.
  void Shutdown(absl::Duration grace = absl::Seconds(2));

  struct Impl;  // opaque (kinesis/server.cc)

 private:
  KinesisHttpServer() = default;
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace runnel::kinesis
