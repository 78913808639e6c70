// The failure policy, driven by scripted handlers: the exact sequence of invocations, waits,
// completions and discards for every rule of docs/aws-semantics.md (retries, bisect, record age,
// partial batch responses valid and invalid, unavailable handlers), and invariants (every record
// leaves exactly once, in order) over many generated cases. No clock, no threads: the test owns
// `now`.
#include "poller/failure_policy.h"

#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace runnel::poller {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using Kind = FailurePolicy::Action::Kind;
using runtime::InvokeResult;
using runtime::InvokeStatus;

constexpr int64_t kT0 = 1'700'000'000'000;

std::string Seq(size_t i) { return absl::StrFormat("4965%052d", i); }

InvokeResult Ok() { return InvokeResult{}; }
InvokeResult Status(InvokeStatus status) {
  InvokeResult r;
  r.status = status;
  if (status != InvokeStatus::kSuccess) {
    r.error_type = std::string(runtime::InvokeStatusName(status));
    r.error_message = "scripted";
  }
  return r;
}
InvokeResult Error() {
  InvokeResult r = Status(InvokeStatus::kFunctionError);
  r.error_type = "PoisonError";
  r.error_message = "bad record";
  return r;
}
InvokeResult ItemFailures(std::vector<std::string> ids) {
  InvokeResult r;
  r.status = InvokeStatus::kBatchItemFailures;
  r.batch_item_failures = std::move(ids);
  return r;
}

struct Invocation {
  size_t begin;
  size_t end;
  int attempt;
  int64_t now;
};

// One batch driven to the end. The handler sees each invocation (its records and attempt) and
// scripts the outcome; the trace is what the policy asked for, in order, with waits shown as
// their length ("wait 100") so that traces read without absolute times.
class LaneRun {
 public:
  using Handler = std::function<InvokeResult(const Invocation&)>;

  LaneRun(FailurePolicyOptions options, size_t n, std::vector<int64_t> arrivals = {}) {
    for (size_t i = 0; i < n; ++i) seqs_.push_back(Seq(i));
    if (arrivals.empty()) arrivals.assign(n, kT0);
    std::vector<PolicyRecord> records;
    for (size_t i = 0; i < n; ++i) records.push_back({seqs_[i], arrivals[i]});
    policy_.emplace(options, std::move(records));
    outcome_.assign(n, "");
  }

  // Drives the policy until kFinished. Each invocation takes `invoke_ms` of the test's clock.
  void Drive(const Handler& handler, int64_t invoke_ms = 0, int max_steps = 10'000) {
    for (int step = 0; step < max_steps; ++step) {
      FailurePolicy::Action a = policy_->Next(now_);
      switch (a.kind) {
        case Kind::kInvoke: {
          ASSERT_EQ(a.begin, front_) << "invocations start at the front";
          ASSERT_GT(a.end, a.begin);
          trace_.push_back(a.ToString());
          invocations_.push_back({a.begin, a.end, a.attempt, now_});
          InvokeResult result = handler(invocations_.back());
          now_ += invoke_ms;
          policy_->OnResult(result);
          break;
        }
        case Kind::kDone:
        case Kind::kDiscard:
          ASSERT_EQ(a.begin, front_) << "records leave in order: " << a.ToString();
          ASSERT_GT(a.end, a.begin) << a.ToString();
          trace_.push_back(a.ToString());
          for (size_t i = a.begin; i < a.end; ++i) {
            outcome_[i] = a.kind == Kind::kDone ? "done" : "discarded";
          }
          front_ = a.end;
          if (a.kind == Kind::kDiscard) discards_.push_back(a);
          break;
        case Kind::kWait:
          ASSERT_GT(a.until_ms, now_) << "a wait must be in the future";
          trace_.push_back(absl::StrCat("wait ", a.until_ms - now_));
          now_ = a.until_ms;
          break;
        case Kind::kFinished:
          ASSERT_EQ(front_, seqs_.size()) << "finished with records left";
          ASSERT_TRUE(policy_->finished());
          // Finished is stable.
          ASSERT_EQ(policy_->Next(now_ + 1).kind, Kind::kFinished);
          return;
      }
    }
    FAIL() << "did not finish; trace: " << absl::StrJoin(trace_, "\n");
  }

  // A handler that fails (function error) any invocation containing a poison record.
  static Handler Poison(std::set<size_t> poison) {
    return [poison](const Invocation& inv) {
      for (size_t i = inv.begin; i < inv.end; ++i) {
        if (poison.count(i)) return Error();
      }
      return Ok();
    };
  }

  const std::vector<std::string>& trace() const { return trace_; }
  const std::vector<FailurePolicy::Action>& discards() const { return discards_; }
  const std::vector<Invocation>& invocations() const { return invocations_; }
  const std::vector<std::string>& outcome() const { return outcome_; }
  int64_t now() const { return now_; }
  const std::string& seq(size_t i) const { return seqs_[i]; }
  FailurePolicy& policy() { return *policy_; }
  void set_now(int64_t now) { now_ = now; }

  // How many invocations contained record i.
  int InvocationsOf(size_t i) const {
    int n = 0;
    for (const Invocation& inv : invocations_) n += inv.begin <= i && i < inv.end;
    return n;
  }

 private:
  std::vector<std::string> seqs_;
  std::optional<FailurePolicy> policy_;
  int64_t now_ = kT0;
  size_t front_ = 0;
  std::vector<std::string> trace_;
  std::vector<Invocation> invocations_;
  std::vector<FailurePolicy::Action> discards_;
  std::vector<std::string> outcome_;
};

FailurePolicyOptions Options(int retries, bool bisect, bool report = false,
                             int64_t max_age_ms = kNoMaxAge) {
  FailurePolicyOptions o;
  o.retry_attempts = retries;
  o.bisect_batch_on_error = bisect;
  o.report_batch_item_failures = report;
  o.max_record_age_ms = max_age_ms;
  return o;
}

// --- The issue's test: a batch of 8 with one poison record -------------------------------------

TEST(FailurePolicyTest, BisectIsolatesOnePoisonRecordInABatchOfEight) {
  LaneRun run(Options(/*retries=*/2, /*bisect=*/true), 8);
  run.Drive(LaneRun::Poison({5}));
  EXPECT_THAT(
      run.trace(),
      ElementsAre("invoke [0,8) #1", "wait 100",                                   //
                  "invoke [0,4) #1", "done [0,4)", "invoke [4,8) #1", "wait 100",  //
                  "invoke [4,6) #1", "wait 200",                                   //
                  "invoke [4,5) #1", "done [4,5)",
                  // The poison record alone: N + 1 = 3 invocations.
                  "invoke [5,6) #1", "wait 100",  //
                  "invoke [5,6) #2", "wait 200",  //
                  "invoke [5,6) #3", "discard [5,6) RetryAttemptsExhausted count=3 Unhandled",
                  // Retries exhausted: the records behind go at once.
                  "invoke [6,8) #1", "done [6,8)"));
  // What reaches the dead-letter destination: exactly the poison record, once.
  ASSERT_EQ(run.discards().size(), 1u);
  const FailurePolicy::Action& dead = run.discards()[0];
  EXPECT_EQ(dead.begin, 5u);
  EXPECT_EQ(dead.end, 6u);
  EXPECT_EQ(dead.condition, DiscardCondition::kRetryAttemptsExhausted);
  EXPECT_EQ(dead.approximate_invoke_count, 3);
  EXPECT_EQ(dead.last_response, LastResponse::kFunctionError);
  EXPECT_EQ(dead.error_type, "PoisonError");
  EXPECT_EQ(dead.error_message, "bad record");
  EXPECT_THAT(run.outcome(),
              ElementsAre("done", "done", "done", "done", "done", "discarded", "done", "done"));
  // On its way down the poison record was in [0,8), [4,8), [4,6), then alone three times.
  EXPECT_EQ(run.InvocationsOf(5), 6);
  // Three splits: [0,8), [4,8), [4,6) (what runnel_poller_bisects_total counts).
  EXPECT_EQ(run.policy().bisections(), 3);
}

TEST(FailurePolicyTest, BisectPoisonFirst) {
  LaneRun run(Options(2, true), 8);
  run.Drive(LaneRun::Poison({0}));
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,8) #1", "wait 100", "invoke [0,4) #1", "wait 200",
                                       "invoke [0,2) #1", "wait 400", "invoke [0,1) #1", "wait 800",
                                       "invoke [0,1) #2", "wait 1600", "invoke [0,1) #3",
                                       "discard [0,1) RetryAttemptsExhausted count=3 Unhandled",
                                       "invoke [1,2) #1", "done [1,2)", "invoke [2,4) #1",
                                       "done [2,4)", "invoke [4,8) #1", "done [4,8)"));
}

TEST(FailurePolicyTest, BisectPoisonLast) {
  LaneRun run(Options(2, true), 8);
  run.Drive(LaneRun::Poison({7}));
  EXPECT_THAT(
      run.trace(),
      ElementsAre("invoke [0,8) #1", "wait 100", "invoke [0,4) #1", "done [0,4)", "invoke [4,8) #1",
                  "wait 100", "invoke [4,6) #1", "done [4,6)", "invoke [6,8) #1", "wait 100",
                  "invoke [6,7) #1", "done [6,7)", "invoke [7,8) #1", "wait 100", "invoke [7,8) #2",
                  "wait 200", "invoke [7,8) #3",
                  "discard [7,8) RetryAttemptsExhausted count=3 Unhandled"));
}

// Wherever the poison record is, bisect discards exactly it, after N + 1 invocations of it
// alone plus the log2(8) = 3 ranges that contained it on the way down.
TEST(FailurePolicyTest, BisectPoisonAnywhereInEight) {
  for (size_t poison = 0; poison < 8; ++poison) {
    for (int retries : {0, 1, 2, 5}) {
      SCOPED_TRACE(absl::StrCat("poison ", poison, " retries ", retries));
      LaneRun run(Options(retries, true), 8);
      run.Drive(LaneRun::Poison({poison}));
      ASSERT_EQ(run.discards().size(), 1u);
      EXPECT_EQ(run.discards()[0].begin, poison);
      EXPECT_EQ(run.discards()[0].end, poison + 1);
      EXPECT_EQ(run.discards()[0].approximate_invoke_count, retries + 1);
      EXPECT_EQ(run.InvocationsOf(poison), retries + 1 + 3);
      for (size_t i = 0; i < 8; ++i) {
        EXPECT_EQ(run.outcome()[i], i == poison ? "discarded" : "done") << i;
        // A good record is invoked until the range holding it succeeds, and never after.
        if (i != poison) {
          EXPECT_LE(run.InvocationsOf(i), 4) << i;
        }
      }
    }
  }
}

TEST(FailurePolicyTest, BisectTwoPoisonRecords) {
  LaneRun run(Options(1, true), 8);
  run.Drive(LaneRun::Poison({2, 5}));
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,8) #1", "wait 100", "invoke [0,4) #1", "wait 200",
                                       "invoke [0,2) #1", "done [0,2)",  //
                                       "invoke [2,4) #1", "wait 100", "invoke [2,3) #1", "wait 200",
                                       "invoke [2,3) #2",
                                       "discard [2,3) RetryAttemptsExhausted count=2 Unhandled",
                                       "invoke [3,4) #1", "done [3,4)",  //
                                       "invoke [4,8) #1", "wait 100", "invoke [4,6) #1", "wait 200",
                                       "invoke [4,5) #1", "done [4,5)",  //
                                       "invoke [5,6) #1", "wait 100", "invoke [5,6) #2",
                                       "discard [5,6) RetryAttemptsExhausted count=2 Unhandled",
                                       "invoke [6,8) #1", "done [6,8)"));
  EXPECT_THAT(run.outcome(), ElementsAre("done", "done", "discarded", "done", "done", "discarded",
                                         "done", "done"));
}

TEST(FailurePolicyTest, BisectOddSizesPutTheSmallerHalfFirst) {
  LaneRun run(Options(0, true), 5);
  run.Drive(LaneRun::Poison({4}));
  EXPECT_THAT(
      run.trace(),
      ElementsAre("invoke [0,5) #1", "wait 100", "invoke [0,2) #1", "done [0,2)", "invoke [2,5) #1",
                  "wait 100", "invoke [2,3) #1", "done [2,3)", "invoke [3,5) #1", "wait 100",
                  "invoke [3,4) #1", "done [3,4)", "invoke [4,5) #1",
                  "discard [4,5) RetryAttemptsExhausted count=1 Unhandled"));
}

// retry_attempts 0 still bisects: splitting does not use up retries.
TEST(FailurePolicyTest, BisectWithZeroRetries) {
  LaneRun run(Options(0, true), 8);
  run.Drive(LaneRun::Poison({5}));
  EXPECT_THAT(
      run.trace(),
      ElementsAre("invoke [0,8) #1", "wait 100", "invoke [0,4) #1", "done [0,4)", "invoke [4,8) #1",
                  "wait 100", "invoke [4,6) #1", "wait 200", "invoke [4,5) #1", "done [4,5)",
                  "invoke [5,6) #1", "discard [5,6) RetryAttemptsExhausted count=1 Unhandled",
                  "invoke [6,8) #1", "done [6,8)"));
}

// --- Without bisect: the whole batch is retried and discarded ----------------------------------

TEST(FailurePolicyTest, WithoutBisectTheWholeBatchIsDiscarded) {
  LaneRun run(Options(2, false), 8);
  run.Drive(LaneRun::Poison({5}));
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,8) #1", "wait 100", "invoke [0,8) #2", "wait 200",
                                       "invoke [0,8) #3",
                                       "discard [0,8) RetryAttemptsExhausted count=3 Unhandled"));
  EXPECT_EQ(run.discards()[0].error_type, "PoisonError");
  EXPECT_EQ(run.policy().bisections(), 0);
}

TEST(FailurePolicyTest, ZeroRetriesMeansOneInvocation) {
  LaneRun run(Options(0, false), 3);
  run.Drive(LaneRun::Poison({1}));
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,3) #1",
                                       "discard [0,3) RetryAttemptsExhausted count=1 Unhandled"));
}

TEST(FailurePolicyTest, SingleRecordBatch) {
  LaneRun run(Options(1, true), 1);
  run.Drive(LaneRun::Poison({0}));
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,1) #1", "wait 100", "invoke [0,1) #2",
                                       "discard [0,1) RetryAttemptsExhausted count=2 Unhandled"));
}

TEST(FailurePolicyTest, SuccessAtOnce) {
  LaneRun run(Options(2, true), 4);
  run.Drive(LaneRun::Poison({}));
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,4) #1", "done [0,4)"));
}

TEST(FailurePolicyTest, TransientErrorRecovers) {
  LaneRun run(Options(3, false), 4);
  int calls = 0;
  run.Drive([&](const Invocation&) { return ++calls <= 2 ? Error() : Ok(); });
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,4) #1", "wait 100", "invoke [0,4) #2", "wait 200",
                                       "invoke [0,4) #3", "done [0,4)"));
}

// Every kind of function error counts toward the retries (docs/aws-semantics.md#function-errors).
TEST(FailurePolicyTest, EveryFunctionErrorCounts) {
  for (InvokeStatus status :
       {InvokeStatus::kFunctionError, InvokeStatus::kTimeout, InvokeStatus::kCrash,
        InvokeStatus::kMemoryExceeded, InvokeStatus::kInvalidResponse}) {
    SCOPED_TRACE(runtime::InvokeStatusName(status));
    LaneRun run(Options(1, false, /*report=*/true), 2);
    run.Drive([&](const Invocation&) { return Status(status); });
    EXPECT_THAT(run.trace(), ElementsAre("invoke [0,2) #1", "wait 100", "invoke [0,2) #2",
                                         "discard [0,2) RetryAttemptsExhausted count=2 Unhandled"));
    EXPECT_EQ(run.discards()[0].error_type, std::string(runtime::InvokeStatusName(status)));
  }
}

// --- Back-off ---------------------------------------------------------------------------------

TEST(FailurePolicyTest, BackoffDoublesFrom100msToA10sCap) {
  LaneRun run(Options(-1, false), 2);
  int calls = 0;
  run.Drive([&](const Invocation&) { return ++calls <= 10 ? Error() : Ok(); });
  std::vector<std::string> expected;
  const int64_t waits[] = {100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000};
  for (int i = 0; i < 10; ++i) {
    expected.push_back(absl::StrCat("invoke [0,2) #", i + 1));
    expected.push_back(absl::StrCat("wait ", waits[i]));
  }
  expected.push_back("invoke [0,2) #11");
  expected.push_back("done [0,2)");
  EXPECT_THAT(run.trace(), ElementsAreArray(expected));
}

// The back-off runs from the first Next after the failure, so time spent in the invocation does
// not shorten it, and asking again while waiting does not move it.
TEST(FailurePolicyTest, WaitIsStableUntilItPasses) {
  FailurePolicy policy(Options(-1, false), {{"1", kT0}});
  ASSERT_EQ(policy.Next(kT0).kind, Kind::kInvoke);
  policy.OnResult(Error());
  FailurePolicy::Action wait = policy.Next(kT0 + 5000);
  ASSERT_EQ(wait.kind, Kind::kWait);
  EXPECT_EQ(wait.until_ms, kT0 + 5100);
  EXPECT_EQ(policy.Next(kT0 + 5050).until_ms, kT0 + 5100);
  EXPECT_EQ(policy.Next(kT0 + 5099).kind, Kind::kWait);
  FailurePolicy::Action invoke = policy.Next(kT0 + 5100);
  EXPECT_EQ(invoke.kind, Kind::kInvoke);
  EXPECT_EQ(invoke.attempt, 2);
}

// Next before OnResult repeats the invocation instead of moving on.
TEST(FailurePolicyTest, NextWhileInFlightRepeatsTheInvocation) {
  FailurePolicy policy(Options(2, true), {{"1", kT0}, {"2", kT0}});
  FailurePolicy::Action first = policy.Next(kT0);
  FailurePolicy::Action again = policy.Next(kT0 + 100000);
  EXPECT_EQ(again.ToString(), first.ToString());
  EXPECT_EQ(again.ToString(), "invoke [0,2) #1");
  policy.OnResult(Ok());
  EXPECT_EQ(policy.Next(kT0).ToString(), "done [0,2)");
  EXPECT_TRUE(policy.finished());
  EXPECT_EQ(policy.Next(kT0).ToString(), "finished");
}

// --- Unavailable: the handler never ran ---------------------------------------------------------

TEST(FailurePolicyTest, UnavailableIsNotCountedAndDoesNotBisect) {
  LaneRun run(Options(1, true), 4);
  std::vector<InvokeResult> script = {Status(InvokeStatus::kUnavailable),
                                      Status(InvokeStatus::kUnavailable), Ok()};
  size_t next = 0;
  run.Drive([&](const Invocation&) { return script.at(next++); });
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,4) #1", "wait 100", "invoke [0,4) #1", "wait 200",
                                       "invoke [0,4) #1", "done [0,4)"));
}

TEST(FailurePolicyTest, UnavailableBetweenFunctionErrors) {
  LaneRun run(Options(1, false), 2);
  std::vector<InvokeResult> script = {Status(InvokeStatus::kUnavailable),
                                      Status(InvokeStatus::kUnavailable), Error(),
                                      Status(InvokeStatus::kUnavailable), Error()};
  size_t next = 0;
  run.Drive([&](const Invocation&) { return script.at(next++); });
  // The back-off keeps growing (the streak counts every failed invocation) while the attempt
  // number only moves on function errors.
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,2) #1", "wait 100", "invoke [0,2) #1", "wait 200",
                                       "invoke [0,2) #1", "wait 400", "invoke [0,2) #2", "wait 800",
                                       "invoke [0,2) #2",
                                       "discard [0,2) RetryAttemptsExhausted count=2 Unhandled"));
}

// A handler that never runs is retried past retry_attempts, until the records are too old; the
// discard says the records never reached the function.
TEST(FailurePolicyTest, UnavailableUntilRecordAgeExpires) {
  LaneRun run(Options(0, false, false, /*max_age_ms=*/60'000), 2);
  run.Drive([](const Invocation&) { return Status(InvokeStatus::kUnavailable); });
  ASSERT_EQ(run.discards().size(), 1u);
  EXPECT_EQ(run.trace().back(), "discard [0,2) RecordAgeExceeded count=0 never-invoked");
  EXPECT_EQ(run.discards()[0].last_response, LastResponse::kNone);
  EXPECT_EQ(run.now(), kT0 + 60'001);
  EXPECT_GT(run.invocations().size(), 5u);
  for (const Invocation& inv : run.invocations()) EXPECT_EQ(inv.attempt, 1);
}

// --- Record age ---------------------------------------------------------------------------------

TEST(FailurePolicyTest, InfiniteRetriesUntilRecordAgeExpires) {
  LaneRun run(Options(-1, false, false, 60'000), 8);
  run.Drive(LaneRun::Poison({3}));
  // Invocations at +0, +100, +300, +700, +1500, +3100, +6300, +12700, +22700, ..., +52700; the
  // next would be at +62700, but the records expire at +60001 (age > 60 s), so the wait stops
  // there and they are discarded then.
  std::vector<std::string> expected;
  const int64_t waits[] = {100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000, 10000};
  for (int i = 0; i < 11; ++i) {
    expected.push_back(absl::StrCat("invoke [0,8) #", i + 1));
    expected.push_back(absl::StrCat("wait ", waits[i]));
  }
  expected.push_back("invoke [0,8) #12");
  expected.push_back("wait 7301");
  expected.push_back("discard [0,8) RecordAgeExceeded count=12 Unhandled");
  EXPECT_THAT(run.trace(), ElementsAreArray(expected));
  EXPECT_EQ(run.invocations().back().now, kT0 + 52'700);
  EXPECT_EQ(run.now(), kT0 + 60'001);
}

// An age of exactly max_record_age is not too old; one millisecond more is.
TEST(FailurePolicyTest, RecordAgeBoundary) {
  FailurePolicy at(Options(-1, false, false, 60'000), {{"1", kT0}});
  EXPECT_EQ(at.Next(kT0 + 60'000).kind, Kind::kInvoke);
  FailurePolicy past(Options(-1, false, false, 60'000), {{"1", kT0}});
  EXPECT_EQ(past.Next(kT0 + 60'001).ToString(),
            "discard [0,1) RecordAgeExceeded count=0 never-invoked");
  EXPECT_TRUE(past.finished());
}

TEST(FailurePolicyTest, RecordsTooOldBeforeTheFirstAttemptAreNeverInvoked) {
  // Records 0-2 arrived 70 s ago, the rest now.
  LaneRun run(Options(2, false, false, 60'000), 8,
              {kT0 - 70'000, kT0 - 70'000, kT0 - 61'000, kT0, kT0, kT0, kT0, kT0});
  run.Drive(LaneRun::Poison({}));
  EXPECT_THAT(run.trace(), ElementsAre("discard [0,3) RecordAgeExceeded count=0 never-invoked",
                                       "invoke [3,8) #1", "done [3,8)"));
}

// Mid-retries the expired prefix goes and the rest keeps its count.
TEST(FailurePolicyTest, RecordAgeExpiresMidRetries) {
  // Records 0-3 arrived 50 s before the first attempt: they expire at +10001.
  LaneRun run(Options(-1, false, false, 60'000), 8,
              {kT0 - 50'000, kT0 - 50'000, kT0 - 50'000, kT0 - 50'000, kT0, kT0, kT0, kT0});
  run.Drive([](const Invocation& inv) { return inv.begin < 4 ? Error() : Ok(); });
  EXPECT_THAT(
      run.trace(),
      ElementsAre("invoke [0,8) #1", "wait 100", "invoke [0,8) #2", "wait 200", "invoke [0,8) #3",
                  "wait 400", "invoke [0,8) #4", "wait 800", "invoke [0,8) #5", "wait 1600",
                  "invoke [0,8) #6", "wait 3200", "invoke [0,8) #7",
                  // Failed at +6300: the retry would be at +12700; the front expires
                  // at +10001.
                  "wait 3701", "discard [0,4) RecordAgeExceeded count=7 Unhandled",
                  // The rest is still a retry: it waits out the back-off.
                  "wait 2699", "invoke [4,8) #8", "done [4,8)"));
}

// With bisect, the retried halves are checked too; a half never invoked on its own reports
// count 0 and its parent's error.
TEST(FailurePolicyTest, RecordAgeExpiresWhileBisecting) {
  LaneRun run(Options(-1, true, false, 60'000), 4,
              {kT0 - 59'950, kT0 - 59'950, kT0 - 59'950, kT0 - 59'950});
  // Every invocation takes 30 ms; everything fails.
  run.Drive(LaneRun::Poison({0, 1, 2, 3}), /*invoke_ms=*/30);
  EXPECT_THAT(run.trace(),
              ElementsAre("invoke [0,4) #1",
                          // The retry would be at +130, but the records expire at +51.
                          "wait 21", "discard [0,2) RecordAgeExceeded count=0 Unhandled",
                          "discard [2,4) RecordAgeExceeded count=0 Unhandled"));
}

// --- ReportBatchItemFailures (docs/aws-semantics.md#partial-batch-responses) ---------------------

TEST(FailurePolicyTest, PartialFailureCheckpointsAndRetriesFromTheReportedRecord) {
  LaneRun run(Options(2, false, /*report=*/true), 8);
  run.Drive([&](const Invocation& inv) {
    return inv.begin <= 3 && 3 < inv.end ? ItemFailures({run.seq(3)}) : Ok();
  });
  // Every partial response counts: the remainder is discarded after N + 1 invocations, with
  // the records from the reported one onward and no functionError.
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,8) #1", "done [0,3)", "wait 100",
                                       "invoke [3,8) #2", "wait 200", "invoke [3,8) #3",
                                       "discard [3,8) RetryAttemptsExhausted count=3 partial"));
  EXPECT_EQ(run.discards()[0].last_response, LastResponse::kPartialFailure);
}

// A partial failure's discard covers the reported record and everything after it; the discard
// says how many of those the handler named, so the log can tell them from the bystanders.
TEST(FailurePolicyTest, ADiscardAfterAPartialFailureCountsTheRecordsTheHandlerReported) {
  LaneRun run(Options(1, false, /*report=*/true), 8);
  run.Drive([&](const Invocation&) { return ItemFailures({run.seq(5), run.seq(3), run.seq(5)}); });
  ASSERT_EQ(run.discards().size(), 1u);
  const FailurePolicy::Action& discard = run.discards()[0];
  EXPECT_EQ(discard.ToString(), "discard [3,8) RetryAttemptsExhausted count=2 partial");
  EXPECT_EQ(discard.reported_failed, 2u);
  EXPECT_EQ(discard.ReportedFailedNote(),
            "; the handler reported 2 of these 5 records as failed, the others came after it in "
            "the batch");

  LaneRun last(Options(0, false, true), 4);
  last.Drive([&](const Invocation&) { return ItemFailures({last.seq(3)}); });
  EXPECT_EQ(last.discards().at(0).ReportedFailedNote(), "; the handler reported it as failed");

  // A function error names no record.
  LaneRun error(Options(0, false, true), 4);
  error.Drive(LaneRun::Poison({1}));
  EXPECT_EQ(error.discards().at(0).reported_failed, 0u);
  EXPECT_EQ(error.discards().at(0).ReportedFailedNote(), "");

  // Records expiring after a partial failure count only the reported ones among them.
  LaneRun aged(Options(-1, false, true, /*max_age_ms=*/60'000), 8,
               {kT0, kT0, kT0, kT0, kT0, kT0 + 100'000, kT0 + 100'000, kT0 + 100'000});
  int calls = 0;
  aged.Drive(
      [&](const Invocation&) {
        return ++calls == 1 ? ItemFailures({aged.seq(3), aged.seq(5)}) : Ok();
      },
      /*invoke_ms=*/70'000);
  ASSERT_EQ(aged.discards().size(), 1u);
  EXPECT_EQ(aged.discards()[0].ToString(), "discard [3,5) RecordAgeExceeded count=1 partial");
  EXPECT_EQ(aged.discards()[0].reported_failed, 1u);
}

TEST(FailurePolicyTest, PartialFailureThenSuccess) {
  LaneRun run(Options(2, false, true), 8);
  int calls = 0;
  run.Drive([&](const Invocation&) {
    // Unordered, with a duplicate: the lowest counts.
    return ++calls == 1 ? ItemFailures({run.seq(6), run.seq(3), run.seq(6)}) : Ok();
  });
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,8) #1", "done [0,3)", "wait 100",
                                       "invoke [3,8) #2", "done [3,8)"));
}

TEST(FailurePolicyTest, PartialFailureAtTheFirstRecordMovesNothing) {
  LaneRun run(Options(2, false, true), 4);
  int calls = 0;
  run.Drive([&](const Invocation&) { return ++calls == 1 ? ItemFailures({run.seq(0)}) : Ok(); });
  EXPECT_THAT(run.trace(),
              ElementsAre("invoke [0,4) #1", "wait 100", "invoke [0,4) #2", "done [0,4)"));
}

// The checkpoint can move again on a later partial response; the count carries on.
TEST(FailurePolicyTest, PartialFailuresMovingForward) {
  LaneRun run(Options(2, false, true), 8);
  std::vector<InvokeResult> script = {ItemFailures({run.seq(2)}), ItemFailures({run.seq(5)}),
                                      ItemFailures({run.seq(7)})};
  size_t next = 0;
  run.Drive([&](const Invocation&) { return script.at(next++); });
  EXPECT_THAT(run.trace(),
              ElementsAre("invoke [0,8) #1", "done [0,2)", "wait 100", "invoke [2,8) #2",
                          "done [2,5)", "wait 200", "invoke [5,8) #3", "done [5,7)",
                          "discard [7,8) RetryAttemptsExhausted count=3 partial"));
}

// The success cases of docs/aws-semantics.md#partial-batch-responses as runnel receives them: a
// plain success, or an empty list (null, {}, "" and a missing payload all reach the poller as one
// of these).
TEST(FailurePolicyTest, EmptyItemFailuresAreSuccess) {
  for (InvokeResult result : {Ok(), ItemFailures({})}) {
    LaneRun run(Options(0, true, true), 4);
    run.Drive([&](const Invocation&) { return result; });
    EXPECT_THAT(run.trace(), ElementsAre("invoke [0,4) #1", "done [0,4)"));
  }
}

// The failure cases of docs/aws-semantics.md#partial-batch-responses: an empty identifier, one that
// is not in the batch (alone or next to a valid one); null identifiers, misspelled keys and wrong
// types reach the poller as kInvalidResponse. Each fails the whole batch and counts.
TEST(FailurePolicyTest, InvalidItemFailuresFailTheWholeBatch) {
  const std::vector<std::vector<std::string>> cases = {{""},         {"999"},          {Seq(2), ""},
                                                       {"", Seq(2)}, {Seq(2), "nope"}, {"123"}};
  for (const std::vector<std::string>& ids : cases) {
    SCOPED_TRACE(absl::StrJoin(ids, ","));
    LaneRun run(Options(1, false, true), 4);
    run.Drive([&](const Invocation&) { return ItemFailures(ids); });
    EXPECT_THAT(run.trace(), ElementsAre("invoke [0,4) #1", "wait 100", "invoke [0,4) #2",
                                         "discard [0,4) RetryAttemptsExhausted count=2 Unhandled"));
    EXPECT_EQ(run.discards()[0].error_type, "InvalidBatchItemFailures");
  }
  LaneRun run(Options(1, false, true), 4);
  run.Drive([&](const Invocation&) { return Status(InvokeStatus::kInvalidResponse); });
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,4) #1", "wait 100", "invoke [0,4) #2",
                                       "discard [0,4) RetryAttemptsExhausted count=2 Unhandled"));
}

// An invalid response is a function error, so with bisect it splits; an identifier of a record
// outside the invoked half is "not in the batch".
TEST(FailurePolicyTest, InvalidItemFailuresBisect) {
  LaneRun run(Options(0, true, true), 8);
  int calls = 0;
  run.Drive([&](const Invocation&) {
    ++calls;
    if (calls == 1) return Error();
    if (calls == 2) return ItemFailures({run.seq(6)});  // invoked: [0,4)
    return Ok();
  });
  EXPECT_THAT(run.trace(), ElementsAre("invoke [0,8) #1", "wait 100", "invoke [0,4) #1", "wait 200",
                                       "invoke [0,2) #1", "done [0,2)", "invoke [2,4) #1",
                                       "done [2,4)", "invoke [4,8) #1", "done [4,8)"));
}

// Without report_batch_item_failures Lambda ignores the response: success.
TEST(FailurePolicyTest, ItemFailuresIgnoredWhenNotReporting) {
  for (std::vector<std::string> ids : std::vector<std::vector<std::string>>{{Seq(1)}, {""}}) {
    LaneRun run(Options(0, true, /*report=*/false), 4);
    run.Drive([&](const Invocation&) { return ItemFailures(ids); });
    EXPECT_THAT(run.trace(), ElementsAre("invoke [0,4) #1", "done [0,4)"));
  }
}

// With bisect, a partial response splits at the reported record (not in the middle) and the
// remainder keeps the count.
TEST(FailurePolicyTest, PartialFailureWithBisectSplitsAtTheReportedRecord) {
  LaneRun run(Options(1, true, true), 8);
  run.Drive([&](const Invocation& inv) {
    return inv.begin <= 3 && 3 < inv.end ? ItemFailures({run.seq(3)}) : Ok();
  });
  EXPECT_THAT(run.trace(),
              ElementsAre("invoke [0,8) #1", "done [0,3)", "wait 100", "invoke [3,8) #2",
                          "discard [3,8) RetryAttemptsExhausted count=2 partial"));
}

// A function error on the remainder bisects it, and the halves start afresh.
TEST(FailurePolicyTest, PartialFailureThenFunctionErrorWithBisect) {
  LaneRun run(Options(1, true, true), 8);
  run.Drive([&](const Invocation& inv) {
    if (inv.begin == 0) return ItemFailures({run.seq(3)});
    for (size_t i = inv.begin; i < inv.end; ++i) {
      if (i == 5) return Error();
    }
    return Ok();
  });
  EXPECT_THAT(run.trace(),
              ElementsAre("invoke [0,8) #1", "done [0,3)", "wait 100", "invoke [3,8) #2",
                          "wait 200", "invoke [3,5) #1", "done [3,5)", "invoke [5,8) #1",
                          "wait 100", "invoke [5,6) #1", "wait 200", "invoke [5,6) #2",
                          "discard [5,6) RetryAttemptsExhausted count=2 Unhandled",
                          "invoke [6,8) #1", "done [6,8)"));
}

// --- Options and invariants --------------------------------------------------------------------

TEST(FailurePolicyTest, OptionsFromSpec) {
  MappingSpec spec;
  FailurePolicyOptions defaults = FailurePolicyOptions::FromSpec(spec);
  EXPECT_EQ(defaults.retry_attempts, -1);
  EXPECT_EQ(defaults.max_record_age_ms, kNoMaxAge);
  EXPECT_FALSE(defaults.bisect_batch_on_error);
  EXPECT_FALSE(defaults.report_batch_item_failures);
  spec.retry_attempts = 3;
  spec.max_record_age = absl::Seconds(60);
  spec.bisect_batch_on_error = true;
  spec.report_batch_item_failures = true;
  FailurePolicyOptions set = FailurePolicyOptions::FromSpec(spec);
  EXPECT_EQ(set.retry_attempts, 3);
  EXPECT_EQ(set.max_record_age_ms, 60'000);
  EXPECT_TRUE(set.bisect_batch_on_error);
  EXPECT_TRUE(set.report_batch_item_failures);
}

TEST(FailurePolicyTest, ConditionNames) {
  EXPECT_EQ(DiscardConditionName(DiscardCondition::kRetryAttemptsExhausted),
            "RetryAttemptsExhausted");
  EXPECT_EQ(DiscardConditionName(DiscardCondition::kRecordAgeExceeded), "RecordAgeExceeded");
}

// Generated cases (fixed seed): poison sets, retries, bisect on and off, handlers that report
// the lowest poison record or fail outright. Every record leaves exactly once and in order (the
// harness checks), no poison record is ever done, a retries-exhausted range was invoked exactly
// N + 1 times as its count says, and with bisect and a failing handler only poison is discarded.
TEST(FailurePolicyTest, GeneratedCasesKeepTheInvariants) {
  std::mt19937 rng(20240610);
  for (int round = 0; round < 400; ++round) {
    const size_t n = 1 + rng() % 20;
    std::set<size_t> poison;
    for (size_t i = 0; i < n; ++i) {
      if (rng() % 6 == 0) poison.insert(i);
    }
    const int retries = static_cast<int>(rng() % 4);
    const bool bisect = rng() % 2;
    const bool report = rng() % 2;
    SCOPED_TRACE(absl::StrCat("round ", round, " n ", n, " poison ", absl::StrJoin(poison, ","),
                              " retries ", retries, " bisect ", bisect, " report ", report));
    LaneRun run(Options(retries, bisect, report), n);
    run.Drive([&](const Invocation& inv) {
      auto it = poison.lower_bound(inv.begin);
      if (it == poison.end() || *it >= inv.end) return Ok();
      return report ? ItemFailures({run.seq(*it)}) : Error();
    });
    for (size_t p : poison) EXPECT_EQ(run.outcome()[p], "discarded") << p;
    for (const FailurePolicy::Action& d : run.discards()) {
      EXPECT_EQ(d.condition, DiscardCondition::kRetryAttemptsExhausted);
      EXPECT_EQ(d.approximate_invoke_count, retries + 1);
      // Bisected or partially reported, the discarded range starts with a poison record
      // (otherwise it is the whole batch).
      if (bisect || report) {
        EXPECT_TRUE(poison.count(d.begin)) << d.ToString();
      } else {
        EXPECT_EQ(d.size(), n);
      }
      if (bisect && !report) {
        EXPECT_EQ(d.size(), 1u) << d.ToString();
      }
    }
    if (bisect && !report) {
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(run.outcome()[i], poison.count(i) ? "discarded" : "done") << i;
      }
    }
    if (poison.empty()) {
      EXPECT_EQ(run.invocations().size(), 1u);
    }
  }
}

}  // namespace
}  // namespace runnel::poller
