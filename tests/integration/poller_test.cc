// The poller end to end: `runnel up` processes running a YAML file whose mapping feeds the echo
// handler, which appends every record it sees to a file. Checks per-key order under several
// parallelization factors, resumption after a clean restart (no duplicates) and after SIGKILL
// (nothing lost, duplicates only from batches in flight), and every starting position.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/poller_support.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

class PollerOrderTest : public ::testing::TestWithParam<int> {};

TEST_P(PollerOrderTest, EveryKeyInOrderNothingMissingNoDuplicates) {
  const int parallelization = GetParam();
  TempDir dir(absl::StrCat("poller-order-", parallelization));
  const std::string echo = dir.File("echo.out");
  std::ofstream(dir.File("up.yaml")) << Yaml(
      4, {{.echo_file = echo,
           .extra = absl::StrCat(
               "    batch_size: 100\n    parallelization_factor: ", parallelization, "\n")}});
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  constexpr int kKeys = 10'000, kPerKey = 2;
  Produce(up->stub(), kKeys, kPerKey);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= kKeys * kPerKey; }, absl::Seconds(120)))
      << UniqueLines(echo) << " of " << kKeys * kPerKey;
  EXPECT_EQ(CheckDelivery(ReadEcho(echo), kKeys, kPerKey), 0);
}

INSTANTIATE_TEST_SUITE_P(ParallelizationFactors, PollerOrderTest, ::testing::Values(1, 2, 10));

TEST(PollerFanOutTest, PushedRecordsArriveInOrderAfterThePolledCatchUp) {
  TempDir dir("poller-fan-out");
  const std::string echo = dir.File("echo.out");
  std::ofstream(dir.File("up.yaml")) << Yaml(
      2, {{.echo_file = echo, .extra = "    consumer: fan_out\n    parallelization_factor: 2\n"}});
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), 100, 5);  // read by polling: the catch-up
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= 500; }, absl::Seconds(60)));
  // Now subscribed: these are pushed, one put at a time.
  for (int n = 5; n < 10; ++n) Produce(up->stub(), 100, 1, n);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= 1000; }, absl::Seconds(60)))
      << UniqueLines(echo);
  EXPECT_EQ(CheckDelivery(ReadEcho(echo), 100, 10), 0);
  std::ifstream log(dir.File("data") + ".log");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_NE(text.str().find("(SubscribeToShard)"), std::string::npos)
      << "the consumer never switched to pushed records";
}

TEST(PollerRestartTest, CleanRestartResumesFromTheCheckpointWithoutDuplicates) {
  TempDir dir("poller-restart");
  const std::string echo = dir.File("echo.out");
  std::ofstream(dir.File("up.yaml"))
      << Yaml(2, {{.echo_file = echo, .extra = "    batch_size: 50\n"}});
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), 100, 10);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= 1000; }, absl::Seconds(60)));
  up->process().Signal(SIGTERM);
  auto status = up->process().Wait(absl::Seconds(60));
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), 100, 10, 10);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= 2000; }, absl::Seconds(60)));
  EXPECT_EQ(CheckDelivery(ReadEcho(echo), 100, 20), 0);
}

TEST(PollerRestartTest, SigkillLosesNothingAndRepeatsOnlyWhatWasNotCheckpointed) {
  TempDir dir("poller-kill");
  const std::string echo = dir.File("echo.out");
  constexpr int kBatch = 20, kParallelization = 2, kShards = 2;
  std::ofstream(dir.File("up.yaml")) << Yaml(
      kShards, {{.echo_file = echo,
                 .extra = absl::StrCat("    batch_size: ", kBatch,
                                       "\n    parallelization_factor: ", kParallelization, "\n"),
                 .isolation = "process"}});
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), 200, 20);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= 1000; }, absl::Seconds(60)));
  // Kill once a checkpoint has been written (on a slow machine, e.g. under ASan, the first one
  // may land after the first thousand records), so the restart has one to resume from.
  ASSERT_TRUE(WaitFor(
      [&] {
        v1::ListCheckpointsRequest request;
        request.set_consumer_name("events/echo");
        request.set_stream_name("events");
        v1::ListCheckpointsResponse response;
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
        return up->stub().ListCheckpoints(&context, request, &response).ok() &&
               response.checkpoints_size() > 0;
      },
      absl::Seconds(60)))
      << "no checkpoint was written";
  up->process().Signal(SIGKILL);
  ASSERT_TRUE(up->process().Wait(absl::Seconds(30)).ok());
  up.reset();
  const size_t delivered_before = ReadEcho(echo).size();

  // What the poller had checkpointed when it died: the restart resumes right after it.
  std::map<std::string, std::string> checkpoints;
  {
    auto broker = BrokerProcess::Start(dir.File("data"));
    ASSERT_TRUE(broker.ok()) << broker.status();
    v1::ListCheckpointsRequest request;
    request.set_consumer_name("events/echo");
    request.set_stream_name("events");
    v1::ListCheckpointsResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    ASSERT_TRUE((*broker)->Stub()->ListCheckpoints(&context, request, &response).ok());
    for (const auto& checkpoint : response.checkpoints()) {
      checkpoints[checkpoint.shard_id()] = checkpoint.sequence_number();
    }
  }
  EXPECT_FALSE(checkpoints.empty()) << "nothing was checkpointed before the kill";

  up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= 4000; }, absl::Seconds(120)))
      << UniqueLines(echo);
  const std::vector<EchoLine> lines = ReadEcho(echo);
  CheckDelivery(lines, 200, 20);
  // Every record delivered again after the restart lies after its shard's checkpoint: only what
  // had not been checkpointed is repeated.
  std::set<std::string> before;
  for (size_t i = 0; i < delivered_before; ++i) before.insert(lines[i].sequence_number);
  int repeated = 0;
  for (size_t i = delivered_before; i < lines.size(); ++i) {
    const std::string& sequence = lines[i].sequence_number;
    if (!before.contains(sequence)) continue;
    ++repeated;
    const std::string shard = absl::StrCat("shardId-000000", sequence.substr(21, 6));
    EXPECT_GT(sequence, checkpoints[shard]) << "a checkpointed record was delivered again";
  }
  RecordProperty("repeated_after_kill", repeated);
}

TEST(PollerFilterTest, OnlyMatchingRecordsAreInvokedAndTheRestCountAsProcessed) {
  TempDir dir("poller-filter");
  const std::string echo = dir.File("echo.out");
  std::ofstream(dir.File("up.yaml"))
      << Yaml(1, {{.echo_file = echo, .extra = "    filters:\n      - data: {keep: [true]}\n"}});
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  std::vector<std::pair<std::string, std::string>> records;
  for (int n = 0; n < 100; ++n) {
    records.push_back(
        {"k", absl::StrCat("{\"keep\":", n % 3 == 0 ? "true" : "false", ",\"n\":", n, "}")});
  }
  records.push_back({"k", "not json"});
  records.push_back({"k", "{\"keep\":true,\"n\":100}"});
  grpc::Status status;
  PutRecords(up->stub(), "events", records, &status);
  ASSERT_TRUE(status.ok());
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= 35; }, absl::Seconds(60)));
  // The filtered-out records still moved the checkpoint: a clean restart delivers nothing again.
  up->process().Signal(SIGTERM);
  ASSERT_TRUE(up->process().Wait(absl::Seconds(60)).ok());
  up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  PutRecords(up->stub(), "events", {{"k", "{\"keep\":true,\"n\":101}"}}, &status);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= 36; }, absl::Seconds(60)));
  const std::vector<EchoLine> lines = ReadEcho(echo);
  ASSERT_EQ(lines.size(), 36u);
  for (const EchoLine& line : lines) EXPECT_NE(line.data.find("\"keep\":true"), std::string::npos);
  EXPECT_NE(lines.back().data.find("\"n\":101"), std::string::npos);
}

// A mapping of the poison handler (records carrying "POISON:fail" fail the invocation).
std::string PoisonYaml(const std::string& on_failure, const std::string& extra = "") {
  return absl::StrCat(
      "streams:\n  - name: events\n    shards: 1\nfunctions:\n  - name: poison\n    plugin: ",
      RUNNEL_BUILD_DIR, "/handlers/poison.so\n    isolation: in_process\n",
      "event_source_mappings:\n  - function: poison\n    stream: events\n",
      "    batch_size: 8\n    maximum_batching_window: 2s\n    bisect_batch_on_error: true\n",
      "    retry_attempts: 2\n    on_failure: ", on_failure, "\n", extra);
}

std::vector<std::string> FileLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

void PutEightWithPoisonAt(v1::StreamBroker::Stub& stub, int poison) {
  std::vector<std::pair<std::string, std::string>> records;
  for (int i = 0; i < 8; ++i) {
    records.push_back(
        {"k", i == poison ? absl::StrCat("r", i, " POISON:fail") : absl::StrCat("r", i)});
  }
  grpc::Status status;
  PutRecords(stub, "events", records, &status);
  ASSERT_TRUE(status.ok());
}

TEST(PollerFailureTest, APoisonRecordIsIsolatedAndRecordedWithItsPayload) {
  TempDir dir("poller-poison");
  const std::string dlq = dir.File("dlq.jsonl");
  std::ofstream(dir.File("up.yaml")) << PoisonYaml("file:" + dlq);
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  PutEightWithPoisonAt(up->stub(), 5);
  ASSERT_TRUE(WaitFor([&] { return !FileLines(dlq).empty(); }, absl::Seconds(60)));
  std::vector<std::string> lines = FileLines(dlq);
  ASSERT_EQ(lines.size(), 1u);
  const std::string& record = lines[0];
  EXPECT_NE(record.find("\"condition\":\"RetryAttemptsExhausted\""), std::string::npos) << record;
  EXPECT_NE(record.find("\"approximateInvokeCount\":3"), std::string::npos) << record;
  EXPECT_NE(record.find("\"batchSize\":1"), std::string::npos) << record;
  EXPECT_NE(record.find("\"functionError\":\"Unhandled\""), std::string::npos) << record;
  // The payload carries the record itself: "r5 POISON:fail" in base64.
  EXPECT_NE(record.find("cjUgUE9JU09OOmZhaWw="), std::string::npos) << record;
  // Everything was settled: after a clean restart nothing is retried or recorded again.
  up->process().Signal(SIGTERM);
  ASSERT_TRUE(up->process().Wait(absl::Seconds(60)).ok());
  up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  PutEightWithPoisonAt(up->stub(), 0);
  ASSERT_TRUE(WaitFor([&] { return FileLines(dlq).size() >= 2; }, absl::Seconds(60)));
  lines = FileLines(dlq);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("cjAgUE9JU09OOmZhaWw="), std::string::npos) << lines[1];
}

TEST(PollerFailureTest, AStreamDestinationGetsTheFailureRecord) {
  TempDir dir("poller-dlq-stream");
  std::ofstream(dir.File("up.yaml")) << PoisonYaml("stream:events-dlq");
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  PutEightWithPoisonAt(up->stub(), 2);
  std::vector<v1::Record> records;
  ASSERT_TRUE(WaitFor(
      [&] {
        records = ReadShard(up->stub(), "events-dlq", "shardId-000000000000");
        return !records.empty();
      },
      absl::Seconds(60)));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].partition_key(), "shardId-000000000000");
  EXPECT_NE(records[0].data().find("\"KinesisBatchInfo\""), std::string::npos);
  EXPECT_NE(records[0].data().find("cjIgUE9JU09OOmZhaWw="), std::string::npos);
  // The file does not declare events-dlq: created with 1 shard and 168h, as
  // deploy/order-events.yaml and README say (dead letters outlive their source's 24h).
  v1::DescribeStreamSummaryRequest describe;
  describe.set_stream_name("events-dlq");
  v1::DescribeStreamSummaryResponse summary;
  grpc::ClientContext context;
  ASSERT_TRUE(up->stub().DescribeStreamSummary(&context, describe, &summary).ok());
  EXPECT_EQ(summary.stream_description_summary().retention_period_hours(), 168);
  EXPECT_EQ(summary.stream_description_summary().open_shard_count(), 1);
}

TEST(PollerFailureTest, AnUnwritableDestinationStallsTheShardUntilItCanWrite) {
  TempDir dir("poller-dlq-stall");
  const std::string dlq = dir.File("later/dlq.jsonl");  // its folder does not exist yet
  std::ofstream(dir.File("up.yaml")) << PoisonYaml("file:" + dlq);
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  PutEightWithPoisonAt(up->stub(), 3);
  // The shard waits on the destination: the log says so, and nothing is checkpointed past it.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::ifstream log(dir.File("data") + ".log");
        std::stringstream text;
        text << log.rdbuf();
        return text.str().find("cannot write 1 discarded records") != std::string::npos;
      },
      absl::Seconds(60)));
  std::filesystem::create_directories(dir.File("later"));
  ASSERT_TRUE(WaitFor([&] { return FileLines(dlq).size() == 1; }, absl::Seconds(60)));
  EXPECT_NE(FileLines(dlq)[0].find("cjMgUE9JU09OOmZhaWw="), std::string::npos);
}

// Crashes, hangs and exits in worker processes are failed invocations like any other: retried,
// then discarded, while the records around them are processed.
class PoisonActionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PoisonActionTest, AContainedFailureEndsInTheDeadLetterFile) {
  TempDir dir("poller-poison-" + GetParam());
  const std::string dlq = dir.File("dlq.jsonl");
  std::string yaml = PoisonYaml("file:" + dlq);
  // Worker processes with a short timeout, and no retries: one invocation per range.
  yaml.replace(yaml.find("isolation: in_process"), 21, "isolation: process\n    timeout: 1s");
  yaml.replace(yaml.find("retry_attempts: 2"), 17, "retry_attempts: 0");
  std::ofstream(dir.File("up.yaml")) << yaml;
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  std::vector<std::pair<std::string, std::string>> records;
  for (int i = 0; i < 4; ++i) {
    records.push_back({"k", i == 2 ? "r2 POISON:" + GetParam() : absl::StrCat("r", i)});
  }
  grpc::Status status;
  PutRecords(up->stub(), "events", records, &status);
  ASSERT_TRUE(status.ok());
  ASSERT_TRUE(WaitFor([&] { return !FileLines(dlq).empty(); }, absl::Seconds(60)));
  const std::vector<std::string> lines = FileLines(dlq);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("\"batchSize\":1"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"approximateInvokeCount\":1"), std::string::npos) << lines[0];
}

TEST(PollerFailureTest, PerKeyOrderHoldsThroughBisectRetriesAndDiscards) {
  TempDir dir("poller-order-failures");
  const std::string echo = dir.File("echo.out");
  const std::string dlq = dir.File("dlq.jsonl");
  std::string yaml =
      Yaml(2, {{.echo_file = echo,
                .extra = absl::StrCat("    batch_size: 50\n    parallelization_factor: 3\n",
                                      "    bisect_batch_on_error: true\n    retry_attempts: 1\n",
                                      "    on_failure: file:", dlq, "\n"),
                .environment = "      ECHO_FAIL_ON: BAD\n"}});
  std::ofstream(dir.File("up.yaml")) << yaml;
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  // 30 keys x 20 records; one in 23 is bad.
  std::vector<std::pair<std::string, std::string>> batch;
  int bad = 0;
  for (int n = 0; n < 20; ++n) {
    for (int k = 0; k < 30; ++k) {
      const bool is_bad = (n * 30 + k) % 23 == 3;
      bad += is_bad;
      batch.push_back(
          {absl::StrCat("key-", k), absl::StrCat("key-", k, "#", n, is_bad ? " BAD" : "")});
    }
  }
  for (size_t i = 0; i < batch.size(); i += 100) {
    grpc::Status status;
    PutRecords(up->stub(), "events",
               std::vector<std::pair<std::string, std::string>>(
                   batch.begin() + i, batch.begin() + std::min(batch.size(), i + 100)),
               &status);
    ASSERT_TRUE(status.ok());
  }
  const size_t good = batch.size() - static_cast<size_t>(bad);
  ASSERT_TRUE(WaitFor(
      [&] {
        return UniqueLines(echo) >= good && FileLines(dlq).size() >= static_cast<size_t>(bad);
      },
      absl::Seconds(120)))
      << UniqueLines(echo) << " of " << good << " echoed, " << FileLines(dlq).size() << " of "
      << bad << " discarded";
  // Each bad record was discarded alone; every good one delivered, each key in put order.
  EXPECT_EQ(FileLines(dlq).size(), static_cast<size_t>(bad));
  std::map<std::string, std::vector<int>> firsts;
  std::set<std::string> seen;
  std::map<std::string, std::string> last_sequence;
  for (const EchoLine& line : ReadEcho(echo)) {
    EXPECT_EQ(line.data.find("BAD"), std::string::npos);
    if (!seen.insert(line.sequence_number).second) continue;
    EXPECT_LT(last_sequence[line.key], line.sequence_number) << line.key;
    last_sequence[line.key] = line.sequence_number;
  }
  EXPECT_EQ(seen.size(), good);
}

INSTANTIATE_TEST_SUITE_P(Actions, PoisonActionTest,
                         ::testing::Values("crash", "hang", "exit", "throw"));

// `runnel dlq` against what a poisoned mapping discarded, for both kinds of destination.
class DlqCommandTest : public ::testing::TestWithParam<bool> {};

TEST_P(DlqCommandTest, ListShowAndRedriveExactlyOnce) {
  const bool to_stream = GetParam();
  TempDir dir(to_stream ? "dlq-stream" : "dlq-file");
  const std::string dest = to_stream ? "stream:events-dlq" : "file:" + dir.File("dlq.jsonl");
  std::ofstream(dir.File("up.yaml")) << PoisonYaml(dest);
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  v1::CreateStreamRequest create;
  create.set_stream_name("replay");
  create.set_shard_count(1);
  v1::CreateStreamResponse created;
  grpc::ClientContext create_context;
  ASSERT_TRUE(up->stub().CreateStream(&create_context, create, &created).ok());
  PutEightWithPoisonAt(up->stub(), 6);
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), RUNNEL_BINARY);
    args.push_back("--broker");
    args.push_back(up->address());
    return RunCommand(args);
  };
  CommandResult listed;
  ASSERT_TRUE(WaitFor(
      [&] {
        listed = run({"dlq", "list", dest});
        return listed.exit_code == 0 &&
               listed.out.find("RetryAttemptsExhausted") != std::string::npos;
      },
      absl::Seconds(60)))
      << listed.out << listed.err;
  std::vector<std::string> rows = absl::StrSplit(listed.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(rows.size(), 2u) << listed.out;  // header + one failure record
  const std::string id = rows[1].substr(0, rows[1].find(' '));

  CommandResult shown = run({"dlq", "show", dest, id});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("r6 POISON:fail"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("after 3 invocation(s)"), std::string::npos) << shown.out;
  EXPECT_EQ(run({"dlq", "show", dest, "nope"}).exit_code, 1);

  CommandResult dry = run({"dlq", "redrive", dest, "--to", "replay", "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("would redrive"), std::string::npos);
  EXPECT_TRUE(ReadShard(up->stub(), "replay", "shardId-000000000000").empty());

  CommandResult redriven = run({"dlq", "redrive", dest, "--to", "replay"});
  EXPECT_EQ(redriven.exit_code, 0) << redriven.err;
  std::vector<v1::Record> replayed = ReadShard(up->stub(), "replay", "shardId-000000000000");
  ASSERT_EQ(replayed.size(), 1u);
  EXPECT_EQ(replayed[0].partition_key(), "k");
  EXPECT_EQ(replayed[0].data(), "r6 POISON:fail");
  // A second run skips what the first redrove.
  CommandResult again = run({"dlq", "redrive", dest, "--to", "replay"});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("redrove 0 failure records"), std::string::npos) << again.out;
  EXPECT_EQ(ReadShard(up->stub(), "replay", "shardId-000000000000").size(), 1u);
  EXPECT_NE(run({"dlq", "list", dest}).out.find(" yes "), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Destinations, DlqCommandTest, ::testing::Values(false, true));

TEST(PollerStartingPositionTest, TrimHorizonLatestAndAtTimestamp) {
  TempDir dir("poller-start");
  // First run: a broker with the stream and old records, no mappings yet.
  std::ofstream(dir.File("empty.yaml")) << "streams:\n  - name: events\n    shards: 1\n";
  auto up = UpProcess::Start(dir.File("empty.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), 1, 5);  // key-0#0 .. key-0#4
  up->process().Signal(SIGTERM);
  ASSERT_TRUE(up->process().Wait(absl::Seconds(60)).ok());
  absl::SleepFor(absl::Milliseconds(20));  // arrival times are in milliseconds
  const absl::Time mark = absl::Now();
  absl::SleepFor(absl::Milliseconds(20));

  std::ofstream(dir.File("up.yaml"))
      << Yaml(1, {{.function = "horizon",
                   .echo_file = dir.File("horizon.out"),
                   .extra = "    starting_position: TRIM_HORIZON\n"},
                  {.function = "latest",
                   .echo_file = dir.File("latest.out"),
                   .extra = "    starting_position: LATEST\n"},
                  {.function = "at_time",
                   .echo_file = dir.File("at_time.out"),
                   .extra = absl::StrCat(
                       "    starting_position: AT_TIMESTAMP\n", "    starting_position_timestamp: ",
                       absl::FormatTime(absl::RFC3339_full, mark, absl::UTCTimeZone()), "\n")}});
  up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), 1, 3, 5);  // key-0#5 .. key-0#7
  ASSERT_TRUE(
      WaitFor([&] { return UniqueLines(dir.File("horizon.out")) >= 8; }, absl::Seconds(60)));
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(dir.File("latest.out")) >= 3; }, absl::Seconds(60)));
  ASSERT_TRUE(
      WaitFor([&] { return UniqueLines(dir.File("at_time.out")) >= 3; }, absl::Seconds(60)));
  auto data = [](const std::vector<EchoLine>& lines) {
    std::vector<std::string> out;
    for (const auto& line : lines) out.push_back(line.data);
    return out;
  };
  EXPECT_EQ(data(ReadEcho(dir.File("horizon.out"))).size(), 8u);
  EXPECT_EQ(data(ReadEcho(dir.File("latest.out"))),
            (std::vector<std::string>{"key-0#5", "key-0#6", "key-0#7"}));
  EXPECT_EQ(data(ReadEcho(dir.File("at_time.out"))),
            (std::vector<std::string>{"key-0#5", "key-0#6", "key-0#7"}));
}

TEST(PollerLogTest, JsonLogLinesCarryTheMappingShardAndRequest) {
  TempDir dir("poller-json-log");
  const std::string echo = dir.File("echo.out");
  std::ofstream(dir.File("up.yaml")) << Yaml(1, {{.echo_file = echo,
                                                  .extra = "    batch_size: 1\n",
                                                  .isolation = "process",
                                                  .environment = "      ECHO_FAIL_ON: BAD\n"}});
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"), {"--log-format", "json"});
  ASSERT_NE(up, nullptr);
  grpc::Status put_status;
  PutRecords(up->stub(), "events", {{"k", "BAD record"}}, &put_status);
  ASSERT_TRUE(put_status.ok());
  const std::string log = dir.File("data") + ".log";
  ASSERT_TRUE(WaitFor([&] { return ReadText(log).find("failed (EchoFailOn") != std::string::npos; },
                      absl::Seconds(30)));
  up->process().Signal(SIGTERM);
  ASSERT_TRUE(up->process().Wait(absl::Seconds(60)).ok());
  bool found = false;
  std::istringstream lines(ReadText(log));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;  // the start-up banner is plain text
    EXPECT_EQ(line.back(), '}') << line;
    EXPECT_NE(line.find(R"("component":")"), std::string::npos) << line;
    if (line.find("failed (EchoFailOn") == std::string::npos) continue;
    found = true;
    EXPECT_NE(line.find(R"("level":"warning")"), std::string::npos) << line;
    EXPECT_NE(line.find(R"("component":"poller")"), std::string::npos) << line;
    EXPECT_NE(line.find(R"("mapping":"events/echo")"), std::string::npos) << line;
    EXPECT_NE(line.find(R"("stream":"events")"), std::string::npos) << line;
    EXPECT_NE(line.find(R"("shard":"shardId-000000000000")"), std::string::npos) << line;
    EXPECT_NE(line.find(R"("function":"echo")"), std::string::npos) << line;
    EXPECT_NE(line.find(R"("request_id":")"), std::string::npos) << line;
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace runnel::testing
