#include "common/listen_address.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace runnel {
namespace {

std::string Lowered(const char* reason) {
  std::string text(reason);
  if (!text.empty()) text[0] = absl::ascii_tolower(static_cast<unsigned char>(text[0]));
  return text;
}

// HOST and PORT of HOST:PORT or [HOST]:PORT; false for anything else.
bool Split(std::string_view address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (!absl::SimpleAtoi(Sv(address.substr(colon + 1)), port) || *port < 0 || *port > 65535) {
    return false;
  }
  *host = std::string(h);
  return true;
}

}  // namespace

std::string BindFailureReason(std::string_view address) {
  std::string host;
  int port = 0;
  if (!Split(address, &host, &port)) return "not HOST:PORT";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc =
          getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &found);
      rc != 0) {
    return Lowered(gai_strerror(rc));
  }
  // "in use" wins over other reasons: for "localhost" an IPv6 address the machine lacks must not
  // hide that the IPv4 one is taken.
  std::string reason;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    // As every runnel listener binds: SO_REUSEADDR (connections in TIME_WAIT do not hold the
    // port), never SO_REUSEPORT (which would let a second listener share it).
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      const int error = errno;
      if (error == EADDRINUSE || reason.empty()) reason = Lowered(std::strerror(error));
      if (error == EADDRINUSE) {
        ::close(fd);
        break;
      }
    }
    ::close(fd);
  }
  freeaddrinfo(found);
  return reason;
}

absl::Status CheckListenAddressFree(std::string_view flag, std::string_view address) {
  std::string host;
  int port = 0;
  if (!Split(address, &host, &port) || port == 0) return absl::OkStatus();
  const std::string reason = BindFailureReason(address);
  if (reason.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(Sv(flag), " ", Sv(address), ": ", reason));
}

}  // namespace runnel
