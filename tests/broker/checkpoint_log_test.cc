// The checkpoint log's scan, exhaustively over small files: every single-byte flip in any entry
// but the last costs that entry alone; every cut is a torn tail; garbage before, between and
// after entries is skipped (and reported) without losing a whole entry; a garbled length never
// makes the scan jump over good entries; and the scan stays fast over megabytes of garbage.
#include "broker/checkpoint_log.h"

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace runnel::broker {
namespace {

std::string Body(int i) { return absl::StrCat("checkpoint-", i, std::string(i % 7, 'x')); }

// A file of `count` entries; `starts` gets where each begins.
std::string File(int count, std::vector<size_t>* starts = nullptr) {
  std::string file;
  for (int i = 0; i < count; ++i) {
    if (starts) starts->push_back(file.size());
    AppendCheckpointEntry(&file, static_cast<uint64_t>(i + 1),
                          i % 5 == 4 ? kDeleteCheckpointEntry : kPutCheckpointEntry, Body(i));
  }
  return file;
}

std::vector<std::string> Bodies(const CheckpointLogScan& scan) {
  std::vector<std::string> out;
  for (const auto& e : scan.entries) out.emplace_back(e.serialized_checkpoint);
  return out;
}

std::vector<std::string> Expected(int count, int except = -1) {
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    if (i != except) out.push_back(Body(i));
  }
  return out;
}

TEST(CheckpointLogTest, AWholeFileScansToEveryEntryInOrder) {
  const std::string file = File(20);
  const CheckpointLogScan scan = ScanCheckpointLog(file);
  EXPECT_EQ(Bodies(scan), Expected(20));
  EXPECT_TRUE(scan.corrupt.empty());
  EXPECT_EQ(scan.valid_end, file.size());
  for (size_t i = 0; i < scan.entries.size(); ++i) {
    EXPECT_EQ(scan.entries[i].sequence, i + 1);
    EXPECT_EQ(scan.entries[i].kind, i % 5 == 4 ? kDeleteCheckpointEntry : kPutCheckpointEntry);
  }
  EXPECT_EQ(ScanCheckpointLog("").valid_end, 0u);
}

TEST(CheckpointLogTest, EveryByteFlipInAnEntryBeforeTheLastCostsOnlyThatEntry) {
  std::vector<size_t> starts;
  const std::string file = File(20, &starts);
  starts.push_back(file.size());
  for (int damaged = 0; damaged < 19; ++damaged) {
    for (size_t at = starts[damaged]; at < starts[damaged + 1]; ++at) {
      for (unsigned char bit : {0x01, 0x80}) {
        std::string copy = file;
        copy[at] = static_cast<char>(copy[at] ^ bit);
        const CheckpointLogScan scan = ScanCheckpointLog(copy);
        SCOPED_TRACE(absl::StrCat("entry ", damaged, ", byte ", at, ", bit ", bit));
        ASSERT_EQ(Bodies(scan), Expected(20, damaged));
        ASSERT_EQ(scan.corrupt.size(), 1u);
        EXPECT_EQ(scan.corrupt[0].begin, starts[damaged]);
        EXPECT_EQ(scan.corrupt[0].end, starts[damaged + 1]);
        EXPECT_EQ(scan.valid_end, copy.size());
      }
    }
  }
}

TEST(CheckpointLogTest, AFlipInTheLastEntryIsATornTail) {
  std::vector<size_t> starts;
  const std::string file = File(20, &starts);
  for (size_t at = starts[19]; at < file.size(); ++at) {
    std::string copy = file;
    copy[at] = static_cast<char>(copy[at] ^ 0x10);
    const CheckpointLogScan scan = ScanCheckpointLog(copy);
    ASSERT_EQ(Bodies(scan), Expected(19)) << "byte " << at;
    EXPECT_TRUE(scan.corrupt.empty());
    EXPECT_EQ(scan.valid_end, starts[19]);
  }
}

TEST(CheckpointLogTest, EveryCutIsATornTailThatKeepsTheWholeEntriesBeforeIt) {
  std::vector<size_t> starts;
  const std::string file = File(8, &starts);
  for (size_t cut = 0; cut <= file.size(); ++cut) {
    const CheckpointLogScan scan = ScanCheckpointLog(std::string_view(file).substr(0, cut));
    int whole = 0;
    while (whole < 8 && (whole + 1 < 8 ? starts[whole + 1] : file.size()) <= cut) ++whole;
    ASSERT_EQ(Bodies(scan), Expected(whole)) << "cut at " << cut;
    EXPECT_TRUE(scan.corrupt.empty());
    EXPECT_EQ(scan.valid_end, whole == 0 ? 0 : (whole < 8 ? starts[whole] : file.size()));
  }
}

TEST(CheckpointLogTest, AGarbledLengthNeverSkipsTheEntriesAfterIt) {
  // The length of entry 3 made to claim the next 1, 2, ... entries, or just inside the cap: the
  // CRC does not match, and the scan resynchronises on entry 4 rather than trusting it.
  std::vector<size_t> starts;
  const std::string file = File(12, &starts);
  for (uint32_t claim : {uint32_t{40}, static_cast<uint32_t>(starts[6] - starts[3] - 8),
                         static_cast<uint32_t>(kMaxCheckpointEntrySize - 9), 0xffffffffu}) {
    std::string copy = file;
    for (int b = 0; b < 4; ++b) copy[starts[3] + 4 + b] = static_cast<char>(claim >> (8 * b));
    const CheckpointLogScan scan = ScanCheckpointLog(copy);
    EXPECT_EQ(Bodies(scan), Expected(12, 3)) << "claimed length " << claim;
  }
}

TEST(CheckpointLogTest, GarbageBeforeBetweenAndAfterEntriesIsSkippedOrCut) {
  std::mt19937 random(7);
  std::string garbage(3000, '\0');
  for (char& c : garbage) c = static_cast<char>(random());
  const std::string a = File(3);
  std::string b;
  AppendCheckpointEntry(&b, 9, kPutCheckpointEntry, "after");
  const std::string file = garbage + a + garbage + b + garbage;
  const CheckpointLogScan scan = ScanCheckpointLog(file);
  std::vector<std::string> expected = Expected(3);
  expected.push_back("after");
  EXPECT_EQ(Bodies(scan), expected);
  ASSERT_EQ(scan.corrupt.size(), 2u);
  EXPECT_EQ(scan.corrupt[0].begin, 0u);
  EXPECT_EQ(scan.corrupt[0].end, garbage.size());
  EXPECT_EQ(scan.corrupt[1].begin, garbage.size() + a.size());
  EXPECT_EQ(scan.corrupt[1].end, 2 * garbage.size() + a.size());
  EXPECT_EQ(scan.valid_end, file.size() - garbage.size());  // the garbage at the end is torn
}

TEST(CheckpointLogTest, ScanningMegabytesOfGarbageStaysFast) {
  // Random bytes, zeros, and a pattern whose every 4-byte window reads as a plausible length.
  std::mt19937 random(11);
  std::string random_bytes(8 << 20, '\0');
  for (char& c : random_bytes) c = static_cast<char>(random());
  std::string pattern;
  while (pattern.size() < (8u << 20)) pattern += std::string("\x00\x20\x00\x00\x01\x00P", 7);
  for (const std::string* garbage : {&random_bytes, &pattern}) {
    std::string file = *garbage;
    AppendCheckpointEntry(&file, 1, kPutCheckpointEntry, "survivor");
    const auto start = std::chrono::steady_clock::now();
    const CheckpointLogScan scan = ScanCheckpointLog(file);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_EQ(Bodies(scan), std::vector<std::string>{"survivor"});
    EXPECT_LT(took, std::chrono::seconds(2))
        << "8 MiB of garbage took " << std::chrono::duration<double>(took).count() << " s";
  }
}

}  // namespace
}  // namespace runnel::broker
