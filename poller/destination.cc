#include "poller/destination.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/broker_client.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {
namespace {

// Kinesis's record limit is 1 MiB including the partition key; keep a margin for the key.
constexpr size_t kMaxStreamRecordJson = (1 << 20) - 1024;

// Where the whole lines of the file at `fd` end: its size, or (when the last line is unfinished,
// left by a write that failed or was interrupted) the end of the last '\n'.
absl::StatusOr<uint64_t> EndOfWholeLines(int fd, const std::string& path) {
  struct stat info;
  if (::fstat(fd, &info) != 0) return ErrnoStatus(errno, "stat", path);
  uint64_t end = static_cast<uint64_t>(info.st_size);
  char buffer[4096];
  while (end > 0) {
    const uint64_t chunk = std::min<uint64_t>(end, sizeof(buffer));
    ASSIGN_OR_RETURN(size_t got, PreadUpTo(fd, buffer, chunk, end - chunk, path));
    if (got != chunk) return absl::DataLossError(absl::StrCat(path, " shrank while read"));
    for (uint64_t i = chunk; i > 0; --i) {
      if (buffer[i - 1] == '\n') return end - chunk + i;
    }
    end -= chunk;
  }
  return 0;
}

class FileDestination : public FailureDestination {
 public:
  FileDestination(std::string path, FileDestinationIo io) : path_(std::move(path)), io_(io) {
    if (!io_.write)
      io_.write = [](int fd, const void* data, size_t size) { return ::write(fd, data, size); };
  }

  // Appends one JSON line and fdatasyncs it. The file always ends on a whole line before the
  // write: an unfinished last line (a failed or interrupted write, never acknowledged, so the
  // lane writes that record again) is cut first, and a write that fails is cut back at once.
  absl::Status Write(const FailureRecord& record) override {
    const std::string line = FailureRecordToJson(record) + "\n";
    absl::MutexLock lock(&mu_);
    // Opened per write: a file that was moved away (log rotation, a redrive) is recreated.
    int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus(errno, "open", path_);
    absl::Status status = WriteLocked(fd, line);
    ::close(fd);  // releases the flock
    return status;
  }
  std::string Describe() const override { return "file:" + path_; }

 private:
  absl::Status WriteLocked(int fd, const std::string& line) {
    // Other writers of the same file (another mapping's destination, another poller) append
    // whole lines too; the lock keeps one's cut-back from taking another's line.
    if (::flock(fd, LOCK_EX) != 0) return ErrnoStatus(errno, "lock", path_);
    ASSIGN_OR_RETURN(const uint64_t good_size, EndOfWholeLines(fd, path_));
    struct stat info;
    if (::fstat(fd, &info) != 0) return ErrnoStatus(errno, "stat", path_);
    if (static_cast<uint64_t>(info.st_size) > good_size) {
      spdlog::warn(
          "{}: cutting an unfinished last line of {} bytes (a write that did not "
          "complete; its record is written again)",
          path_, static_cast<uint64_t>(info.st_size) - good_size);
      if (::ftruncate(fd, static_cast<off_t>(good_size)) != 0) {
        return ErrnoStatus(errno, "truncate", path_);
      }
    }
    absl::Status status = WriteWhole(fd, line);
    if (status.ok() && ::fdatasync(fd) != 0) status = ErrnoStatus(errno, "fdatasync", path_);
    if (!status.ok() && ::ftruncate(fd, static_cast<off_t>(good_size)) != 0) {
      // The next write cuts it instead.
      spdlog::warn("{}: cannot cut back a failed write yet: {}", path_, std::strerror(errno));
    }
    return status;
  }

  absl::Status WriteWhole(int fd, const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = io_.write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus(errno, "write", path_);
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  const std::string path_;
  FileDestinationIo io_;
  absl::Mutex mu_;
};

class StreamDestination : public FailureDestination {
 public:
  StreamDestination(std::string stream, std::shared_ptr<client::BrokerClient> broker)
      : stream_(std::move(stream)), broker_(std::move(broker)) {}

  absl::Status Write(const FailureRecord& record) override {
    v1::PutRecordsRequest request;
    request.set_stream_name(stream_);
    for (const FailureRecord& part : SplitFailureRecord(record, kMaxStreamRecordJson)) {
      auto* entry = request.add_records();
      // By source shard, so a shard's failure records stay in order.
      entry->set_partition_key(part.shard_id.empty() ? "unknown" : part.shard_id);
      entry->set_data(FailureRecordToJson(part));
    }
    // At most 5 MiB per PutRecords: send in groups that fit.
    std::vector<v1::PutRecordsRequest> requests(1);
    size_t bytes = 0;
    for (auto& entry : *request.mutable_records()) {
      const size_t size = entry.data().size() + entry.partition_key().size();
      if (requests.back().records_size() > 0 &&
          (bytes + size > (5u << 20) || requests.back().records_size() == 500)) {
        requests.emplace_back();
        bytes = 0;
      }
      requests.back().set_stream_name(stream_);
      *requests.back().add_records() = std::move(entry);
      bytes += size;
    }
    for (const auto& part : requests) {
      auto response = broker_->PutRecords(part);
      if (!response.ok()) {
        return client::WithContext(response.status(), absl::StrCat("stream:", stream_));
      }
      if (response->failed_record_count() > 0) {
        // Parts already written stay written; the retry writes them again (at-least-once, as
        // every destination write).
        for (const auto& entry : response->records()) {
          if (!entry.error_code().empty()) {
            return absl::UnavailableError(absl::StrCat("stream:", stream_, ": ", entry.error_code(),
                                                       ": ", entry.error_message()));
          }
        }
      }
    }
    return absl::OkStatus();
  }
  std::string Describe() const override { return "stream:" + stream_; }

 private:
  const std::string stream_;
  const std::shared_ptr<client::BrokerClient> broker_;
};

FailureRecord Part(const FailureRecord& whole, size_t begin, size_t end) {
  FailureRecord part = whole;
  part.payload.records.assign(whole.payload.records.begin() + static_cast<std::ptrdiff_t>(begin),
                              whole.payload.records.begin() + static_cast<std::ptrdiff_t>(end));
  const auto& first = part.payload.records.front();
  const auto& last = part.payload.records.back();
  part.start_sequence_number = first.sequence_number;
  part.end_sequence_number = last.sequence_number;
  part.approximate_arrival_of_first_record_ms = first.approximate_arrival_ms;
  part.approximate_arrival_of_last_record_ms = last.approximate_arrival_ms;
  part.batch_size = static_cast<int>(end - begin);
  return part;
}

void SplitInto(const FailureRecord& whole, size_t begin, size_t end, size_t max_json_bytes,
               std::vector<FailureRecord>& out) {
  FailureRecord part = Part(whole, begin, end);
  if (end - begin <= 1 || FailureRecordToJson(part).size() <= max_json_bytes) {
    out.push_back(std::move(part));
    return;
  }
  const size_t middle = begin + (end - begin) / 2;
  SplitInto(whole, begin, middle, max_json_bytes, out);
  SplitInto(whole, middle, end, max_json_bytes, out);
}

}  // namespace

std::vector<FailureRecord> SplitFailureRecord(const FailureRecord& record, size_t max_json_bytes) {
  if (!record.has_payload || record.payload.records.empty() ||
      FailureRecordToJson(record).size() <= max_json_bytes) {
    return {record};
  }
  std::vector<FailureRecord> parts;
  SplitInto(record, 0, record.payload.records.size(), max_json_bytes, parts);
  return parts;
}

std::unique_ptr<FailureDestination> MakeFileDestination(std::string path, FileDestinationIo io) {
  return std::make_unique<FileDestination>(std::move(path), std::move(io));
}

absl::StatusOr<std::unique_ptr<FailureDestination>> MakeFailureDestination(
    const OnFailureDestination& spec, std::shared_ptr<client::BrokerClient> broker) {
  switch (spec.kind) {
    case OnFailureDestination::Kind::kFile:
      return MakeFileDestination(spec.target);
    case OnFailureDestination::Kind::kStream:
      return std::make_unique<StreamDestination>(spec.target, std::move(broker));
    default:
      return nullptr;
  }
}

}  // namespace runnel::poller
