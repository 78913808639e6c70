// `runnel dlq redrive --id`: one failure record redriven alone, and at most once, whether the
// next redrive names it again or redrives everything; for both kinds of destination.
// (tests/integration/poller_test.cc covers list, show and the full redrive.)
#include <grpcpp/grpcpp.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/server.h"
#include "gtest/gtest.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

// The poison handler (a record carrying "POISON:fail" fails its invocation), bisecting down to
// single records, so each poison record ends in a failure record of its own.
std::string PoisonYaml(const std::string& on_failure) {
  return absl::StrCat(
      "streams:\n  - name: events\n    shards: 1\nfunctions:\n  - name: poison\n    plugin: ",
      RUNNEL_BUILD_DIR, "/handlers/poison.so\n    isolation: in_process\n",
      "event_source_mappings:\n  - function: poison\n    stream: events\n",
      "    batch_size: 8\n    maximum_batching_window: 1s\n    bisect_batch_on_error: true\n",
      "    retry_attempts: 0\n    on_failure: ", on_failure, "\n");
}

// `runnel up -f yaml` on a free port; its address once it is ready (empty if it did not start).
std::string StartUp(const TempDir& dir, std::unique_ptr<ChildProcess>* process) {
  const std::string ready = dir.File("ready");
  auto started =
      ChildProcess::Start({RUNNEL_BINARY, "up", "-f", dir.File("up.yaml"), "--listen",
                           "127.0.0.1:0", "--data-dir", dir.File("data"), "--ready-file", ready},
                          dir.File("up.log"));
  EXPECT_TRUE(started.ok()) << started.status();
  if (!started.ok()) return "";
  *process = std::move(*started);
  std::string address;
  const bool ready_in_time = WaitFor(
      [&] {
        std::ifstream in(ready);
        return static_cast<bool>(std::getline(in, address)) && !address.empty();
      },
      absl::Seconds(60));
  EXPECT_TRUE(ready_in_time) << "runnel up did not start; see " << dir.File("up.log");
  return ready_in_time ? address : "";
}

std::vector<std::string> Rows(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

std::string IdOf(const std::string& row) { return row.substr(0, row.find(' ')); }

std::vector<std::string> DataOf(const std::vector<v1::Record>& records) {
  std::vector<std::string> data;
  for (const auto& record : records) data.push_back(record.data());
  return data;
}

class DlqRedriveOneTest : public ::testing::TestWithParam<bool> {};

TEST_P(DlqRedriveOneTest, RedrivesOneFailureRecordOnce) {
  const bool to_stream = GetParam();
  TempDir dir(to_stream ? "dlq-one-stream" : "dlq-one-file");
  const std::string dest = to_stream ? "stream:events-dlq" : "file:" + dir.File("dlq.jsonl");
  std::ofstream(dir.File("up.yaml")) << PoisonYaml(dest);
  std::unique_ptr<ChildProcess> up;
  const std::string address = StartUp(dir, &up);
  ASSERT_FALSE(address.empty());
  auto stub = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(address));
  ASSERT_TRUE(CreateStream(*stub, "replay", 1).ok());
  grpc::Status status;
  PutRecords(*stub, "events",
             {{"k", "r0"}, {"k", "r1 POISON:fail"}, {"k", "r2"}, {"k", "r3 POISON:fail"}}, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), RUNNEL_BINARY);
    args.push_back("--broker");
    args.push_back(address);
    return RunCommand(args);
  };
  CommandResult listed;
  ASSERT_TRUE(WaitFor(
      [&] {
        listed = run({"dlq", "list", dest});
        return listed.exit_code == 0 && Rows(listed.out).size() == 3;  // header + two
      },
      absl::Seconds(60)))
      << listed.out << listed.err;
  const std::string first = IdOf(Rows(listed.out)[1]), second = IdOf(Rows(listed.out)[2]);
  auto replayed = [&] { return DataOf(ReadShard(*stub, "replay", "shardId-000000000000")); };

  // The second alone: the first stays where it is.
  CommandResult dry = run({"dlq", "redrive", dest, "--to", "replay", "--id", second, "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_EQ(dry.out, absl::StrCat("would redrive ", second, ": 1 records to replay\n"));
  EXPECT_TRUE(replayed().empty());
  CommandResult one = run({"dlq", "redrive", dest, "--to", "replay", "--id", second});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(one.out, absl::StrCat("redrove ", second, ": 1 records to replay\n"));
  EXPECT_EQ(replayed(), std::vector<std::string>{"r3 POISON:fail"});

  // Once: naming it again puts nothing.
  CommandResult again = run({"dlq", "redrive", dest, "--to", "replay", "--id", second});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("redriven before: nothing put"), std::string::npos) << again.out;
  EXPECT_EQ(replayed().size(), 1u);
  // The listing and show know it.
  std::vector<std::string> rows = Rows(run({"dlq", "list", dest}).out);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_NE(rows[1].find(" no "), std::string::npos) << rows[1];
  EXPECT_NE(rows[2].find(" yes "), std::string::npos) << rows[2];
  EXPECT_NE(run({"dlq", "show", dest, second}).out.find("(redriven)"), std::string::npos);
  EXPECT_NE(run({"dlq", "show", dest, second, "--output", "json"}).out.find("\"redriven\":true"),
            std::string::npos);

  // A full redrive puts only the one left, and then nothing is left.
  CommandResult rest = run({"dlq", "redrive", dest, "--to", "replay"});
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  EXPECT_NE(rest.out.find("redrove 1 failure records (1 records); 1 already redriven before"),
            std::string::npos)
      << rest.out;
  EXPECT_EQ(replayed(), (std::vector<std::string>{"r3 POISON:fail", "r1 POISON:fail"}));
  EXPECT_NE(run({"dlq", "redrive", dest, "--to", "replay", "--id", first}).out.find("before"),
            std::string::npos);
  EXPECT_NE(run({"dlq", "redrive", dest, "--to", "replay"}).out.find("redrove 0 failure records"),
            std::string::npos);
  EXPECT_EQ(replayed().size(), 2u);

  CommandResult unknown = run({"dlq", "redrive", dest, "--id", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no entry nope in"), std::string::npos) << unknown.err;
}

INSTANTIATE_TEST_SUITE_P(Destinations, DlqRedriveOneTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Stream" : "File"; });

}  // namespace
}  // namespace runnel::testing
