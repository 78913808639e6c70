// Function::Load refuses every broken plugin at start-up, in both isolation modes, with an error
// that names the file and what is wrong; and the configuration checks and path resolution.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "runnel/runtime/function.h"
#include "tests/runtime/test_util.h"

namespace runnel::runtime {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TempDir;
using testing::TestConfig;

class LoaderTest : public ::testing::TestWithParam<Isolation> {
 protected:
  absl::Status Load(const std::string& plugin) {
    absl::StatusOr<std::unique_ptr<Function>> function =
        Function::Load(TestConfig("loader-fn", plugin, GetParam()));
    return function.status();
  }
};

TEST_P(LoaderTest, MissingFile) {
  absl::Status status = Load("/nonexistent/dir/handler.so");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("loader-fn"), HasSubstr("/nonexistent/dir/handler.so"),
                    HasSubstr("no such file")));
}

TEST_P(LoaderTest, FileThatIsNotASharedLibrary) {
  TempDir dir;
  testing::WriteFile(dir.File("text.so"), "this is not an ELF file\n");
  absl::Status status = Load(dir.File("text.so"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr(dir.File("text.so")), HasSubstr("not a loadable shared library")));
}

TEST_P(LoaderTest, Directory) {
  TempDir dir;
  absl::Status status = Load(dir.path());
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr(dir.path()), HasSubstr("not a regular file")));
}

TEST_P(LoaderTest, SharedLibraryWithoutTheEntrySymbol) {
  absl::Status status = Load(NO_ENTRY_PLUGIN);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr(NO_ENTRY_PLUGIN), HasSubstr("not a runnel handler"),
                    HasSubstr("runnel_handler_entry")));
}

TEST_P(LoaderTest, WrongAbiVersion) {
  absl::Status status = Load(ABI_MISMATCH_PLUGIN);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr(ABI_MISMATCH_PLUGIN), HasSubstr("ABI version 999"),
                    HasSubstr("speaks version 1")));
}

TEST_P(LoaderTest, EntryTableWithoutHandle) {
  absl::Status status = Load(MALFORMED_TABLE_PLUGIN);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr(MALFORMED_TABLE_PLUGIN), HasSubstr("malformed entry table")));
}

TEST_P(LoaderTest, InitThatThrows) {
  absl::Status status = Load(INIT_THROWS_PLUGIN);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr(INIT_THROWS_PLUGIN), HasSubstr("Init failed"),
                    HasSubstr("std::invalid_argument: missing setting TABLE_NAME")));
}

TEST_P(LoaderTest, GoodPluginLoads) {
  absl::StatusOr<std::unique_ptr<Function>> function =
      Function::Load(TestConfig("good", PROBE_PLUGIN, GetParam()));
  ASSERT_TRUE(function.ok()) << function.status();
  EXPECT_EQ((*function)->config().name, "good");
}

TEST_P(LoaderTest, InvalidConfigurationIsRefusedBeforeLoading) {
  FunctionConfig config = TestConfig("cfg", PROBE_PLUGIN, GetParam());
  config.memory_size_mb = 64;
  EXPECT_THAT(std::string(Function::Load(config).status().message()),
              AllOf(HasSubstr("function cfg"), HasSubstr("memory_size")));
}

INSTANTIATE_TEST_SUITE_P(BothModes, LoaderTest,
                         ::testing::Values(Isolation::kProcess, Isolation::kInProcess),
                         [](const auto& info) { return std::string(IsolationName(info.param)); });

TEST(LoaderProcessTest, UnrunnableWorkerBinaryIsAnError) {
  FunctionConfig config = TestConfig("w", PROBE_PLUGIN, Isolation::kProcess);
  config.worker_binary = "/nonexistent/runnel";
  absl::Status status = Function::Load(config).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("/nonexistent/runnel"));
}

TEST(FunctionConfigTest, ValidatesLambdasRanges) {
  FunctionConfig config;
  config.name = "f";
  config.plugin = "x.so";
  EXPECT_TRUE(ValidateFunctionConfig(config).ok());
  config.timeout = absl::ZeroDuration();
  EXPECT_THAT(std::string(ValidateFunctionConfig(config).message()), HasSubstr("timeout"));
  config.timeout = absl::Seconds(901);
  EXPECT_FALSE(ValidateFunctionConfig(config).ok());
  config.timeout = absl::Milliseconds(250);  // fractions are a runnel extension
  EXPECT_TRUE(ValidateFunctionConfig(config).ok());
  config.memory_size_mb = 10241;
  EXPECT_THAT(std::string(ValidateFunctionConfig(config).message()), HasSubstr("memory_size"));
  config.memory_size_mb = 10240;
  EXPECT_TRUE(ValidateFunctionConfig(config).ok());
  config.max_concurrency = -1;
  EXPECT_THAT(std::string(ValidateFunctionConfig(config).message()), HasSubstr("max_concurrency"));
  config.max_concurrency = 0;
  config.plugin.clear();
  EXPECT_THAT(std::string(ValidateFunctionConfig(config).message()), HasSubstr("plugin"));
  config.plugin = "x.so";
  config.name.clear();
  EXPECT_THAT(std::string(ValidateFunctionConfig(config).message()), HasSubstr("name"));
}

TEST(FunctionConfigTest, ParsesIsolation) {
  EXPECT_EQ(*ParseIsolation("process"), Isolation::kProcess);
  EXPECT_EQ(*ParseIsolation("in_process"), Isolation::kInProcess);
  EXPECT_THAT(std::string(ParseIsolation("thread").status().message()), HasSubstr("thread"));
}

TEST(FunctionConfigTest, RelativePluginPathsResolveAgainstTheYamlFolder) {
  EXPECT_EQ(ResolvePluginPath("handlers/x.so", "/etc/runnel"), "/etc/runnel/handlers/x.so");
  EXPECT_EQ(ResolvePluginPath("x.so", "/etc/runnel/"), "/etc/runnel/x.so");
  EXPECT_EQ(ResolvePluginPath("/abs/x.so", "/etc/runnel"), "/abs/x.so");
  EXPECT_EQ(ResolvePluginPath("../lib/x.so", "deploy"), "deploy/../lib/x.so");
}

TEST(FunctionConfigTest, LoadUsesTheResolvedPath) {
  FunctionConfig config = TestConfig("resolved", "written/in/yaml.so", Isolation::kInProcess);
  config.plugin_path = PROBE_PLUGIN;
  EXPECT_TRUE(Function::Load(config).ok());
}

}  // namespace
}  // namespace runnel::runtime
