// The `file:` on-failure destination under faults: a write that fails part-way (a full disk,
// through the write seam and, when the test runs as root, on a real 64 KiB tmpfs) is cut back,
// so the retry never appends a whole line after a partial one; what an interrupted writer left is
// cut before the next write; and a randomized model test (seeded writes, failing writes, torn
// leftovers, new instances and kill -9 of a child that writes) checks after every step that the
// file's whole lines are exactly the acknowledged records, in order.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "poller/destination.h"
#include "tests/common/model_check.h"

namespace runnel::poller {
namespace {

namespace fs = std::filesystem;

FailureRecord Record(int id, size_t padding = 0) {
  FailureRecord record;
  record.request_id = absl::StrCat("req-", id, "-", std::string(padding, 'p'));
  record.function_arn = "arn:aws:lambda:us-east-1:000000000000:function:f";
  record.condition = "RetryAttemptsExhausted";
  record.approximate_invoke_count = 3;
  record.timestamp_ms = 1'700'000'000'000;
  record.shard_id = "shardId-000000000000";
  record.start_sequence_number = "1";
  record.end_sequence_number = "2";
  record.batch_size = 2;
  record.stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/events";
  return record;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The request ids of the file's whole lines (each must be a failure record), and whether it ends
// in an unfinished line.
std::vector<std::string> WholeLines(const std::string& path, bool* unfinished = nullptr) {
  const std::string contents = ReadAll(path);
  std::vector<std::string> ids;
  size_t start = 0;
  while (start < contents.size()) {
    const size_t end = contents.find('\n', start);
    if (end == std::string::npos) break;
    auto record = ParseFailureRecord(std::string_view(contents).substr(start, end - start));
    ids.push_back(record.ok() ? record->request_id.substr(0, record->request_id.find("-", 4))
                              : absl::StrCat("CORRUPT LINE: ", record.status().message()));
    start = end + 1;
  }
  if (unfinished) *unfinished = start < contents.size();
  return ids;
}

std::string Id(int id) { return absl::StrCat("req-", id); }

class FileDestinationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("file-destination-", info->name(), "-", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path() const { return (dir_ / "dlq.jsonl").string(); }
  fs::path dir_;
};

// A write(2) that writes `budget` bytes in all, then fails with `error` (a disk that fills up).
FileDestinationIo FailingAfter(std::shared_ptr<size_t> budget, int error) {
  FileDestinationIo io;
  io.write = [budget, error](int fd, const void* data, size_t size) -> ssize_t {
    if (*budget == 0) {
      errno = error;
      return -1;
    }
    const size_t n = std::min(size, *budget);
    const ssize_t written = ::write(fd, data, n);
    if (written > 0) *budget -= static_cast<size_t>(written);
    return written;
  };
  return io;
}

TEST_F(FileDestinationTest, AWriteThatFailsPartWayIsCutBackAndTheRetryLeavesWholeLines) {
  auto budget = std::make_shared<size_t>(SIZE_MAX);
  auto destination = MakeFileDestination(Path(), FailingAfter(budget, ENOSPC));
  ASSERT_TRUE(destination->Write(Record(1)).ok());
  const auto one_line = fs::file_size(Path());
  *budget = 100;  // the disk fills up 100 bytes into the next line
  absl::Status full = destination->Write(Record(2));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_EQ(fs::file_size(Path()), one_line) << "the partial line is cut back at once";
  *budget = SIZE_MAX;  // space again: the lane's retry
  ASSERT_TRUE(destination->Write(Record(2)).ok());
  ASSERT_TRUE(destination->Write(Record(3)).ok());
  bool unfinished = true;
  EXPECT_EQ(WholeLines(Path(), &unfinished), (std::vector<std::string>{Id(1), Id(2), Id(3)}));
  EXPECT_FALSE(unfinished);
}

TEST_F(FileDestinationTest, WhatAnInterruptedWriterLeftIsCutBeforeTheNextWrite) {
  auto destination = MakeFileDestination(Path());
  ASSERT_TRUE(destination->Write(Record(1)).ok());
  {
    // A poller killed in the middle of its write (or a cut-back that failed): half a line.
    std::ofstream out(Path(), std::ios::binary | std::ios::app);
    out << "{\"requestContext\":{\"requestId\":\"req-2";
  }
  ASSERT_TRUE(MakeFileDestination(Path())->Write(Record(2)).ok());
  bool unfinished = true;
  EXPECT_EQ(WholeLines(Path(), &unfinished), (std::vector<std::string>{Id(1), Id(2)}));
  EXPECT_FALSE(unfinished);
  // A file that is nothing but a partial line is cut to nothing first.
  { std::ofstream(Path(), std::ios::binary | std::ios::trunc) << "{\"partial"; }
  ASSERT_TRUE(MakeFileDestination(Path())->Write(Record(3)).ok());
  EXPECT_EQ(WholeLines(Path()), (std::vector<std::string>{Id(3)}));
}

// A real full disk: a 64 KiB tmpfs mounted by the test (root only).
TEST_F(FileDestinationTest, OnARealFullDiskTheFileKeepsWholeLinesAndWritesResumeWithSpace) {
  const fs::path mount_point = dir_ / "small-disk";
  fs::create_directories(mount_point);
  if (::geteuid() != 0 ||
      ::mount("tmpfs", mount_point.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k") != 0) {
    GTEST_SKIP() << "mounting a 64 KiB tmpfs needs root (CAP_SYS_ADMIN): "
                 << (::geteuid() != 0 ? "not root" : std::strerror(errno))
                 << "; the write seam test covers the same path";
  }
  struct Unmount {
    fs::path at;
    ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  const std::string path = (mount_point / "dlq.jsonl").string();
  auto destination = MakeFileDestination(path);
  ASSERT_TRUE(destination->Write(Record(1, 1000)).ok());
  // Fill the rest of the disk.
  {
    int fd = ::open((mount_point / "filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    const std::string block(512, 'f');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
  }
  // A line larger than what is left of the file's last page: part of it fits, then ENOSPC.
  absl::Status full = destination->Write(Record(2, 6000));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_NE(full.message().find("disk full"), std::string::npos) << full;
  bool unfinished = true;
  EXPECT_EQ(WholeLines(path, &unfinished), std::vector<std::string>{Id(1)});
  EXPECT_FALSE(unfinished) << "a partial line was left on the full disk";
  fs::remove(mount_point / "filler");  // space returns: the retry succeeds, no restart
  ASSERT_TRUE(destination->Write(Record(2, 6000)).ok());
  EXPECT_EQ(WholeLines(path, &unfinished), (std::vector<std::string>{Id(1), Id(2)}));
  EXPECT_FALSE(unfinished);
}

// The model test: ops on one file, checked after every step.
struct Op {
  enum Kind { kWrite, kFailingWrite, kTornLeftover, kNewInstance, kKill } kind = kWrite;
  size_t fail_after = 0;  // kFailingWrite: bytes written before the error
  int error = ENOSPC;     // kFailingWrite
  size_t padding = 0;     // record size
  size_t leftover = 0;    // kTornLeftover: bytes of a line a dead writer left
  int writes = 0;         // kKill: records the child writes
  int kill_after = 0;     // kKill: acknowledged writes before the parent kills it
};

std::string Describe(const Op& op) {
  switch (op.kind) {
    case Op::kWrite:
      return absl::StrCat("write(", op.padding, ")");
    case Op::kFailingWrite:
      return absl::StrCat("write(", op.padding, ") failing after ", op.fail_after, " bytes with ",
                          std::strerror(op.error));
    case Op::kTornLeftover:
      return absl::StrCat("leftover(", op.leftover, " bytes)");
    case Op::kNewInstance:
      return "new instance";
    case Op::kKill:
      return absl::StrCat("kill9(", op.writes, " writes, after ", op.kill_after, ")");
  }
  return "?";
}

std::vector<Op> Generate(uint64_t seed, int steps) {
  std::mt19937_64 random(seed);
  std::vector<Op> ops;
  for (int i = 0; i < steps; ++i) {
    Op op;
    const int dice = static_cast<int>(random() % 100);
    op.padding = random() % 10 == 0 ? random() % 8000 : random() % 300;
    if (dice < 55) {
      op.kind = Op::kWrite;
    } else if (dice < 80) {
      op.kind = Op::kFailingWrite;
      op.fail_after = random() % 600;
      op.error = random() % 2 == 0 ? ENOSPC : EIO;
    } else if (dice < 88) {
      op.kind = Op::kTornLeftover;
      op.leftover = 1 + random() % 400;
    } else if (dice < 96) {
      op.kind = Op::kNewInstance;
    } else {
      op.kind = Op::kKill;
      op.writes = 1 + static_cast<int>(random() % 20);
      op.kill_after = static_cast<int>(random() % (op.writes + 1));
    }
    ops.push_back(op);
  }
  return ops;
}

class Runner {
 public:
  explicit Runner(std::string dir) : dir_(std::move(dir)), path_(dir_ + "/dlq.jsonl") {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    budget_ = std::make_shared<size_t>(SIZE_MAX);
    error_ = std::make_shared<int>(ENOSPC);
    NewInstance();
  }
  ~Runner() { fs::remove_all(dir_); }

  std::optional<std::string> Run(const std::vector<Op>& ops) {
    for (size_t step = 0; step < ops.size(); ++step) {
      std::string failure = Apply(ops[step]);
      if (failure.empty()) failure = Check();
      if (!failure.empty()) {
        return absl::StrCat("step ", step, " (", Describe(ops[step]), "): ", failure);
      }
    }
    return std::nullopt;
  }

 private:
  void NewInstance() {
    auto budget = budget_;
    auto error = error_;
    FileDestinationIo io;
    io.write = [budget, error](int fd, const void* data, size_t size) -> ssize_t {
      if (*budget == 0) {
        errno = *error;
        return -1;
      }
      const ssize_t written = ::write(fd, data, std::min(size, *budget));
      if (written > 0 && *budget != SIZE_MAX) *budget -= static_cast<size_t>(written);
      return written;
    };
    destination_ = MakeFileDestination(path_, io);
  }

  std::string Apply(const Op& op) {
    switch (op.kind) {
      case Op::kWrite: {
        const int id = next_id_++;
        absl::Status status = destination_->Write(Record(id, op.padding));
        if (!status.ok()) return absl::StrCat("write failed: ", status.ToString());
        acknowledged_.push_back(Id(id));
        return "";
      }
      case Op::kFailingWrite: {
        const int id = next_id_++;
        *budget_ = op.fail_after;
        *error_ = op.error;
        absl::Status status = destination_->Write(Record(id, op.padding));
        *budget_ = SIZE_MAX;
        const std::string line = FailureRecordToJson(Record(id, op.padding)) + "\n";
        if (op.fail_after >= line.size()) {
          // The whole line fit: the write (and its fdatasync) succeeded.
          if (!status.ok()) return absl::StrCat("write failed: ", status.ToString());
          acknowledged_.push_back(Id(id));
        } else if (status.ok()) {
          return "a write that failed part-way was acknowledged";
        }
        return "";
      }
      case Op::kTornLeftover: {
        // What a writer killed mid-line leaves: a prefix of a line, never acknowledged.
        const std::string line = FailureRecordToJson(Record(next_id_++, op.padding)) + "\n";
        std::ofstream out(path_, std::ios::binary | std::ios::app);
        out << line.substr(0, std::min(op.leftover, line.size() - 1));
        return "";
      }
      case Op::kNewInstance:
        NewInstance();
        return "";
      case Op::kKill:
        return KillChild(op);
    }
    return "?";
  }

  // A child writes records through its own destination, reporting each acknowledged one through
  // a pipe, and is SIGKILLed by the parent after `kill_after` of them (mid-write, at random).
  std::string KillChild(const Op& op) {
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0) return "pipe failed";
    const int first_id = next_id_;
    next_id_ += op.writes;
    const pid_t pid = ::fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
      ::close(pipe_fds[0]);
      auto destination = MakeFileDestination(path_);
      for (int i = 0; i < op.writes; ++i) {
        if (!destination->Write(Record(first_id + i, 50 + 997 * i % 9000)).ok()) ::_exit(3);
        const int32_t done = first_id + i;
        if (::write(pipe_fds[1], &done, sizeof(done)) != sizeof(done)) ::_exit(4);
      }
      ::pause();
      ::_exit(0);
    }
    ::close(pipe_fds[1]);
    int acked = 0;
    int32_t done;
    if (op.kill_after == 0) ::kill(pid, SIGKILL);
    while (::read(pipe_fds[0], &done, sizeof(done)) == sizeof(done)) {
      acknowledged_.push_back(Id(done));
      if (++acked == op.kill_after) ::kill(pid, SIGKILL);
    }
    ::kill(pid, SIGKILL);
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status)) return absl::StrCat("the child exited (wait status ", status, ")");
    // The write in flight may have completed without its acknowledgement: one more whole line
    // is allowed, and it is the next record the child would have acknowledged.
    bool unfinished = false;
    std::vector<std::string> lines = WholeLines(path_, &unfinished);
    if (lines.size() == acknowledged_.size() + 1 && acked < op.writes &&
        lines.back() == Id(first_id + acked)) {
      acknowledged_.push_back(lines.back());
    }
    return "";
  }

  // The file's whole lines are exactly the acknowledged records; what follows the last one can
  // only be an unfinished line that the next write cuts. Lines already checked are compared as
  // bytes, so each step parses only the new ones.
  std::string Check() {
    // Every 64 checks the whole file is compared; in between, the part after the checked prefix
    // is read (a cut into that prefix shows as a short file, an overwrite as missing lines).
    const bool full = ++checks_ % 64 == 0;
    std::string contents;
    {
      std::ifstream in(path_, std::ios::binary);
      in.seekg(0, std::ios::end);
      const auto size = static_cast<size_t>(in.tellg());
      if (size < checked_.size()) return "lines acknowledged before were cut";
      const size_t from = full ? 0 : checked_.size();
      contents.assign(from, '\0');
      contents.resize(size);
      in.seekg(static_cast<std::streamoff>(from));
      in.read(contents.data() + from, static_cast<std::streamsize>(size - from));
    }
    if (full && contents.compare(0, checked_.size(), checked_) != 0) {
      return "lines acknowledged before were changed";
    }
    size_t start = checked_.size();
    size_t lines = checked_lines_;
    while (start < contents.size()) {
      const size_t end = contents.find('\n', start);
      if (end == std::string::npos) break;
      auto record = ParseFailureRecord(std::string_view(contents).substr(start, end - start));
      if (!record.ok()) {
        return absl::StrCat("line ", lines + 1,
                            " is no failure record: ", record.status().message());
      }
      const std::string id = record->request_id.substr(0, record->request_id.find('-', 4));
      if (lines >= acknowledged_.size() || acknowledged_[lines] != id) {
        return absl::StrCat("line ", lines + 1, " holds ", id, ", acknowledged: ",
                            lines < acknowledged_.size() ? acknowledged_[lines] : "nothing");
      }
      ++lines;
      start = end + 1;
    }
    if (lines != acknowledged_.size()) {
      return absl::StrCat("the file holds ", lines, " whole lines, ", acknowledged_.size(),
                          " were acknowledged (the last: ", acknowledged_.back(), ")");
    }
    checked_.append(contents, checked_.size(), start - checked_.size());
    checked_lines_ = lines;
    return "";
  }

  const std::string dir_;
  const std::string path_;
  std::shared_ptr<size_t> budget_;
  std::shared_ptr<int> error_;
  std::unique_ptr<FailureDestination> destination_;
  std::vector<std::string> acknowledged_;
  std::string checked_;  // the file's checked prefix: whole acknowledged lines
  size_t checked_lines_ = 0;
  int checks_ = 0;
  int next_id_ = 1;
};

TEST(FileDestinationModelTest, RandomWritesFaultsAndKillsKeepExactlyTheAcknowledgedLines) {
  const uint64_t seed = testing::ModelSeed(424242);
  const int steps = testing::ModelSteps(1000);
  const fs::path base = fs::is_directory("/dev/shm") && ::access("/dev/shm", W_OK) == 0
                            ? fs::path("/dev/shm")
                            : fs::path(::testing::TempDir());
  const std::string dir = (base / absl::StrCat("runnel-model-dlq-", ::getpid())).string();
  auto run = [&](const std::vector<Op>& ops) { return Runner(dir).Run(ops); };
  const std::vector<Op> ops = Generate(seed, steps);
  if (auto report = testing::RunModel<Op>(seed, steps, ops, run, Describe)) FAIL() << *report;
}

}  // namespace
}  // namespace runnel::poller
