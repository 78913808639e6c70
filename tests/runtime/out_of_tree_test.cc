// The SDK as users get it: `cmake --install` runnel into a prefix, build a plugin out of tree with
// find_package(runnel) + runnel_add_handler, and run it with the installed `runnel invoke`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/runtime/test_util.h"

namespace runnel {
namespace {

using ::testing::HasSubstr;
using testing::RunCommand;

TEST(OutOfTreeBuildTest, PluginBuiltAgainstTheInstalledPackageRuns) {
  testing::TempDir dir;
  std::string prefix = dir.File("prefix");
  auto install = RunCommand({"cmake", "--install", RUNNEL_BUILD_DIR, "--prefix", prefix});
  ASSERT_EQ(install.exit_code, 0) << install.out << install.err;
  EXPECT_TRUE(std::filesystem::exists(prefix + "/include/runnel/handler.h"));
  EXPECT_TRUE(std::filesystem::exists(prefix + "/bin/runnel"));
  // Under the prefix, wherever the libdir is (lib, or lib/<multiarch> for /usr).
  auto installed = [&](const std::string& suffix) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(prefix)) {
      std::string path = entry.path().string();
      if (path.size() >= suffix.size() && path.substr(path.size() - suffix.size()) == suffix) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(installed("/cmake/runnel/runnelConfig.cmake"));
  EXPECT_TRUE(installed("/runnel/handlers/order_processor.so"));

  std::string build = dir.File("build");
  auto configure =
      RunCommand({"cmake", "-S", RUNNEL_SOURCE_DIR "/tests/runtime/out_of_tree", "-B", build, "-G",
                  "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_PREFIX_PATH=" + prefix});
  ASSERT_EQ(configure.exit_code, 0) << configure.out << configure.err;
  auto compile = RunCommand({"cmake", "--build", build});
  ASSERT_EQ(compile.exit_code, 0) << compile.out << compile.err;
  std::string plugin = build + "/greeter.so";
  ASSERT_TRUE(std::filesystem::exists(plugin));

  for (const char* isolation : {"process", "in_process"}) {
    auto ok = RunCommand({prefix + "/bin/runnel", "invoke", plugin, "--isolation", isolation,
                          "--env", "GREETING=hi", "--data", "world"});
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_EQ(ok.out, "{\"batchItemFailures\":[]}\n");
    EXPECT_THAT(ok.err, HasSubstr("[greeter] ["));
    EXPECT_THAT(ok.err, HasSubstr("] hi, world"));

    auto partial = RunCommand({prefix + "/bin/runnel", "invoke", plugin, "--isolation", isolation,
                               "--data", "good", "--data", "bad"});
    EXPECT_EQ(partial.exit_code, 1);
    EXPECT_THAT(partial.out, HasSubstr("\"itemIdentifier\":\"4965"));
  }
}

}  // namespace
}  // namespace runnel
