#include "poller/destination.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/broker_client.h"
#include "common/file_util.h"

namespace runnel::poller {
namespace {

// Kinesis's record limit is 1 MiB including the partition key; keep a margin for the key.
constexpr size_t kMaxStreamRecordJson = (1 << 20) - 1024;

class FileDestination : public FailureDestination {
 public:
  explicit FileDestination(std::string path) : path_(std::move(path)) {}

  absl::Status Write(const FailureRecord& record) override {
    const std::string line = FailureRecordToJson(record) + "\n";
    absl::MutexLock lock(&mu_);
    // Opened per write: a file that was moved away (log rotation, a redrive) is recreated.
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus(errno, "open", path_);
    absl::Status status = WriteAll(fd, line.data(), line.size(), path_);
    if (status.ok() && ::fdatasync(fd) != 0) status = ErrnoStatus(errno, "fdatasync", path_);
    ::close(fd);
    return status;
  }
  std::string Describe() const override { return "file:" + path_; }

 private:
  const std::string path_;
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

absl::StatusOr<std::unique_ptr<FailureDestination>> MakeFailureDestination(
    const OnFailureDestination& spec, std::shared_ptr<client::BrokerClient> broker) {
  switch (spec.kind) {
    case OnFailureDestination::Kind::kFile:
      return std::make_unique<FileDestination>(spec.target);
    case OnFailureDestination::Kind::kStream:
      return std::make_unique<StreamDestination>(spec.target, std::move(broker));
    default:
      return nullptr;
  }
}

}  // namespace runnel::poller
