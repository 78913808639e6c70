// `runnel validate` finds and checks every function's plugin as `runnel up` would (search path,
// a loadable runnel handler of this ABI version, loaded in a short-lived worker so that a
// crashing constructor cannot take validate down) and reports each problem at its `plugin:` key;
// `runnel up` and `runnel poller` make the same checks before they start or create anything.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/runtime/test_util.h"

namespace runnel {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunCommand;

// A file whose one function's `plugin:` key is at line 5, column 5.
std::string Yaml(const std::string& plugin, const std::string& more_functions = "") {
  return "streams:\n"
         "  - name: events\n"
         "functions:\n"
         "  - name: orders\n"
         "    plugin: " +
         plugin + "\n" + more_functions +
         "event_source_mappings:\n"
         "  - function: orders\n"
         "    stream: events\n";
}

struct Validated {
  testing::CommandResult result;
  std::string file;
};

Validated Validate(const testing::TempDir& dir, const std::string& yaml,
                   std::vector<std::string> extra = {}) {
  Validated v;
  v.file = dir.File("app.yaml");
  testing::WriteFile(v.file, yaml);
  std::vector<std::string> argv = {RUNNEL_BINARY, "validate", v.file};
  argv.insert(argv.end(), extra.begin(), extra.end());
  v.result = RunCommand(argv);
  return v;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(ValidatePluginTest, MissingPluginByNameIsReportedAtThePluginKeyListingWhereItLooked) {
  testing::TempDir dir;
  Validated v = Validate(dir, Yaml("no_such_handler"));
  EXPECT_EQ(v.result.exit_code, 1) << v.result.out;
  EXPECT_EQ(v.result.out, "");
  EXPECT_THAT(v.result.err, AllOf(HasSubstr(v.file + ":5:5: function orders: plugin "
                                                     "'no_such_handler' not found in "),
                                  HasSubstr(dir.path()), HasSubstr("--plugin-dir")));
  EXPECT_EQ(Count(v.result.err, "function orders"), 1u) << v.result.err;
}

TEST(ValidatePluginTest, MissingPluginByPath) {
  testing::TempDir dir;
  Validated v = Validate(dir, Yaml("handlers/missing.so"));
  EXPECT_EQ(v.result.exit_code, 1);
  EXPECT_THAT(v.result.err, HasSubstr(v.file + ":5:5: function orders: plugin " + dir.path() +
                                      "/handlers/missing.so: no such file"));
}

TEST(ValidatePluginTest, FileThatIsNotASharedLibrary) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("text.so"), "not an ELF file\n");
  Validated v = Validate(dir, Yaml("./text.so"));
  EXPECT_EQ(v.result.exit_code, 1);
  EXPECT_THAT(v.result.err, AllOf(HasSubstr(v.file + ":5:5: function orders: plugin "),
                                  HasSubstr("text.so: not a loadable shared library")));
}

TEST(ValidatePluginTest, SharedLibraryThatIsNotAPlugin) {
  testing::TempDir dir;
  Validated v = Validate(dir, Yaml(NO_ENTRY_PLUGIN));
  EXPECT_EQ(v.result.exit_code, 1);
  EXPECT_THAT(v.result.err, AllOf(HasSubstr(v.file + ":5:5: function orders: plugin "),
                                  HasSubstr("runnel_handler_entry")));
}

TEST(ValidatePluginTest, WrongAbiVersion) {
  testing::TempDir dir;
  Validated v = Validate(dir, Yaml(ABI_MISMATCH_PLUGIN));
  EXPECT_EQ(v.result.exit_code, 1);
  EXPECT_THAT(v.result.err,
              AllOf(HasSubstr(v.file + ":5:5: function orders: "), HasSubstr("ABI version 999")));
}

TEST(ValidatePluginTest, CrashingConstructorIsReportedNotSuffered) {
  testing::TempDir dir;
  Validated v = Validate(dir, Yaml(CRASHING_CONSTRUCTOR_PLUGIN));
  EXPECT_EQ(v.result.exit_code, 1) << "validate itself must not crash";
  EXPECT_EQ(v.result.signal, 0);
  EXPECT_THAT(v.result.err, AllOf(HasSubstr(v.file + ":5:5: function orders: "),
                                  HasSubstr("signal: SIGSEGV (Segmentation fault) while loading"),
                                  HasSubstr(CRASHING_CONSTRUCTOR_PLUGIN)));
}

TEST(ValidatePluginTest, EveryBadPluginIsReported) {
  testing::TempDir dir;
  Validated v = Validate(dir, Yaml("missing_one", "  - name: other\n    plugin: missing_two\n"));
  EXPECT_EQ(v.result.exit_code, 1);
  EXPECT_THAT(v.result.err,
              AllOf(HasSubstr(v.file + ":5:5: function orders: plugin 'missing_one'"),
                    HasSubstr(v.file + ":7:5: function other: plugin 'missing_two'")));
}

TEST(ValidatePluginTest, PluginsFoundOnTheSearchPathPass) {
  testing::TempDir dir;
  // By name from --plugin-dir (with or without .so), and from RUNNEL_PLUGIN_PATH's equivalent,
  // the build tree's handlers folder beside the binary.
  const std::string plugin_dir = std::filesystem::path(NO_ENTRY_PLUGIN).parent_path().string();
  Validated by_dir = Validate(dir, Yaml("test_probe"), {"--plugin-dir", plugin_dir});
  EXPECT_EQ(by_dir.result.exit_code, 0) << by_dir.result.err;
  EXPECT_THAT(by_dir.result.out, HasSubstr(": ok (1 stream, 1 function, 1 mapping)"));
  Validated by_build_tree = Validate(dir, Yaml("echo"));
  EXPECT_EQ(by_build_tree.result.exit_code, 0) << by_build_tree.result.err;
  Validated by_path = Validate(dir, Yaml(ECHO_PLUGIN));
  EXPECT_EQ(by_path.result.exit_code, 0) << by_path.result.err;
}

TEST(UpPluginCheckTest, BadPluginStopsUpBeforeItServesOrCreatesTheDataDirectory) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("app.yaml"), Yaml(ABI_MISMATCH_PLUGIN));
  auto r = RunCommand({RUNNEL_BINARY, "up", "-f", dir.File("app.yaml"), "--listen", "127.0.0.1:0",
                       "--data-dir", dir.File("data"), "--metrics", "off"},
                      "", absl::Seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr(dir.File("app.yaml") + ":5:5: function orders: "),
                           HasSubstr("ABI version 999")));
  EXPECT_EQ(Count(r.err, "function orders"), 1u) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("broker on")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("data"))) << "up created its data directory";
}

TEST(UpPluginCheckTest, CrashingConstructorStopsUpWithAMessage) {
  // in_process would load it into runnel itself: the check in a worker reports it first.
  testing::TempDir dir;
  testing::WriteFile(dir.File("app.yaml"), Yaml(std::string(CRASHING_CONSTRUCTOR_PLUGIN) +
                                                "\n    isolation: in_process"));
  auto r = RunCommand({RUNNEL_BINARY, "up", "-f", dir.File("app.yaml"), "--listen", "127.0.0.1:0",
                       "--data-dir", dir.File("data"), "--metrics", "off"},
                      "", absl::Seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_EQ(r.signal, 0);
  EXPECT_THAT(r.err, HasSubstr("SIGSEGV"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("data")));
}

TEST(UpPluginCheckTest, InitRefusalNamesTheFunctionOnce) {
  // Init runs only once up starts the function (validate does not run it); its error, too, is
  // reported at the plugin key, naming the function once.
  testing::TempDir dir;
  testing::WriteFile(dir.File("app.yaml"), Yaml(INIT_THROWS_PLUGIN));
  auto r = RunCommand({RUNNEL_BINARY, "up", "-f", dir.File("app.yaml"), "--listen", "127.0.0.1:0",
                       "--data-dir", dir.File("data"), "--metrics", "off"},
                      "", absl::Seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, AllOf(HasSubstr(dir.File("app.yaml") + ":5:5: function orders: "),
                           HasSubstr("missing setting TABLE_NAME")));
  EXPECT_EQ(Count(r.err, "function orders"), 1u) << r.err;
}

TEST(PollerPluginCheckTest, BadPluginStopsThePollerBeforeItReachesTheBroker) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("app.yaml"), Yaml("no_such_handler"));
  // Nothing listens on port 1: the plugin problem must come first, alone.
  auto r = RunCommand({RUNNEL_BINARY, "poller", "-f", dir.File("app.yaml"), "--broker",
                       "127.0.0.1:1", "--listen", "", "--metrics", "off"},
                      "", absl::Seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(dir.File("app.yaml") +
                               ":5:5: function orders: plugin 'no_such_handler' not found"));
  EXPECT_THAT(r.err, Not(HasSubstr("cannot reach")));
}

}  // namespace
}  // namespace runnel
