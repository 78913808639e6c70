// `runnel dlq` on damaged `file:` destinations (no broker needed): a line that is no failure
// record makes `dlq list` list the others and exit 1 naming FILE:LINE; an unfinished last line
// (an interrupted write) is only a warning; a damaged `PATH.redriven` mark is an error, never
// read as "nothing redriven yet" (which would redrive everything again).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "poller/failure_record.h"

namespace runnel::poller {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + std::to_string(::getpid()) + "-" + name;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

Result RunRunnel(const std::string& args) {
  const std::string out = TempPath("dlq_cli_out"), err = TempPath("dlq_cli_err");
  const std::string command = std::string("'") + RUNNEL_BINARY + "' " + args +
                              " --broker 127.0.0.1:1 >'" + out + "' 2>'" + err + "'";
  const int status = std::system(command.c_str());
  Result result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = ReadAll(out);
  result.err = ReadAll(err);
  return result;
}

std::string Line(int id) {
  FailureRecord record;
  record.request_id = "req-" + std::to_string(id);
  record.condition = "RetryAttemptsExhausted";
  record.shard_id = "shardId-000000000000";
  record.start_sequence_number = std::to_string(100 + id);
  record.end_sequence_number = std::to_string(100 + id);
  record.batch_size = 1;
  return FailureRecordToJson(record) + "\n";
}

class DlqFileCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TempPath(::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::remove((path_ + ".redriven").c_str());
  }
  void TearDown() override {
    std::remove(path_.c_str());
    std::remove((path_ + ".redriven").c_str());
  }
  std::string path_;
};

TEST_F(DlqFileCliTest, ACorruptLineFailsListNamingFileAndLineAndTheOthersAreListed) {
  std::ofstream(path_) << Line(1) << "{\"requestContext\":{\"requ\x01garbled\n" << Line(3);
  Result r = RunRunnel("dlq list 'file:" + path_ + "'");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(path_ + ":2: not a failure record"));
  EXPECT_THAT(r.err, HasSubstr("is corrupt: 1 of 3 entries"));
  EXPECT_THAT(r.out, HasSubstr("101"));  // line 1's first sequence number
  EXPECT_THAT(r.out, HasSubstr("103"));  // line 3's, after the bad one
}

TEST_F(DlqFileCliTest, AnUnfinishedLastLineIsAWarningNotCorruption) {
  const std::string partial = Line(2).substr(0, 60);
  std::ofstream(path_) << Line(1) << partial;
  Result r = RunRunnel("dlq list 'file:" + path_ + "'");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(path_ + ":2: ignoring an unfinished last line of 60 bytes"));
  EXPECT_THAT(r.out, HasSubstr("101"));
  EXPECT_THAT(r.err, Not(HasSubstr("not a failure record")));
}

TEST_F(DlqFileCliTest, ADamagedRedriveMarkIsAnErrorForListAndRedrive) {
  std::ofstream(path_) << Line(1) << Line(2);
  std::ofstream(path_ + ".redriven") << "\x7f"
                                        "ELF garbage\n";
  Result listed = RunRunnel("dlq list 'file:" + path_ + "'");
  EXPECT_EQ(listed.exit_code, 1) << listed.out << listed.err;
  EXPECT_THAT(listed.err, HasSubstr(path_ + ".redriven is damaged"));
  Result redrive = RunRunnel("dlq redrive 'file:" + path_ + "' --to elsewhere");
  EXPECT_EQ(redrive.exit_code, 1) << redrive.out << redrive.err;
  EXPECT_THAT(redrive.err, HasSubstr(path_ + ".redriven is damaged"));
  EXPECT_THAT(redrive.out, Not(HasSubstr("redrove")));
  // A good mark reads as before.
  std::ofstream(path_ + ".redriven", std::ios::trunc) << "1\n";
  Result good = RunRunnel("dlq list 'file:" + path_ + "'");
  EXPECT_EQ(good.exit_code, 0) << good.err;
}

}  // namespace
}  // namespace runnel::poller
