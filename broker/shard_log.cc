#include "broker/shard_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "absl/base/internal/endian.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crc32c.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "spdlog/spdlog.h"

namespace runnel::broker {
namespace {

namespace fs = std::filesystem;

// One index entry about every 4 KiB of frames: a read seeks to the entry at or before its offset
// and scans at most that far.
constexpr uint64_t kIndexIntervalBytes = 4096;
constexpr char kIndexMagic[8] = {'R', 'N', 'L', 'I', 'D', 'X', '0', '1'};

struct IndexEntry {
  uint64_t offset;
  uint64_t position;
  int64_t arrival_ms;
};

std::string SegmentFileName(uint64_t base_offset) {
  return absl::StrFormat("%020u.log", base_offset);
}
std::string IndexFileName(uint64_t base_offset) {
  return absl::StrFormat("%020u.index", base_offset);
}

absl::Status PwriteAll(int fd, const char* data, size_t size, uint64_t position,
                       std::string_view path) {
  while (size > 0) {
    ssize_t n = ::pwrite(fd, data, size, static_cast<off_t>(position));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write", path);
    data += n;
    size -= static_cast<size_t>(n);
    position += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status Datasync(int fd, std::string_view path) {
  if (::fdatasync(fd) != 0) return ErrnoStatus(errno, "fdatasync", path);
  return absl::OkStatus();
}

}  // namespace

struct ShardLog::Segment {
  Segment(uint64_t base, std::string file_path, int file_descriptor)
      : base_offset(base), path(std::move(file_path)), fd(file_descriptor) {}
  ~Segment() {
    if (fd >= 0) ::close(fd);
  }

  // Position of the index entry at or before `offset` (0 when there is none).
  uint64_t PositionFor(uint64_t offset) const {
    absl::MutexLock lock(&mu);
    auto it = std::upper_bound(index.begin(), index.end(), offset,
                               [](uint64_t o, const IndexEntry& e) { return o < e.offset; });
    return it == index.begin() ? 0 : std::prev(it)->position;
  }
  // Offset of the index entry before the first record that arrived at or after `arrival_ms`.
  uint64_t OffsetBeforeArrival(int64_t arrival_ms) const {
    absl::MutexLock lock(&mu);
    auto it = std::lower_bound(index.begin(), index.end(), arrival_ms,
                               [](const IndexEntry& e, int64_t ms) { return e.arrival_ms < ms; });
    return it == index.begin() ? base_offset : std::prev(it)->offset;
  }
  uint64_t LastOffset() const {
    absl::MutexLock lock(&mu);
    return last_offset;
  }
  int64_t LastArrival() const {
    absl::MutexLock lock(&mu);
    return last_arrival_ms;
  }

  const uint64_t base_offset;
  const std::string path;
  const int fd;
  // Bytes readers may read: every frame below is complete and durable.
  std::atomic<uint64_t> size{0};
  bool sealed = false;  // guarded by the log's mu_

  mutable absl::Mutex mu;
  std::vector<IndexEntry> index ABSL_GUARDED_BY(mu);
  uint64_t last_offset ABSL_GUARDED_BY(mu) = 0;  // 0: no record yet
  int64_t last_arrival_ms ABSL_GUARDED_BY(mu) = 0;
};

namespace {

using Segment = ShardLog::Segment;

// What a full scan of a segment file found.
struct ScanResult {
  uint64_t valid_end = 0;  // end of the last good frame
  uint64_t corrupt_bytes = 0;
  std::vector<std::pair<uint64_t, uint64_t>> corrupt_ranges;  // [start, end) byte positions
};

// Looks for the next good frame after a bad one: a frame whose checksum holds and whose offset
// follows `last_offset`. Returns its position, or `contents.size()` when there is none.
uint64_t Resync(std::string_view contents, uint64_t from, uint64_t last_offset) {
  for (uint64_t p = from; p + kFrameHeaderSize + kPayloadFixedSize <= contents.size(); ++p) {
    RecordView record;
    size_t frame_size;
    if (DecodeFrame(contents.substr(p), &record, &frame_size) == FrameStatus::kOk &&
        record.offset > last_offset) {
      return p;
    }
  }
  return contents.size();
}

// Rebuilds `segment`'s index from its file and finds torn or corrupt ranges.
absl::StatusOr<ScanResult> ScanSegment(Segment& segment, const std::string& log_name) {
  ASSIGN_OR_RETURN(std::string contents, ReadFileToString(segment.path));
  ScanResult result;
  std::vector<IndexEntry> index;
  uint64_t last_offset = 0;
  int64_t last_arrival = 0;
  uint64_t last_index_position = 0;
  uint64_t position = 0;
  while (position < contents.size()) {
    RecordView record;
    size_t frame_size;
    FrameStatus status =
        DecodeFrame(std::string_view(contents).substr(position), &record, &frame_size);
    if (status == FrameStatus::kOk && (last_offset == 0 ? record.offset >= segment.base_offset
                                                        : record.offset == last_offset + 1)) {
      if (index.empty() || position - last_index_position >= kIndexIntervalBytes) {
        index.push_back({record.offset, position, record.arrival_ms});
        last_index_position = position;
      }
      last_offset = record.offset;
      last_arrival = record.arrival_ms;
      position += frame_size;
      result.valid_end = position;
      continue;
    }
    uint64_t next = Resync(contents, position + 1, last_offset);
    if (next >= contents.size()) break;  // nothing good follows: a torn tail
    spdlog::error(
        "shard {}: corrupt records in {} at bytes [{}, {}) after offset {}; they are "
        "kept and reported as data loss to readers",
        log_name, segment.path, position, next, last_offset);
    result.corrupt_ranges.emplace_back(position, next);
    result.corrupt_bytes += next - position;
    // Resume after the damage, with an index entry there so iterators can seek past it.
    RecordView after;
    size_t after_size;
    DecodeFrame(std::string_view(contents).substr(next), &after, &after_size);
    index.push_back({after.offset, next, after.arrival_ms});
    last_index_position = next;
    last_offset = after.offset - 1;
    position = next;
  }
  absl::MutexLock lock(&segment.mu);
  segment.index = std::move(index);
  segment.last_offset = last_offset;
  segment.last_arrival_ms = last_arrival;
  return result;
}

// Index file: magic, count, entries, then last_offset, last_arrival_ms, segment size, and a
// masked CRC32C of everything before it. Rebuilt from the segment when anything disagrees.
std::string EncodeIndex(const std::vector<IndexEntry>& index, uint64_t last_offset,
                        int64_t last_arrival_ms, uint64_t segment_size) {
  std::string out(kIndexMagic, sizeof(kIndexMagic));
  auto put64 = [&out](uint64_t v) {
    char buffer[8];
    absl::little_endian::Store64(buffer, v);
    out.append(buffer, 8);
  };
  put64(index.size());
  for (const IndexEntry& e : index) {
    put64(e.offset);
    put64(e.position);
    put64(static_cast<uint64_t>(e.arrival_ms));
  }
  put64(last_offset);
  put64(static_cast<uint64_t>(last_arrival_ms));
  put64(segment_size);
  char crc[4];
  absl::little_endian::Store32(crc, MaskCrc(Crc32c(out)));
  out.append(crc, 4);
  return out;
}

bool DecodeIndex(std::string_view in, uint64_t segment_size, std::vector<IndexEntry>* index,
                 uint64_t* last_offset, int64_t* last_arrival_ms) {
  if (in.size() < sizeof(kIndexMagic) + 8 + 24 + 4) return false;
  if (in.substr(0, sizeof(kIndexMagic)) != std::string_view(kIndexMagic, sizeof(kIndexMagic))) {
    return false;
  }
  const uint32_t crc = UnmaskCrc(absl::little_endian::Load32(in.data() + in.size() - 4));
  if (Crc32c(in.substr(0, in.size() - 4)) != crc) return false;
  const char* p = in.data() + sizeof(kIndexMagic);
  const uint64_t count = absl::little_endian::Load64(p);
  p += 8;
  if (in.size() != sizeof(kIndexMagic) + 8 + count * 24 + 24 + 4) return false;
  index->clear();
  index->reserve(count);
  for (uint64_t i = 0; i < count; ++i, p += 24) {
    index->push_back({absl::little_endian::Load64(p), absl::little_endian::Load64(p + 8),
                      static_cast<int64_t>(absl::little_endian::Load64(p + 16))});
  }
  *last_offset = absl::little_endian::Load64(p);
  *last_arrival_ms = static_cast<int64_t>(absl::little_endian::Load64(p + 8));
  return absl::little_endian::Load64(p + 16) == segment_size;
}

}  // namespace

ShardLog::ShardLog(ShardLogOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<ShardLog>> ShardLog::Open(ShardLogOptions options) {
  std::unique_ptr<ShardLog> log(new ShardLog(std::move(options)));
  RETURN_IF_ERROR(log->Recover());
  log->writer_ = std::thread([raw = log.get()] {
    ScopedLogTags tags{{kTagComponent, "broker"}};
    raw->WriterLoop();
  });
  return log;
}

ShardLog::~ShardLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

int64_t ShardLog::NowMs() const {
  return options_.now_ms ? options_.now_ms() : absl::ToUnixMillis(absl::Now());
}

absl::Status ShardLog::Recover() {
  std::error_code ec;
  fs::create_directories(options_.directory, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("create ", options_.directory, ": ", ec.message()));
  }
  std::vector<uint64_t> bases;
  for (const auto& entry : fs::directory_iterator(options_.directory, ec)) {
    const std::string file = entry.path().filename().string();
    uint64_t base;
    if (file.size() == 24 && file.ends_with(".log") &&
        absl::SimpleAtoi(Sv(file).substr(0, 20), &base)) {
      bases.push_back(base);
    } else if (file.ends_with(".tmp")) {
      fs::remove(entry.path(), ec);  // an index write interrupted by a crash
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("list ", options_.directory, ": ", ec.message()));
  std::sort(bases.begin(), bases.end());

  std::vector<std::shared_ptr<Segment>> segments;
  for (size_t i = 0; i < bases.size(); ++i) {
    const bool active = i + 1 == bases.size();
    const std::string path = (fs::path(options_.directory) / SegmentFileName(bases[i])).string();
    int fd = ::open(path.c_str(), (active ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "open", path);
    auto segment = std::make_shared<Segment>(bases[i], path, fd);
    struct stat st;
    if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, "stat", path);
    uint64_t file_size = static_cast<uint64_t>(st.st_size);

    bool indexed = false;
    const std::string index_path =
        (fs::path(options_.directory) / IndexFileName(bases[i])).string();
    if (!active) {
      auto index_contents = ReadFileToString(index_path);
      if (index_contents.ok()) {
        absl::MutexLock lock(&segment->mu);
        indexed = DecodeIndex(*index_contents, file_size, &segment->index, &segment->last_offset,
                              &segment->last_arrival_ms);
      }
    }
    if (!indexed) {
      ASSIGN_OR_RETURN(ScanResult scan, ScanSegment(*segment, options_.name));
      if (scan.valid_end < file_size) {
        if (active) {
          // A torn tail: the last write never completed, so nothing in it was acknowledged.
          spdlog::warn("shard {}: cutting a torn tail of {} bytes at byte {} of {}", options_.name,
                       file_size - scan.valid_end, scan.valid_end, path);
          if (::ftruncate(fd, static_cast<off_t>(scan.valid_end)) != 0) {
            return ErrnoStatus(errno, "truncate", path);
          }
          RETURN_IF_ERROR(Datasync(fd, path));
          file_size = scan.valid_end;
        } else {
          spdlog::error(
              "shard {}: {} unreadable bytes at the end of sealed segment {}; "
              "reported as data loss to readers",
              options_.name, file_size - scan.valid_end, path);
        }
      }
      if (!active) {
        absl::MutexLock lock(&segment->mu);
        RETURN_IF_ERROR(
            WriteFileAtomically(index_path, EncodeIndex(segment->index, segment->last_offset,
                                                        segment->last_arrival_ms, file_size)));
      }
    }
    segment->size.store(file_size);
    segment->sealed = !active;
    segments.push_back(std::move(segment));
  }

  uint64_t next = 1;
  int64_t last_arrival = 0;
  for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
    uint64_t last = (*it)->LastOffset();
    if (last != 0) {
      // Never below the base of a later (empty) segment: when a sealed segment lost its tail,
      // last + 1 was already handed out, and records appended there would sit in a segment
      // whose base is above their offset (unreadable, and cut as a torn tail on reopen).
      next = std::max(next, last + 1);
      last_arrival = (*it)->LastArrival();
      break;
    }
    next = std::max(next, (*it)->base_offset);
  }
  {
    absl::MutexLock lock(&mu_);
    segments_ = std::move(segments);
    next_offset_ = next;
    pending_first_offset_ = next;
    last_assigned_arrival_ms_ = last_arrival;
  }
  end_offset_.store(next);
  last_arrival_ms_.store(last_arrival);
  if (bases.empty()) return CreateSegment(next);
  return absl::OkStatus();
}

absl::Status ShardLog::CreateSegment(uint64_t base_offset) {
  const std::string path = (fs::path(options_.directory) / SegmentFileName(base_offset)).string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "create", path);
  auto segment = std::make_shared<Segment>(base_offset, path, fd);
  RETURN_IF_ERROR(FsyncDirectory(options_.directory));
  absl::MutexLock lock(&mu_);
  segments_.push_back(std::move(segment));
  return absl::OkStatus();
}

absl::Status ShardLog::SealActiveSegment() {
  std::shared_ptr<Segment> active;
  {
    absl::MutexLock lock(&mu_);
    active = segments_.back();
  }
  RETURN_IF_ERROR(Datasync(active->fd, active->path));
  dirty_ = false;
  std::string index;
  {
    absl::MutexLock lock(&active->mu);
    index = EncodeIndex(active->index, active->last_offset, active->last_arrival_ms,
                        active->size.load());
  }
  RETURN_IF_ERROR(WriteFileAtomically(
      (fs::path(options_.directory) / IndexFileName(active->base_offset)).string(), index));
  absl::MutexLock lock(&mu_);
  active->sealed = true;
  return absl::OkStatus();
}

absl::StatusOr<ShardLog::AppendTicket> ShardLog::Append(std::span<const AppendRecord> records,
                                                        AppendDone done) {
  if (records.empty()) {
    // Nothing would be written, so the writer would never complete `done`: refuse instead.
    return absl::InvalidArgumentError(absl::StrCat("shard ", options_.name, ": empty append"));
  }
  for (const AppendRecord& record : records) {
    if (record.partition_key.size() > 0xffff ||
        kPayloadFixedSize + record.partition_key.size() + record.data.size() > kMaxPayloadSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "record of ", record.partition_key.size() + record.data.size(),
          " bytes is too large to store (at most ", kMaxPayloadSize - kPayloadFixedSize, ")"));
    }
  }
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError(absl::StrCat("shard ", options_.name, " is closed"));
  if (!broken_.ok()) return broken_;
  AppendTicket ticket{next_offset_, std::max(NowMs(), last_assigned_arrival_ms_)};
  last_assigned_arrival_ms_ = ticket.arrival_ms;
  for (const AppendRecord& record : records) {
    const uint64_t position = pending_.size();
    if (position == 0 || position - last_hint_position_ >= kIndexIntervalBytes) {
      pending_hints_.push_back({next_offset_, position, ticket.arrival_ms});
      last_hint_position_ = position;
    }
    AppendFrame(&pending_, next_offset_++, ticket.arrival_ms, record.partition_key, record.data);
  }
  pending_done_.push_back({std::move(done)});
  return ticket;
}

absl::Status ShardLog::WriteBatch(const std::string& batch, const std::vector<IndexHint>& hints,
                                  uint64_t first_offset, uint64_t last_offset,
                                  int64_t last_arrival_ms) {
  std::shared_ptr<Segment> active;
  {
    absl::MutexLock lock(&mu_);
    active = segments_.back();
  }
  if (active->size.load() >= options_.segment_bytes && active->LastOffset() != 0) {
    RETURN_IF_ERROR(SealActiveSegment());
    RETURN_IF_ERROR(CreateSegment(first_offset));
    absl::MutexLock lock(&mu_);
    active = segments_.back();
  }
  const uint64_t start = active->size.load();
  absl::Status status = PwriteAll(active->fd, batch.data(), batch.size(), start, active->path);
  if (status.ok() && options_.fsync == FsyncMode::kAlways) {
    status = Datasync(active->fd, active->path);
  }
  if (!status.ok()) {
    // Cut the file back so the next batch starts on a frame boundary after the durable data.
    if (::ftruncate(active->fd, static_cast<off_t>(start)) != 0 || ::fdatasync(active->fd) != 0) {
      absl::MutexLock lock(&mu_);
      broken_ = absl::InternalError(absl::StrCat("shard ", options_.name,
                                                 " cannot recover from a failed write (",
                                                 status.message(), "); restart the broker"));
    }
    return status;
  }
  if (options_.fsync != FsyncMode::kAlways) dirty_ = true;
  {
    absl::MutexLock lock(&active->mu);
    for (const IndexHint& hint : hints) {
      active->index.push_back({hint.offset, start + hint.position_in_batch, hint.arrival_ms});
    }
    active->last_offset = last_offset;
    active->last_arrival_ms = last_arrival_ms;
  }
  active->size.store(start + batch.size(), std::memory_order_release);
  (void)first_offset;
  return absl::OkStatus();
}

void ShardLog::WriterLoop() {
  for (;;) {
    std::string batch = std::move(spare_buffer_);
    batch.clear();
    std::vector<PendingAppend> done;
    std::vector<IndexHint> hints;
    uint64_t first_offset = 0, last_offset = 0;
    int64_t last_arrival = 0;
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !pending_.empty();
      };
      if (options_.fsync == FsyncMode::kInterval && dirty_) {
        mu_.AwaitWithDeadline(absl::Condition(&ready), last_sync_ + options_.fsync_interval);
      } else {
        mu_.Await(absl::Condition(&ready));
      }
      stopping = stopping_;
      if (!pending_.empty()) {
        batch.swap(pending_);
        done.swap(pending_done_);
        hints.swap(pending_hints_);
        first_offset = pending_first_offset_;
        last_offset = next_offset_ - 1;
        last_arrival = last_assigned_arrival_ms_;
        pending_first_offset_ = next_offset_;
        last_hint_position_ = 0;
      }
    }

    std::vector<std::function<void()>> woken;
    if (!batch.empty()) {
      absl::Status status = WriteBatch(batch, hints, first_offset, last_offset, last_arrival);
      if (status.ok()) {
        absl::MutexLock lock(&mu_);
        end_offset_.store(last_offset + 1, std::memory_order_release);
        last_arrival_ms_.store(last_arrival, std::memory_order_release);
        for (auto& [id, callback] : waiters_) woken.push_back(std::move(callback));
        waiters_.clear();
      } else {
        spdlog::error("shard {}: write failed, {} appends rejected: {}", options_.name, done.size(),
                      status.ToString());
        // Everything queued behind the failed batch carries offsets that follow it: reject it
        // too and hand out the failed offsets again, so offsets stay gapless.
        absl::MutexLock lock(&mu_);
        for (auto& pending : pending_done_) done.push_back(std::move(pending));
        pending_done_.clear();
        pending_.clear();
        pending_hints_.clear();
        next_offset_ = end_offset_.load();
        pending_first_offset_ = next_offset_;
        last_hint_position_ = 0;
      }
      for (auto& pending : done) pending.done(status);
    }
    for (auto& callback : woken) callback();

    if (dirty_ && (stopping || (options_.fsync == FsyncMode::kInterval &&
                                absl::Now() - last_sync_ >= options_.fsync_interval))) {
      std::shared_ptr<Segment> active;
      {
        absl::MutexLock lock(&mu_);
        active = segments_.back();
      }
      if (absl::Status s = Datasync(active->fd, active->path); !s.ok()) {
        spdlog::error("shard {}: background fsync failed: {}", options_.name, s.ToString());
      }
      dirty_ = false;
      last_sync_ = absl::Now();
    }
    spare_buffer_ = std::move(batch);
    if (stopping) {
      absl::MutexLock lock(&mu_);
      if (pending_.empty()) break;
    }
  }
  // Wake long polls so they answer instead of waiting for a log that is going away.
  std::vector<std::function<void()>> woken;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, callback] : waiters_) woken.push_back(std::move(callback));
    waiters_.clear();
  }
  for (auto& callback : woken) callback();
}

std::vector<std::shared_ptr<ShardLog::Segment>> ShardLog::SegmentsSnapshot() const {
  absl::MutexLock lock(&mu_);
  return segments_;
}

uint64_t ShardLog::FirstOffset() const {
  absl::MutexLock lock(&mu_);
  return segments_.empty() ? end_offset_.load() : segments_.front()->base_offset;
}

absl::StatusOr<ReadBatch> ShardLog::Read(uint64_t offset, const ReadLimits& limits) const {
  std::vector<std::shared_ptr<Segment>> segments;
  uint64_t end;
  {
    absl::MutexLock lock(&mu_);
    segments = segments_;
    end = end_offset_.load(std::memory_order_acquire);
  }
  ReadBatch batch;
  if (segments.empty()) {
    batch.next_offset = std::max(offset, end);
    return batch;
  }
  offset = std::max(offset, segments.front()->base_offset);
  batch.next_offset = offset;
  if (offset >= end) return batch;

  // At damage, the records already collected are returned first (next_offset = the damaged
  // offset), so the next read reports it: failing the whole read would make a consumer skip
  // good records before the damage along with the damaged one.
  auto data_loss = [&](uint64_t at_offset, const Segment& segment, uint64_t position,
                       std::string_view what) -> absl::StatusOr<ReadBatch> {
    if (!batch.records.empty()) return std::move(batch);
    return absl::DataLossError(
        absl::StrCat("shard ", options_.name, ": ", Sv(what), " at offset ", at_offset, " (",
                     segment.path, ", byte ", position,
                     "); the record cannot be read. Get an iterator after it to skip "
                     "the damaged range."));
  };

  size_t segment_index = std::upper_bound(segments.begin(), segments.end(), offset,
                                          [](uint64_t o, const std::shared_ptr<Segment>& s) {
                                            return o < s->base_offset;
                                          }) -
                         segments.begin() - 1;
  size_t bytes = 0;
  bool full = false;
  while (!full && offset < end && segment_index < segments.size()) {
    const Segment& segment = *segments[segment_index];
    const uint64_t segment_size = segment.size.load(std::memory_order_acquire);
    uint64_t position = segment.PositionFor(offset);
    // Start at most 1 MiB and double while the read wants more: a read usually needs far less
    // than its byte budget (10,000 records of 100 bytes are 1.4 MiB of GetRecords's 10 MiB), and
    // every byte read is first zeroed, then copied from the page cache.
    size_t chunk_size =
        std::clamp<size_t>(limits.max_bytes - bytes + (64u << 10), 64u << 10, 1u << 20);
    while (!full && offset < end && position < segment_size) {
      size_t want = std::min<uint64_t>(chunk_size, segment_size - position);
      auto buffer = std::make_shared<std::string>();
      buffer->resize(want);
      ASSIGN_OR_RETURN(size_t got,
                       PreadUpTo(segment.fd, buffer->data(), want, position, segment.path));
      if (got < want) return data_loss(offset, segment, position + got, "segment file is short");
      std::string_view view(*buffer);
      size_t consumed = 0;
      bool used = false;
      while (consumed < view.size()) {
        RecordView record;
        size_t frame_size;
        FrameStatus status = DecodeFrame(view.substr(consumed), &record, &frame_size);
        if (status == FrameStatus::kTruncated) {
          if (position + consumed + std::max<size_t>(frame_size, kFrameHeaderSize) > segment_size) {
            return data_loss(offset, segment, position + consumed, "truncated record");
          }
          if (consumed == 0) chunk_size = std::max(chunk_size, frame_size);  // one big frame
          break;
        }
        if (status == FrameStatus::kCorrupt) {
          return data_loss(offset, segment, position + consumed, "corrupt record (bad checksum)");
        }
        if (record.offset < offset) {  // scanning forward from the index entry
          consumed += frame_size;
          continue;
        }
        if (record.offset != offset) {
          return data_loss(offset, segment, position + consumed,
                           absl::StrCat("records missing up to offset ", record.offset));
        }
        // The writer publishes a segment's size before EndOffset(): stop at the end this read
        // started with, so what a read returns never runs ahead of EndOffset() (waiters and
        // millis_behind_latest are computed against it).
        if (record.offset >= end) {
          full = true;
          break;
        }
        consumed += frame_size;
        ++offset;
        batch.next_offset = offset;
        if (record.arrival_ms < limits.min_arrival_ms) continue;  // expired
        const size_t record_bytes = record.partition_key.size() + record.data.size();
        if (!batch.records.empty() && bytes + record_bytes > limits.max_bytes) {
          --offset;
          batch.next_offset = offset;
          full = true;
          break;
        }
        batch.records.push_back(record);
        bytes += record_bytes;
        // Keep the views' storage as soon as one is taken: a DATA_LOSS further on returns the
        // batch from inside this loop.
        if (!used) batch.buffers.push_back(buffer);
        used = true;
        if (batch.records.size() >= limits.max_records) {
          full = true;
          break;
        }
      }
      position += consumed;
      chunk_size = std::max(chunk_size, std::min<size_t>(chunk_size * 2, 8u << 20));
    }
    if (!full && offset < end) {
      ++segment_index;
      if (segment_index < segments.size() && segments[segment_index]->base_offset > offset) {
        return data_loss(
            offset, segment, segment_size,
            absl::StrCat("records missing up to offset ", segments[segment_index]->base_offset));
      }
    }
  }
  return batch;
}

absl::StatusOr<uint64_t> ShardLog::OffsetAtTimestamp(int64_t arrival_ms) const {
  for (const auto& segment : SegmentsSnapshot()) {
    if (segment->LastOffset() == 0 || segment->LastArrival() < arrival_ms) continue;
    uint64_t offset = std::max(segment->OffsetBeforeArrival(arrival_ms), segment->base_offset);
    for (;;) {
      ReadLimits limits;
      limits.max_records = 1000;
      ASSIGN_OR_RETURN(ReadBatch batch, Read(offset, limits));
      for (const RecordView& record : batch.records) {
        if (record.arrival_ms >= arrival_ms) return record.offset;
      }
      if (batch.records.empty() || batch.next_offset == offset) break;
      offset = batch.next_offset;
    }
  }
  return EndOffset();
}

absl::StatusOr<int> ShardLog::DeleteSegmentsBefore(int64_t cutoff_ms) {
  std::vector<std::shared_ptr<Segment>> doomed;
  {
    absl::MutexLock lock(&mu_);
    while (segments_.size() > 1 && segments_.front()->sealed &&
           segments_.front()->LastArrival() < cutoff_ms) {
      doomed.push_back(segments_.front());
      segments_.erase(segments_.begin());
    }
  }
  for (const auto& segment : doomed) {
    // Readers holding the segment keep reading through their open descriptor.
    std::error_code ec;
    fs::remove(segment->path, ec);
    if (ec) return absl::InternalError(absl::StrCat("remove ", segment->path, ": ", ec.message()));
    fs::remove(fs::path(options_.directory) / IndexFileName(segment->base_offset), ec);
  }
  if (!doomed.empty()) RETURN_IF_ERROR(FsyncDirectory(options_.directory));
  return static_cast<int>(doomed.size());
}

uint64_t ShardLog::AddWaiter(std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  uint64_t id = next_waiter_id_++;
  waiters_.emplace(id, std::move(callback));
  return id;
}

bool ShardLog::RemoveWaiter(uint64_t id) {
  absl::MutexLock lock(&mu_);
  return waiters_.erase(id) > 0;
}

uint64_t ShardLog::DiskBytes() const {
  uint64_t total = 0;
  for (const auto& segment : SegmentsSnapshot()) total += segment->size.load();
  return total;
}

}  // namespace runnel::broker
