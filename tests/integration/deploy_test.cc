// The systemd units and the environment file in deploy/systemd: the units pass
// `systemd-analyze verify` (where systemd is installed), and each unit's ExecStart, expanded with
// the example environment file as systemd would, starts a working broker and poller that stop
// cleanly on the unit's KillSignal within its TimeoutStopSec.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kSystemdDir[] = RUNNEL_SOURCE_DIR "/deploy/systemd";
constexpr char kInstalledBinary[] = "/usr/local/bin/runnel";

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A unit file's [Service] settings (continuation lines joined), last value wins.
std::map<std::string, std::string> ServiceSettings(const std::string& unit_path) {
  std::map<std::string, std::string> settings;
  std::string text = absl::StrReplaceAll(ReadText(unit_path), {{"\\\n", " "}});
  bool in_service = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      in_service = line == "[Service]";
      continue;
    }
    if (!in_service) continue;
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    settings[kv.first] = kv.second;
  }
  return settings;
}

// KEY=VALUE lines of a systemd EnvironmentFile.
std::map<std::string, std::string> EnvironmentFile(const std::string& path) {
  std::map<std::string, std::string> env;
  for (absl::string_view line : absl::StrSplit(ReadText(path), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    env[kv.first] = kv.second;
  }
  return env;
}

// ExecStart as systemd runs it: words split on spaces, each "${VAR}" word replaced by the
// variable's value as one word (empty included), the installed binary by the one under test.
std::vector<std::string> ExpandExecStart(const std::string& exec_start,
                                         const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv;
  for (absl::string_view word : absl::StrSplit(exec_start, ' ', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&word, "${") && absl::ConsumeSuffix(&word, "}")) {
      auto it = env.find(std::string(word));
      EXPECT_NE(it, env.end()) << "ExecStart uses ${" << word << "}, the env file lacks it";
      argv.push_back(it == env.end() ? "" : it->second);
    } else if (word == kInstalledBinary) {
      argv.push_back(RUNNEL_BINARY);
    } else {
      argv.push_back(std::string(word));
    }
  }
  return argv;
}

absl::Duration Seconds(const std::string& systemd_time) {
  absl::Duration duration;
  EXPECT_TRUE(absl::ParseDuration(systemd_time, &duration) ||
              absl::ParseDuration(systemd_time + "s", &duration))
      << systemd_time;
  return duration;
}

TEST(DeployTest, UnitsPassSystemdAnalyzeVerify) {
  std::string analyze;
  for (const char* candidate : {"/usr/bin/systemd-analyze", "/bin/systemd-analyze"}) {
    if (access(candidate, X_OK) == 0) analyze = candidate;
  }
  if (analyze.empty()) GTEST_SKIP() << "systemd-analyze is not installed";
  TempDir dir("deploy-verify");
  for (const char* unit : {"runnel-broker.service", "runnel-poller.service"}) {
    // verify checks that ExecStart's binary exists: point it at the one under test.
    std::string text = absl::StrReplaceAll(ReadText(absl::StrCat(kSystemdDir, "/", unit)),
                                           {{kInstalledBinary, RUNNEL_BINARY}});
    const std::string copy = dir.File(unit);
    std::ofstream(copy) << text;
    CommandResult result = RunCommand({analyze, "verify", copy});
    EXPECT_EQ(result.exit_code, 0) << unit << ": " << result.out << result.err;
    // It reports bad values (a misspelt setting, an unparsable time) as warnings and exits 0.
    EXPECT_EQ(result.out + result.err, "") << unit;
  }
}

TEST(DeployTest, TheStopTimeoutLeavesRoomForTheDrain) {
  const auto env = EnvironmentFile(absl::StrCat(kSystemdDir, "/runnel.env"));
  const auto poller = ServiceSettings(absl::StrCat(kSystemdDir, "/runnel-poller.service"));
  ASSERT_TRUE(env.contains("RUNNEL_SHUTDOWN_TIMEOUT"));
  EXPECT_LT(Seconds(env.at("RUNNEL_SHUTDOWN_TIMEOUT")) + absl::Seconds(10),
            Seconds(poller.at("TimeoutStopSec")))
      << "systemd would SIGKILL the poller while it still drains";
  EXPECT_EQ(poller.at("KillMode"), "mixed") << "workers must not get SIGTERM before the poller";
}

// Runs a unit's ExecStart with the example environment file, adjusted for a test: loopback
// ephemeral ports, folders under `dir`.
class UnitProcess {
 public:
  UnitProcess(const std::string& unit, std::map<std::string, std::string> env,
              const std::vector<std::pair<std::string, std::string>>& replace,
              const std::string& log)
      : settings_(ServiceSettings(absl::StrCat(kSystemdDir, "/", unit))) {
    std::string exec_start = absl::StrReplaceAll(settings_.at("ExecStart"), replace);
    std::vector<std::string> argv = ExpandExecStart(exec_start, env);
    argv.push_back("--ready-file");
    argv.push_back(log + ".ready");
    // The environment file's variables reach the process too (RUNNEL_LOG_FORMAT, ...).
    for (const auto& [key, value] : env) setenv(key.c_str(), value.c_str(), 1);
    auto process = ChildProcess::Start(argv, log);
    EXPECT_TRUE(process.ok()) << process.status();
    if (process.ok()) process_ = std::move(*process);
    ready_ = WaitFor([&] { return !ReadText(log + ".ready").empty(); }, absl::Seconds(60));
    EXPECT_TRUE(ready_) << unit << " did not start; see " << log;
  }
  bool ready() const { return ready_ && process_ != nullptr; }

  // Stops it as systemd would and returns how long it took to exit 0.
  void StopAsSystemdWould() {
    ASSERT_EQ(settings_.at("KillSignal"), "SIGTERM");
    process_->Signal(SIGTERM);
    auto status = process_->Wait(Seconds(settings_.at("TimeoutStopSec")));
    ASSERT_TRUE(status.ok()) << "still running after TimeoutStopSec";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  }

 private:
  std::map<std::string, std::string> settings_;
  std::unique_ptr<ChildProcess> process_;
  bool ready_ = false;
};

TEST(DeployTest, TheUnitsCommandLinesRunABrokerAndAPollerThatStopCleanly) {
  TempDir dir("deploy-units");
  auto env = EnvironmentFile(absl::StrCat(kSystemdDir, "/runnel.env"));
  for (const char* key : {"RUNNEL_BROKER_LISTEN", "RUNNEL_BROKER_METRICS", "RUNNEL_POLLER_LISTEN",
                          "RUNNEL_POLLER_METRICS"}) {
    ASSERT_TRUE(env.contains(key)) << key;
    env[key] = "127.0.0.1:0";
  }
  env["RUNNEL_KINESIS_LISTEN"] = "127.0.0.1:0";  // off in the example; exercise the flag too
  env["RUNNEL_PLUGIN_PATH"] = RUNNEL_BUILD_DIR "/handlers";
  UnitProcess broker("runnel-broker.service", env,
                     {{"/var/lib/runnel/broker", dir.File("broker-data")}}, dir.File("broker.log"));
  ASSERT_TRUE(broker.ready());
  std::string address =
      std::string(absl::StripAsciiWhitespace(ReadText(dir.File("broker.log") + ".ready")));
  EXPECT_NE(ReadText(dir.File("broker.log")).find(R"("component":"broker")"), std::string::npos)
      << "RUNNEL_LOG_FORMAT=json from the env file did not apply";

  auto stub = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(address));
  ASSERT_TRUE(CreateStream(*stub, "orders", 2).ok());
  const std::string echo = dir.File("echo.out");
  std::ofstream(dir.File("mappings.yaml"))
      << "streams:\n  - name: orders\n    shards: 2\nfunctions:\n  - name: echo\n"
      << "    plugin: echo\n    environment:\n      ECHO_FILE: " << echo
      << "\nevent_source_mappings:\n  - function: echo\n    stream: orders\n";
  env["RUNNEL_CONFIG"] = dir.File("mappings.yaml");
  env["RUNNEL_BROKER"] = address;
  {
    UnitProcess poller("runnel-poller.service", env, {}, dir.File("poller.log"));
    ASSERT_TRUE(poller.ready());
    grpc::Status status;
    PutRecords(*stub, "orders", {{"a", "one"}, {"b", "two"}, {"c", "three"}}, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_TRUE(WaitFor(
        [&] {
          std::string text = ReadText(echo);
          return std::count(text.begin(), text.end(), '\n') >= 3;
        },
        absl::Seconds(60)))
        << ReadText(dir.File("poller.log"));
    poller.StopAsSystemdWould();
  }
  broker.StopAsSystemdWould();
}

}  // namespace
}  // namespace runnel::testing
