// What the poller's end-to-end tests share: a `runnel up` child process on a loopback ephemeral
// port, the YAML of a mapping that feeds the echo handler (which appends every record it sees to
// a file), producers, and readers of the echo file that check order and duplicates.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {

inline constexpr char kEchoPlugin[] = RUNNEL_BUILD_DIR "/handlers/echo.so";

struct EchoLine {
  std::string sequence_number;
  std::string key;
  std::string data;
};

std::vector<EchoLine> ReadEcho(const std::string& path);

struct MappingYaml {
  std::string function = "echo";
  std::string echo_file;
  std::string extra;  // more mapping keys, indented for the mapping entry
  std::string isolation = "in_process";
  std::string environment = {};  // more environment entries, indented for the environment map
};

std::string Yaml(int shards, const std::vector<MappingYaml>& mappings);

class UpProcess {
 public:
  static std::unique_ptr<UpProcess> Start(const std::string& yaml_path, const std::string& data_dir,
                                          const std::vector<std::string>& extra_args = {});
  v1::StreamBroker::Stub& stub() { return *stub_; }
  ChildProcess& process() { return *process_; }
  const std::string& address() const { return address_; }

 private:
  std::unique_ptr<ChildProcess> process_;
  std::string address_;
  std::unique_ptr<v1::StreamBroker::Stub> stub_;
};

// Puts `per_key` records for each of `keys` keys, data "<key>#<n>", round-robin over keys.
void Produce(v1::StreamBroker::Stub& stub, int keys, int per_key, int first = 0);

// Every record exactly `expected_per_key` times per key once duplicates are removed, each key's
// first deliveries in put order. Returns the number of duplicate deliveries.
int CheckDelivery(const std::vector<EchoLine>& lines, int keys, int expected_per_key);

size_t UniqueLines(const std::string& path);

std::string ReadText(const std::string& path);

// Puts batches of one record per key ("key-K#N", N counting up) until told to stop (or, by
// default, until the broker stops answering); returns the data of every record the broker
// acknowledged.
struct ProducerOptions {
  // Wait between batches; zero puts as fast as the broker answers.
  std::chrono::milliseconds pause{0};
  // A failed put ends the producer (the broker went away: the shutdown under test). False keeps
  // putting, for tests where the broker stays up and pollers come and go.
  bool stop_on_error = true;
};

class BackgroundProducer {
 public:
  BackgroundProducer(v1::StreamBroker::Stub& stub, int keys, ProducerOptions options = {})
      : thread_([this, &stub, keys, options] { Run(stub, keys, options); }) {}
  ~BackgroundProducer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::set<std::string> Acknowledged() {
    Stop();
    return acknowledged_;
  }

 private:
  void Run(v1::StreamBroker::Stub& stub, int keys, const ProducerOptions& options) {
    for (int n = 0; !stop_; ++n) {
      std::vector<std::pair<std::string, std::string>> batch;
      for (int k = 0; k < keys; ++k) {
        batch.push_back({absl::StrCat("key-", k), absl::StrCat("key-", k, "#", n)});
      }
      grpc::Status status;
      v1::PutRecordsResponse response = PutRecords(stub, "events", batch, &status);
      if (!status.ok() && options.stop_on_error) return;
      for (int i = 0; status.ok() && i < response.records_size(); ++i) {
        if (response.records(i).error_code().empty()) acknowledged_.insert(batch[i].second);
      }
      if (options.pause > std::chrono::milliseconds(0)) std::this_thread::sleep_for(options.pause);
    }
  }
  std::atomic<bool> stop_{false};
  std::set<std::string> acknowledged_;  // read only after the thread is joined
  std::thread thread_;
};

}  // namespace runnel::testing
