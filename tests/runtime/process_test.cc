// isolation: process as Lambda: crashes, exits and hangs fail only the invocation and a fresh
// worker serves the next one; the timeout is hard; memory_size is enforced; big batches arrive
// intact; worker output reaches the log; no zombies and no orphans.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "runnel/runtime/function.h"
#include "tests/runtime/test_util.h"

namespace runnel::runtime {
namespace {

using ::testing::HasSubstr;
using testing::TestConfig;

std::unique_ptr<Function> LoadPoison(absl::Duration timeout = absl::Seconds(3)) {
  FunctionConfig config = TestConfig("poison", POISON_PLUGIN, Isolation::kProcess);
  config.timeout = timeout;
  absl::StatusOr<std::unique_ptr<Function>> function = Function::Load(config);
  EXPECT_TRUE(function.ok()) << function.status();
  return function.ok() ? *std::move(function) : nullptr;
}

InvokeResult InvokeOne(Function& function, std::string_view data) {
  RecordView view{"pk", "1", data, 0};
  InvokeRequest request;
  request.shard_id = "shardId-000000000000";
  request.records = std::span<const RecordView>(&view, 1);
  return function.Invoke(request);
}

struct CrashCase {
  std::string marker;
  std::string expected;
};

class CrashTest : public ::testing::TestWithParam<CrashCase> {};

TEST_P(CrashTest, FailsTheInvocationAndAFreshWorkerServesTheNext) {
  auto function = LoadPoison();
  InvokeResult healthy = InvokeOne(*function, "ok");
  ASSERT_TRUE(healthy.ok());
  int first_pid = healthy.worker_pid;

  InvokeResult crashed = InvokeOne(*function, GetParam().marker);
  EXPECT_EQ(crashed.status, InvokeStatus::kCrash);
  EXPECT_EQ(crashed.error_type, "Runtime.ExitError");
  EXPECT_EQ(crashed.error_message, "Runtime exited with error: " + GetParam().expected);
  EXPECT_EQ(crashed.worker_pid, first_pid);
  EXPECT_FALSE(testing::ProcessExists(first_pid)) << "the dead worker was reaped";

  InvokeResult next = InvokeOne(*function, "ok");
  EXPECT_TRUE(next.ok()) << next.error_message;
  EXPECT_NE(next.worker_pid, first_pid);
}

INSTANTIATE_TEST_SUITE_P(Kinds, CrashTest,
                         ::testing::Values(CrashCase{"POISON:crash",
                                                     "signal: SIGSEGV (Segmentation fault)"},
                                           CrashCase{"POISON:abort", "signal: SIGABRT (Aborted)"},
                                           CrashCase{"POISON:exit", "exit status 3"}),
                         [](const auto& info) { return info.param.marker.substr(7); });

TEST(ProcessTest, HangTimesOutWithinAHundredMillisecondsAndTheNextInvocationSucceeds) {
  const absl::Duration timeout = absl::Milliseconds(300);
  auto function = LoadPoison(timeout);
  absl::Time start = absl::Now();
  InvokeResult hung = InvokeOne(*function, "POISON:hang");
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(hung.status, InvokeStatus::kTimeout);
  EXPECT_EQ(hung.error_type, "Sandbox.Timedout");
  EXPECT_EQ(hung.error_message, "Task timed out after 0.30 seconds");
  EXPECT_GE(took, timeout);
  EXPECT_LT(took, timeout + absl::Milliseconds(100));
  EXPECT_FALSE(testing::ProcessExists(hung.worker_pid)) << "killed and reaped";

  InvokeResult next = InvokeOne(*function, "ok");
  EXPECT_TRUE(next.ok()) << next.error_message;
  EXPECT_NE(next.worker_pid, hung.worker_pid);
}

TEST(ProcessTest, TimeoutMessageNamesTheConfiguredLimitAsLambdaDoes) {
  auto function = LoadPoison(absl::Seconds(1));
  InvokeResult hung = InvokeOne(*function, "POISON:hang");
  EXPECT_EQ(hung.error_message, "Task timed out after 1.00 seconds");
}

TEST(ProcessTest, MemoryOverrunFailsTheInvocationNotTheCaller) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space, so the worker's "
                  "RLIMIT_AS memory cap is not applied under ASan";
#endif
  auto function = LoadPoison(absl::Seconds(20));
  InvokeResult result = InvokeOne(*function, "POISON:oom");
  EXPECT_EQ(result.status, InvokeStatus::kMemoryExceeded);
  EXPECT_EQ(result.error_type, "Runtime.OutOfMemory");
  EXPECT_THAT(result.error_message, HasSubstr("memory_size of 128 MB exceeded"));
  InvokeResult next = InvokeOne(*function, "ok");
  EXPECT_TRUE(next.ok()) << next.error_message;
  EXPECT_NE(next.worker_pid, result.worker_pid);
}

uint64_t Fnv(uint64_t hash, const void* data, size_t size) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= p[i];
    hash *= 1099511628211ULL;
  }
  return hash;
}

TEST(ProcessTest, TenThousandRecordsOfSixMebibytesArriveIntact) {
  FunctionConfig config = TestConfig("probe", PROBE_PLUGIN, Isolation::kProcess);
  auto function = Function::Load(config);
  ASSERT_TRUE(function.ok()) << function.status();
  constexpr size_t kRecords = 10000;
  const size_t kBytes = (6 << 20) / kRecords;  // 629 bytes each: 6 MiB of data in all
  std::mt19937_64 random(7);
  std::vector<std::string> data(kRecords), keys(kRecords), seqs(kRecords);
  std::vector<RecordView> views;
  uint64_t digest = 14695981039346656037ULL;
  for (size_t i = 0; i < kRecords; ++i) {
    data[i].resize(kBytes);
    for (char& c : data[i]) c = static_cast<char>(random());  // every byte value, NULs too
    keys[i] = "key-" + std::to_string(i % 97);
    seqs[i] = "4965000000000000" + std::to_string(1000000 + i);
    views.push_back(RecordView{keys[i], seqs[i], data[i], 1718000000000 + int64_t(i)});
    for (std::string_view field :
         {std::string_view(keys[i]), std::string_view(seqs[i]), std::string_view(data[i])}) {
      uint64_t size = field.size();
      digest = Fnv(digest, &size, sizeof(size));
      digest = Fnv(digest, field.data(), field.size());
    }
    int64_t arrival = views.back().approximate_arrival_ms;
    digest = Fnv(digest, &arrival, sizeof(arrival));
  }
  InvokeRequest request;
  request.shard_id = "shardId-000000000000";
  request.records = views;
  InvokeResult result = (*function)->Invoke(request);
  ASSERT_EQ(result.error_type, "Probe") << result.error_message;
  rapidjson::Document doc;
  doc.Parse(result.error_message.c_str());
  EXPECT_EQ(doc["records"].GetInt(), static_cast<int>(kRecords));
  EXPECT_EQ(std::string(doc["digest"].GetString()), std::to_string(digest));
}

TEST(ProcessTest, WorkerStdoutAndStderrReachTheLogTagged) {
  testing::LogCapture capture;
  auto function = LoadPoison();
  RecordView view{"pk", "77", "POISON:print", 0};
  InvokeRequest request;
  request.request_id = "req-print";
  request.records = std::span<const RecordView>(&view, 1);
  InvokeResult result = function->Invoke(request);
  ASSERT_TRUE(result.ok()) << result.error_message;
  std::string tag = "[poison] [req-print] [worker " + std::to_string(result.worker_pid);
  EXPECT_TRUE(capture.WaitForLine(tag + " stdout] poison stdout 77"))
      << ::testing::PrintToString(capture.Lines());
  EXPECT_TRUE(capture.WaitForLine(tag + " stderr] poison stderr 77"))
      << ::testing::PrintToString(capture.Lines());
}

TEST(ProcessTest, WorkerThatDiedWhileIdleIsReplacedBeforeTheBatchIsSent) {
  auto function = LoadPoison();
  InvokeResult first = InvokeOne(*function, "ok");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(kill(first.worker_pid, SIGKILL), 0);
  // Once it is a zombie (dead, not yet reaped) the runtime has not noticed anything yet; the next
  // invocation must not be charged for it.
  ASSERT_TRUE(testing::WaitFor([&] {
    std::ifstream stat("/proc/" + std::to_string(first.worker_pid) + "/stat");
    std::string pid, comm, state;
    stat >> pid >> comm >> state;
    return state == "Z";
  }));
  InvokeResult next = InvokeOne(*function, "ok");
  EXPECT_TRUE(next.ok()) << next.error_message;
  EXPECT_NE(next.worker_pid, first.worker_pid);
}

TEST(ProcessTest, DestroyingTheFunctionLeavesNoZombies) {
  std::vector<int> pids;
  {
    FunctionConfig config = TestConfig("many", PROBE_PLUGIN, Isolation::kProcess);
    config.environment["PROBE_SLEEP_MS"] = "20";
    auto function = Function::Load(config);
    ASSERT_TRUE(function.ok());
    std::vector<std::thread> threads;
    std::mutex mu;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&] {
        RecordView view{"pk", "1", "x", 0};
        InvokeRequest request;
        request.records = std::span<const RecordView>(&view, 1);
        InvokeResult result = (*function)->Invoke(request);
        std::lock_guard<std::mutex> lock(mu);
        pids.push_back(result.worker_pid);
      });
    }
    for (std::thread& t : threads) t.join();
    for (int pid : pids) EXPECT_TRUE(testing::ProcessExists(pid));
  }
  // kill(pid, 0) fails with ESRCH only once a child is reaped (a zombie still exists).
  for (int pid : pids) EXPECT_FALSE(testing::ProcessExists(pid)) << pid;
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1) << "no child left to reap";
}

TEST(ProcessTest, WorkerOutlivesTheThreadThatStartedIt) {
  // PR_SET_PDEATHSIG fires when the forking *thread* exits; workers must survive poller lanes
  // that come and go.
  auto function = LoadPoison();
  InvokeResult first = InvokeOne(*function, "POISON:exit");  // forces a fresh worker next
  InvokeResult from_thread;
  std::thread([&] { from_thread = InvokeOne(*function, "ok"); }).join();
  ASSERT_TRUE(from_thread.ok()) << from_thread.error_message;
  InvokeResult again = InvokeOne(*function, "ok");
  EXPECT_TRUE(again.ok()) << again.error_message;
  EXPECT_EQ(again.worker_pid, from_thread.worker_pid);
}

// The pids of `parent`'s children.
std::vector<int> ChildrenOf(int parent) {
  std::vector<int> children;
  std::ifstream tasks("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                      "/children");
  int pid;
  while (tasks >> pid) children.push_back(pid);
  // Workers are forked by the spawner thread, so look at every thread's children.
  std::error_code ignored;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(parent) + "/task", ignored)) {
    std::ifstream more(entry.path() / "children");
    while (more >> pid) children.push_back(pid);
  }
  return children;
}

TEST(ProcessTest, WorkersDieWithTheirParent) {
  // A `runnel invoke` whose handler hangs; kill it and its worker must go too.
  std::vector<std::string> argv = {RUNNEL_BINARY, "invoke", POISON_PLUGIN, "--timeout",
                                   "60s",         "--data", "POISON:hang"};
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t parent = fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    int null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  std::vector<int> workers;
  ASSERT_TRUE(testing::WaitFor([&] {
    workers = ChildrenOf(parent);
    return !workers.empty();
  })) << "runnel invoke never started a worker";
  kill(parent, SIGKILL);
  waitpid(parent, nullptr, 0);
  // The worker is not our child, so it disappears entirely once init reaps it.
  EXPECT_TRUE(testing::WaitFor([&] { return !testing::ProcessExists(workers[0]); }))
      << "worker " << workers[0] << " outlived its parent";
}

}  // namespace
}  // namespace runnel::runtime
