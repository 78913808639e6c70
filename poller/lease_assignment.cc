#include "poller/lease_assignment.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

namespace runnel::poller {

ShardAssignment AssignShards(const std::string& self, const std::vector<LeaseView>& leases,
                             const std::vector<std::string>& live_members) {
  std::map<std::string, int> held;  // member -> unexpired leases held
  held[self];
  for (const std::string& member : live_members) held[member];
  for (const LeaseView& lease : leases) {
    if (!lease.owner.empty() && !lease.expired) ++held[lease.owner];
  }
  // Shares: the members that hold the most get the remainder, so that a fair split stays put and
  // every member ranks the same way (ties by id).
  std::vector<std::pair<int, std::string>> ranked;
  for (const auto& [member, count] : held) ranked.emplace_back(-count, member);
  std::sort(ranked.begin(), ranked.end());
  const int n = static_cast<int>(leases.size());
  const int k = static_cast<int>(ranked.size());
  ShardAssignment out;
  out.members = k;
  for (int i = 0; i < k; ++i) {
    if (ranked[static_cast<size_t>(i)].second == self) out.share = n / k + (i < n % k ? 1 : 0);
  }
  std::vector<const LeaseView*> sorted;
  for (const LeaseView& lease : leases) sorted.push_back(&lease);
  std::sort(sorted.begin(), sorted.end(),
            [](const LeaseView* a, const LeaseView* b) { return a->shard_id < b->shard_id; });
  const int mine = held[self];
  if (mine > out.share) {
    // Shed from the end of the shard order: the one a poller keeps is stable across rounds.
    for (auto it = sorted.rbegin();
         it != sorted.rend() && static_cast<int>(out.shed.size()) < mine - out.share; ++it) {
      if ((*it)->owner == self && !(*it)->expired) out.shed.push_back((*it)->shard_id);
    }
    std::reverse(out.shed.begin(), out.shed.end());
  } else {
    for (const LeaseView* lease : sorted) {
      if (static_cast<int>(out.take.size()) >= out.share - mine) break;
      if (lease->owner.empty() || lease->expired) out.take.push_back(lease->shard_id);
    }
  }
  return out;
}

}  // namespace runnel::poller
