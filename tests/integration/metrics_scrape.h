// Reading /metrics in tests: a plain HTTP/1.0 GET over a socket, and a parser of Prometheus's
// text format (one sample per line: name{label="value",...} value).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace runnel::testing {

// A loopback TCP socket listening on a free port, held while this object lives (to test what
// happens when a port is taken).
class HeldPort {
 public:
  HeldPort();
  ~HeldPort();
  HeldPort(const HeldPort&) = delete;
  HeldPort& operator=(const HeldPort&) = delete;
  std::string address() const;

 private:
  int fd_ = -1;
  int port_ = 0;
};

// GET http://ADDRESS/PATH; the body when the status is 200.
absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path);

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

class Scrape {
 public:
  static absl::StatusOr<Scrape> Parse(const std::string& text);
  // Scrapes http://ADDRESS/metrics.
  static absl::StatusOr<Scrape> From(const std::string& address);

  // Sum of the samples named `name` whose labels include `match`.
  double Sum(const std::string& name, const std::map<std::string, std::string>& match = {}) const;
  // How many samples named `name` have labels including `match`.
  int Count(const std::string& name, const std::map<std::string, std::string>& match = {}) const;
  const std::vector<Sample>& samples() const { return samples_; }
  // Families by name, from the "# TYPE name type" lines, with their type.
  const std::map<std::string, std::string>& types() const { return types_; }
  const std::string& text() const { return text_; }

 private:
  std::vector<Sample> samples_;
  std::map<std::string, std::string> types_;
  std::string text_;
};

}  // namespace runnel::testing
