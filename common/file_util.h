// File helpers shared by everything that keeps state on disk: errno → Status, atomic
// replace-by-rename with the fsyncs that make it crash-safe, an exclusive directory lock.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace runnel {

// An errno as a Status whose message names the operation and the path. ENOSPC and EDQUOT become
// RESOURCE_EXHAUSTED ("disk full"), ENOENT NOT_FOUND, EACCES/EPERM PERMISSION_DENIED, EIO
// DATA_LOSS, the rest INTERNAL.
absl::Status ErrnoStatus(int error_number, std::string_view operation, std::string_view path);

absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Replaces `path` with `contents` so that after a crash the file holds either the old or the new
// contents, never a mix: write a temporary file, fsync it, rename it over `path`, fsync the
// folder.
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents);

// Makes a folder's entries (created, renamed or removed files) durable.
absl::Status FsyncDirectory(const std::string& path);

// Writes all of `data` at the file's current offset, retrying short writes and EINTR.
absl::Status WriteAll(int fd, const void* data, size_t size, std::string_view path);

// Reads exactly `size` bytes at `offset` (fewer only at end of file; the count is returned).
absl::StatusOr<size_t> PreadUpTo(int fd, void* buffer, size_t size, uint64_t offset,
                                 std::string_view path);

// An exclusive advisory lock (flock) on a file, held for this object's lifetime. Fails when
// another process holds it; the error names the pid written in the file.
class DirectoryLock {
 public:
  static absl::StatusOr<DirectoryLock> Acquire(const std::string& lock_path);
  DirectoryLock(DirectoryLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DirectoryLock& operator=(DirectoryLock&& other) noexcept;
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;
  ~DirectoryLock();

 private:
  explicit DirectoryLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace runnel
