// The fleet's assignment rule (poller/lease_assignment.h), exhaustively over small fleets: every
// lease table of up to 8 shards among up to 5 live pollers (each shard free, expired, or held by
// one of them), checked for safety (only free or expired shards are taken, only own unexpired
// ones shed), for fair and consistent shares, and for convergence: every poller applying the
// rule again and again, one after another or all on one snapshot with the broker arbitrating
// races, reaches a fair split that then stays put, with no shard moving twice.
#include "poller/lease_assignment.h"

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace runnel::poller {
namespace {

constexpr int kMaxShards = 8;
constexpr int kMaxPollers = 5;
// A shard's state in a table: kFree, kExpired (its owner died), or held by poller p (>= 0).
constexpr int kFree = -1, kExpired = -2;

std::string Poller(int p) { return absl::StrCat("poller-", p); }
std::string Shard(int s) { return absl::StrCat("shardId-00000000000", s); }

std::vector<LeaseView> Table(const std::vector<int>& states) {
  std::vector<LeaseView> leases;
  for (size_t s = 0; s < states.size(); ++s) {
    LeaseView lease{.shard_id = Shard(static_cast<int>(s))};
    if (states[s] == kExpired) {
      lease.owner = "dead";
      lease.expired = true;
    } else if (states[s] >= 0) {
      lease.owner = Poller(states[s]);
    }
    leases.push_back(lease);
  }
  return leases;
}

std::vector<std::string> Members(int k) {
  std::vector<std::string> members;
  for (int p = 0; p < k; ++p) members.push_back(Poller(p));
  return members;
}

std::string Show(const std::vector<int>& states) {
  std::vector<std::string> parts;
  for (int state : states) {
    parts.push_back(state == kFree ? "free" : state == kExpired ? "expired" : Poller(state));
  }
  return absl::StrJoin(parts, " ");
}

// Every table of n shards over k pollers: all (k+2)^n of them where that is small, otherwise
// those with non-decreasing states (every multiset of states once: the rule orders shards by id,
// so which shard holds which state changes which ids move, not how many) plus their reversals.
void ForEachTable(int n, int k, const std::function<void(const std::vector<int>&)>& visit) {
  const int states = k + 2;
  double total = 1;
  for (int i = 0; i < n; ++i) total *= states;
  const bool all = total <= 20000;
  std::vector<int> digits(static_cast<size_t>(n), 0);
  for (;;) {
    bool sorted = std::is_sorted(digits.begin(), digits.end());
    if (all || sorted) {
      std::vector<int> table;
      for (int d : digits) table.push_back(d - 2);  // 0 -> kExpired, 1 -> kFree, 2.. -> pollers
      visit(table);
      if (!all) {
        std::reverse(table.begin(), table.end());
        visit(table);
      }
    }
    int i = 0;
    while (i < n && ++digits[static_cast<size_t>(i)] == states)
      digits[static_cast<size_t>(i++)] = 0;
    if (i == n) break;
  }
}

TEST(LeaseAssignmentTest, SharesAreFairConsistentAndSafeForEveryTable) {
  int tables = 0;
  for (int n = 0; n <= kMaxShards; ++n) {
    for (int k = 1; k <= kMaxPollers; ++k) {
      ForEachTable(n, k, [&](const std::vector<int>& states) {
        ++tables;
        const std::vector<LeaseView> leases = Table(states);
        int share_sum = 0;
        for (int p = 0; p < k; ++p) {
          SCOPED_TRACE(absl::StrCat(Poller(p), " on [", Show(states), "]"));
          const ShardAssignment a = AssignShards(Poller(p), leases, Members(k));
          ASSERT_EQ(a.members, k);
          ASSERT_TRUE(a.share == n / k || a.share == (n + k - 1) / k) << a.share;
          share_sum += a.share;
          ASSERT_TRUE(a.take.empty() || a.shed.empty());
          int held = 0, available = 0;
          for (int s = 0; s < n; ++s) {
            held += states[static_cast<size_t>(s)] == p;
            available += states[static_cast<size_t>(s)] < 0;
          }
          for (const std::string& shard : a.take) {
            const int state = states[static_cast<size_t>(shard.back() - '0')];
            ASSERT_LT(state, 0) << shard << " is held by a live poller";
          }
          for (const std::string& shard : a.shed) {
            ASSERT_EQ(states[static_cast<size_t>(shard.back() - '0')], p) << shard;
          }
          ASSERT_EQ(std::set<std::string>(a.take.begin(), a.take.end()).size(), a.take.size());
          // It takes what it lacks as far as shards are free, and sheds exactly its surplus.
          const int after = held + static_cast<int>(a.take.size() - a.shed.size());
          if (held > a.share) {
            ASSERT_EQ(after, a.share);
          } else {
            ASSERT_EQ(after, std::min(a.share, held + available));
          }
        }
        ASSERT_EQ(share_sum, n) << Show(states);
      });
    }
  }
  EXPECT_GT(tables, 50000);
}

// Applies the rule until nothing changes. `snapshot`: every poller decides on the same view
// (a round of pollers acting at once), and the broker lets the first taker of a shard win;
// otherwise each acts on what the previous one left. `order` is the order the pollers act in.
struct Convergence {
  int rounds = 0;
  std::vector<int> final_states;
  std::vector<int> takes;  // per shard, how often a live poller took it
};

Convergence Converge(std::vector<int> states, int k, bool snapshot, const std::vector<int>& order) {
  Convergence out;
  out.takes.assign(states.size(), 0);
  const std::vector<std::string> members = Members(k);
  for (out.rounds = 0; out.rounds < 50; ++out.rounds) {
    bool changed = false;
    std::vector<LeaseView> view = Table(states);
    for (int p : order) {
      if (!snapshot) view = Table(states);
      const ShardAssignment a = AssignShards(Poller(p), view, members);
      for (const std::string& shard : a.shed) {
        states[static_cast<size_t>(shard.back() - '0')] = kFree;
        changed = true;
      }
      for (const std::string& shard : a.take) {
        const size_t s = static_cast<size_t>(shard.back() - '0');
        if (states[s] >= 0) continue;  // another poller of this round took it first
        states[s] = p;
        ++out.takes[s];
        changed = true;
      }
    }
    if (!changed) break;
  }
  out.final_states = states;
  return out;
}

TEST(LeaseAssignmentTest, EveryPollerApplyingTheRuleConvergesOnAFairSplitWithoutFlapping) {
  std::mt19937 random(13);
  for (int n = 1; n <= kMaxShards; ++n) {
    for (int k = 1; k <= kMaxPollers; ++k) {
      ForEachTable(n, k, [&](const std::vector<int>& states) {
        std::vector<int> order(static_cast<size_t>(k));
        for (int p = 0; p < k; ++p) order[static_cast<size_t>(p)] = p;
        std::shuffle(order.begin(), order.end(), random);
        for (bool snapshot : {false, true}) {
          SCOPED_TRACE(
              absl::StrCat(snapshot ? "snapshot" : "sequential", " from [", Show(states), "]"));
          const Convergence c = Converge(states, k, snapshot, order);
          ASSERT_LT(c.rounds, 50) << "never settled";
          // Each shard is taken at most once: no shard goes back and forth.
          for (size_t s = 0; s < states.size(); ++s) {
            ASSERT_LE(c.takes[s], 1)
                << "shard " << s << " moved twice, ending at [" << Show(c.final_states) << "]";
          }
          // Every shard is held, and the split is as fair as it gets.
          std::vector<int> count(static_cast<size_t>(k), 0);
          for (int state : c.final_states) {
            ASSERT_GE(state, 0) << Show(c.final_states);
            ++count[static_cast<size_t>(state)];
          }
          const auto [low, high] = std::minmax_element(count.begin(), count.end());
          ASSERT_LE(*high - *low, 1) << Show(c.final_states);
          // A fair table where every shard is held is left alone.
          if (std::all_of(states.begin(), states.end(), [](int s) { return s >= 0; })) {
            std::vector<int> before(static_cast<size_t>(k), 0);
            for (int state : states) ++before[static_cast<size_t>(state)];
            const auto [l, h] = std::minmax_element(before.begin(), before.end());
            if (*h - *l <= 1) ASSERT_EQ(c.final_states, states);
          }
        }
      });
    }
  }
}

TEST(LeaseAssignmentTest, AJoiningPollerTakesItsShareOnlyThroughHandOffs) {
  // 3 pollers hold 2/1/1 of 4 shards; a 4th joins: the one with 2 sheds one, the newcomer takes
  // it, and nobody else moves.
  const std::vector<int> states = {0, 0, 1, 2};
  const ShardAssignment joiner = AssignShards(Poller(3), Table(states), Members(4));
  EXPECT_EQ(joiner.share, 1);
  EXPECT_TRUE(joiner.take.empty());  // nothing is free yet
  const ShardAssignment rich = AssignShards(Poller(0), Table(states), Members(4));
  EXPECT_EQ(rich.shed, std::vector<std::string>{Shard(1)});
  for (int p : {1, 2}) {
    const ShardAssignment a = AssignShards(Poller(p), Table(states), Members(4));
    EXPECT_TRUE(a.take.empty() && a.shed.empty());
  }
  const Convergence c = Converge(states, 4, /*snapshot=*/true, {0, 1, 2, 3});
  EXPECT_EQ(c.final_states, (std::vector<int>{0, 3, 1, 2}));
}

TEST(LeaseAssignmentTest, OwnersOfUnexpiredLeasesCountAsMembersWithoutAHeartbeat) {
  // No heartbeats at all (e.g. a broker that just restarted): the owners still count.
  const ShardAssignment a = AssignShards(Poller(1), Table({0, 0, 0, kFree}), {});
  EXPECT_EQ(a.members, 2);
  EXPECT_EQ(a.share, 2);
  EXPECT_EQ(a.take, std::vector<std::string>{Shard(3)});
  // An expired lease's owner does not count.
  const ShardAssignment alone = AssignShards(Poller(1), Table({kExpired, kExpired}), {});
  EXPECT_EQ(alone.members, 1);
  EXPECT_EQ(alone.take, (std::vector<std::string>{Shard(0), Shard(1)}));
}

TEST(LeaseAssignmentTest, ASinglePollerTakesEveryShardAtOnce) {
  const ShardAssignment a = AssignShards("solo", Table({kFree, kExpired, kFree, kFree}), {"solo"});
  EXPECT_EQ(a.take.size(), 4u);
  EXPECT_EQ(a.share, 4);
}

}  // namespace
}  // namespace runnel::poller
