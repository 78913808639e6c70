#include "broker/checkpoint_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "broker/checkpoint_log.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "spdlog/spdlog.h"

namespace runnel::broker {
namespace {

namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

constexpr char kPutEntry = kPutCheckpointEntry;
constexpr char kDeleteEntry = kDeleteCheckpointEntry;

std::string Key(const std::string& consumer, const std::string& stream, const std::string& shard) {
  return absl::StrCat(consumer, std::string(1, '\0'), stream, std::string(1, '\0'), shard);
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(t));
}

// Writes all of `data` at `position`, retrying short writes and EINTR. Entries are written at the
// position the store knows to be the end of its last whole entry, never at the descriptor's
// implicit offset: replay reads the file through another descriptor, so that offset says nothing
// about where the log ends (it stood at 0 after every open, and the first write after a restart
// overwrote the oldest entries).
absl::Status PwriteAll(int fd, const std::string& data, uint64_t position, std::string_view path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(position + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write", path);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMillis(TimeUtil::TimestampToMilliseconds(t));
}

constexpr absl::Duration kDefaultLeaseDuration = absl::Seconds(10);

absl::Duration LeaseDurationOr(absl::Duration duration, absl::Duration fallback) {
  return duration > absl::ZeroDuration() ? duration : fallback;
}

// What a refused lease operation or fenced write says: the lease as it stands.
absl::Status LeaseConflict(const v1::Checkpoint& record, const std::string& consumer,
                           const std::string& shard_id) {
  return absl::FailedPreconditionError(
      absl::StrCat("LeaseHeldException: lease for shard ", shard_id, " of mapping ", consumer,
                   " is held by ", record.lease_owner().empty() ? "nobody" : record.lease_owner(),
                   " since epoch ", record.lease_epoch()));
}

// Whether a stored record counts for `incarnation` (see "Stream identity" in the header).
bool BelongsTo(const v1::Checkpoint& record, uint64_t incarnation) {
  return incarnation == 0 || record.incarnation() == 0 || record.incarnation() == incarnation;
}

bool HeldBy(const v1::Checkpoint& record, const std::string& owner, int64_t epoch) {
  return !owner.empty() && record.lease_owner() == owner && record.lease_epoch() == epoch;
}

}  // namespace

CheckpointStore::CheckpointStore(std::string directory, int fd, CheckpointStoreOptions options)
    : directory_(std::move(directory)),
      path_((fs::path(directory_) / "checkpoints.log").string()),
      options_(options),
      fd_(fd) {}

CheckpointStore::~CheckpointStore() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(
    const std::string& directory) {
  return Open(directory, CheckpointStoreOptions());
}

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(
    const std::string& directory, const CheckpointStoreOptions& options) {
  std::error_code ec;
  fs::create_directories(directory, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", directory, ": ", ec.message()));
  const std::string path = (fs::path(directory) / "checkpoints.log").string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  std::unique_ptr<CheckpointStore> store(new CheckpointStore(directory, fd, options));
  RETURN_IF_ERROR(store->Replay());
  return store;
}

absl::Status CheckpointStore::Replay() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::string contents, ReadFileToString(path_));
  const CheckpointLogScan scan = ScanCheckpointLog(contents);
  for (const CheckpointLogEntry& entry : scan.entries) {
    v1::Checkpoint checkpoint;
    if (!checkpoint.ParseFromArray(entry.serialized_checkpoint.data(),
                                   static_cast<int>(entry.serialized_checkpoint.size()))) {
      // A valid frame around bytes that are no checkpoint: damage as well, skipped alone.
      spdlog::error("checkpoints: entry at byte {} of {} is not a checkpoint; skipped",
                    entry.position, path_);
      ++recovery_.corrupt_regions;
      recovery_.corrupt_bytes += entry.serialized_checkpoint.size();
      continue;
    }
    const std::string key =
        Key(checkpoint.consumer_name(), checkpoint.stream_name(), checkpoint.shard_id());
    if (entry.kind == kDeleteEntry) {
      checkpoints_.erase(key);
    } else {
      checkpoints_[key] = std::move(checkpoint);
    }
    next_sequence_ = std::max(next_sequence_, entry.sequence + 1);
    ++entries_in_file_;
  }
  for (const CorruptRegion& region : scan.corrupt) {
    // Damage with whole entries after it is not a torn write: keep what follows (and the bytes
    // themselves, until a compaction rewrites the file), say what was lost.
    spdlog::error(
        "checkpoints: skipped {} damaged bytes at {}..{} of {}; the entries after them are kept, "
        "a checkpoint written in the damaged range reads as its previous value",
        region.end - region.begin, region.begin, region.end, path_);
    ++recovery_.corrupt_regions;
    recovery_.corrupt_bytes += region.end - region.begin;
  }
  if (scan.valid_end < contents.size()) {
    // Only the last write can be torn, and it was never acknowledged.
    recovery_.torn_bytes = contents.size() - scan.valid_end;
    spdlog::warn("checkpoints: cutting a torn tail of {} bytes from {}", recovery_.torn_bytes,
                 path_);
    if (::ftruncate(fd_, static_cast<off_t>(scan.valid_end)) != 0 || ::fdatasync(fd_) != 0) {
      return ErrnoStatus(errno, "truncate", path_);
    }
  }
  file_size_ = scan.valid_end;
  return absl::OkStatus();
}

absl::Status CheckpointStore::AppendEntries(char kind,
                                            const std::vector<const v1::Checkpoint*>& checkpoints) {
  std::string frames;
  uint64_t sequence = next_sequence_;
  for (const v1::Checkpoint* checkpoint : checkpoints) {
    const size_t before = frames.size();
    AppendCheckpointEntry(&frames, sequence++, kind, checkpoint->SerializeAsString());
    if (frames.size() - before > kMaxCheckpointEntrySize) {
      return absl::InvalidArgumentError(
          absl::StrCat("InvalidArgumentException: the checkpoint of consumer '",
                       checkpoint->consumer_name(), "' on ", checkpoint->stream_name(), "/",
                       checkpoint->shard_id(), " takes ", frames.size() - before,
                       " bytes; names, sequence number and lease owner together must "
                       "fit in ",
                       kMaxCheckpointEntrySize));
    }
  }
  // One write and one fdatasync for all of them (a delete of a whole stream's checkpoints).
  absl::Status status = PwriteAll(fd_, frames, file_size_, path_);
  if (status.ok() && ::fdatasync(fd_) != 0) status = ErrnoStatus(errno, "fdatasync", path_);
  if (!status.ok()) {
    // Keep the file ending on a whole entry, so the next write is readable after a restart. If
    // the cut fails too, the next entry still goes to file_size_, over the partial one.
    if (::ftruncate(fd_, static_cast<off_t>(file_size_)) != 0) {
      spdlog::error("checkpoints: cannot cut back {} after a failed write", path_);
    }
    return status;
  }
  next_sequence_ = sequence;
  entries_in_file_ += checkpoints.size();
  file_size_ += frames.size();
  return absl::OkStatus();
}

void CheckpointStore::MaybeCompact() {
  if (entries_in_file_ < options_.compaction_min_entries ||
      entries_in_file_ < 4 * checkpoints_.size()) {
    return;
  }
  // Written aside, then renamed over the log. The descriptor that later entries go to is the one
  // the new contents were written through, so no failure can leave it on an unlinked file. A
  // failure leaves the old log in place and in use: compaction never fails a write that is
  // already durable.
  std::string contents;
  uint64_t sequence = 1;
  for (const auto& [key, checkpoint] : checkpoints_) {
    AppendCheckpointEntry(&contents, sequence++, kPutEntry, checkpoint.SerializeAsString());
  }
  const std::string temp = path_ + ".tmp";
  int fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  absl::Status status = fd < 0 ? ErrnoStatus(errno, "create", temp) : absl::OkStatus();
  if (status.ok()) status = PwriteAll(fd, contents, 0, temp);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoStatus(errno, "fsync", temp);
  if (status.ok() && ::rename(temp.c_str(), path_.c_str()) != 0) {
    status = ErrnoStatus(errno, "rename", temp);
  }
  if (!status.ok()) {
    spdlog::warn("checkpoints: compaction of {} failed, keeping the log as it is: {}", path_,
                 std::string(status.message()));
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    return;
  }
  ::close(fd_);
  fd_ = fd;
  file_size_ = contents.size();
  entries_in_file_ = checkpoints_.size();
  next_sequence_ = sequence;
  // Until the folder is synced the rename may be undone by a crash; the old log holds the same
  // checkpoints, so either file is right.
  if (absl::Status synced = FsyncDirectory(directory_); !synced.ok()) {
    spdlog::warn("checkpoints: {}", std::string(synced.message()));
  }
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::Get(const std::string& consumer,
                                                    const std::string& stream,
                                                    const std::string& shard_id,
                                                    uint64_t incarnation) const {
  absl::MutexLock lock(&mu_);
  auto it = checkpoints_.find(Key(consumer, stream, shard_id));
  if (it == checkpoints_.end() || !BelongsTo(it->second, incarnation)) {
    return absl::NotFoundError(absl::StrCat("ResourceNotFoundException: consumer '", consumer,
                                            "' has no checkpoint for ", stream, "/", shard_id));
  }
  return it->second;
}

std::vector<v1::Checkpoint> CheckpointStore::List(const std::string& consumer,
                                                  const std::string& stream,
                                                  uint64_t incarnation) const {
  std::vector<v1::Checkpoint> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, checkpoint] : checkpoints_) {
      if (checkpoint.stream_name() == stream && BelongsTo(checkpoint, incarnation) &&
          (consumer.empty() || checkpoint.consumer_name() == consumer)) {
        out.push_back(checkpoint);
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const v1::Checkpoint& a, const v1::Checkpoint& b) {
    return std::tie(a.consumer_name(), a.shard_id()) < std::tie(b.consumer_name(), b.shard_id());
  });
  return out;
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::Set(const v1::SetCheckpointRequest& request,
                                                    absl::Time now) {
  absl::MutexLock lock(&mu_);
  const std::string key = Key(request.consumer_name(), request.stream_name(), request.shard_id());
  v1::Checkpoint checkpoint = Record(request.consumer_name(), request.stream_name(),
                                     request.shard_id(), request.incarnation());
  if (!request.lease_owner().empty() && request.lease_epoch() != 0) {
    // A fenced write: only while the lease is still the writer's, and it leaves the lease be.
    if (!HeldBy(checkpoint, request.lease_owner(), request.lease_epoch())) {
      return LeaseConflict(checkpoint, request.consumer_name(), request.shard_id());
    }
  } else if (!request.lease_owner().empty()) {
    const absl::Time expiry = FromProto(checkpoint.lease_expiry());
    if (!checkpoint.lease_owner().empty() && checkpoint.lease_owner() != request.lease_owner() &&
        expiry > now) {
      return absl::FailedPreconditionError(absl::StrCat(
          "LeaseHeldException: the checkpoint of consumer '", request.consumer_name(), "' on ",
          request.stream_name(), "/", request.shard_id(), " is leased by '",
          checkpoint.lease_owner(), "' until ", absl::FormatTime(expiry, absl::UTCTimeZone())));
    }
    const absl::Duration duration =
        LeaseDurationOr(absl::Seconds(request.lease_duration().seconds()) +
                            absl::Nanoseconds(request.lease_duration().nanos()),
                        kDefaultLeaseDuration);
    if (checkpoint.lease_owner() != request.lease_owner() || expiry <= now) {
      checkpoint.set_lease_epoch(checkpoint.lease_epoch() + 1);
    }
    checkpoint.set_lease_owner(request.lease_owner());
    *checkpoint.mutable_lease_expiry() = ToProto(now + duration);
  } else if (!checkpoint.lease_owner().empty()) {
    // A write without a lease is an operator's (`runnel mapping seek`, a redrive): it takes the
    // shard from its owner, as a release would, so that the owner's next fenced write or renewal
    // is refused and it re-takes the shard at this checkpoint instead of writing over it.
    checkpoint.clear_lease_owner();
    checkpoint.clear_lease_expiry();
  }
  if (!request.sequence_number().empty()) {
    checkpoint.set_sequence_number(request.sequence_number());
  }
  *checkpoint.mutable_update_time() = ToProto(now);
  RETURN_IF_ERROR(AppendEntries(kPutEntry, {&checkpoint}));
  checkpoints_[key] = checkpoint;
  // Compact only once memory matches the file: compaction writes what memory holds.
  MaybeCompact();
  return checkpoint;
}

v1::Checkpoint CheckpointStore::Record(const std::string& consumer, const std::string& stream,
                                       const std::string& shard_id, uint64_t incarnation) const {
  v1::Checkpoint checkpoint;
  if (auto it = checkpoints_.find(Key(consumer, stream, shard_id));
      it != checkpoints_.end() && BelongsTo(it->second, incarnation)) {
    checkpoint = it->second;
  } else {
    // Absent, or left by an earlier stream of the name: this incarnation starts afresh (no
    // position, no lease, epoch 0).
    checkpoint.set_consumer_name(consumer);
    checkpoint.set_stream_name(stream);
    checkpoint.set_shard_id(shard_id);
  }
  if (incarnation != 0) checkpoint.set_incarnation(incarnation);
  return checkpoint;
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::Put(v1::Checkpoint checkpoint, absl::Time now) {
  *checkpoint.mutable_update_time() = ToProto(now);
  RETURN_IF_ERROR(AppendEntries(kPutEntry, {&checkpoint}));
  checkpoints_[Key(checkpoint.consumer_name(), checkpoint.stream_name(), checkpoint.shard_id())] =
      checkpoint;
  MaybeCompact();
  return checkpoint;
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::AcquireLease(
    const std::string& consumer, const std::string& stream, const std::string& shard_id,
    const std::string& owner, absl::Duration duration, absl::Time now, uint64_t incarnation) {
  if (owner.empty()) return absl::InvalidArgumentError("InvalidArgumentException: owner is empty");
  absl::MutexLock lock(&mu_);
  v1::Checkpoint record = Record(consumer, stream, shard_id, incarnation);
  const bool live = !record.lease_owner().empty() && FromProto(record.lease_expiry()) > now;
  if (live && record.lease_owner() != owner) return LeaseConflict(record, consumer, shard_id);
  if (!live) {
    // A change of owner, also when the old owner takes back what expired: whatever it still
    // writes under the old epoch is refused.
    record.set_lease_epoch(record.lease_epoch() + 1);
    record.set_lease_owner(owner);
  }
  *record.mutable_lease_expiry() = ToProto(now + LeaseDurationOr(duration, kDefaultLeaseDuration));
  return Put(std::move(record), now);
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::RenewLease(const std::string& consumer,
                                                           const std::string& stream,
                                                           const std::string& shard_id,
                                                           const std::string& owner, int64_t epoch,
                                                           absl::Duration duration, absl::Time now,
                                                           uint64_t incarnation) {
  absl::MutexLock lock(&mu_);
  v1::Checkpoint record = Record(consumer, stream, shard_id, incarnation);
  if (!HeldBy(record, owner, epoch)) return LeaseConflict(record, consumer, shard_id);
  *record.mutable_lease_expiry() = ToProto(now + LeaseDurationOr(duration, kDefaultLeaseDuration));
  return Put(std::move(record), now);
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::ReleaseLease(
    const std::string& consumer, const std::string& stream, const std::string& shard_id,
    const std::string& owner, int64_t epoch, absl::Time now, uint64_t incarnation) {
  absl::MutexLock lock(&mu_);
  v1::Checkpoint record = Record(consumer, stream, shard_id, incarnation);
  if (!HeldBy(record, owner, epoch)) return LeaseConflict(record, consumer, shard_id);
  record.clear_lease_owner();
  record.clear_lease_expiry();
  return Put(std::move(record), now);
}

void CheckpointStore::Heartbeat(const std::string& consumer, const std::string& stream,
                                const v1::PollerMember& member, absl::Duration ttl,
                                absl::Time now) {
  absl::MutexLock lock(&mu_);
  const std::string key = Key(consumer, stream, member.poller_id());
  // Pollers that stopped heartbeating (restarted ones come back under new ids) are forgotten.
  absl::erase_if(members_,
                 [now](const auto& entry) { return FromProto(entry.second.expiry()) <= now; });
  if (ttl <= absl::ZeroDuration()) {
    members_.erase(key);
    return;
  }
  v1::PollerMember& stored = members_[key];
  stored = member;
  *stored.mutable_expiry() = ToProto(now + ttl);
}

std::vector<v1::PollerMember> CheckpointStore::Members(const std::string& consumer,
                                                       const std::string& stream,
                                                       absl::Time now) const {
  std::vector<v1::PollerMember> out;
  const std::string prefix = Key(consumer, stream, "");
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, member] : members_) {
      if (key.compare(0, prefix.size(), prefix) == 0 && FromProto(member.expiry()) > now) {
        out.push_back(member);
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const v1::PollerMember& a, const v1::PollerMember& b) {
    return a.poller_id() < b.poller_id();
  });
  return out;
}

absl::StatusOr<int> CheckpointStore::Delete(const std::string& consumer, const std::string& stream,
                                            const std::string& shard_id) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> doomed;
  for (const auto& [key, checkpoint] : checkpoints_) {
    if (checkpoint.stream_name() == stream &&
        (consumer.empty() || checkpoint.consumer_name() == consumer) &&
        (shard_id.empty() || checkpoint.shard_id() == shard_id)) {
      doomed.push_back(key);
    }
  }
  if (doomed.empty()) return 0;
  std::vector<const v1::Checkpoint*> entries;
  for (const std::string& key : doomed) entries.push_back(&checkpoints_[key]);
  RETURN_IF_ERROR(AppendEntries(kDeleteEntry, entries));
  for (const std::string& key : doomed) checkpoints_.erase(key);
  MaybeCompact();
  return static_cast<int>(doomed.size());
}

absl::StatusOr<CheckpointStore::ReconcileResult> CheckpointStore::Reconcile(
    const absl::flat_hash_map<std::string, uint64_t>& live_streams) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> doomed;
  std::vector<v1::Checkpoint> stamped;
  for (const auto& [key, checkpoint] : checkpoints_) {
    auto live = live_streams.find(checkpoint.stream_name());
    if (live == live_streams.end() ||
        (checkpoint.incarnation() != 0 && checkpoint.incarnation() != live->second)) {
      doomed.push_back(key);
    } else if (checkpoint.incarnation() == 0 && live->second != 0) {
      stamped.push_back(checkpoint);
      stamped.back().set_incarnation(live->second);
    }
  }
  ReconcileResult result;
  if (!doomed.empty()) {
    std::vector<const v1::Checkpoint*> entries;
    for (const std::string& key : doomed) entries.push_back(&checkpoints_[key]);
    RETURN_IF_ERROR(AppendEntries(kDeleteEntry, entries));
    for (const std::string& key : doomed) checkpoints_.erase(key);
    result.deleted = static_cast<int>(doomed.size());
  }
  if (!stamped.empty()) {
    // Rewritten as they were (update time included), with the incarnation added.
    std::vector<const v1::Checkpoint*> entries;
    for (const v1::Checkpoint& checkpoint : stamped) entries.push_back(&checkpoint);
    RETURN_IF_ERROR(AppendEntries(kPutEntry, entries));
    for (v1::Checkpoint& checkpoint : stamped) {
      checkpoints_[Key(checkpoint.consumer_name(), checkpoint.stream_name(),
                       checkpoint.shard_id())] = std::move(checkpoint);
    }
    result.stamped = static_cast<int>(stamped.size());
  }
  MaybeCompact();
  return result;
}

}  // namespace runnel::broker
