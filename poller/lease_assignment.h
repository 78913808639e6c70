// Which shards of a mapping this poller of a fleet should take and which it should hand over:
// the rule every poller applies to the same view of the broker's lease table, so that the fleet
// converges on a fair split without talking to each other. Pure: no I/O, no clock (the caller
// says which leases have expired, by the broker's clock).
//
// Members are the pollers with a live heartbeat, the owners of unexpired leases, and this poller.
// With n shards and k members each member's share is n/k rounded down, and n%k of them get one
// more: the members that hold the most (ties: the smaller id), so that a split that is already
// fair never moves. Every member computes the same shares from the same view. A poller below its
// share takes free or expired shards; one above it sheds the surplus (a graceful hand-off). It
// never takes a shard whose lease another member holds unexpired: a poller that needs shards
// waits for the one above its share to shed, so a rebalance moves a shard only through a clean
// hand-off (no duplicates), and only a dead owner's shards move by expiry.
#pragma once

#include <string>
#include <vector>

namespace runnel::poller {

struct LeaseView {
  std::string shard_id;
  std::string owner;     // "" : free (never leased, or released)
  bool expired = false;  // by the broker's clock; an expired lease is free to take
};

struct ShardAssignment {
  std::vector<std::string> take;  // free or expired shards to acquire, in shard order
  std::vector<std::string> shed;  // shards this poller holds and should hand over
  int share = 0;                  // this poller's fair share
  int members = 0;                // k, this poller included
};

// `leases`: one per shard of the mapping (a shard without a lease record is free).
// `live_members`: pollers with an unexpired heartbeat for the mapping (`self` may be absent).
ShardAssignment AssignShards(const std::string& self, const std::vector<LeaseView>& leases,
                             const std::vector<std::string>& live_members);

}  // namespace runnel::poller
