// Processes a handler forks die with its worker: each worker leads its own process group, and
// however the worker ends (timeout, crash, exit, memory overrun, the function being destroyed,
// runnel itself being killed) the whole group is ended.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runnel/runtime/function.h"
#include "tests/runtime/test_util.h"

namespace runnel::runtime {
namespace {

using testing::TestConfig;

// Gone, or a zombie: either way it runs nothing any more (who reaps an orphan is up to the
// machine's init, not to runnel).
bool Dead(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return !testing::ProcessExists(pid);
  std::string field, comm, state;
  stat >> field >> comm >> state;
  return state == "Z" || state == "X";
}

// The pids the forker plugin wrote, one a line.
std::vector<int> Grandchildren(const std::string& pid_file) {
  std::vector<int> pids;
  std::istringstream in(testing::ReadFile(pid_file));
  int pid;
  while (in >> pid) pids.push_back(pid);
  return pids;
}

// Waits (with a deadline) until every grandchild the plugin reported is dead.
::testing::AssertionResult AllDead(const std::vector<int>& pids) {
  for (int pid : pids) {
    if (!testing::WaitFor([pid] { return Dead(pid); }, absl::Seconds(10))) {
      return ::testing::AssertionFailure() << "grandchild " << pid << " outlived its worker";
    }
  }
  return ::testing::AssertionSuccess();
}

struct Ending {
  std::string action;  // what the forker does after forking
  InvokeStatus status;
};

class WorkerEndTest : public ::testing::TestWithParam<Ending> {};

TEST_P(WorkerEndTest, KillsWhatTheHandlerForked) {
#if defined(__SANITIZE_ADDRESS__)
  if (GetParam().action == "oom") GTEST_SKIP() << "no memory_size cap under AddressSanitizer";
#endif
  testing::TempDir dir;
  FunctionConfig config = TestConfig("forker", FORKER_PLUGIN, Isolation::kProcess);
  config.environment["FORKER_PID_FILE"] = dir.File("pids");
  config.timeout = GetParam().action == "oom" ? absl::Seconds(30) : absl::Milliseconds(500);
  auto function = Function::Load(config);
  ASSERT_TRUE(function.ok()) << function.status();

  RecordView view{"pk", "1", GetParam().action, 0};
  InvokeRequest request;
  request.records = std::span<const RecordView>(&view, 1);
  InvokeResult result = (*function)->Invoke(request);
  EXPECT_EQ(result.status, GetParam().status) << result.error_message;
  std::vector<int> pids = Grandchildren(dir.File("pids"));
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_TRUE(AllDead(pids));
  // The next invocation gets a fresh worker, and its grandchild lives as long as that worker.
  RecordView ok{"pk", "2", "ok", 0};
  request.records = std::span<const RecordView>(&ok, 1);
  InvokeResult next = (*function)->Invoke(request);
  ASSERT_TRUE(next.ok()) << next.error_message;
  pids = Grandchildren(dir.File("pids"));
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_FALSE(Dead(pids[1])) << "a grandchild of a live worker is left alone";
}

INSTANTIATE_TEST_SUITE_P(Ways, WorkerEndTest,
                         ::testing::Values(Ending{"hang", InvokeStatus::kTimeout},
                                           Ending{"crash", InvokeStatus::kCrash},
                                           Ending{"exit", InvokeStatus::kCrash},
                                           Ending{"oom", InvokeStatus::kMemoryExceeded}),
                         [](const auto& info) { return info.param.action; });

TEST(ProcessGroupTest, DestroyingTheFunctionKillsWhatItsWorkersForked) {
  testing::TempDir dir;
  FunctionConfig config = TestConfig("forker", FORKER_PLUGIN, Isolation::kProcess);
  config.environment["FORKER_PID_FILE"] = dir.File("pids");
  {
    auto function = Function::Load(config);
    ASSERT_TRUE(function.ok()) << function.status();
    RecordView view{"pk", "1", "ok", 0};
    InvokeRequest request;
    request.records = std::span<const RecordView>(&view, 1);
    ASSERT_TRUE((*function)->Invoke(request).ok());
    ASSERT_FALSE(Dead(Grandchildren(dir.File("pids")).at(0)));
  }
  EXPECT_TRUE(AllDead(Grandchildren(dir.File("pids"))));
}

TEST(ProcessGroupTest, KillingRunnelKillsWhatItsWorkersForked) {
  // `runnel invoke` with a handler that forks and then hangs; SIGKILL runnel: the worker gets its
  // parent-death signal and ends its whole group.
  testing::TempDir dir;
  std::vector<std::string> argv = {RUNNEL_BINARY,
                                   "invoke",
                                   FORKER_PLUGIN,
                                   "--timeout",
                                   "60s",
                                   "--env",
                                   "FORKER_PID_FILE=" + dir.File("pids"),
                                   "--data",
                                   "hang"};
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t runnel = fork();
  ASSERT_GE(runnel, 0);
  if (runnel == 0) {
    int null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  ASSERT_TRUE(testing::WaitFor([&] { return !Grandchildren(dir.File("pids")).empty(); }))
      << "the handler never forked";
  std::vector<int> pids = Grandchildren(dir.File("pids"));
  ASSERT_FALSE(Dead(pids[0]));
  kill(runnel, SIGKILL);
  waitpid(runnel, nullptr, 0);
  EXPECT_TRUE(AllDead(pids));
}

}  // namespace
}  // namespace runnel::runtime
