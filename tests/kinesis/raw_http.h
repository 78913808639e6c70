// A raw HTTP/1.1 client over a loopback socket, for tests that must send what no well-behaved
// client sends (half requests, conflicting headers, bodies that never end) and watch what the
// server does with them.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace runnel::testing {

struct HttpAnswer {
  int status = 0;
  std::string headers;  // the header block as sent, status line included
  std::string body;
};

// One TCP connection to HOST:PORT (IPv4).
class RawConnection {
 public:
  // `receive_buffer` > 0 sets SO_RCVBUF before connecting (a client that reads slowly, or not
  // at all, then stalls the server's writes after that many bytes and the kernel's).
  static absl::StatusOr<RawConnection> Open(const std::string& address, int receive_buffer = 0);
  RawConnection(RawConnection&& other) noexcept;
  RawConnection& operator=(RawConnection&& other) noexcept;
  ~RawConnection();

  // Writes all of `bytes` (false when the server closed or reset the connection).
  bool Send(const std::string& bytes);
  // Reads one answer with a Content-Length body (or until the server closes) within `timeout`.
  absl::StatusOr<HttpAnswer> Read(absl::Duration timeout);
  // Reads an answer's status line and headers only (the body, e.g. an event stream, is left).
  absl::StatusOr<HttpAnswer> ReadHead(absl::Duration timeout);
  // Whether the server closed the connection within `timeout` (reading and dropping any bytes).
  bool ClosedWithin(absl::Duration timeout);
  void Close();
  int fd() const { return fd_; }

 private:
  explicit RawConnection(int fd) : fd_(fd) {}
  int fd_ = -1;
  std::string buffer_;  // read and not yet returned
};

// A Kinesis call `Kinesis_20131202.OPERATION` with `body` of `content_type`, on a fresh
// connection.
absl::StatusOr<HttpAnswer> KinesisPost(
    const std::string& address, const std::string& operation, const std::string& body,
    const std::string& content_type = "application/x-amz-json-1.1",
    absl::Duration timeout = absl::Seconds(20));

// The request line and headers of such a call, without the body.
std::string KinesisRequestHead(const std::string& operation, size_t content_length,
                               const std::string& content_type = "application/x-amz-json-1.1");

// The resident set of process `pid` in KiB (VmRSS in /proc/PID/status), -1 if unknown.
int64_t ResidentKib(int pid);

}  // namespace runnel::testing
