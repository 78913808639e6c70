#include "tests/integration/poller_support.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "broker/server.h"

namespace runnel::testing {

std::vector<EchoLine> ReadEcho(const std::string& path) {
  std::vector<EchoLine> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, '\t');
    if (parts.size() == 3) lines.push_back({parts[0], parts[1], parts[2]});
  }
  return lines;
}

std::string Yaml(int shards, const std::vector<MappingYaml>& mappings) {
  std::string yaml =
      absl::StrCat("streams:\n  - name: events\n    shards: ", shards, "\nfunctions:\n");
  for (const auto& m : mappings) {
    absl::StrAppend(&yaml, "  - name: ", m.function, "\n    plugin: ", kEchoPlugin,
                    "\n    isolation: ", m.isolation,
                    "\n    environment:\n      ECHO_FILE: ", m.echo_file, "\n", m.environment);
  }
  absl::StrAppend(&yaml, "event_source_mappings:\n");
  for (const auto& m : mappings) {
    absl::StrAppend(&yaml, "  - function: ", m.function, "\n    stream: events\n", m.extra);
  }
  return yaml;
}

std::unique_ptr<UpProcess> UpProcess::Start(const std::string& yaml_path,
                                            const std::string& data_dir,
                                            const std::vector<std::string>& extra_args) {
  auto up = std::make_unique<UpProcess>();
  const std::string ready = data_dir + ".ready";
  std::filesystem::remove(ready);
  std::vector<std::string> argv = {RUNNEL_BINARY,  "up",          "-f",         yaml_path,
                                   "--listen",     "127.0.0.1:0", "--data-dir", data_dir,
                                   "--ready-file", ready};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  auto process = ChildProcess::Start(argv, data_dir + ".log");
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return nullptr;
  up->process_ = std::move(*process);
  bool ready_in_time = WaitFor(
      [&] {
        std::ifstream in(ready);
        return static_cast<bool>(std::getline(in, up->address_)) && !up->address_.empty();
      },
      absl::Seconds(60));
  EXPECT_TRUE(ready_in_time) << "runnel up did not start; see " << data_dir << ".log";
  if (!ready_in_time) return nullptr;
  up->stub_ = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(up->address_));
  return up;
}

// Puts `per_key` records for each of `keys` keys, data "<key>#<n>", round-robin over keys.
void Produce(v1::StreamBroker::Stub& stub, int keys, int per_key, int first) {
  std::vector<std::pair<std::string, std::string>> batch;
  for (int n = first; n < first + per_key; ++n) {
    for (int k = 0; k < keys; ++k) {
      batch.push_back({absl::StrCat("key-", k), absl::StrCat("key-", k, "#", n)});
      if (batch.size() == 500) {
        grpc::Status status;
        auto response = PutRecords(stub, "events", batch, &status);
        ASSERT_TRUE(status.ok()) << status.error_message();
        ASSERT_EQ(response.failed_record_count(), 0);
        batch.clear();
      }
    }
  }
  if (!batch.empty()) {
    grpc::Status status;
    PutRecords(stub, "events", batch, &status);
    ASSERT_TRUE(status.ok());
  }
}

// Every record exactly `expected_per_key` times per key once duplicates are removed, each key's
// first deliveries in put order. Returns the number of duplicate deliveries.
int CheckDelivery(const std::vector<EchoLine>& lines, int keys, int expected_per_key) {
  std::map<std::string, std::vector<int>> firsts;
  std::set<std::string> seen;
  int duplicates = 0;
  std::map<std::string, std::string> last_sequence;
  for (const EchoLine& line : lines) {
    if (!seen.insert(line.sequence_number).second) {
      ++duplicates;
      continue;
    }
    std::vector<std::string> parts = absl::StrSplit(line.data, '#');
    EXPECT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[0], line.key);
    int n = 0;
    EXPECT_TRUE(absl::SimpleAtoi(parts[1], &n));
    firsts[line.key].push_back(n);
    EXPECT_LT(last_sequence[line.key], line.sequence_number) << "key " << line.key;
    last_sequence[line.key] = line.sequence_number;
  }
  EXPECT_EQ(firsts.size(), static_cast<size_t>(keys));
  for (const auto& [key, ns] : firsts) {
    EXPECT_EQ(ns.size(), static_cast<size_t>(expected_per_key)) << key;
    for (size_t i = 0; i < ns.size(); ++i) EXPECT_EQ(ns[i], static_cast<int>(i)) << key;
  }
  return duplicates;
}

size_t UniqueLines(const std::string& path) {
  std::set<std::string> unique;
  for (const EchoLine& line : ReadEcho(path)) unique.insert(line.sequence_number);
  return unique.size();
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace runnel::testing
