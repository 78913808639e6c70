// Stopping the poller: SIGTERM under load loses nothing and repeats nothing that finished; a
// stop waits for about one batch per lane, not for everything read ahead; --shutdown-timeout
// bounds the wait for a hung invocation; a second signal ends the process at once.
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/poller_support.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

TEST(PollerShutdownTest, SigtermUnderLoadLosesNothingAndRepeatsNothingThatFinished) {
  TempDir dir("poller-sigterm-load");
  const std::string echo = dir.File("echo.out");
  std::ofstream(dir.File("up.yaml"))
      << Yaml(2, {{.echo_file = echo,
                   .extra = "    batch_size: 25\n    parallelization_factor: 3\n",
                   .isolation = "process",
                   .environment = "      ECHO_DELAY_MS: \"5\"\n"}});
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  std::set<std::string> acknowledged;
  {
    BackgroundProducer producer(up->stub(), 40);
    // Under load: the handler is busy and records are queued behind it.
    ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= 600; }, absl::Seconds(60)));
    up->process().Signal(SIGTERM);
    auto status = up->process().Wait(absl::Seconds(60));
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
    acknowledged = producer.Acknowledged();
  }
  const std::vector<EchoLine> before = ReadEcho(echo);
  EXPECT_THAT(ReadText(dir.File("data") + ".log"), ::testing::HasSubstr("received SIGTERM"));

  up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= acknowledged.size(); }, absl::Seconds(120)))
      << UniqueLines(echo) << " of " << acknowledged.size();
  const std::vector<EchoLine> lines = ReadEcho(echo);
  // Nothing acknowledged is lost, nothing is delivered twice (every batch that had finished
  // was checkpointed before the exit), and each key's records came in put order.
  std::set<std::string> sequences, delivered;
  std::map<std::string, int> last_n;
  for (const EchoLine& line : lines) {
    EXPECT_TRUE(sequences.insert(line.sequence_number).second)
        << "delivered twice: " << line.data << (&line < &lines[before.size()] ? "" : " (after)");
    delivered.insert(line.data);
    std::vector<std::string> parts = absl::StrSplit(line.data, '#');
    ASSERT_EQ(parts.size(), 2u);
    int n = 0;
    ASSERT_TRUE(absl::SimpleAtoi(parts[1], &n));
    auto [it, first] = last_n.try_emplace(parts[0], n);
    if (!first) {
      EXPECT_GT(n, it->second) << parts[0];
    }
    it->second = n;
  }
  for (const std::string& data : acknowledged) {
    EXPECT_TRUE(delivered.contains(data)) << "acknowledged but never delivered: " << data;
  }
  RecordProperty("delivered_before_sigterm", static_cast<int>(before.size()));
  RecordProperty("acknowledged", static_cast<int>(acknowledged.size()));
}

// With a slow handler and a deep backlog, a stop waits for the batches in flight and the little
// each lane was handed ahead (its read-ahead is about two batches, the one in flight included),
// not for everything the reader could have buffered; and a restart then delivers the rest with
// no duplicate (what the drain on a stop is for).
TEST(PollerShutdownTest, AStopWaitsForAboutOneBatchPerLaneNotForTheBacklog) {
  constexpr int kLanes = 2, kBatch = 10, kKeys = 50, kPerKey = 20;  // 1,000 records, 100 batches
  TempDir dir("poller-stop-read-ahead");
  const std::string echo = dir.File("echo.out");
  const std::string started = dir.File("started");
  auto yaml = [&](int delay_ms) {
    return Yaml(1, {{.echo_file = echo,
                     .extra = absl::StrCat("    batch_size: ", kBatch,
                                           "\n    parallelization_factor: ", kLanes, "\n"),
                     .environment = absl::StrCat("      ECHO_DELAY_MS: \"", delay_ms,
                                                 "\"\n      ECHO_STARTED_FILE: ", started, "\n")}});
  };
  std::ofstream(dir.File("up.yaml")) << yaml(500);
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"), {"--shutdown-timeout", "5m"});
  ASSERT_NE(up, nullptr);
  Produce(up->stub(), kKeys, kPerKey);
  // Every lane busy with its first batch: the reader has long read what was put.
  auto invocations = [&] {
    const std::string text = ReadText(started);
    return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  };
  ASSERT_TRUE(WaitFor([&] { return invocations() >= kLanes; }, absl::Seconds(30)));
  const size_t delivered_before = UniqueLines(echo);
  const absl::Time signalled = absl::Now();
  up->process().Signal(SIGTERM);
  // Draining the whole backlog would take 50 s; the bound is on what is delivered, not on time.
  auto status = up->process().Wait(absl::Seconds(120));
  ASSERT_TRUE(status.ok()) << "did not exit within 120 s of SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  const absl::Duration stop_time = absl::Now() - signalled;
  const size_t delivered_during_stop = UniqueLines(echo) - delivered_before;
  // What the lanes held at the signal (two batches each at most), and a batch per lane of slack
  // for batches that ended as the signal came in (their lanes took new records then).
  EXPECT_LE(delivered_during_stop, static_cast<size_t>(3 * kBatch * kLanes))
      << "the stop ran " << delivered_during_stop << " records through the handler ("
      << absl::FormatDuration(stop_time) << ")";
  RecordProperty("stop_millis", static_cast<int>(absl::ToInt64Milliseconds(stop_time)));
  RecordProperty("delivered_during_stop", static_cast<int>(delivered_during_stop));

  std::ofstream(dir.File("up.yaml")) << yaml(0);
  up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"));
  ASSERT_NE(up, nullptr);
  ASSERT_TRUE(WaitFor([&] { return UniqueLines(echo) >= kKeys * kPerKey; }, absl::Seconds(60)))
      << UniqueLines(echo) << " of " << kKeys * kPerKey;
  EXPECT_EQ(CheckDelivery(ReadEcho(echo), kKeys, kPerKey), 0) << "records delivered twice";
}

// `runnel up` (with `extra_args`) in `dir`, echoing to `echo`, with one record put and its
// invocation started and hung: one shard, one lane, and the handler takes a minute, so the
// invocation holds the lane through any shutdown the caller begins. nullptr after a failure.
std::unique_ptr<UpProcess> StartWithHungInvocation(const TempDir& dir, const std::string& echo,
                                                   const std::vector<std::string>& extra_args) {
  const std::string started = dir.File("started");
  std::ofstream(dir.File("up.yaml")) << Yaml(
      1, {{.echo_file = echo,
           .extra = "    batch_size: 1\n",
           .environment = absl::StrCat(
               "      ECHO_DELAY_MS: \"60000\"\n      ECHO_STARTED_FILE: ", started, "\n")}});
  auto up = UpProcess::Start(dir.File("up.yaml"), dir.File("data"), extra_args);
  if (up == nullptr) return nullptr;
  Produce(up->stub(), 1, 1);
  if (::testing::Test::HasFatalFailure()) return nullptr;
  const bool started_in_time =
      WaitFor([&] { return !ReadText(started).empty(); }, absl::Seconds(30));
  EXPECT_TRUE(started_in_time) << "the invocation never started";
  if (!started_in_time) return nullptr;
  return up;
}

TEST(PollerShutdownTest, ShutdownTimeoutBoundsTheWaitForAHungInvocation) {
  TempDir dir("poller-shutdown-timeout");
  const std::string echo = dir.File("echo.out");
  auto up = StartWithHungInvocation(dir, echo, {"--shutdown-timeout", "1s"});
  ASSERT_NE(up, nullptr);
  const std::string log = dir.File("data") + ".log";
  const absl::Time signalled = absl::Now();
  up->process().Signal(SIGTERM);
  auto status = up->process().Wait(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << "did not exit within 30 s of SIGTERM with --shutdown-timeout 1s";
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(15));
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  EXPECT_THAT(ReadText(log), ::testing::HasSubstr("shutdown timeout (1s) passed"));
  EXPECT_TRUE(ReadEcho(echo).empty());
}

TEST(PollerShutdownTest, ASecondSignalEndsTheProcessAtOnce) {
  TempDir dir("poller-second-signal");
  auto up = StartWithHungInvocation(dir, dir.File("echo.out"), {"--shutdown-timeout", "5m"});
  ASSERT_NE(up, nullptr);
  const std::string log = dir.File("data") + ".log";
  up->process().Signal(SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return ReadText(log).find("received SIGTERM") != std::string::npos; },
                      absl::Seconds(30)));
  const absl::Time second = absl::Now();
  up->process().Signal(SIGTERM);
  auto status = up->process().Wait(absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << "a second SIGTERM did not end the process";
  EXPECT_LT(absl::Now() - second, absl::Seconds(5));
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM) << *status;
}

}  // namespace
}  // namespace runnel::testing
