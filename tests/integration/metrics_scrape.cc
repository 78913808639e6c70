#include "tests/integration/metrics_scrape.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace runnel::testing {

HeldPort::HeldPort() {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd_, 1) != 0) {
    std::abort();  // a test machine without loopback cannot run these tests at all
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
}

HeldPort::~HeldPort() { ::close(fd_); }

std::string HeldPort::address() const { return absl::StrCat("127.0.0.1:", port_); }

absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("no port in " + address);
  const std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(gai_strerror(rc));
  }
  int fd = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  if (fd < 0 || ::connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
    const std::string error = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    freeaddrinfo(found);
    return absl::UnavailableError(absl::StrCat("connect ", address, ": ", error));
  }
  freeaddrinfo(found);
  timeval timeout{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", address, "\r\nConnection: close\r\n\r\n");
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return absl::DataLossError("no HTTP header in: " + response);
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.find(" 200") == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("GET ", path, ": ", status_line));
  }
  return response.substr(body + 4);
}

absl::StatusOr<Scrape> Scrape::Parse(const std::string& text) {
  Scrape scrape;
  scrape.text_ = text;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty()) continue;
    if (absl::ConsumePrefix(&line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      if (parts.size() == 2) scrape.types_[parts[0]] = parts[1];
      continue;
    }
    if (line[0] == '#') continue;
    Sample sample;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    sample.name = std::string(line.substr(0, i));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        if (eq == absl::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          return absl::DataLossError(absl::StrCat("bad labels: ", line));
        }
        std::string key(line.substr(i, eq - i));
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value.push_back(line[j] == 'n' ? '\n' : line[j]);
          } else {
            value.push_back(line[j]);
          }
        }
        sample.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // '}'
    }
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(i));
    value = value.substr(0, value.find(' '));  // a timestamp may follow
    if (value == "Nan" || value == "NaN") {
      sample.value = std::nan("");
    } else if (!absl::SimpleAtod(value, &sample.value)) {
      return absl::DataLossError(absl::StrCat("bad value: ", line));
    }
    scrape.samples_.push_back(std::move(sample));
  }
  return scrape;
}

absl::StatusOr<Scrape> Scrape::From(const std::string& address) {
  auto body = HttpGet(address, "/metrics");
  if (!body.ok()) return body.status();
  return Parse(*body);
}

namespace {

bool Matches(const Sample& sample, const std::string& name,
             const std::map<std::string, std::string>& match) {
  if (sample.name != name) return false;
  for (const auto& [key, value] : match) {
    auto it = sample.labels.find(key);
    if (it == sample.labels.end() || it->second != value) return false;
  }
  return true;
}

}  // namespace

double Scrape::Sum(const std::string& name, const std::map<std::string, std::string>& match) const {
  double sum = 0;
  for (const Sample& sample : samples_) {
    if (Matches(sample, name, match)) sum += sample.value;
  }
  return sum;
}

int Scrape::Count(const std::string& name, const std::map<std::string, std::string>& match) const {
  int count = 0;
  for (const Sample& sample : samples_) count += Matches(sample, name, match);
  return count;
}

}  // namespace runnel::testing
