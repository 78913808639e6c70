#include "tests/kinesis/raw_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace runnel::testing {

absl::StatusOr<RawConnection> RawConnection::Open(const std::string& address, int receive_buffer) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError("not HOST:PORT: " + address);
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (receive_buffer > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address.substr(0, colon).c_str(), &to.sin_addr) != 1) {
    ::close(fd);
    return absl::InvalidArgumentError("not an IPv4 address: " + address);
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    const int error = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect ", address, ": ", strerror(error)));
  }
  return RawConnection(fd);
}

RawConnection::RawConnection(RawConnection&& other) noexcept
    : fd_(other.fd_), buffer_(std::move(other.buffer_)) {
  other.fd_ = -1;
}

RawConnection& RawConnection::operator=(RawConnection&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.fd_;
    buffer_ = std::move(other.buffer_);
    other.fd_ = -1;
  }
  return *this;
}

RawConnection::~RawConnection() { Close(); }

void RawConnection::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawConnection::Send(const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

namespace {

// Reads what is there within `deadline`; false on timeout, and sets *closed on EOF or reset.
bool ReadSome(int fd, std::string* buffer, absl::Time deadline, bool* closed) {
  const int64_t wait_ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(wait_ms)) <= 0) return false;
  char chunk[65536];
  const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
  if (n <= 0) {
    *closed = true;
    return true;
  }
  buffer->append(chunk, static_cast<size_t>(n));
  return true;
}

}  // namespace

absl::StatusOr<HttpAnswer> RawConnection::ReadHead(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  bool closed = false;
  size_t head_end;
  while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (closed) return absl::UnavailableError("closed before an answer: " + buffer_);
    if (!ReadSome(fd_, &buffer_, deadline, &closed)) {
      return absl::DeadlineExceededError("no answer in time: " + buffer_);
    }
  }
  HttpAnswer answer;
  answer.headers = buffer_.substr(0, head_end);
  std::vector<std::string> status_line = absl::StrSplit(answer.headers, absl::MaxSplits(' ', 2));
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &answer.status)) {
    return absl::DataLossError("no status line: " + answer.headers);
  }
  buffer_.erase(0, head_end + 4);
  return answer;
}

absl::StatusOr<HttpAnswer> RawConnection::Read(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<HttpAnswer> head = ReadHead(timeout);
  if (!head.ok()) return head.status();
  HttpAnswer answer = *std::move(head);
  // A socket the peer closed reads as closed again, so the body loop learns it anew.
  bool closed = false;
  int64_t length = -1;
  for (absl::string_view line : absl::StrSplit(answer.headers, "\r\n")) {
    if (absl::StartsWithIgnoreCase(line, "content-length:")) {
      absl::string_view value = absl::StripAsciiWhitespace(line.substr(15));
      if (!absl::SimpleAtoi(value, &length)) length = -1;
    }
  }
  while (length < 0 ? !closed : buffer_.size() < static_cast<size_t>(length)) {
    if (closed) return absl::UnavailableError("closed inside the body");
    if (!ReadSome(fd_, &buffer_, deadline, &closed)) {
      return absl::DeadlineExceededError("body not complete in time");
    }
  }
  const size_t take = length < 0 ? buffer_.size() : static_cast<size_t>(length);
  answer.body = buffer_.substr(0, take);
  buffer_.erase(0, take);
  return answer;
}

bool RawConnection::ClosedWithin(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  bool closed = false;
  while (!closed) {
    if (!ReadSome(fd_, &buffer_, deadline, &closed)) return false;
    buffer_.clear();
  }
  return true;
}

std::string KinesisRequestHead(const std::string& operation, size_t content_length,
                               const std::string& content_type) {
  return absl::StrCat("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: Kinesis_20131202.",
                      operation, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", content_length, "\r\n\r\n");
}

absl::StatusOr<HttpAnswer> KinesisPost(const std::string& address, const std::string& operation,
                                       const std::string& body, const std::string& content_type,
                                       absl::Duration timeout) {
  auto connection = RawConnection::Open(address);
  if (!connection.ok()) return connection.status();
  if (!connection->Send(KinesisRequestHead(operation, body.size(), content_type) + body)) {
    return absl::UnavailableError("the server closed while the request was sent");
  }
  return connection->Read(timeout);
}

int64_t ResidentKib(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      int64_t kib = -1;
      absl::string_view value = absl::StripAsciiWhitespace(absl::string_view(line).substr(6));
      value = absl::StripSuffix(value, " kB");
      return absl::SimpleAtoi(value, &kib) ? kib : -1;
    }
  }
  return -1;
}

}  // namespace runnel::testing
