// Helpers shared by the runtime and handler tests: running a command with a deadline, waiting
// on a condition, capturing runnel's log, temporary folders, the paths of the built plugins.
#pragma once

#include <spdlog/logger.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "runnel/runtime/function.h"

namespace runnel::testing {

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  int signal = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv[0] (searched in PATH) with `stdin_text` as its input; kills it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_text = "",
                         absl::Duration timeout = absl::Seconds(120));

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(10));

// Replaces spdlog's default logger with one that records each message (the formatted payload,
// without timestamp or level) while it lives.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  std::vector<std::string> Lines() const;
  bool Contains(const std::string& needle) const;
  // Waits until a line contains `needle`.
  bool WaitForLine(const std::string& needle, absl::Duration timeout = absl::Seconds(10)) const;

  struct State;  // shared with the sink

 private:
  std::shared_ptr<State> state_;
  std::shared_ptr<spdlog::logger> previous_;
};

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& contents);

// A FunctionConfig for `plugin` whose workers are the built runnel binary.
runtime::FunctionConfig TestConfig(const std::string& name, const std::string& plugin,
                                   runtime::Isolation isolation);

// True if a process with this pid exists (zombies included).
bool ProcessExists(int pid);

}  // namespace runnel::testing
