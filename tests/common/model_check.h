// What the randomized model tests of runnel's stores share: the seed and step count (from the
// environment, so that a longer run or a failure's seed can be replayed), and the shrinking of a
// failing operation sequence to a short one that still fails.
//
//   RUNNEL_MODEL_STEPS  steps per test (default: each test's own, a few seconds in CI)
//   RUNNEL_MODEL_SEED   the seed to run (default: each test's fixed seed)
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace runnel::testing {

inline int ModelSteps(int default_steps) {
  int steps = default_steps;
  if (const char* env = std::getenv("RUNNEL_MODEL_STEPS")) (void)absl::SimpleAtoi(env, &steps);
  return steps;
}

inline uint64_t ModelSeed(uint64_t default_seed) {
  uint64_t seed = default_seed;
  if (const char* env = std::getenv("RUNNEL_MODEL_SEED")) (void)absl::SimpleAtoi(env, &seed);
  return seed;
}

// Shrinks a failing sequence: first to the shortest failing prefix (halving, then one step at a
// time), then by dropping single operations while it still fails. `fails` runs a sequence from
// scratch; bounded by `budget` runs, so a slow failure still reports quickly.
template <typename Op>
std::vector<Op> ShrinkFailingSequence(std::vector<Op> ops,
                                      const std::function<bool(const std::vector<Op>&)>& fails,
                                      int budget = 300) {
  auto prefix = [&](size_t n) { return std::vector<Op>(ops.begin(), ops.begin() + n); };
  size_t low = 0, high = ops.size();  // prefix(high) fails; look for the shortest one that does
  while (low + 1 < high && budget > 0) {
    const size_t middle = low + (high - low) / 2;
    --budget;
    if (fails(prefix(middle))) {
      high = middle;
    } else {
      low = middle;
    }
  }
  ops = prefix(high);
  for (size_t i = ops.size(); i-- > 0 && budget > 0;) {
    std::vector<Op> without = ops;
    without.erase(without.begin() + static_cast<std::ptrdiff_t>(i));
    --budget;
    if (fails(without)) ops = std::move(without);
  }
  return ops;
}

// Runs a generated sequence with `run` (nullopt when it passed, else what failed) and, when it
// fails, returns the report for FAIL(): the seed to replay it with, the failure, the shortest
// failing sequence found (one `describe` line an operation), and what that one fails with when run
// again (a failure that depends on timing may pass then).
template <typename Op>
std::optional<std::string> RunModel(
    uint64_t seed, int steps, const std::vector<Op>& ops,
    const std::function<std::optional<std::string>(const std::vector<Op>&)>& run,
    const std::function<std::string(const Op&)>& describe, int shrink_budget = 300) {
  const std::optional<std::string> failure = run(ops);
  if (!failure) return std::nullopt;
  const std::vector<Op> shrunk = ShrinkFailingSequence<Op>(
      ops, [&](const std::vector<Op>& candidate) { return run(candidate).has_value(); },
      shrink_budget);
  std::vector<std::string> described;
  for (const Op& op : shrunk) described.push_back(describe(op));
  return absl::StrCat("seed ", seed, " (RUNNEL_MODEL_SEED=", seed, "), ", steps,
                      " steps: ", *failure, "\nshortest failing sequence found (", shrunk.size(),
                      " ops):\n  ", absl::StrJoin(described, "\n  "), "\nit fails with: ",
                      run(shrunk).value_or("(passed when re-run: the failure depends on timing)"));
}

}  // namespace runnel::testing
