// The shard log: append and read, group commit under concurrency, segment rolling, the index
// files, recovery of torn tails, corruption reported as DATA_LOSS (never returned as data),
// timestamps, retention and waiters. Each test works in its own folder, with a fake clock.
#include "broker/shard_log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "broker/log_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace runnel::broker {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr absl::Duration kPatience = absl::Seconds(10);
constexpr char kName[] = "orders/shardId-000000000001";

// A record as the test wrote it or read it back (owning copies).
struct Rec {
  uint64_t offset = 0;
  int64_t arrival_ms = 0;
  std::string key;
  std::string data;
  bool operator==(const Rec&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Rec& r) {
  return os << "{" << r.offset << ", " << r.arrival_ms << ", " << r.key << ", "
            << r.data.substr(0, 40) << "}";
}

std::string Key(uint64_t i) { return absl::StrCat("key-", i); }
std::string Data(uint64_t i, size_t size = 0) {
  std::string data = absl::StrCat("data-", i, "-");
  while (data.size() < size) data.push_back(static_cast<char>('a' + (data.size() + i) % 26));
  return data;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteFile(const fs::path& path, std::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
}
void FlipByte(const fs::path& path, uint64_t position, uint8_t mask = 0x40) {
  std::string contents = ReadFile(path);
  ASSERT_LT(position, contents.size());
  contents[position] = static_cast<char>(contents[position] ^ mask);
  WriteFile(path, contents);
}

class ShardLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = absl::StrCat("runnel_shard_log_", info->name(), "_", ::getpid());
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = fs::path(::testing::TempDir()) / name;
    fs::remove_all(dir_);
  }
  void TearDown() override {
    log_.reset();
    fs::remove_all(dir_);
  }

  ShardLogOptions Options() {
    ShardLogOptions options;
    options.directory = dir_.string();
    options.name = kName;
    options.fsync = fsync_;
    options.segment_bytes = segment_bytes_;
    options.now_ms = [this] { return now_ms_.load(); };
    return options;
  }

  void Open() {
    log_.reset();
    auto log = ShardLog::Open(Options());
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
  }
  void Close() { log_.reset(); }

  // Appends one batch and waits until it is durable.
  ShardLog::AppendTicket AppendBatch(const std::vector<Rec>& records) {
    std::vector<AppendRecord> batch;
    for (const Rec& r : records) batch.push_back({r.key, r.data});
    absl::Notification done;
    absl::Status result;
    auto ticket = log_->Append(batch, [&](const absl::Status& s) {
      result = s;
      done.Notify();
    });
    EXPECT_TRUE(ticket.ok()) << ticket.status();
    if (!ticket.ok()) return {};
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(kPatience));
    EXPECT_TRUE(result.ok()) << result;
    return *ticket;
  }

  // Appends records i = first..last one batch each, with Key(i)/Data(i, size), and returns what
  // the log should hold for them (offsets from the tickets).
  std::vector<Rec> AppendMany(uint64_t first, uint64_t last, size_t size = 0,
                              int64_t clock_step = 0) {
    std::vector<Rec> written;
    for (uint64_t i = first; i <= last; ++i) {
      Rec r{0, 0, Key(i), Data(i, size)};
      ShardLog::AppendTicket ticket = AppendBatch({r});
      r.offset = ticket.first_offset;
      r.arrival_ms = ticket.arrival_ms;
      written.push_back(r);
      now_ms_ += clock_step;
    }
    return written;
  }

  static std::vector<Rec> Copy(const ReadBatch& batch) {
    std::vector<Rec> out;
    for (const RecordView& v : batch.records) {
      out.push_back({v.offset, v.arrival_ms, std::string(v.partition_key), std::string(v.data)});
    }
    return out;
  }

  absl::StatusOr<std::vector<Rec>> ReadAll(uint64_t from = 0, ReadLimits limits = {}) {
    std::vector<Rec> out;
    uint64_t offset = from;
    for (int guard = 0; guard < 100000; ++guard) {
      auto batch = log_->Read(offset, limits);
      if (!batch.ok()) return batch.status();
      std::vector<Rec> got = Copy(*batch);
      out.insert(out.end(), got.begin(), got.end());
      if (batch->next_offset == offset || batch->next_offset >= log_->EndOffset()) break;
      offset = batch->next_offset;
    }
    return out;
  }

  std::vector<uint64_t> SegmentBases(const std::string& extension = ".log") const {
    std::vector<uint64_t> bases;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      if (entry.path().extension() == extension) {
        bases.push_back(std::stoull(entry.path().stem().string()));
      }
    }
    std::sort(bases.begin(), bases.end());
    return bases;
  }
  fs::path SegmentPath(uint64_t base) const { return dir_ / absl::StrFormat("%020u.log", base); }
  fs::path IndexPath(uint64_t base) const { return dir_ / absl::StrFormat("%020u.index", base); }
  fs::path LastSegment() const { return SegmentPath(SegmentBases().back()); }

  fs::path dir_;
  uint64_t segment_bytes_ = 64ull << 20;
  // kNever keeps the many reopen loops fast; tests about durability and group commit use kAlways
  // (and every mode runs the round trip in ShardLogFsyncModeTest).
  FsyncMode fsync_ = FsyncMode::kNever;
  std::atomic<int64_t> now_ms_{1'700'000'000'000};
  std::unique_ptr<ShardLog> log_;
};

// ---------------------------------------------------------------------------------------------
// Append and read.

TEST_F(ShardLogTest, NewLogIsEmpty) {
  Open();
  EXPECT_EQ(log_->EndOffset(), 1u);
  EXPECT_EQ(log_->FirstOffset(), 1u);
  EXPECT_EQ(log_->LastArrivalMs(), 0);
  EXPECT_EQ(log_->name(), kName);
  auto batch = log_->Read(0, {});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_TRUE(batch->records.empty());
  EXPECT_EQ(batch->next_offset, 1u);
  EXPECT_EQ(*log_->OffsetAtTimestamp(0), 1u);
  EXPECT_TRUE(fs::exists(SegmentPath(1)));
}

TEST_F(ShardLogTest, AppendThenReadRoundTripsManyBatches) {
  fsync_ = FsyncMode::kAlways;
  Open();
  std::vector<Rec> written;
  uint64_t expected_offset = 1;
  for (int b = 0; b < 60; ++b) {
    std::vector<Rec> batch;
    for (int i = 0; i < 1 + b % 5; ++i) {
      const uint64_t n = written.size() + batch.size();
      batch.push_back({0, 0, Key(n), Data(n, n % 7 == 0 ? 0 : 10 + n * 3)});
    }
    batch[0].key = b % 9 == 0 ? "" : batch[0].key;  // empty keys store fine
    ShardLog::AppendTicket ticket = AppendBatch(batch);
    EXPECT_EQ(ticket.first_offset, expected_offset);
    EXPECT_EQ(ticket.arrival_ms, now_ms_.load());
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i].offset = ticket.first_offset + i;
      batch[i].arrival_ms = ticket.arrival_ms;
    }
    written.insert(written.end(), batch.begin(), batch.end());
    expected_offset += batch.size();
    now_ms_ += 3;
  }
  EXPECT_EQ(log_->EndOffset(), written.size() + 1);
  EXPECT_EQ(log_->LastArrivalMs(), written.back().arrival_ms);
  auto all = ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, written);
}

TEST_F(ShardLogTest, EveryOffsetCanBeReadOnItsOwn) {
  Open();
  // Sizes that put index entries (every 4 KiB) between records, so seeks start mid-segment.
  std::vector<Rec> written = AppendMany(1, 80, 700);
  std::vector<Rec> batch_written;
  for (int b = 0; b < 3; ++b) {  // and a few multi-record batches with hints inside them
    std::vector<Rec> batch;
    for (int i = 0; i < 20; ++i) batch.push_back({0, 0, Key(100 + i), Data(100 + i, 900)});
    auto ticket = AppendBatch(batch);
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i].offset = ticket.first_offset + i;
      batch[i].arrival_ms = ticket.arrival_ms;
    }
    written.insert(written.end(), batch.begin(), batch.end());
  }
  for (const Rec& r : written) {
    ReadLimits one;
    one.max_records = 1;
    auto batch = log_->Read(r.offset, one);
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->records.size(), 1u) << r.offset;
    EXPECT_EQ(Copy(*batch)[0], r);
    EXPECT_EQ(batch->next_offset, r.offset + 1);
  }
}

TEST_F(ShardLogTest, ReadBelowTheFirstOffsetStartsAtTheFirstRecord) {
  Open();
  std::vector<Rec> written = AppendMany(1, 3);
  auto batch = log_->Read(0, {});
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(Copy(*batch), written);
  EXPECT_EQ(batch->next_offset, 4u);
}

TEST_F(ShardLogTest, ReadAtEndOffsetIsEmptyAndKeepsNextOffset) {
  Open();
  AppendMany(1, 3);
  auto batch = log_->Read(log_->EndOffset(), {});
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch->records.empty());
  EXPECT_EQ(batch->next_offset, 4u);
  batch = log_->Read(100, {});
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch->records.empty());
  EXPECT_EQ(batch->next_offset, 100u);
}

TEST_F(ShardLogTest, ReadStopsAtMaxRecords) {
  Open();
  std::vector<Rec> written = AppendMany(1, 25);
  ReadLimits limits;
  limits.max_records = 10;
  auto batch = log_->Read(1, limits);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(Copy(*batch), std::vector<Rec>(written.begin(), written.begin() + 10));
  EXPECT_EQ(batch->next_offset, 11u);
  batch = log_->Read(batch->next_offset, limits);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(Copy(*batch), std::vector<Rec>(written.begin() + 10, written.begin() + 20));
  batch = log_->Read(batch->next_offset, limits);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(Copy(*batch), std::vector<Rec>(written.begin() + 20, written.end()));
  EXPECT_EQ(batch->next_offset, 26u);
}

TEST_F(ShardLogTest, ReadStopsAtMaxBytesButReturnsAtLeastOneRecord) {
  Open();
  std::vector<Rec> written = AppendMany(1, 10, 100);
  const size_t record_bytes = written[0].key.size() + written[0].data.size();
  ReadLimits limits;
  limits.max_bytes = record_bytes * 3 + record_bytes / 2;
  auto batch = log_->Read(1, limits);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(batch->records.size(), 3u);
  EXPECT_EQ(batch->next_offset, 4u);
  limits.max_bytes = record_bytes * 3;  // exactly three fit
  batch = log_->Read(1, limits);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(batch->records.size(), 3u);
  limits.max_bytes = 1;
  batch = log_->Read(5, limits);
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->records.size(), 1u);
  EXPECT_EQ(Copy(*batch)[0], written[4]);
  EXPECT_EQ(batch->next_offset, 6u);
}

TEST_F(ShardLogTest, ReadSkipsExpiredRecords) {
  Open();
  std::vector<Rec> written = AppendMany(1, 10, 0, /*clock_step=*/100);
  ReadLimits limits;
  limits.min_arrival_ms = written[6].arrival_ms;  // offsets 1..6 expired
  auto batch = log_->Read(1, limits);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(Copy(*batch), std::vector<Rec>(written.begin() + 6, written.end()));
  EXPECT_EQ(batch->next_offset, 11u);

  limits.min_arrival_ms = written.back().arrival_ms + 1;  // all expired
  batch = log_->Read(1, limits);
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch->records.empty());
  EXPECT_EQ(batch->next_offset, 11u) << "skipped records are passed, not re-read";
}

TEST_F(ShardLogTest, LargeRecordsRoundTripThroughSmallReads) {
  Open();
  std::vector<Rec> written = AppendMany(1, 4, 300 << 10);  // bigger than a read chunk
  written.push_back({0, 0, std::string(0xffff, 'K'), Data(5, 1 << 20)});
  auto ticket = AppendBatch({written.back()});
  written.back().offset = ticket.first_offset;
  written.back().arrival_ms = ticket.arrival_ms;
  ReadLimits limits;
  limits.max_bytes = 1;
  auto all = ReadAll(0, limits);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, written);
  auto at_once = log_->Read(0, {});
  ASSERT_TRUE(at_once.ok());
  EXPECT_EQ(Copy(*at_once), written);
}

TEST_F(ShardLogTest, OversizedRecordIsRejectedWithoutCallingDone) {
  Open();
  AppendMany(1, 2);
  bool called = false;
  const std::string big_key(0x10000, 'k');
  AppendRecord too_long_key[] = {{big_key, "d"}};
  auto ticket = log_->Append(too_long_key, [&](const absl::Status&) { called = true; });
  ASSERT_FALSE(ticket.ok());
  EXPECT_EQ(ticket.status().code(), absl::StatusCode::kInvalidArgument);

  const std::string big_data(kMaxPayloadSize, 'd');
  AppendRecord ok_and_too_big[] = {{"k", "fine"}, {"k", big_data}};
  ticket = log_->Append(ok_and_too_big, [&](const absl::Status&) { called = true; });
  ASSERT_FALSE(ticket.ok());
  EXPECT_EQ(ticket.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ticket.status().message(), HasSubstr("too large"));

  // Nothing of the rejected batches was queued: the log continues at offset 3.
  std::vector<Rec> more = AppendMany(3, 3);
  EXPECT_EQ(more[0].offset, 3u);
  auto all = ReadAll();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
  EXPECT_FALSE(called);
}

TEST_F(ShardLogTest, LargestRecordIsAccepted) {
  Open();
  const std::string data(kMaxPayloadSize - kPayloadFixedSize - 1, 'x');
  auto ticket = AppendBatch({{0, 0, "k", data}});
  EXPECT_EQ(ticket.first_offset, 1u);
  auto batch = log_->Read(1, {});
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->records.size(), 1u);
  EXPECT_EQ(batch->records[0].data.size(), data.size());
}

TEST_F(ShardLogTest, EmptyAppendIsRefusedWithoutCallingDone) {
  Open();
  bool called = false;
  auto ticket = log_->Append({}, [&](const absl::Status&) { called = true; });
  ASSERT_FALSE(ticket.ok());
  EXPECT_EQ(ticket.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AppendMany(1, 1)[0].offset, 1u) << "no offset was taken";
  Close();
  EXPECT_FALSE(called);
}

TEST_F(ShardLogTest, ArrivalTimesNeverGoBackwards) {
  Open();
  auto first = AppendBatch({{0, 0, "a", "1"}});
  now_ms_ -= 5000;  // the wall clock steps back
  auto second = AppendBatch({{0, 0, "a", "2"}});
  EXPECT_EQ(second.arrival_ms, first.arrival_ms);
  now_ms_ += 10000;
  auto third = AppendBatch({{0, 0, "a", "3"}});
  EXPECT_EQ(third.arrival_ms, first.arrival_ms + 5000);
  EXPECT_EQ(log_->LastArrivalMs(), third.arrival_ms);

  // Also across a restart.
  Close();
  now_ms_ -= 60000;
  Open();
  EXPECT_EQ(log_->LastArrivalMs(), third.arrival_ms);
  auto fourth = AppendBatch({{0, 0, "a", "4"}});
  EXPECT_EQ(fourth.arrival_ms, third.arrival_ms);
}

TEST_F(ShardLogTest, DiskBytesCountsEverySegment) {
  segment_bytes_ = 4096;
  Open();
  AppendMany(1, 100, 200);
  uint64_t on_disk = 0;
  for (uint64_t base : SegmentBases()) on_disk += fs::file_size(SegmentPath(base));
  EXPECT_EQ(log_->DiskBytes(), on_disk);
}

// ---------------------------------------------------------------------------------------------
// Concurrency and durability.

TEST_F(ShardLogTest, ConcurrentAppendersGetGaplessOffsetsInTheirOwnOrder) {
  fsync_ = FsyncMode::kAlways;
  Open();
  constexpr int kThreads = 4, kBatches = 150;
  std::atomic<int> ok{0}, failed{0};
  absl::BlockingCounter outstanding(kThreads * kBatches);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = absl::StrCat("thread-", t);  // AppendRecord only views it
      for (int b = 0; b < kBatches; ++b) {
        std::vector<std::string> data;
        for (int i = 0; i < 1 + b % 3; ++i) data.push_back(absl::StrCat(t, ":", b, ":", i));
        std::vector<AppendRecord> records;
        for (const auto& d : data) records.push_back({key, d});
        auto ticket = log_->Append(records, [&](const absl::Status& s) {
          (s.ok() ? ok : failed).fetch_add(1);
          outstanding.DecrementCount();
        });
        ASSERT_TRUE(ticket.ok()) << ticket.status();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  outstanding.Wait();
  EXPECT_EQ(ok.load(), kThreads * kBatches);
  EXPECT_EQ(failed.load(), 0);

  auto all = ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  const size_t expected = kThreads * (kBatches / 3) * (1 + 2 + 3);
  ASSERT_EQ(all->size(), expected);
  EXPECT_EQ(log_->EndOffset(), expected + 1);
  std::map<int, std::pair<int, int>> last_seen;  // thread -> (batch, index)
  int64_t last_arrival = 0;
  for (size_t i = 0; i < all->size(); ++i) {
    const Rec& r = (*all)[i];
    EXPECT_EQ(r.offset, i + 1) << "offsets are gapless";
    EXPECT_GE(r.arrival_ms, last_arrival);
    last_arrival = r.arrival_ms;
    int t, b, n;
    ASSERT_EQ(sscanf(r.data.c_str(), "%d:%d:%d", &t, &b, &n), 3) << r.data;
    EXPECT_EQ(r.key, absl::StrCat("thread-", t));
    auto it = last_seen.find(t);
    if (it != last_seen.end()) {
      EXPECT_LT(it->second, std::make_pair(b, n)) << "thread " << t << " out of order";
      if (it->second.first == b) {
        EXPECT_EQ(n, it->second.second + 1) << "batch split";
      } else {
        EXPECT_EQ(b, it->second.first + 1) << "batch lost";
        EXPECT_EQ(n, 0) << "batch split";
      }
    }
    last_seen[t] = {b, n};
  }
}

TEST_F(ShardLogTest, ReadsOnlyReturnDurableRecords) {
  fsync_ = FsyncMode::kAlways;
  Open();
  AppendMany(1, 2);
  // Hold the writer thread inside the first batch's callback, so the second batch stays queued.
  absl::Notification in_callback, release, second_done;
  AppendRecord first[] = {{"k", "durable"}};
  ASSERT_TRUE(log_->Append(first,
                           [&](const absl::Status&) {
                             in_callback.Notify();
                             release.WaitForNotification();
                           })
                  .ok());
  ASSERT_TRUE(in_callback.WaitForNotificationWithTimeout(kPatience));
  AppendRecord second[] = {{"k", "queued"}};
  auto ticket = log_->Append(second, [&](const absl::Status&) { second_done.Notify(); });
  ASSERT_TRUE(ticket.ok());
  EXPECT_EQ(ticket->first_offset, 4u);

  EXPECT_EQ(log_->EndOffset(), 4u);
  auto batch = log_->Read(1, {});
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->records.size(), 3u);
  EXPECT_EQ(batch->records[2].data, "durable");
  EXPECT_EQ(batch->next_offset, 4u);
  batch = log_->Read(4, {});
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch->records.empty()) << "a queued record must not be readable";

  release.Notify();
  ASSERT_TRUE(second_done.WaitForNotificationWithTimeout(kPatience));
  EXPECT_EQ(log_->EndOffset(), 5u);
  batch = log_->Read(4, {});
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->records.size(), 1u);
  EXPECT_EQ(batch->records[0].data, "queued");
}

TEST_F(ShardLogTest, ConcurrentReadersNeverSeePastEndOffsetOrWrongData) {
  fsync_ = FsyncMode::kAlways;
  segment_bytes_ = 8192;
  Open();
  constexpr int kRecords = 1500;
  std::atomic<bool> writing{true};
  std::atomic<int> violations{0};
  std::vector<Rec> seen;
  std::thread reader([&] {
    uint64_t offset = 1;
    while (writing.load() || offset < log_->EndOffset()) {
      auto batch = log_->Read(offset, {});
      const uint64_t end_after = log_->EndOffset();
      if (!batch.ok()) {
        ADD_FAILURE() << batch.status();
        return;
      }
      for (const RecordView& r : batch->records) {
        if (r.offset >= end_after) violations.fetch_add(1);
      }
      std::vector<Rec> got = Copy(*batch);
      seen.insert(seen.end(), got.begin(), got.end());
      offset = batch->next_offset;
    }
  });
  absl::BlockingCounter outstanding(kRecords);
  for (int i = 0; i < kRecords; ++i) {
    std::string data = Data(i, 50);
    AppendRecord record[] = {{"k", data}};
    ASSERT_TRUE(
        log_->Append(record, [&](const absl::Status&) { outstanding.DecrementCount(); }).ok());
  }
  outstanding.Wait();
  writing.store(false);
  reader.join();
  EXPECT_EQ(violations.load(), 0) << "Read returned offsets at or above EndOffset()";
  auto all = ReadAll();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(seen, *all);
  EXPECT_EQ(all->size(), static_cast<size_t>(kRecords));
}

// ---------------------------------------------------------------------------------------------
// Segments, reopen and index files.

TEST_F(ShardLogTest, SegmentsRollAndReadsCrossBoundaries) {
  fsync_ = FsyncMode::kAlways;
  segment_bytes_ = 4096;
  Open();
  std::vector<Rec> written = AppendMany(1, 150, 150);
  std::vector<uint64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 4u);
  EXPECT_EQ(bases.front(), 1u);
  // Every sealed segment has an index; the active one does not yet.
  std::vector<uint64_t> indexed = SegmentBases(".index");
  EXPECT_EQ(indexed, std::vector<uint64_t>(bases.begin(), bases.end() - 1));
  for (size_t i = 0; i + 1 < bases.size(); ++i) {
    // A segment is rolled once it reaches segment_bytes; frames never span files.
    EXPECT_GE(fs::file_size(SegmentPath(bases[i])), segment_bytes_);
    EXPECT_LT(fs::file_size(SegmentPath(bases[i])), segment_bytes_ + 400);
  }
  auto at_once = log_->Read(0, {});
  ASSERT_TRUE(at_once.ok()) << at_once.status();
  EXPECT_EQ(Copy(*at_once), written);
  // Reads that start just before, at and after each boundary.
  for (uint64_t base : bases) {
    for (uint64_t offset : {base - 1, base, base + 1}) {
      if (offset == 0) continue;
      ReadLimits limits;
      limits.max_records = 3;
      auto batch = log_->Read(offset, limits);
      ASSERT_TRUE(batch.ok()) << batch.status();
      std::vector<Rec> expected(written.begin() + (offset - 1),
                                written.begin() + std::min<uint64_t>(offset + 2, written.size()));
      EXPECT_EQ(Copy(*batch), expected) << "from " << offset;
    }
  }
}

TEST_F(ShardLogTest, ReopenKeepsEveryRecordAndContinuesOffsets) {
  fsync_ = FsyncMode::kAlways;
  segment_bytes_ = 4096;
  Open();
  std::vector<Rec> written = AppendMany(1, 90, 120, 7);
  const uint64_t end = log_->EndOffset();
  Close();
  Open();
  EXPECT_EQ(log_->EndOffset(), end);
  EXPECT_EQ(log_->FirstOffset(), 1u);
  EXPECT_EQ(log_->LastArrivalMs(), written.back().arrival_ms);
  auto all = ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, written);
  std::vector<Rec> more = AppendMany(91, 100, 120, 7);
  EXPECT_EQ(more.front().offset, end);
  written.insert(written.end(), more.begin(), more.end());
  Close();
  Open();
  all = ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, written);
}

TEST_F(ShardLogTest, ReopenRebuildsMissingIndexFiles) {
  segment_bytes_ = 4096;
  Open();
  std::vector<Rec> written = AppendMany(1, 120, 150, 10);
  Close();
  std::vector<uint64_t> indexed = SegmentBases(".index");
  ASSERT_GE(indexed.size(), 2u);
  for (uint64_t base : indexed) fs::remove(IndexPath(base));
  Open();
  EXPECT_EQ(SegmentBases(".index"), indexed) << "rebuilt and written back";
  auto all = ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, written);
  for (const Rec& r : written) {
    EXPECT_EQ(*log_->OffsetAtTimestamp(r.arrival_ms), r.offset);
  }
}

TEST_F(ShardLogTest, ReopenRebuildsCorruptIndexFiles) {
  segment_bytes_ = 4096;
  Open();
  std::vector<Rec> written = AppendMany(1, 120, 150, 10);
  Close();
  std::vector<uint64_t> indexed = SegmentBases(".index");
  ASSERT_GE(indexed.size(), 3u);
  FlipByte(IndexPath(indexed[0]), 20);          // a flipped entry
  WriteFile(IndexPath(indexed[1]), "garbage");  // too short
  const std::string good = ReadFile(IndexPath(indexed[2]));
  WriteFile(IndexPath(indexed[2]), good.substr(0, good.size() - 1));  // torn
  Open();
  for (uint64_t base : indexed) {
    EXPECT_GT(fs::file_size(IndexPath(base)), 40u) << base;
  }
  auto all = ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, written);
  for (const Rec& r : written) {
    ReadLimits one;
    one.max_records = 1;
    auto batch = log_->Read(r.offset, one);
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->records.size(), 1u);
    EXPECT_EQ(Copy(*batch)[0], r);
    EXPECT_EQ(*log_->OffsetAtTimestamp(r.arrival_ms), r.offset);
  }
  // The rebuilt files are trusted on the next open.
  std::map<uint64_t, std::string> rebuilt;
  for (uint64_t base : indexed) rebuilt[base] = ReadFile(IndexPath(base));
  Close();
  Open();
  for (uint64_t base : indexed) EXPECT_EQ(ReadFile(IndexPath(base)), rebuilt[base]);
}

TEST_F(ShardLogTest, IndexOfAnotherSizeIsRebuilt) {
  segment_bytes_ = 4096;
  Open();
  std::vector<Rec> written = AppendMany(1, 120, 150, 10);
  Close();
  std::vector<uint64_t> indexed = SegmentBases(".index");
  ASSERT_GE(indexed.size(), 2u);
  // A valid index, but for a different segment: its recorded size or entries do not match.
  fs::copy_file(IndexPath(indexed[1]), IndexPath(indexed[0]), fs::copy_options::overwrite_existing);
  Open();
  auto all = ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, written);
}

TEST_F(ShardLogTest, LeftoverTemporaryFilesAreRemovedOnOpen) {
  Open();
  AppendMany(1, 2);
  Close();
  WriteFile(dir_ / "00000000000000000001.index.tmp", "half written");
  Open();
  EXPECT_FALSE(fs::exists(dir_ / "00000000000000000001.index.tmp"));
  EXPECT_EQ(log_->EndOffset(), 3u);
}

// ---------------------------------------------------------------------------------------------
// Recovery of torn tails.

TEST_F(ShardLogTest, TruncatedTailIsCutOnReopen) {
  for (bool several_segments : {false, true}) {
    SCOPED_TRACE(several_segments ? "several segments" : "one segment");
    fs::remove_all(dir_);
    segment_bytes_ = several_segments ? 512 : 64ull << 20;
    Open();
    std::vector<Rec> written = AppendMany(1, 30, 0, 5);
    Close();
    if (several_segments) {
      ASSERT_GE(SegmentBases().size(), 2u);
    }
    const fs::path last = LastSegment();
    const std::string contents = ReadFile(last);
    const size_t last_frame = FrameSize(written.back().key.size(), written.back().data.size());
    ASSERT_GE(contents.size(), last_frame);
    const size_t frame_start = contents.size() - last_frame;
    for (size_t cut = frame_start; cut < contents.size(); ++cut) {
      SCOPED_TRACE(absl::StrCat("cut at byte ", cut, " of ", contents.size()));
      WriteFile(last, std::string_view(contents).substr(0, cut));
      Open();
      EXPECT_EQ(fs::file_size(last), frame_start) << "the torn frame is cut off";
      EXPECT_EQ(log_->EndOffset(), written.size());
      auto all = ReadAll();
      ASSERT_TRUE(all.ok()) << all.status();
      EXPECT_EQ(*all, std::vector<Rec>(written.begin(), written.end() - 1));
      std::vector<Rec> next = AppendMany(31, 31);
      EXPECT_EQ(next[0].offset, written.size()) << "the cut offset is handed out again";
      Close();
    }
  }
}

TEST_F(ShardLogTest, TornGroupCommitKeepsTheCompleteFrames) {
  Open();
  AppendMany(1, 2);
  std::vector<Rec> batch;
  for (int i = 0; i < 5; ++i) batch.push_back({0, 0, Key(10 + i), Data(10 + i, 30)});
  AppendBatch(batch);
  Close();
  const fs::path last = LastSegment();
  std::string contents = ReadFile(last);
  contents.resize(contents.size() - 10);  // the last of the five is torn
  WriteFile(last, contents);
  Open();
  EXPECT_EQ(log_->EndOffset(), 7u);
  auto all = ReadAll();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 6u);
}

TEST_F(ShardLogTest, GarbageAfterTheLastFrameIsCut) {
  const std::vector<std::string> tails = {
      std::string(1, '\0'), std::string(7, '\0'), std::string(8, '\0'), std::string(5000, '\0'),
      std::string(100, '\xff'), "this is not a frame at all, just text that got appended",
      // A plausible header whose frame runs past the end of the file.
      std::string("\x12\x34\x56\x78\x40\x00\x00\x00", 8) + std::string(20, 'x')};
  for (size_t t = 0; t < tails.size(); ++t) {
    SCOPED_TRACE(absl::StrCat("tail ", t));
    fs::remove_all(dir_);
    Open();
    std::vector<Rec> written = AppendMany(1, 5);
    Close();
    const fs::path last = LastSegment();
    const uint64_t good_size = fs::file_size(last);
    WriteFile(last, ReadFile(last) + tails[t]);
    Open();
    EXPECT_EQ(fs::file_size(last), good_size);
    auto all = ReadAll();
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(*all, written);
    EXPECT_EQ(AppendMany(6, 6)[0].offset, 6u);
    Close();
    Open();
    all = ReadAll();
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(all->size(), 6u);
  }
}

TEST_F(ShardLogTest, EmptyActiveSegmentKeepsItsBaseOffset) {
  // A crash right after a roll leaves an empty active segment: offsets continue from its base.
  segment_bytes_ = 1024;
  Open();
  std::vector<Rec> written = AppendMany(1, 40, 40);
  Close();
  std::vector<uint64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 2u);
  fs::resize_file(SegmentPath(bases.back()), 0);
  Open();
  EXPECT_EQ(log_->EndOffset(), bases.back());
  EXPECT_EQ(AppendMany(100, 100)[0].offset, bases.back());
}

TEST_F(ShardLogTest, OffsetsAreNotReusedWhenASealedSegmentLostItsTail) {
  // The sealed segment lost its last records (disk damage) and the active segment is empty:
  // offsets below the active segment's base were handed out before and must not be reused, or
  // new records would land in a segment whose base is above their offset.
  segment_bytes_ = 1024;
  Open();
  std::vector<Rec> written = AppendMany(1, 40, 40);
  Close();
  std::vector<uint64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 3u);
  const uint64_t active = bases.back();
  const uint64_t sealed = bases[bases.size() - 2];
  fs::resize_file(SegmentPath(active), 0);
  fs::resize_file(SegmentPath(sealed), fs::file_size(SegmentPath(sealed)) - 5);
  fs::remove(IndexPath(sealed));
  Open();
  EXPECT_EQ(log_->EndOffset(), active);
  std::vector<Rec> more = AppendMany(100, 102, 40);
  EXPECT_EQ(more[0].offset, active);
  Close();
  Open();
  EXPECT_EQ(log_->EndOffset(), active + 3) << "the new records survive another restart";
  auto batch = log_->Read(active, {});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(Copy(*batch), more);
  // The record cut from the sealed segment is reported, not skipped silently.
  batch = log_->Read(active - 1, {});
  ASSERT_FALSE(batch.ok());
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kDataLoss);
}

// ---------------------------------------------------------------------------------------------
// Corruption.

TEST_F(ShardLogTest, CorruptRecordInTheActiveSegmentIsDataLossNeverData) {
  Open();
  std::vector<Rec> written = AppendMany(1, 10, 12);
  Close();
  const fs::path last = LastSegment();
  const std::string pristine = ReadFile(last);
  // Frame positions (all frames have the same size here except for key/data digits).
  std::vector<uint64_t> starts;
  uint64_t position = 0;
  for (const Rec& r : written) {
    starts.push_back(position);
    position += FrameSize(r.key.size(), r.data.size());
  }
  ASSERT_EQ(position, pristine.size());
  const uint64_t victim = 5;  // offset 5 is damaged; 6..10 follow it intact
  const uint64_t begin = starts[victim - 1], end = starts[victim];
  for (uint64_t at = begin; at < end; ++at) {
    SCOPED_TRACE(absl::StrCat("flipped byte ", at - begin, " of record ", victim));
    std::string damaged = pristine;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x5a);
    WriteFile(last, damaged);
    Open();
    EXPECT_EQ(fs::file_size(last), pristine.size()) << "valid records follow: nothing is cut";
    EXPECT_EQ(log_->EndOffset(), 11u);

    // Reading into the damage returns the good records before it, then DATA_LOSS at it.
    auto batch = log_->Read(1, {});
    ASSERT_TRUE(batch.ok()) << batch.status();
    EXPECT_EQ(Copy(*batch), std::vector<Rec>(written.begin(), written.begin() + 4));
    EXPECT_EQ(batch->next_offset, victim);
    batch = log_->Read(victim, {});
    ASSERT_FALSE(batch.ok());
    EXPECT_EQ(batch.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(batch.status().message(), HasSubstr(kName));
    EXPECT_THAT(batch.status().message(), HasSubstr("offset 5"));

    // Reads after the damage work.
    for (uint64_t from = victim + 1; from <= 10; ++from) {
      batch = log_->Read(from, {});
      ASSERT_TRUE(batch.ok()) << batch.status();
      EXPECT_EQ(Copy(*batch), std::vector<Rec>(written.begin() + (from - 1), written.end()));
    }
    // New appends continue after the last record.
    EXPECT_EQ(AppendMany(11, 11)[0].offset, 11u);
    Close();
  }
}

TEST_F(ShardLogTest, EveryByteFlipInTheActiveSegmentNeverYieldsWrongData) {
  Open();
  std::vector<Rec> written = AppendMany(1, 3);
  Close();
  const fs::path last = LastSegment();
  const std::string pristine = ReadFile(last);
  for (size_t at = 0; at < pristine.size(); ++at) {
    SCOPED_TRACE(absl::StrCat("flipped byte ", at));
    std::string damaged = pristine;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x01);
    WriteFile(last, damaged);
    Open();
    // Whatever is readable is exactly what was written at that offset.
    for (uint64_t from = 1; from < log_->EndOffset(); ++from) {
      auto batch = log_->Read(from, {});
      if (!batch.ok()) {
        EXPECT_EQ(batch.status().code(), absl::StatusCode::kDataLoss) << batch.status();
        continue;
      }
      for (const Rec& r : Copy(*batch)) {
        ASSERT_GE(r.offset, 1u);
        ASSERT_LE(r.offset, written.size());
        EXPECT_EQ(r, written[r.offset - 1]);
      }
    }
    Close();
  }
}

TEST_F(ShardLogTest, CorruptRecordInASealedSegmentIsDataLossAtRead) {
  for (bool drop_index : {false, true}) {
    SCOPED_TRACE(drop_index ? "index rebuilt" : "index kept");
    fs::remove_all(dir_);
    segment_bytes_ = 1024;
    Open();
    std::vector<Rec> written = AppendMany(1, 60, 40);
    Close();
    std::vector<uint64_t> bases = SegmentBases();
    ASSERT_GE(bases.size(), 3u);
    // Damage the data of the third record of the second segment.
    const uint64_t base = bases[1];
    uint64_t position = 0;
    for (uint64_t o = base; o < base + 2; ++o) {
      position += FrameSize(written[o - 1].key.size(), written[o - 1].data.size());
    }
    FlipByte(SegmentPath(base), position + kFrameHeaderSize + kPayloadFixedSize + 3);
    if (drop_index) fs::remove(IndexPath(base));
    Open();
    const uint64_t damaged = base + 2;
    auto batch = log_->Read(damaged, {});
    ASSERT_FALSE(batch.ok());
    EXPECT_EQ(batch.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(batch.status().message(), HasSubstr(kName));
    EXPECT_THAT(batch.status().message(), HasSubstr(absl::StrCat("offset ", damaged)));
    // Earlier records are returned up to the damage.
    batch = log_->Read(1, {});
    ASSERT_TRUE(batch.ok()) << batch.status();
    EXPECT_EQ(Copy(*batch), std::vector<Rec>(written.begin(), written.begin() + (damaged - 1)));
    // Later segments read normally.
    auto rest = ReadAll(bases[2]);
    ASSERT_TRUE(rest.ok()) << rest.status();
    EXPECT_EQ(*rest, std::vector<Rec>(written.begin() + (bases[2] - 1), written.end()));
    Close();
  }
}

// ---------------------------------------------------------------------------------------------
// Timestamps and retention.

TEST_F(ShardLogTest, OffsetAtTimestampFindsTheFirstRecordAtOrAfter) {
  segment_bytes_ = 2048;
  Open();
  std::vector<Rec> written = AppendMany(1, 100, 100, /*clock_step=*/10);
  ASSERT_GE(SegmentBases().size(), 3u);
  auto check = [&] {
    EXPECT_EQ(*log_->OffsetAtTimestamp(INT64_MIN), 1u);
    EXPECT_EQ(*log_->OffsetAtTimestamp(written.front().arrival_ms - 1), 1u);
    for (const Rec& r : written) {
      EXPECT_EQ(*log_->OffsetAtTimestamp(r.arrival_ms), r.offset);
      if (r.offset < written.size()) {
        EXPECT_EQ(*log_->OffsetAtTimestamp(r.arrival_ms + 1), r.offset + 1);
      }
    }
    EXPECT_EQ(*log_->OffsetAtTimestamp(written.back().arrival_ms + 1), log_->EndOffset());
    EXPECT_EQ(*log_->OffsetAtTimestamp(INT64_MAX), log_->EndOffset());
  };
  check();
  Close();
  Open();
  check();
}

TEST_F(ShardLogTest, OffsetAtTimestampWithSharedArrivalTimesReturnsTheFirst) {
  Open();
  AppendMany(1, 5, 0, 0);  // all at the same millisecond
  now_ms_ += 1;
  AppendMany(6, 8, 0, 0);
  EXPECT_EQ(*log_->OffsetAtTimestamp(now_ms_.load() - 1), 1u);
  EXPECT_EQ(*log_->OffsetAtTimestamp(now_ms_.load()), 6u);
}

TEST_F(ShardLogTest, DeleteSegmentsBeforeDeletesOnlyOldSealedSegments) {
  segment_bytes_ = 1024;
  Open();
  std::vector<Rec> written = AppendMany(1, 60, 40, /*clock_step=*/1000);
  std::vector<uint64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 4u);

  // Nothing is old enough.
  EXPECT_EQ(*log_->DeleteSegmentsBefore(written.front().arrival_ms), 0);
  EXPECT_EQ(SegmentBases(), bases);

  // Cut off just after the last record of the second segment: the first two go.
  const int64_t cutoff = written[bases[2] - 2].arrival_ms + 1;
  EXPECT_EQ(*log_->DeleteSegmentsBefore(cutoff), 2);
  EXPECT_EQ(SegmentBases(), std::vector<uint64_t>(bases.begin() + 2, bases.end()));
  EXPECT_EQ(SegmentBases(".index"), std::vector<uint64_t>(bases.begin() + 2, bases.end() - 1));
  EXPECT_EQ(log_->FirstOffset(), bases[2]);
  auto all = ReadAll(0);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, std::vector<Rec>(written.begin() + (bases[2] - 1), written.end()));
  EXPECT_EQ(*log_->OffsetAtTimestamp(0), bases[2]);

  // A segment holding a record newer than the cutoff stays, even if older ones are inside.
  EXPECT_EQ(*log_->DeleteSegmentsBefore(written[bases[3] - 2].arrival_ms), 0);

  // Everything is old: every sealed segment goes, the active one stays.
  EXPECT_EQ(*log_->DeleteSegmentsBefore(INT64_MAX), static_cast<int>(bases.size()) - 3);
  EXPECT_EQ(SegmentBases(), std::vector<uint64_t>{bases.back()});
  EXPECT_EQ(log_->FirstOffset(), bases.back());
  EXPECT_EQ(log_->EndOffset(), written.size() + 1);

  // The log continues; a restart keeps the trimmed state.
  std::vector<Rec> more = AppendMany(61, 62, 40);
  EXPECT_EQ(more[0].offset, written.size() + 1);
  Close();
  Open();
  EXPECT_EQ(log_->FirstOffset(), bases.back());
  EXPECT_EQ(log_->EndOffset(), written.size() + 3);
  auto rest = ReadAll(0);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->front().offset, bases.back());
  EXPECT_EQ(rest->back(), more.back());
}

TEST_F(ShardLogTest, DeleteSegmentsBeforeNeverDeletesTheActiveSegment) {
  Open();
  AppendMany(1, 5, 0, 1000);
  EXPECT_EQ(*log_->DeleteSegmentsBefore(INT64_MAX), 0);
  EXPECT_EQ(SegmentBases(), std::vector<uint64_t>{1});
  EXPECT_EQ(log_->FirstOffset(), 1u);
}

TEST_F(ShardLogTest, ReaderHoldingADeletedSegmentFinishesItsRead) {
  segment_bytes_ = 1024;
  Open();
  std::vector<Rec> written = AppendMany(1, 40, 40, 1000);
  // Hold the writer so that a read can be set up, then delete while a batch is outstanding:
  // simplest observable property: buffers returned before a delete stay valid after it.
  auto batch = log_->Read(1, {});
  ASSERT_TRUE(batch.ok());
  ASSERT_GT(*log_->DeleteSegmentsBefore(INT64_MAX), 0);
  EXPECT_EQ(Copy(*batch), written);
}

// ---------------------------------------------------------------------------------------------
// Waiters.

TEST_F(ShardLogTest, WaiterFiresOnTheNextAppend) {
  Open();
  AppendMany(1, 1);
  absl::Notification fired;
  std::atomic<uint64_t> end_seen{0};
  log_->AddWaiter([&] {
    end_seen.store(log_->EndOffset());
    fired.Notify();
  });
  EXPECT_FALSE(fired.HasBeenNotified());
  AppendMany(2, 2);
  ASSERT_TRUE(fired.WaitForNotificationWithTimeout(kPatience));
  EXPECT_EQ(end_seen.load(), 3u) << "EndOffset has advanced when the waiter runs";
}

TEST_F(ShardLogTest, WaiterFiresOnlyOnce) {
  Open();
  std::atomic<int> calls{0};
  log_->AddWaiter([&] { calls.fetch_add(1); });
  AppendMany(1, 3);  // each append waits for durability, after which waiters have run
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(ShardLogTest, RemovedWaiterNeverFires) {
  Open();
  std::atomic<int> calls{0};
  uint64_t id = log_->AddWaiter([&] { calls.fetch_add(1); });
  absl::Notification other;
  log_->AddWaiter([&] { other.Notify(); });
  EXPECT_TRUE(log_->RemoveWaiter(id));
  EXPECT_FALSE(log_->RemoveWaiter(id));
  AppendMany(1, 1);
  ASSERT_TRUE(other.WaitForNotificationWithTimeout(kPatience));
  Close();
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(ShardLogTest, RemoveWaiterAfterItFiredReturnsFalse) {
  Open();
  absl::Notification fired;
  uint64_t id = log_->AddWaiter([&] { fired.Notify(); });
  AppendMany(1, 1);
  ASSERT_TRUE(fired.WaitForNotificationWithTimeout(kPatience));
  EXPECT_FALSE(log_->RemoveWaiter(id));
}

TEST_F(ShardLogTest, WaitersFireWhenTheLogCloses) {
  Open();
  absl::Notification fired;
  log_->AddWaiter([&] { fired.Notify(); });
  Close();
  EXPECT_TRUE(fired.HasBeenNotified());
}

// ---------------------------------------------------------------------------------------------
// Fsync modes.

class ShardLogFsyncModeTest : public ShardLogTest,
                              public ::testing::WithParamInterface<FsyncMode> {};

TEST_P(ShardLogFsyncModeTest, RoundTripsAndSurvivesReopen) {
  segment_bytes_ = 2048;
  ShardLogOptions options = Options();
  options.fsync = GetParam();
  options.fsync_interval = absl::Milliseconds(5);
  {
    auto log = ShardLog::Open(options);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
  }
  std::vector<Rec> written = AppendMany(1, 80, 60, 3);
  // Concurrent appends too.
  absl::BlockingCounter outstanding(50);
  for (int i = 0; i < 50; ++i) {
    AppendRecord record[] = {{"k", "concurrent"}};
    ASSERT_TRUE(log_->Append(record,
                             [&](const absl::Status& s) {
                               EXPECT_TRUE(s.ok()) << s;
                               outstanding.DecrementCount();
                             })
                    .ok());
  }
  outstanding.Wait();
  EXPECT_EQ(log_->EndOffset(), 131u);
  auto all = ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 130u);
  EXPECT_EQ(std::vector<Rec>(all->begin(), all->begin() + 80), written);
  log_.reset();
  auto log = ShardLog::Open(options);
  ASSERT_TRUE(log.ok()) << log.status();
  log_ = std::move(*log);
  EXPECT_EQ(log_->EndOffset(), 131u);
  auto again = ReadAll();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *all);
}

INSTANTIATE_TEST_SUITE_P(Modes, ShardLogFsyncModeTest,
                         ::testing::Values(FsyncMode::kAlways, FsyncMode::kInterval,
                                           FsyncMode::kNever),
                         [](const ::testing::TestParamInfo<FsyncMode>& info) {
                           switch (info.param) {
                             case FsyncMode::kAlways:
                               return std::string("Always");
                             case FsyncMode::kInterval:
                               return std::string("Interval");
                             case FsyncMode::kNever:
                               return std::string("Never");
                           }
                           return std::string("Unknown");
                         });

// ---------------------------------------------------------------------------------------------
// Opening.

TEST_F(ShardLogTest, OpenCreatesMissingFolders) {
  dir_ = dir_ / "nested" / "deeper";
  Open();
  EXPECT_TRUE(fs::is_directory(dir_));
  AppendMany(1, 1);
  Close();
  fs::remove_all(dir_.parent_path().parent_path());
}

TEST_F(ShardLogTest, OpenIgnoresUnrelatedFiles) {
  fs::create_directories(dir_);
  WriteFile(dir_ / "README", "not a segment");
  WriteFile(dir_ / "abc.log", "not a segment either");
  Open();
  EXPECT_EQ(log_->EndOffset(), 1u);
  AppendMany(1, 2);
  Close();
  Open();
  EXPECT_EQ(log_->EndOffset(), 3u);
  EXPECT_TRUE(fs::exists(dir_ / "README"));
}

TEST_F(ShardLogTest, OpenOfAFileInsteadOfAFolderFails) {
  fs::create_directories(dir_);
  WriteFile(dir_ / "file", "x");
  ShardLogOptions options = Options();
  options.directory = (dir_ / "file").string();
  auto log = ShardLog::Open(options);
  EXPECT_FALSE(log.ok());
}

}  // namespace
}  // namespace runnel::broker
