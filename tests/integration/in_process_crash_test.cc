// An `isolation: in_process` handler that crashes takes `runnel up` down with it, but not
// without a word: stderr gets one line naming the function, mapping, shard and request id and
// recommending `isolation: process`, the process dies of the handler's own signal, and a restart
// with the function fixed resumes from the last checkpoint.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kEchoPlugin[] = RUNNEL_BUILD_DIR "/handlers/echo.so";
constexpr char kPoisonPlugin[] = RUNNEL_BUILD_DIR "/handlers/poison.so";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// `runnel up` with its stdout and stderr in separate files (through a shell that execs it, so
// the child's wait status is runnel's own).
struct Up {
  std::unique_ptr<ChildProcess> process;
  std::unique_ptr<v1::StreamBroker::Stub> stub;
};

Up StartUp(const TempDir& dir, const std::string& yaml, const std::string& name) {
  const std::string yaml_path = dir.File(name + ".yaml");
  std::ofstream(yaml_path) << yaml;
  const std::string ready = dir.File(name + ".ready");
  std::string command = absl::StrCat(
      "exec '", RUNNEL_BINARY, "' up -f '", yaml_path, "' --listen 127.0.0.1:0 --data-dir '",
      dir.File("data"), "' --ready-file '", ready, "' 2>'", dir.File(name + ".err"), "'");
  Up up;
  auto process = ChildProcess::Start({"/bin/sh", "-c", command}, dir.File(name + ".out"));
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return up;
  up.process = std::move(*process);
  std::string address;
  bool ready_in_time = WaitFor(
      [&] {
        std::ifstream in(ready);
        return static_cast<bool>(std::getline(in, address)) && !address.empty();
      },
      absl::Seconds(60));
  EXPECT_TRUE(ready_in_time) << ReadAll(dir.File(name + ".err"));
  if (ready_in_time) up.stub = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(address));
  return up;
}

// Puts records in one request (in this order, one key); returns the last one's sequence number.
std::string Put(v1::StreamBroker::Stub& stub, const std::vector<std::string>& data) {
  std::vector<std::pair<std::string, std::string>> records;
  for (const std::string& d : data) records.emplace_back("key", d);
  grpc::Status status;
  v1::PutRecordsResponse response = PutRecords(stub, "events", records, &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.failed_record_count(), 0);
  return response.records_size() > 0
             ? response.records(response.records_size() - 1).sequence_number()
             : "";
}

// Sequence numbers as the broker writes them compare by length, then digit by digit.
bool AtOrAfter(const std::string& a, const std::string& b) {
  return a.size() != b.size() ? a.size() > b.size() : a >= b;
}

// The mapping's checkpoint on the stream's only shard ("" while there is none).
std::string Checkpoint(v1::StreamBroker::Stub& stub) {
  v1::ListCheckpointsRequest request;
  request.set_stream_name("events");
  v1::ListCheckpointsResponse response;
  grpc::ClientContext context;
  if (!stub.ListCheckpoints(&context, request, &response).ok()) return "";
  for (const v1::Checkpoint& checkpoint : response.checkpoints()) {
    if (!checkpoint.sequence_number().empty()) return checkpoint.sequence_number();
  }
  return "";
}

std::string Yaml(const std::string& function) {
  return absl::StrCat(
      "streams:\n  - name: events\n    shards: 1\n", "functions:\n  - name: orders\n", function,
      "event_source_mappings:\n  - function: orders\n    stream: events\n    batch_size: 1\n");
}

TEST(InProcessCrashTest, SaysWhichHandlerCrashedDiesOfItsSignalAndResumesAfterAFix) {
  TempDir dir("in-process-crash");
  Up up = StartUp(
      dir, Yaml(absl::StrCat("    plugin: ", kPoisonPlugin, "\n    isolation: in_process\n")),
      "crashing");
  ASSERT_NE(up.stub, nullptr);
  // Whatever goes wrong, runnel's own words are in the test's output.
  struct DumpOnFailure {
    const TempDir& dir;
    ~DumpOnFailure() {
      if (!::testing::Test::HasFailure()) return;
      for (const char* name : {"crashing.err", "fixed.err"}) {
        std::cerr << "--- " << name << ":\n" << ReadAll(dir.File(name)) << std::endl;
      }
    }
  } dump{dir};
  const std::string last_good = Put(*up.stub, {"a", "b"});
  ASSERT_TRUE(
      WaitFor([&] { return AtOrAfter(Checkpoint(*up.stub), last_good); }, absl::Seconds(30)))
      << "the good records were never checkpointed";
  // One request: runnel is gone soon after the first is delivered.
  Put(*up.stub, {"POISON:crash", "c"});

  absl::StatusOr<int> status = up.process->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << "runnel up did not die of the crash";
  EXPECT_TRUE(WIFSIGNALED(*status)) << "wait status " << *status;
  EXPECT_EQ(WTERMSIG(*status), SIGSEGV);
  const std::string err = ReadAll(dir.File("crashing.err"));
  std::smatch line;
  ASSERT_TRUE(std::regex_search(
      err, line,
      std::regex("runnel: function orders \\(isolation: in_process\\) crashed with SIGSEGV "
                 "\\(Segmentation fault\\) \\(mapping events/orders, shard shardId-000000000000, "
                 "request [0-9a-f-]{36}\\); runnel dies with it\\. Set `isolation: process` on the "
                 "function so that a crash fails only the invocation\\.\n")))
      << err;
  EXPECT_THAT(ReadAll(dir.File("crashing.out")), Not(HasSubstr("crashed with")))
      << "the line goes to stderr";

  // Fixed: the same function (so the same mapping and checkpoint), with a plugin that works.
  const std::string echo_file = dir.File("echo.txt");
  Up fixed = StartUp(dir,
                     Yaml(absl::StrCat("    plugin: ", kEchoPlugin,
                                       "\n    isolation: in_process\n    environment:\n"
                                       "      ECHO_FILE: ",
                                       echo_file, "\n")),
                     "fixed");
  ASSERT_NE(fixed.stub, nullptr);
  ASSERT_TRUE(WaitFor([&] { return ReadAll(echo_file).find("\tc\n") != std::string::npos; },
                      absl::Seconds(30)))
      << ReadAll(dir.File("fixed.err"));
  const std::string echoed = ReadAll(echo_file);
  EXPECT_THAT(echoed, HasSubstr("\tkey\tPOISON:crash\n")) << "the batch that crashed is retried";
  EXPECT_THAT(echoed, Not(HasSubstr("\tkey\ta\n"))) << "resumed from the checkpoint";
  EXPECT_THAT(echoed, Not(HasSubstr("\tkey\tb\n"))) << "resumed from the checkpoint";
}

}  // namespace
}  // namespace runnel::testing
