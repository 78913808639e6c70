// `runnel validate -f FILE`: the real binary's output and exit codes (0 valid, 1 invalid or
// unreadable, 2 usage).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace runnel {
namespace {

using ::testing::HasSubstr;

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// ctest runs each test in its own process, several at once: every name carries the pid.
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
  std::string out = TempPath("validate_cli_out");
  std::string err = TempPath("validate_cli_err");
  std::string command =
      std::string("'") + RUNNEL_BINARY + "' " + args + " >'" + out + "' 2>'" + err + "'";
  int status = std::system(command.c_str());
  Result result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = ReadAll(out);
  result.err = ReadAll(err);
  return result;
}

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = TempPath(name);
  std::ofstream(path) << text;
  return path;
}

TEST(ValidateCliTest, QuickStartFileIsOk) {
  std::string path = std::string(RUNNEL_SOURCE_DIR) + "/deploy/order-events.yaml";
  Result r = RunRunnel("validate -f '" + path + "'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, path + ": ok (2 streams, 1 function, 1 mapping)\n");
  EXPECT_EQ(r.err, "");
}

TEST(ValidateCliTest, FileAsPositionalArgument) {
  std::string path = WriteFile("validate_positional.yaml", "streams:\n  - name: a\n");
  Result r = RunRunnel("validate '" + path + "'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, path + ": ok (1 stream, 0 functions, 0 mappings)\n");
}

TEST(ValidateCliTest, ErrorsGoToStderrAsFileLineColumn) {
  std::string path =
      WriteFile("validate_bad.yaml", "streams:\n  - name: a\n    shards: 0\n    colour: red\n");
  Result r = RunRunnel("validate -f '" + path + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, path + ":3:13: streams[0].shards must be between 1 and 1024, got 0\n" + path +
                       ":4:5: unknown key 'colour' in streams[0]; valid keys: name, shards, "
                       "retention\n");
}

TEST(ValidateCliTest, UnreadableFileExitsOne) {
  Result r = RunRunnel("validate -f /nonexistent/runnel.yaml");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("runnel: "));
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/runnel.yaml"));
}

TEST(ValidateCliTest, MissingFileArgumentIsAUsageError) {
  Result r = RunRunnel("validate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("file"));
}

}  // namespace
}  // namespace runnel
