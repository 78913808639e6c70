// File helpers: errno → Status mapping, atomic replace, whole-file reads, and the directory lock.
#include "common/file_util.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace runnel {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A fresh folder per test, removed afterwards.
class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("runnel_", info->test_suite_name(), "_", info->name(), "_", ::getpid());
    fs::remove_all(dir_);
    ASSERT_TRUE(fs::create_directories(dir_));
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST(ErrnoStatusTest, MapsErrnoToCanonicalCodes) {
  EXPECT_EQ(ErrnoStatus(ENOSPC, "write", "/x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoStatus(EDQUOT, "write", "/x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoStatus(ENOENT, "open", "/x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrnoStatus(EACCES, "open", "/x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoStatus(EPERM, "open", "/x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoStatus(EROFS, "open", "/x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoStatus(EIO, "read", "/x").code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ErrnoStatus(EBADF, "read", "/x").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ErrnoStatus(EINVAL, "read", "/x").code(), absl::StatusCode::kInternal);
}

TEST(ErrnoStatusTest, MessageNamesOperationPathAndReason) {
  absl::Status status = ErrnoStatus(ENOSPC, "write", "/data/orders/00000000000000000001.log");
  EXPECT_THAT(status.message(), HasSubstr("write /data/orders/00000000000000000001.log"));
  EXPECT_THAT(status.message(), HasSubstr("disk full"));
  EXPECT_THAT(status.message(), HasSubstr(std::strerror(ENOSPC)));
  EXPECT_THAT(ErrnoStatus(ENOENT, "open", "/nope").message(), HasSubstr("open /nope"));
  EXPECT_THAT(ErrnoStatus(ENOENT, "open", "/nope").message(),
              ::testing::Not(HasSubstr("disk full")));
}

TEST_F(FileUtilTest, WriteFileAtomicallyCreatesAndReplacesContents) {
  const std::string path = Path("state.json");
  ASSERT_TRUE(WriteFileAtomically(path, "first version, rather long").ok());
  EXPECT_EQ(*ReadFileToString(path), "first version, rather long");
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  EXPECT_EQ(*ReadFileToString(path), "second") << "no bytes of the longer old content remain";
  ASSERT_TRUE(WriteFileAtomically(path, "").ok());
  EXPECT_EQ(*ReadFileToString(path), "");
}

TEST_F(FileUtilTest, WriteFileAtomicallyLeavesNoTemporaryFile) {
  ASSERT_TRUE(WriteFileAtomically(Path("a"), "x").ok());
  ASSERT_TRUE(WriteFileAtomically(Path("a"), "y").ok());
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "a");
  }
  EXPECT_EQ(files, 1);
}

TEST_F(FileUtilTest, WriteFileAtomicallyKeepsBinaryData) {
  std::string data;
  for (int i = 0; i < 200000; ++i) data.push_back(static_cast<char>(i * 7));
  ASSERT_TRUE(WriteFileAtomically(Path("bin"), data).ok());
  EXPECT_EQ(*ReadFileToString(Path("bin")), data);
}

TEST_F(FileUtilTest, WriteFileAtomicallyIntoMissingFolderFailsWithNotFound) {
  absl::Status status = WriteFileAtomically(Path("missing/file"), "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("missing/file.tmp"));
  EXPECT_FALSE(fs::exists(Path("missing")));
}

TEST_F(FileUtilTest, WriteFileAtomicallyOverAFolderFailsAndCleansUp) {
  fs::create_directories(Path("taken/child"));
  absl::Status status = WriteFileAtomically(Path("taken"), "x");
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(fs::exists(Path("taken.tmp")));
  EXPECT_TRUE(fs::is_directory(Path("taken")));
}

TEST_F(FileUtilTest, ReadFileToStringOfMissingFileIsNotFound) {
  auto contents = ReadFileToString(Path("nope"));
  ASSERT_FALSE(contents.ok());
  EXPECT_EQ(contents.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(contents.status().message(), HasSubstr("nope"));
}

TEST_F(FileUtilTest, ReadFileToStringReadsLargeFiles) {
  std::string data(300000, 'q');
  data[123456] = 'z';
  ASSERT_TRUE(WriteFileAtomically(Path("big"), data).ok());
  EXPECT_EQ(*ReadFileToString(Path("big")), data);
}

TEST_F(FileUtilTest, WriteAllAndPreadUpToRoundTrip) {
  const std::string path = Path("f");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WriteAll(fd, "hello world", 11, path).ok());
  char buffer[32] = {};
  auto got = PreadUpTo(fd, buffer, 5, 6, path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, 5u);
  EXPECT_EQ(std::string(buffer, 5), "world");
  got = PreadUpTo(fd, buffer, sizeof(buffer), 6, path);  // short at end of file
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, 5u);
  got = PreadUpTo(fd, buffer, sizeof(buffer), 100, path);  // past the end
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, 0u);
  ::close(fd);
}

TEST_F(FileUtilTest, WriteAllToBadDescriptorNamesThePath) {
  absl::Status status = WriteAll(-1, "x", 1, "/some/where");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("/some/where"));
  char byte;
  auto read = PreadUpTo(-1, &byte, 1, 0, "/other/place");
  ASSERT_FALSE(read.ok());
  EXPECT_THAT(read.status().message(), HasSubstr("/other/place"));
}

TEST_F(FileUtilTest, FsyncDirectoryOfMissingFolderFails) {
  EXPECT_TRUE(FsyncDirectory(dir_.string()).ok());
  EXPECT_EQ(FsyncDirectory(Path("missing")).code(), absl::StatusCode::kNotFound);
}

TEST_F(FileUtilTest, DirectoryLockSecondAcquireInSameProcessFailsNamingThePid) {
  const std::string path = Path("LOCK");
  auto first = DirectoryLock::Acquire(path);
  ASSERT_TRUE(first.ok()) << first.status();
  // flock locks belong to an open file description: a second open() conflicts even here.
  auto second = DirectoryLock::Acquire(path);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr(absl::StrCat("(pid ", ::getpid(), ")")));
  EXPECT_THAT(second.status().message(), HasSubstr(path));
  EXPECT_EQ(*ReadFileToString(path), absl::StrCat(::getpid(), "\n"));
}

TEST_F(FileUtilTest, DirectoryLockIsReleasedOnDestruction) {
  const std::string path = Path("LOCK");
  {
    auto first = DirectoryLock::Acquire(path);
    ASSERT_TRUE(first.ok()) << first.status();
  }
  auto again = DirectoryLock::Acquire(path);
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_F(FileUtilTest, DirectoryLockSurvivesMovesAndReleasesOnce) {
  const std::string path = Path("LOCK");
  auto acquired = DirectoryLock::Acquire(path);
  ASSERT_TRUE(acquired.ok());
  {
    DirectoryLock moved(std::move(*acquired));
    EXPECT_FALSE(DirectoryLock::Acquire(path).ok()) << "the moved-to lock still holds it";
    DirectoryLock assigned = std::move(moved);
    EXPECT_FALSE(DirectoryLock::Acquire(path).ok());
  }
  EXPECT_TRUE(DirectoryLock::Acquire(path).ok());
}

TEST_F(FileUtilTest, DirectoryLockMoveAssignmentReleasesTheOldLock) {
  auto a = DirectoryLock::Acquire(Path("A"));
  auto b = DirectoryLock::Acquire(Path("B"));
  ASSERT_TRUE(a.ok() && b.ok());
  *a = std::move(*b);  // A's lock is released, B's is now held by `a`
  EXPECT_TRUE(DirectoryLock::Acquire(Path("A")).ok());
  EXPECT_FALSE(DirectoryLock::Acquire(Path("B")).ok());
}

TEST_F(FileUtilTest, DirectoryLockHeldByAnotherDescriptorWithoutPidHasNoPid) {
  const std::string path = Path("LOCK");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  auto lock = DirectoryLock::Acquire(path);
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(lock.status().message(), ::testing::Not(HasSubstr("pid")));
  ::close(fd);
  EXPECT_TRUE(DirectoryLock::Acquire(path).ok());
}

TEST_F(FileUtilTest, DirectoryLockInMissingFolderFails) {
  auto lock = DirectoryLock::Acquire(Path("missing/LOCK"));
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace runnel
