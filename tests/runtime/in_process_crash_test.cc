// The last line of an in_process handler that crashes the process: formatted before each call,
// written from the signal handler, then the process dies of the same signal.
#include "runtime/in_process_crash.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "common/logging.h"
#include "runnel/runtime/function.h"
#include "tests/runtime/test_util.h"

namespace runnel::runtime {
namespace {

TEST(CrashNoteTest, NamesFunctionMappingShardAndRequestAndRecommendsProcessIsolation) {
  CrashNoteScope note("orders", "events/orders", "shardId-000000000002", "req-1");
  EXPECT_EQ(CrashNoteForTest(SIGBUS),
            "runnel: function orders (isolation: in_process) crashed with SIGBUS (Bus error) "
            "(mapping events/orders, shard shardId-000000000002, request req-1); runnel dies "
            "with it. Set `isolation: process` on the function so that a crash fails only the "
            "invocation.\n");
}

TEST(CrashNoteTest, InitAndMissingContextAreSaidSo) {
  {
    CrashNoteScope note("orders", "", "", "");
    EXPECT_THAT(std::string(CrashNoteForTest(SIGABRT)),
                ::testing::StartsWith("runnel: function orders (isolation: in_process) crashed "
                                      "with SIGABRT (Aborted) in its Init; runnel dies"));
  }
  CrashNoteScope note("orders", "", "", "req-2");
  EXPECT_THAT(std::string(CrashNoteForTest(SIGFPE)),
              ::testing::HasSubstr("(mapping none, shard none, request req-2)"));
}

TEST(CrashNoteTest, OverlongNamesAreCutNotOverflowed) {
  const std::string huge(5000, 'x');
  CrashNoteScope note(huge, huge, huge, huge);
  std::string line(CrashNoteForTest(SIGSEGV));
  EXPECT_LT(line.size(), 1024u);
  EXPECT_THAT(line, ::testing::StartsWith("runnel: function xxx"));
  EXPECT_THAT(line, ::testing::EndsWith("invocation.\n"));
}

// In a forked copy of this test: a real in_process call that crashes.
TEST(CrashNoteDeathTest, AnInProcessCrashWritesTheLineAndDiesOfItsSignal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto crash = [](const char* marker) {
    FunctionConfig config = testing::TestConfig("poison", POISON_PLUGIN, Isolation::kInProcess);
    auto function = Function::Load(config);
    if (!function.ok()) return;
    ScopedLogTags tags{{kTagMapping, "events/poison"}};
    RecordView view{"pk", "1", marker, 0};
    InvokeRequest request;
    request.shard_id = "shardId-000000000001";
    request.request_id = "req-crash";
    request.records = std::span<const RecordView>(&view, 1);
    (*function)->Invoke(request);
  };
  EXPECT_EXIT(crash("POISON:crash"), ::testing::KilledBySignal(SIGSEGV),
              "runnel: function poison \\(isolation: in_process\\) crashed with SIGSEGV "
              "\\(Segmentation fault\\) \\(mapping events/poison, shard shardId-000000000001, "
              "request req-crash\\); runnel dies with it\\. Set `isolation: process`");
  EXPECT_EXIT(crash("POISON:abort"), ::testing::KilledBySignal(SIGABRT),
              "crashed with SIGABRT \\(Aborted\\) \\(mapping events/poison");
}

TEST(CrashNoteDeathTest, CrashesOutsideAHandlerCallAreLeftAlone) {
#if defined(__SANITIZE_ADDRESS__)
  // Under AddressSanitizer the handler before runnel's is ASan's own, which prints its report and
  // exits with a status instead of dying of the signal: "as before" then means that report.
  GTEST_SKIP() << "AddressSanitizer handles SIGSEGV outside handler calls";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Once the handlers are installed, a crash outside any handler call dies as before, silently.
  { CrashNoteScope installs("f", "m", "s", "r"); }
  EXPECT_EXIT(::raise(SIGSEGV), ::testing::KilledBySignal(SIGSEGV), "^$");
}

}  // namespace
}  // namespace runnel::runtime
