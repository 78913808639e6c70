// Live mapping control end to end: `runnel mapping` against a `runnel up` process (the service
// on the broker's port) and against a `runnel broker` + `runnel poller --listen` pair. The echo
// handler appends what it sees to a file; a second "witness" mapping on the same stream sees
// every record too, so "the disabled mapping did not see X" is checked once the witness has seen
// X (a condition, not a sleep).
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "runnel/v1/mappings.grpc.pb.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

constexpr char kEchoPlugin[] = RUNNEL_BUILD_DIR "/handlers/echo.so";

// What the echo handler wrote: record data in order, and the size of each batch.
struct Echo {
  std::vector<std::string> sequence_numbers;
  std::vector<std::string> data;
  std::vector<int> batches;
};

Echo ReadEcho(const std::string& path) {
  Echo echo;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "# batch ")) {
      int size = 0;
      EXPECT_TRUE(absl::SimpleAtoi(line.substr(8), &size));
      echo.batches.push_back(size);
      continue;
    }
    std::vector<std::string> parts = absl::StrSplit(line, '\t');
    if (parts.size() != 3) continue;
    echo.sequence_numbers.push_back(parts[0]);
    echo.data.push_back(parts[2]);
  }
  return echo;
}

size_t Count(const std::string& path) { return ReadEcho(path).data.size(); }

std::vector<std::string> Range(const std::string& prefix, int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(absl::StrCat(prefix, i));
  return out;
}

std::string Yaml(const std::string& dir, int shards, const std::string& extra) {
  std::string yaml =
      absl::StrCat("streams:\n  - name: events\n    shards: ", shards, "\nfunctions:\n");
  for (const char* name : {"echo", "witness"}) {
    absl::StrAppend(&yaml, "  - name: ", name, "\n    plugin: ", kEchoPlugin,
                    "\n    isolation: in_process\n    environment:\n      ECHO_FILE: ", dir, "/",
                    name, ".out\n      ECHO_BATCHES: \"1\"\n");
  }
  absl::StrAppend(&yaml, "event_source_mappings:\n  - function: echo\n    stream: events\n", extra,
                  "  - function: witness\n    stream: events\n");
  return yaml;
}

// Puts records with data "<prefix><n>" for n in [from, to), in one PutRecords; key = data
// unless `key` is given. Returns their sequence numbers.
std::vector<std::string> Put(v1::StreamBroker::Stub& stub, const std::string& prefix, int from,
                             int to, const std::string& key = "") {
  std::vector<std::pair<std::string, std::string>> records;
  for (const std::string& data : Range(prefix, from, to)) {
    records.push_back({key.empty() ? data : key, data});
  }
  grpc::Status status;
  v1::PutRecordsResponse response = PutRecords(stub, "events", records, &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.failed_record_count(), 0);
  std::vector<std::string> sequence_numbers;
  for (const auto& record : response.records())
    sequence_numbers.push_back(record.sequence_number());
  return sequence_numbers;
}

// A `runnel` process that writes an address to its --ready-file once it runs.
struct Server {
  std::unique_ptr<ChildProcess> process;
  std::string address;
};

Server StartServer(std::vector<std::string> argv, const std::string& ready,
                   const std::string& log) {
  Server server;
  std::filesystem::remove(ready);
  argv.insert(argv.end(), {"--ready-file", ready});
  auto process = ChildProcess::Start(argv, log);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return server;
  server.process = std::move(*process);
  const bool started = WaitFor(
      [&] {
        std::ifstream in(ready);
        return static_cast<bool>(std::getline(in, server.address)) && !server.address.empty();
      },
      absl::Seconds(60));
  EXPECT_TRUE(started) << "did not start; see " << log;
  return server;
}

CommandResult Mapping(const std::string& flag, const std::string& address,
                      std::vector<std::string> args) {
  std::vector<std::string> argv = {RUNNEL_BINARY, "mapping"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {flag, address});
  return RunCommand(argv);
}

v1::EventSourceMappingConfiguration Describe(const std::string& address, const std::string& id) {
  auto stub = v1::EventSourceMappings::NewStub(broker::MakeBrokerChannel(address));
  v1::GetEventSourceMappingRequest request;
  request.set_uuid(id);
  v1::EventSourceMappingConfiguration response;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  grpc::Status status = stub->GetEventSourceMapping(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response;
}

std::string Checkpoint(const std::string& address, const std::string& shard_id) {
  const v1::EventSourceMappingConfiguration config = Describe(address, "echo");
  for (const auto& shard : config.shards()) {
    if (shard.shard_id() == shard_id) return shard.checkpoint_sequence_number();
  }
  return "";
}

constexpr char kShard0[] = "shardId-000000000000";

TEST(MappingControlTest, DisableEnableAndEverySeekOnRunnelUp) {
  TempDir dir("mapping-control-up");
  const std::string echo = dir.File("echo.out"), witness = dir.File("witness.out");
  std::ofstream(dir.File("up.yaml")) << Yaml(dir.path(), 1, "");
  Server up = StartServer({RUNNEL_BINARY, "up", "-f", dir.File("up.yaml"), "--listen",
                           "127.0.0.1:0", "--data-dir", dir.File("data")},
                          dir.File("ready"), dir.File("up.log"));
  ASSERT_NE(up.process, nullptr);
  auto broker = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(up.address));

  std::vector<std::string> seq = Put(*broker, "r", 0, 5);
  ASSERT_TRUE(WaitFor([&] { return Count(echo) == 5 && Count(witness) == 5; }, absl::Seconds(60)));
  ASSERT_TRUE(WaitFor([&] { return Checkpoint(up.address, kShard0) == seq[4]; }, absl::Seconds(30)))
      << "describe never showed the checkpoint after the first records";

  // Disabled: records put meanwhile are not seen (the witness sees them), and the position stays.
  CommandResult disabled = Mapping("--broker", up.address, {"disable", "echo"});
  ASSERT_EQ(disabled.exit_code, 0) << disabled.err;
  EXPECT_NE(disabled.out.find("events/echo: Disabled"), std::string::npos) << disabled.out;
  const absl::Time mark = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return absl::Now() > mark + absl::Milliseconds(5); },
                      absl::Seconds(1)));  // arrival times have millisecond precision
  std::vector<std::string> later = Put(*broker, "r", 5, 10);
  seq.insert(seq.end(), later.begin(), later.end());
  ASSERT_TRUE(WaitFor([&] { return Count(witness) == 10; }, absl::Seconds(60)));
  EXPECT_EQ(ReadEcho(echo).data, Range("r", 0, 5));
  v1::EventSourceMappingConfiguration config = Describe(up.address, "events/echo");
  EXPECT_EQ(config.state(), "Disabled");
  EXPECT_EQ(config.state_transition_reason(), "User action");
  EXPECT_TRUE(config.overrides_configuration_file());
  ASSERT_EQ(config.shards_size(), 1);
  EXPECT_EQ(config.shards(0).checkpoint_sequence_number(), seq[4]);
  EXPECT_EQ(config.shards(0).iterator_age_millis(), -1);

  // Enabled: they arrive, in order, none lost, none repeated; the checkpoint moves on.
  CommandResult enabled = Mapping("--broker", up.address, {"enable", "events/echo"});
  ASSERT_EQ(enabled.exit_code, 0) << enabled.err;
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 10; }, absl::Seconds(60)));
  EXPECT_EQ(ReadEcho(echo).data, Range("r", 0, 10));
  ASSERT_TRUE(
      WaitFor([&] { return Checkpoint(up.address, kShard0) == seq[9]; }, absl::Seconds(30)));
  EXPECT_EQ(Describe(up.address, "echo").last_processing_result(), "OK");

  // Back to TRIM_HORIZON: everything again.
  CommandResult horizon =
      Mapping("--broker", up.address, {"seek", "echo", "--all-shards", "--to", "TRIM_HORIZON"});
  ASSERT_EQ(horizon.exit_code, 0) << horizon.err;
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 20; }, absl::Seconds(60)));
  std::vector<std::string> expected = Range("r", 0, 10);
  for (const std::string& data : Range("r", 0, 10)) expected.push_back(data);
  EXPECT_EQ(ReadEcho(echo).data, expected);

  // To a sequence number: r7 onwards.
  CommandResult at_sequence =
      Mapping("--broker", up.address,
              {"seek", "echo", "--shard", kShard0, "--to", "AT_SEQUENCE_NUMBER:" + seq[7]});
  ASSERT_EQ(at_sequence.exit_code, 0) << at_sequence.err;
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 23; }, absl::Seconds(60)));
  for (const std::string& data : Range("r", 7, 10)) expected.push_back(data);
  EXPECT_EQ(ReadEcho(echo).data, expected);

  // To a time: what arrived from then on (r5 onwards).
  CommandResult at_time =
      Mapping("--broker", up.address,
              {"seek", "echo", "--all-shards", "--to",
               "AT_TIMESTAMP:" + absl::FormatTime(absl::RFC3339_full, mark, absl::UTCTimeZone())});
  ASSERT_EQ(at_time.exit_code, 0) << at_time.err;
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 28; }, absl::Seconds(60)));
  for (const std::string& data : Range("r", 5, 10)) expected.push_back(data);
  EXPECT_EQ(ReadEcho(echo).data, expected);

  // LATEST while disabled: the backlog put meanwhile is skipped; it stays disabled until enabled.
  ASSERT_EQ(Mapping("--broker", up.address, {"disable", "echo"}).exit_code, 0);
  Put(*broker, "r", 10, 15);
  CommandResult latest =
      Mapping("--broker", up.address, {"seek", "echo", "--all-shards", "--to", "LATEST"});
  ASSERT_EQ(latest.exit_code, 0) << latest.err;
  EXPECT_EQ(Describe(up.address, "echo").state(), "Disabled");
  ASSERT_EQ(Mapping("--broker", up.address, {"enable", "echo"}).exit_code, 0);
  Put(*broker, "r", 15, 16);
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 29; }, absl::Seconds(60)));
  expected.push_back("r15");
  EXPECT_EQ(ReadEcho(echo).data, expected);
  // The witness mapping runs on its own; under load it may take r15 after the echo did.
  EXPECT_TRUE(WaitFor([&] { return Count(witness) >= 16; }, absl::Seconds(60)));
  EXPECT_EQ(Count(witness), 16u);
}

TEST(MappingControlTest, LiveUpdatesChangeTheBatchesTheHandlerGets) {
  TempDir dir("mapping-control-update");
  const std::string echo = dir.File("echo.out");
  // A one-second window gathers each put into as few batches as the settings allow.
  std::ofstream(dir.File("up.yaml"))
      << Yaml(dir.path(), 1, "    batch_size: 100\n    maximum_batching_window: 1s\n");
  Server up = StartServer({RUNNEL_BINARY, "up", "-f", dir.File("up.yaml"), "--listen",
                           "127.0.0.1:0", "--data-dir", dir.File("data")},
                          dir.File("ready"), dir.File("up.log"));
  ASSERT_NE(up.process, nullptr);
  auto broker = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(up.address));

  Put(*broker, "a", 0, 40);  // 40 keys
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 40; }, absl::Seconds(60)));
  EXPECT_EQ(ReadEcho(echo).batches, std::vector<int>{40});

  CommandResult small = Mapping("--broker", up.address, {"update", "echo", "--batch-size", "3"});
  ASSERT_EQ(small.exit_code, 0) << small.err;
  Put(*broker, "b", 0, 40);
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 80; }, absl::Seconds(60)));
  std::vector<int> batches = ReadEcho(echo).batches;
  ASSERT_GE(batches.size(), 1u + 14u);
  for (size_t i = 1; i < batches.size(); ++i) EXPECT_LE(batches[i], 3) << "batch " << i;
  const size_t before_parallel = batches.size();

  CommandResult parallel =
      Mapping("--broker", up.address,
              {"update", "echo", "--batch-size", "100", "--parallelization-factor", "4"});
  ASSERT_EQ(parallel.exit_code, 0) << parallel.err;
  Put(*broker, "c", 0, 40);
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 120; }, absl::Seconds(60)));
  batches = ReadEcho(echo).batches;
  // Four lanes, each its own batches: more than one batch, none holding every record.
  ASSERT_GE(batches.size(), before_parallel + 2);
  int total = 0;
  for (size_t i = before_parallel; i < batches.size(); ++i) {
    EXPECT_LT(batches[i], 40);
    total += batches[i];
  }
  EXPECT_EQ(total, 40);

  v1::EventSourceMappingConfiguration config = Describe(up.address, "echo");
  EXPECT_EQ(config.state(), "Enabled");
  EXPECT_EQ(config.batch_size(), 100);
  EXPECT_EQ(config.parallelization_factor(), 4);
  EXPECT_TRUE(config.overrides_configuration_file());
  // None lost through the restarts behind the updates, and none repeated (each put was done).
  Echo seen = ReadEcho(echo);
  std::set<std::string> unique(seen.sequence_numbers.begin(), seen.sequence_numbers.end());
  EXPECT_EQ(unique.size(), 120u);
  EXPECT_EQ(seen.sequence_numbers.size(), 120u);

  // Mistakes are refused with the field, its limit and the known mappings named.
  CommandResult zero = Mapping("--broker", up.address, {"update", "echo", "--batch-size", "0"});
  EXPECT_EQ(zero.exit_code, 1);
  EXPECT_NE(zero.err.find("batch_size must be between 1 and 10000, got 0"), std::string::npos)
      << zero.err;
  CommandResult window =
      Mapping("--broker", up.address, {"update", "echo", "--maximum-batching-window", "301s"});
  EXPECT_EQ(window.exit_code, 1);
  EXPECT_NE(window.err.find("maximum_batching_window must be between 0s and 300s (5m), got 301s"),
            std::string::npos)
      << window.err;
  CommandResult unknown = Mapping("--broker", up.address, {"describe", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no event source mapping 'nope' (known: events/echo, "
                             "events/witness)"),
            std::string::npos)
      << unknown.err;
  CommandResult ambiguous = Mapping("--broker", up.address, {"describe", "events/"});
  EXPECT_EQ(ambiguous.exit_code, 1);
  EXPECT_NE(ambiguous.err.find("names several mappings"), std::string::npos) << ambiguous.err;
  CommandResult bad_seek =
      Mapping("--broker", up.address, {"seek", "echo", "--all-shards", "--to", "YESTERDAY"});
  EXPECT_NE(bad_seek.exit_code, 0);
  EXPECT_NE(bad_seek.err.find("expected TRIM_HORIZON, LATEST"), std::string::npos);
  EXPECT_EQ(Describe(up.address, "echo").batch_size(), 100);  // unchanged by the refusals

  // The table and the JSON.
  CommandResult list = Mapping("--broker", up.address, {"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out.rfind("MAPPING ", 0), 0u) << list.out;  // the id column says what it holds
  EXPECT_NE(list.out.find("events/echo *"), std::string::npos) << list.out;
  // One spelling for JSON on every listing command: --output json.
  CommandResult json = Mapping("--broker", up.address, {"describe", "echo", "--output", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_TRUE(json.err.empty()) << json.err;
  EXPECT_NE(json.out.find("\"parallelization_factor\": 4"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"checkpoint_sequence_number\""), std::string::npos) << json.out;
  CommandResult json_list = Mapping("--broker", up.address, {"list", "-o", "json"});
  ASSERT_EQ(json_list.exit_code, 0) << json_list.err;
  EXPECT_NE(json_list.out.find("\"uuid\": \"events/echo\""), std::string::npos) << json_list.out;
  // The old --json still works, hidden from --help, and says what replaces it.
  CommandResult old_json = Mapping("--broker", up.address, {"describe", "echo", "--json"});
  ASSERT_EQ(old_json.exit_code, 0) << old_json.err;
  EXPECT_NE(old_json.out.find("\"parallelization_factor\": 4"), std::string::npos) << old_json.out;
  EXPECT_NE(old_json.err.find("--json is deprecated: use --output json"), std::string::npos);
  CommandResult help = RunCommand({RUNNEL_BINARY, "mapping", "list", "--help"});
  EXPECT_NE(help.out.find("--output"), std::string::npos) << help.out;
  EXPECT_EQ(help.out.find("--json"), std::string::npos) << help.out;
  EXPECT_EQ(Mapping("--broker", up.address, {"list", "--output", "yaml"}).exit_code, 2);
}

TEST(MappingControlTest, SplitBrokerAndPollerWithListen) {
  TempDir dir("mapping-control-split");
  const std::string echo = dir.File("echo.out"), witness = dir.File("witness.out");
  auto broker_process = BrokerProcess::Start(dir.File("data"));
  ASSERT_TRUE(broker_process.ok()) << broker_process.status();
  auto broker = (*broker_process)->Stub();
  ASSERT_TRUE(CreateStream(*broker, "events", 2).ok());
  std::ofstream(dir.File("poller.yaml")) << Yaml(dir.path(), 2, "");
  Server poller = StartServer({RUNNEL_BINARY, "poller", "-f", dir.File("poller.yaml"), "--broker",
                               (*broker_process)->address(), "--listen", "127.0.0.1:0"},
                              dir.File("ready"), dir.File("poller.log"));
  ASSERT_NE(poller.process, nullptr);

  // A plain broker does not serve mappings: the error says where they are served.
  CommandResult wrong = Mapping("--broker", (*broker_process)->address(), {"list"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("no mapping control at"), std::string::npos) << wrong.err;

  Put(*broker, "k", 0, 6, "same-key");  // one key: one shard, in order
  ASSERT_TRUE(WaitFor([&] { return Count(echo) == 6; }, absl::Seconds(60)));
  ASSERT_EQ(Mapping("--poller", poller.address, {"disable", "echo"}).exit_code, 0);
  Put(*broker, "k", 6, 12, "same-key");
  ASSERT_TRUE(WaitFor([&] { return Count(witness) == 12; }, absl::Seconds(60)));
  EXPECT_EQ(Count(echo), 6u);
  ASSERT_EQ(Mapping("--poller", poller.address, {"enable", "echo"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 12; }, absl::Seconds(60)));
  EXPECT_EQ(ReadEcho(echo).data, Range("k", 0, 12));

  CommandResult update =
      Mapping("--poller", poller.address,
              {"update", "echo", "--retry-attempts", "3", "--max-record-age", "1h",
               "--bisect-batch-on-error", "true", "--on-failure", "stream:events-dlq"});
  ASSERT_EQ(update.exit_code, 0) << update.err;
  v1::EventSourceMappingConfiguration config = Describe(poller.address, "echo");
  EXPECT_EQ(config.maximum_retry_attempts(), 3);
  EXPECT_EQ(config.maximum_record_age().seconds(), 3600);
  EXPECT_TRUE(config.bisect_batch_on_function_error());
  EXPECT_EQ(config.destination_config().on_failure().destination(), "stream:events-dlq");
  EXPECT_EQ(config.state(), "Enabled");
  ASSERT_EQ(config.shards_size(), 2);

  CommandResult horizon =
      Mapping("--poller", poller.address, {"seek", "echo", "--all-shards", "--to", "TRIM_HORIZON"});
  ASSERT_EQ(horizon.exit_code, 0) << horizon.err;
  ASSERT_TRUE(WaitFor([&] { return Count(echo) >= 24; }, absl::Seconds(60)));
  std::vector<std::string> twice = Range("k", 0, 12);
  for (const std::string& data : Range("k", 0, 12)) twice.push_back(data);
  EXPECT_EQ(ReadEcho(echo).data, twice);
}

}  // namespace
}  // namespace runnel::testing
