// A mapping whose stream is deleted and created again under its name, end to end with real
// processes: the mapping says once that the stream was deleted, waits, says once that it was
// re-created, and delivers every record of the new stream from its starting_position, in order
// per key. Before, it kept the old stream's position, logged "past the end of shard" in a loop,
// and once the new stream was long enough resumed there: the new stream's first records were
// never delivered. Under `runnel up` (the stream deleted and re-created with the CLI), and with
// `runnel broker` restarted between the delete and the re-create while `runnel poller` waits.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/poller_support.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

constexpr int kShards = 2;
constexpr int kKeys = 4;
// The old stream gets many more records than the new one, so the old position lies past the new
// stream's end.
constexpr int kOldPerKey = 50;
constexpr int kNewPerKey = 10;
constexpr char kDeleted[] =
    "stream events was deleted; mapping events/echo waits for a stream of "
    "that name";
constexpr char kRecreated[] = "mapping events/echo starts at its starting_position TRIM_HORIZON";

size_t Count(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++count;
  }
  return count;
}

// The echo lines from the `from`th on.
std::vector<EchoLine> EchoFrom(const std::string& path, size_t from) {
  std::vector<EchoLine> lines = ReadEcho(path);
  return {lines.begin() + static_cast<std::ptrdiff_t>(std::min(from, lines.size())), lines.end()};
}

size_t UniqueFrom(const std::string& path, size_t from) {
  std::set<std::string> unique;
  for (const EchoLine& line : EchoFrom(path, from)) unique.insert(line.sequence_number);
  return unique.size();
}

// The part of the test both variants share, once the stream was deleted and the mapping said so:
// what it delivered of the new stream and what it logged.
void ExpectNewStreamDeliveredInFull(v1::StreamBroker::Stub& stub, const std::string& echo,
                                    size_t old_lines, const std::string& log) {
  Produce(stub, kKeys, kNewPerKey);
  ASSERT_TRUE(
      WaitFor([&] { return UniqueFrom(echo, old_lines) >= kKeys * kNewPerKey; }, absl::Seconds(60)))
      << UniqueFrom(echo, old_lines) << " of " << kKeys * kNewPerKey
      << " records of the new stream delivered; see " << log;
  EXPECT_EQ(CheckDelivery(EchoFrom(echo, old_lines), kKeys, kNewPerKey), 0);
  const std::string text = ReadText(log);
  EXPECT_EQ(Count(text, kDeleted), 1u) << log;
  EXPECT_EQ(Count(text, "stream events was re-created (incarnation "), 1u) << log;
  EXPECT_EQ(Count(text, kRecreated), 1u) << log;
  // Quiet while it waited: no line per attempt.
  EXPECT_EQ(Count(text, "past the end of shard"), 0u) << log;
  EXPECT_EQ(Count(text, "cannot position the reader"), 0u) << log;
  EXPECT_EQ(Count(text, "read failed"), 0u) << log;
}

// Polling (GetRecords) and fan_out (SubscribeToShard once caught up) notice the delete alike.
class StreamRecreateUpTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamRecreateUpTest, TheMappingStartsTheNewStreamAtItsStartingPosition) {
  TempDir dir(absl::StrCat("recreate-up-", GetParam()));
  const std::string echo = dir.File("echo.out");
  const std::string data = dir.File("data");
  std::ofstream(dir.File("up.yaml")) << Yaml(
      kShards,
      {{.echo_file = echo,
        .extra = absl::StrCat("    consumer: ", GetParam(),
                              "\n    starting_position: TRIM_HORIZON\n    batch_size: 20\n")}});
  auto up = UpProcess::Start(dir.File("up.yaml"), data);
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), kKeys, kOldPerKey);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= kKeys * kOldPerKey; }, absl::Seconds(60)));

  CommandResult deleted =
      RunCommand({RUNNEL_BINARY, "stream", "delete", "events", "--broker", up->address()});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  ASSERT_TRUE(
      WaitFor([&] { return Count(ReadText(data + ".log"), kDeleted) > 0; }, absl::Seconds(30)))
      << "see " << data << ".log";
  // Nothing of the old stream is delivered after this.
  const size_t old_lines = ReadEcho(echo).size();
  CommandResult created = RunCommand({RUNNEL_BINARY, "stream", "create", "events", "--shards",
                                      std::to_string(kShards), "--broker", up->address()});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  ExpectNewStreamDeliveredInFull(up->stub(), echo, old_lines, data + ".log");
}

INSTANTIATE_TEST_SUITE_P(Consumers, StreamRecreateUpTest, ::testing::Values("polling", "fan_out"));

// The new stream grows past the old position at once: a mapping that kept the old position read
// from there first (skipping the new stream's first records, or delivering them late, out of
// order, once its lease was refused).
TEST(StreamRecreateTest, ANewStreamLongerThanTheOldPositionIsReadFromItsStart) {
  TempDir dir("recreate-longer");
  const std::string echo = dir.File("echo.out");
  const std::string data = dir.File("data");
  std::ofstream(dir.File("up.yaml")) << Yaml(
      kShards,
      {{.echo_file = echo, .extra = "    starting_position: TRIM_HORIZON\n    batch_size: 20\n"}});
  auto up = UpProcess::Start(dir.File("up.yaml"), data);
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), kKeys, kOldPerKey);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= kKeys * kOldPerKey; }, absl::Seconds(60)));
  const size_t old_lines = ReadEcho(echo).size();
  v1::DeleteStreamRequest remove;
  remove.set_stream_name("events");
  v1::DeleteStreamResponse removed;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  ASSERT_TRUE(up->stub().DeleteStream(&context, remove, &removed).ok());
  ASSERT_TRUE(CreateStream(up->stub(), "events", kShards).ok());
  constexpr int kLongerPerKey = 3 * kOldPerKey;
  Produce(up->stub(), kKeys, kLongerPerKey);
  ASSERT_TRUE(WaitFor([&] { return UniqueFrom(echo, old_lines) >= kKeys * kLongerPerKey; },
                      absl::Seconds(60)))
      << UniqueFrom(echo, old_lines) << " of " << kKeys * kLongerPerKey << "; see " << data
      << ".log";
  EXPECT_EQ(CheckDelivery(EchoFrom(echo, old_lines), kKeys, kLongerPerKey), 0);
  EXPECT_EQ(Count(ReadText(data + ".log"), "past the end of shard"), 0u);
}

TEST(StreamRecreateTest, APollerWaitsThroughABrokerRestartForTheNewStream) {
  TempDir dir("recreate-split");
  const std::string echo = dir.File("echo.out");
  const std::string data = dir.File("data");
  auto broker = BrokerProcess::Start(data);
  ASSERT_TRUE(broker.ok()) << broker.status();
  const std::string address = (*broker)->address();
  auto stub = (*broker)->Stub();
  ASSERT_TRUE(CreateStream(*stub, "events", kShards).ok());
  std::ofstream(dir.File("poller.yaml")) << Yaml(
      kShards,
      {{.echo_file = echo, .extra = "    starting_position: TRIM_HORIZON\n    batch_size: 20\n"}});
  const std::string poller_log = dir.File("poller.log");
  const std::string ready = dir.File("poller.ready");
  auto poller =
      ChildProcess::Start({RUNNEL_BINARY, "poller", "-f", dir.File("poller.yaml"), "--broker",
                           address, "--listen", "127.0.0.1:0", "--ready-file", ready},
                          poller_log);
  ASSERT_TRUE(poller.ok()) << poller.status();
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(ready); }, absl::Seconds(60)))
      << "see " << poller_log;
  Produce(*stub, kKeys, kOldPerKey);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= kKeys * kOldPerKey; }, absl::Seconds(60)));

  v1::DeleteStreamRequest remove;
  remove.set_stream_name("events");
  v1::DeleteStreamResponse removed;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  ASSERT_TRUE(stub->DeleteStream(&context, remove, &removed).ok());
  ASSERT_TRUE(WaitFor([&] { return Count(ReadText(poller_log), kDeleted) > 0; }, absl::Seconds(30)))
      << "see " << poller_log;
  const size_t old_lines = ReadEcho(echo).size();

  // The broker restarts on the same address while the poller waits; the stream is created again
  // on the restarted broker.
  stub.reset();
  (*broker)->process().Signal(SIGTERM);
  ASSERT_TRUE((*broker)->process().Wait(absl::Seconds(30)).ok());
  broker->reset();
  auto restarted = BrokerProcess::Start(data, {}, address);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  stub = (*restarted)->Stub();
  ASSERT_TRUE(CreateStream(*stub, "events", kShards).ok());
  ExpectNewStreamDeliveredInFull(*stub, echo, old_lines, poller_log);
}

}  // namespace
}  // namespace runnel::testing
