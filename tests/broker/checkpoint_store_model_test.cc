// A randomized model test of the checkpoint store: a long seeded sequence of sets (positions,
// lease takes and renewals, leases stolen after expiry, fenced writes with right and stale
// epochs, with a fake clock), lease acquires, renewals and releases, deletes, bursts that
// force compaction, clean reopens, and kill -9 of a child process that owns the store in the
// middle of its writes; checked after every step against an in-memory model of what the store
// acknowledged. A failure prints the seed and a shrunk sequence that reproduces it.
//
// RUNNEL_MODEL_STEPS / RUNNEL_MODEL_SEED (tests/common/model_check.h) for longer runs or a replay.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/checkpoint_store.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/common/model_check.h"

namespace runnel::broker {
namespace {

namespace fs = std::filesystem;
using google::protobuf::util::MessageDifferencer;
using google::protobuf::util::TimeUtil;

const char* const kConsumers[] = {"c0", "c1", "c2"};
const char* const kStreams[] = {"s0", "s1"};
const char* const kShards[] = {"shardId-000000000000", "shardId-000000000001",
                               "shardId-000000000002"};
const char* const kOwners[] = {"o0", "o1"};

// One change to the store. Sets and deletes also run inside a killed child (kKill's `batch`).
struct Op {
  enum Kind {
    kSet,
    kDelete,
    kAdvanceClock,
    kBurst,
    kReopen,
    kKill,
    kAcquire,
    kRenew,
    kRelease
  } kind = kSet;
  // kSet; the lease ops use its names, lease_owner, lease_epoch and lease_duration.
  v1::SetCheckpointRequest set;
  std::string consumer, stream, shard;  // kDelete (empty consumer/shard: all)
  absl::Duration advance;               // kAdvanceClock; kSet: clock step before it
  int burst = 0;                        // kBurst: this many sets of one key
  std::vector<Op> batch;                // kKill: what the child does
  int kill_after = 0;                   // kKill: acknowledged ops before the kill
  bool child_kills_itself = false;      // kKill: exact point, or a racing parent
};

bool IsSetLike(Op::Kind kind) {
  return kind == Op::kSet || kind == Op::kAcquire || kind == Op::kRenew || kind == Op::kRelease;
}

std::string Describe(const Op& op) {
  switch (op.kind) {
    case Op::kSet:
    case Op::kAcquire:
    case Op::kRenew:
    case Op::kRelease:
      return absl::StrCat(op.kind == Op::kSet       ? "set"
                          : op.kind == Op::kAcquire ? "acquire"
                          : op.kind == Op::kRenew   ? "renew"
                                                    : "release",
                          "(", op.set.consumer_name(), ",", op.set.stream_name(), ",",
                          op.set.shard_id().substr(op.set.shard_id().size() - 1),
                          ",seq=", op.set.sequence_number(), ",owner=", op.set.lease_owner(),
                          ",epoch=", op.set.lease_epoch(),
                          ",lease=", op.set.lease_duration().seconds(), "s,+",
                          absl::FormatDuration(op.advance), ")");
    case Op::kDelete:
      return absl::StrCat("delete(", op.consumer, ",", op.stream, ",", op.shard, ")");
    case Op::kAdvanceClock:
      return absl::StrCat("clock+", absl::FormatDuration(op.advance));
    case Op::kBurst:
      return absl::StrCat("burst(", op.burst, ")");
    case Op::kReopen:
      return "reopen";
    case Op::kKill: {
      std::vector<std::string> parts;
      for (const Op& child : op.batch) parts.push_back(Describe(child));
      return absl::StrCat("kill9(after ", op.kill_after,
                          op.child_kills_itself ? " exactly" : " racing", ": ",
                          absl::StrJoin(parts, " "), ")");
    }
  }
  return "?";
}

template <typename T, size_t N>
const T& Pick(std::mt19937_64& random, const T (&items)[N]) {
  return items[random() % N];
}

Op RandomWrite(std::mt19937_64& random) {
  Op op;
  if (random() % 10 == 0) {
    op.kind = Op::kDelete;
    op.stream = Pick(random, kStreams);
    if (random() % 3 != 0) op.consumer = Pick(random, kConsumers);
    if (random() % 2 != 0) op.shard = Pick(random, kShards);
    return op;
  }
  op.kind = Op::kSet;
  op.advance = absl::Milliseconds(static_cast<int64_t>(random() % 3000));
  op.set.set_consumer_name(Pick(random, kConsumers));
  op.set.set_stream_name(Pick(random, kStreams));
  op.set.set_shard_id(Pick(random, kShards));
  // Epochs stay small (a few changes of owner per key), so a guessed one is often right.
  const int64_t epoch = static_cast<int64_t>(random() % 4);
  if (const int dice = static_cast<int>(random() % 10); dice < 3) {
    op.kind = dice == 0 ? Op::kAcquire : dice == 1 ? Op::kRenew : Op::kRelease;
    op.set.set_lease_owner(Pick(random, kOwners));
    if (op.kind != Op::kAcquire) op.set.set_lease_epoch(epoch);
    if (op.kind != Op::kRelease && random() % 2 == 0) {
      op.set.mutable_lease_duration()->set_seconds(1 + random() % 30);
    }
    return op;
  }
  const bool lease = random() % 5 < 2;
  if (!lease || random() % 2 == 0) op.set.set_sequence_number(absl::StrCat(random() % 100000));
  if (lease) {
    op.set.set_lease_owner(Pick(random, kOwners));
    if (random() % 3 == 0) {
      op.set.set_lease_epoch(1 + epoch);  // a fenced write
    } else if (random() % 2 == 0) {
      op.set.mutable_lease_duration()->set_seconds(1 + random() % 60);
    }
  }
  return op;
}

std::vector<Op> Generate(uint64_t seed, int steps) {
  std::mt19937_64 random(seed);
  std::vector<Op> ops;
  for (int i = 0; i < steps; ++i) {
    const int dice = static_cast<int>(random() % 100);
    Op op;
    if (dice < 80) {
      op = RandomWrite(random);
    } else if (dice < 86) {
      op.kind = Op::kAdvanceClock;
      op.advance = absl::Seconds(static_cast<int64_t>(random() % 90));
    } else if (dice < 89) {
      op.kind = Op::kBurst;
      op.burst = 20 + static_cast<int>(random() % 100);
    } else if (dice < 94) {
      op.kind = Op::kReopen;
    } else {
      op.kind = Op::kKill;
      const int n = 1 + static_cast<int>(random() % 30);
      for (int j = 0; j < n; ++j) op.batch.push_back(RandomWrite(random));
      op.kill_after = static_cast<int>(random() % (n + 1));
      op.child_kills_itself = random() % 2 == 0;
    }
    ops.push_back(std::move(op));
  }
  return ops;
}

std::string Key(const std::string& consumer, const std::string& stream, const std::string& shard) {
  return absl::StrCat(consumer, "/", stream, "/", shard);
}

absl::Time Expiry(const v1::Checkpoint& checkpoint) {
  return absl::FromUnixMillis(TimeUtil::TimestampToMilliseconds(checkpoint.lease_expiry()));
}

// A set-like op applied to the store.
absl::StatusOr<v1::Checkpoint> StoreWrite(CheckpointStore& store, const Op& op, absl::Time now) {
  const v1::SetCheckpointRequest& r = op.set;
  const absl::Duration duration = absl::Seconds(r.lease_duration().seconds());
  switch (op.kind) {
    case Op::kAcquire:
      return store.AcquireLease(r.consumer_name(), r.stream_name(), r.shard_id(), r.lease_owner(),
                                duration, now);
    case Op::kRenew:
      return store.RenewLease(r.consumer_name(), r.stream_name(), r.shard_id(), r.lease_owner(),
                              r.lease_epoch(), duration, now);
    case Op::kRelease:
      return store.ReleaseLease(r.consumer_name(), r.stream_name(), r.shard_id(), r.lease_owner(),
                                r.lease_epoch(), now);
    default:
      return store.Set(r, now);
  }
}

// The specification: what a correct store holds after the acknowledged operations.
class Model {
 public:
  absl::StatusOr<v1::Checkpoint> Set(const v1::SetCheckpointRequest& request, absl::Time now) {
    const std::string key = Key(request.consumer_name(), request.stream_name(), request.shard_id());
    v1::Checkpoint checkpoint;
    if (auto it = checkpoints_.find(key); it != checkpoints_.end()) checkpoint = it->second;
    checkpoint.set_consumer_name(request.consumer_name());
    checkpoint.set_stream_name(request.stream_name());
    checkpoint.set_shard_id(request.shard_id());
    if (!request.lease_owner().empty() && request.lease_epoch() != 0) {
      if (checkpoint.lease_owner() != request.lease_owner() ||
          checkpoint.lease_epoch() != request.lease_epoch()) {
        return absl::FailedPreconditionError("fenced");
      }
    } else if (!request.lease_owner().empty()) {
      const absl::Time expiry = Expiry(checkpoint);
      if (!checkpoint.lease_owner().empty() && checkpoint.lease_owner() != request.lease_owner() &&
          expiry > now) {
        return absl::FailedPreconditionError("leased");
      }
      const int64_t seconds = request.lease_duration().seconds();
      if (checkpoint.lease_owner() != request.lease_owner() || expiry <= now) {
        checkpoint.set_lease_epoch(checkpoint.lease_epoch() + 1);
      }
      checkpoint.set_lease_owner(request.lease_owner());
      *checkpoint.mutable_lease_expiry() = TimeUtil::MillisecondsToTimestamp(
          absl::ToUnixMillis(now) + 1000 * (seconds > 0 ? seconds : 10));
    } else {
      // An operator's write frees the shard, keeping the epoch.
      checkpoint.clear_lease_owner();
      checkpoint.clear_lease_expiry();
    }
    if (!request.sequence_number().empty()) {
      checkpoint.set_sequence_number(request.sequence_number());
    }
    *checkpoint.mutable_update_time() = TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(now));
    checkpoints_[key] = checkpoint;
    return checkpoint;
  }

  // The lease operations, on the request's names, owner, epoch and duration (default 10s).
  absl::StatusOr<v1::Checkpoint> Lease(Op::Kind kind, const v1::SetCheckpointRequest& request,
                                       absl::Time now) {
    const std::string key = Key(request.consumer_name(), request.stream_name(), request.shard_id());
    v1::Checkpoint checkpoint;
    if (auto it = checkpoints_.find(key); it != checkpoints_.end()) {
      checkpoint = it->second;
    } else {
      checkpoint.set_consumer_name(request.consumer_name());
      checkpoint.set_stream_name(request.stream_name());
      checkpoint.set_shard_id(request.shard_id());
    }
    const int64_t seconds = request.lease_duration().seconds();
    const auto expiry = TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(now) +
                                                          1000 * (seconds > 0 ? seconds : 10));
    const bool held = checkpoint.lease_owner() == request.lease_owner() &&
                      checkpoint.lease_epoch() == request.lease_epoch();
    if (kind == Op::kAcquire) {
      const bool live = !checkpoint.lease_owner().empty() && Expiry(checkpoint) > now;
      if (live && checkpoint.lease_owner() != request.lease_owner()) {
        return absl::FailedPreconditionError("leased");
      }
      if (!live) {
        checkpoint.set_lease_epoch(checkpoint.lease_epoch() + 1);
        checkpoint.set_lease_owner(request.lease_owner());
      }
      *checkpoint.mutable_lease_expiry() = expiry;
    } else if (!held) {
      return absl::FailedPreconditionError("not held");
    } else if (kind == Op::kRenew) {
      *checkpoint.mutable_lease_expiry() = expiry;
    } else {
      checkpoint.clear_lease_owner();
      checkpoint.clear_lease_expiry();
    }
    *checkpoint.mutable_update_time() = TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(now));
    checkpoints_[key] = checkpoint;
    return checkpoint;
  }

  // Any set-like op (IsSetLike).
  absl::StatusOr<v1::Checkpoint> Write(const Op& op, absl::Time now) {
    return op.kind == Op::kSet ? Set(op.set, now) : Lease(op.kind, op.set, now);
  }

  std::vector<std::string> Matching(const std::string& consumer, const std::string& stream,
                                    const std::string& shard) const {
    std::vector<std::string> keys;
    for (const auto& [key, c] : checkpoints_) {
      if (c.stream_name() == stream && (consumer.empty() || c.consumer_name() == consumer) &&
          (shard.empty() || c.shard_id() == shard)) {
        keys.push_back(key);
      }
    }
    return keys;
  }

  int Delete(const std::string& consumer, const std::string& stream, const std::string& shard) {
    std::vector<std::string> doomed = Matching(consumer, stream, shard);
    for (const std::string& key : doomed) checkpoints_.erase(key);
    return static_cast<int>(doomed.size());
  }

  void Erase(const std::string& key) { checkpoints_.erase(key); }
  const std::map<std::string, v1::Checkpoint>& checkpoints() const { return checkpoints_; }

 private:
  std::map<std::string, v1::Checkpoint> checkpoints_;  // ordered as List orders them per stream
};

// What the store holds, read through its public API, keyed as the model is.
std::map<std::string, v1::Checkpoint> Observe(const CheckpointStore& store) {
  std::map<std::string, v1::Checkpoint> out;
  for (const char* stream : kStreams) {
    for (const v1::Checkpoint& c : store.List("", stream)) {
      out[Key(c.consumer_name(), c.stream_name(), c.shard_id())] = c;
    }
  }
  return out;
}

bool SameCheckpoints(const std::map<std::string, v1::Checkpoint>& a,
                     const std::map<std::string, v1::Checkpoint>& b, std::string* difference) {
  for (const auto& [key, c] : a) {
    auto it = b.find(key);
    if (it == b.end()) {
      *difference = absl::StrCat(key, " is missing from the store");
      return false;
    }
    if (!MessageDifferencer::Equals(c, it->second)) {
      *difference = absl::StrCat(key, ": store has {", it->second.ShortDebugString(),
                                 "}, model has {", c.ShortDebugString(), "}");
      return false;
    }
  }
  for (const auto& [key, c] : b) {
    if (!a.contains(key)) {
      *difference = absl::StrCat(key, " is in the store but not in the model");
      return false;
    }
  }
  return true;
}

// Outcome codes a child reports per acknowledged op: a set's status, or a delete's count.
constexpr int32_t kSetOk = -1, kSetLeased = -2, kFailed = -3;

class Runner {
 public:
  Runner(std::string dir, CheckpointStoreOptions options)
      : dir_(std::move(dir)), options_(options) {
    fs::remove_all(dir_);
  }
  ~Runner() { fs::remove_all(dir_); }

  // Runs `ops`, checking after each; the first failure as "step N (op): what differs".
  std::optional<std::string> Run(const std::vector<Op>& ops) {
    if (auto opened = Reopen(); !opened.empty()) return absl::StrCat("open: ", opened);
    for (size_t step = 0; step < ops.size(); ++step) {
      std::string failure = Apply(ops[step]);
      std::string difference;
      if (failure.empty() &&
          !SameCheckpoints(model_.checkpoints(), Observe(*store_), &difference)) {
        failure = difference;
      }
      if (!failure.empty()) {
        return absl::StrCat("step ", step, " (", Describe(ops[step]), "): ", failure);
      }
    }
    return std::nullopt;
  }

 private:
  std::string Reopen() {
    store_.reset();
    auto store = CheckpointStore::Open(dir_, options_);
    if (!store.ok()) return std::string(store.status().ToString());
    store_ = std::move(*store);
    return "";
  }

  // Applies a set or delete to the store and the model; "" when both agree.
  std::string Write(const Op& op) {
    if (IsSetLike(op.kind)) {
      now_ += op.advance;
      auto expected = model_.Write(op, now_);
      auto got = StoreWrite(*store_, op, now_);
      if (got.status().code() != expected.status().code()) {
        return absl::StrCat("store says ", got.status().ToString(), ", model says ",
                            expected.status().ToString());
      }
      if (got.ok() && !MessageDifferencer::Equals(*got, *expected)) {
        return absl::StrCat("store returned {", got->ShortDebugString(), "}, model {",
                            expected->ShortDebugString(), "}");
      }
      return "";
    }
    const int expected = model_.Delete(op.consumer, op.stream, op.shard);
    auto got = store_->Delete(op.consumer, op.stream, op.shard);
    if (!got.ok()) return std::string(got.status().ToString());
    if (*got != expected) return absl::StrCat("deleted ", *got, ", model deleted ", expected);
    return "";
  }

  std::string Apply(const Op& op) {
    switch (op.kind) {
      case Op::kSet:
      case Op::kDelete:
      case Op::kAcquire:
      case Op::kRenew:
      case Op::kRelease:
        return Write(op);
      case Op::kAdvanceClock:
        now_ += op.advance;
        return "";
      case Op::kBurst: {
        // Many writes to one key: the file outgrows the live checkpoints and compacts.
        Op set;
        set.set.set_consumer_name("burst");
        set.set.set_stream_name("s0");
        set.set.set_shard_id(kShards[0]);
        for (int i = 0; i < op.burst; ++i) {
          set.set.set_sequence_number(absl::StrCat(i));
          if (std::string failure = Write(set); !failure.empty()) return failure;
        }
        return "";
      }
      case Op::kReopen:
        return Reopen();
      case Op::kKill:
        return KillChild(op);
    }
    return "unknown op";
  }

  // A child process opens the store, applies op.batch reporting each acknowledged outcome through
  // a pipe, and dies by SIGKILL: at an exact point, or whenever the racing parent kills it. The
  // parent then reopens the store: every acknowledged op must be there; the one in flight may or
  // may not be (a delete in flight may have removed any part of what it matched).
  std::string KillChild(const Op& op) {
    store_.reset();
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0) return "pipe failed";
    const absl::Time start = now_;
    const pid_t pid = ::fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
      ::close(pipe_fds[0]);
      auto store = CheckpointStore::Open(dir_, options_);
      if (!store.ok()) ::_exit(3);
      absl::Time now = start;
      int acknowledged = 0;
      for (const Op& child_op : op.batch) {
        if (op.child_kills_itself && acknowledged == op.kill_after) ::raise(SIGKILL);
        int32_t outcome = kFailed;
        if (IsSetLike(child_op.kind)) {
          now += child_op.advance;
          auto result = StoreWrite(**store, child_op, now);
          outcome = result.ok()                                                       ? kSetOk
                    : result.status().code() == absl::StatusCode::kFailedPrecondition ? kSetLeased
                                                                                      : kFailed;
        } else {
          auto result = (*store)->Delete(child_op.consumer, child_op.stream, child_op.shard);
          outcome = result.ok() ? *result : kFailed;
        }
        if (::write(pipe_fds[1], &outcome, sizeof(outcome)) != sizeof(outcome)) ::_exit(4);
        ++acknowledged;
      }
      ::raise(SIGKILL);
    }
    ::close(pipe_fds[1]);
    std::vector<int32_t> outcomes;
    int32_t outcome;
    bool killed = false;
    while (::read(pipe_fds[0], &outcome, sizeof(outcome)) == sizeof(outcome)) {
      outcomes.push_back(outcome);
      if (!op.child_kills_itself && static_cast<int>(outcomes.size()) >= op.kill_after && !killed) {
        ::kill(pid, SIGKILL);
        killed = true;
      }
    }
    if (!op.child_kills_itself && !killed) ::kill(pid, SIGKILL);
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
      return absl::StrCat("the child did not die by SIGKILL (wait status ", status, ")");
    }
    // The model follows the acknowledged ops, each checked against what the child was told.
    for (size_t i = 0; i < outcomes.size(); ++i) {
      const Op& child_op = op.batch[i];
      if (IsSetLike(child_op.kind)) {
        now_ += child_op.advance;
        auto expected = model_.Write(child_op, now_);
        const int32_t want = expected.ok() ? kSetOk : kSetLeased;
        if (outcomes[i] != want) {
          return absl::StrCat("child op ", i, " (", Describe(child_op), ") got outcome ",
                              outcomes[i], ", model ", want);
        }
      } else {
        const int expected = model_.Delete(child_op.consumer, child_op.stream, child_op.shard);
        if (outcomes[i] != expected) {
          return absl::StrCat("child op ", i, " (", Describe(child_op), ") deleted ", outcomes[i],
                              ", model ", expected);
        }
      }
    }
    if (std::string failure = Reopen(); !failure.empty()) return failure;
    const auto observed = Observe(*store_);
    std::string difference;
    if (outcomes.size() < op.batch.size() &&
        !SameCheckpoints(model_.checkpoints(), observed, &difference)) {
      // Not what was acknowledged: it must be what the op in flight would have made of it.
      const Op& in_flight = op.batch[outcomes.size()];
      Model with = model_;
      if (IsSetLike(in_flight.kind)) {
        (void)with.Write(in_flight, now_ + in_flight.advance);
      } else {
        for (const std::string& key :
             with.Matching(in_flight.consumer, in_flight.stream, in_flight.shard)) {
          if (!observed.contains(key)) with.Erase(key);
        }
      }
      std::string second;
      if (!SameCheckpoints(with.checkpoints(), observed, &second)) {
        return absl::StrCat("after the kill, neither what was acknowledged (", difference,
                            ") nor that plus the write in flight (", second, ")");
      }
      model_ = std::move(with);
    }
    for (size_t i = outcomes.size(); i < op.batch.size(); ++i) now_ += op.batch[i].advance;
    return "";
  }

  const std::string dir_;
  const CheckpointStoreOptions options_;
  std::unique_ptr<CheckpointStore> store_;
  Model model_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
};

// On tmpfs when there is one: a step fsyncs, and a disk's fsync would make thousands of steps
// take minutes. A kill -9 loses nothing that reached the page cache, so tmpfs tests the same.
std::string ModelDirectory(const std::string& name) {
  const fs::path base = fs::is_directory("/dev/shm") && ::access("/dev/shm", W_OK) == 0
                            ? fs::path("/dev/shm")
                            : fs::path(::testing::TempDir());
  return (base / absl::StrCat("runnel-model-", name, "-", ::getpid())).string();
}

TEST(CheckpointStoreModelTest, RandomOperationsRestartsAndKillsMatchTheModel) {
  const uint64_t seed = testing::ModelSeed(20261202);
  const int steps = testing::ModelSteps(3000);
  CheckpointStoreOptions options;
  options.compaction_min_entries = 64;
  const std::string dir = ModelDirectory("checkpoints");
  auto run = [&](const std::vector<Op>& ops) { return Runner(dir, options).Run(ops); };

  const std::vector<Op> ops = Generate(seed, steps);
  if (auto report = testing::RunModel<Op>(seed, steps, ops, run, Describe)) FAIL() << *report;
}

}  // namespace
}  // namespace runnel::broker
