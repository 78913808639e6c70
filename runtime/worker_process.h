// The runtime's side of one `runnel worker` process: spawning it (supervised, killed with its
// parent), the Init handshake, one invocation at a time over the socket with a hard deadline, and
// turning deaths into results. Its stdout and stderr go to runnel's log, tagged.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runnel/runtime/function.h"
#include "runtime/wire.h"

namespace runnel::runtime {

struct WorkerLogTag;

// Lambda gives a function's initialisation 10 s; so does the worker handshake.
inline constexpr absl::Duration kWorkerInitTimeout = absl::Seconds(10);

// The exit status `runnel worker` uses when its plugin or Init failed (after an kInitError frame),
// and when it ran out of memory (after a kOutOfMemory frame).
inline constexpr int kWorkerExitInitFailed = 3;
inline constexpr int kWorkerExitOutOfMemory = 4;

// The signal a worker gets when runnel dies (PR_SET_PDEATHSIG). Not SIGKILL: `runnel worker`
// catches it to kill its whole process group, so that what the handler forked dies too. A
// real-time signal, so that a plugin's own SIGTERM or SIGHUP handling cannot swallow it.
int WorkerParentDeathSignal();

// One worker process, the leader of its own process group. Not thread-safe: the owner
// (ProcessFunction) hands it to one invocation at a time. Whenever the worker ends (timeout,
// crash, memory overrun, a broken response, the destructor) its whole group is killed, so
// processes the handler forked do not outlive it.
class WorkerProcess {
 public:
  // Spawns `runnel worker`, sends it the plugin and configuration and waits until it has loaded
  // the plugin and run Init. The error carries the worker's own message (a loader or Init error
  // naming the plugin file), or says how the worker died.
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Start(const FunctionConfig& config);

  // Spawns a worker that only opens `plugin_path` (its static constructors run there, not here)
  // and checks it as Plugin::Open does, without running Init; it then exits. The error is the
  // loader's (naming the file) or says how the worker died while loading it.
  static absl::Status Check(const std::string& plugin_path, const std::string& worker_binary);

  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  // Runs one batch with a hard deadline of `timeout` from now. When the result leaves the worker
  // unusable (timeout, death, a broken response) the worker has been killed and reaped and
  // alive() is false.
  InvokeResult Invoke(const InvokeRequest& request, std::string_view request_id,
                      std::string_view invoke_identity_arn, absl::Duration timeout);

  // False once the process is gone.
  bool alive() const { return pid_ > 0; }
  // True when an idle worker looks usable: nothing unexpected on its socket, no hang-up.
  bool Healthy();
  pid_t pid() const { return pid_; }

 private:
  WorkerProcess(std::string function_name, int memory_size_mb, pid_t pid, int fd,
                std::shared_ptr<WorkerLogTag> tag);
  // Starts `runnel worker` (`worker_binary`, already defaulted) with its channel and output pipes.
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Spawn(const std::string& function_name,
                                                              int memory_size_mb,
                                                              const std::string& worker_binary);
  // Sends the first frame (in send_) and waits for kReady; `loading` says what the worker is
  // doing, for messages ("loading x.so and running Init").
  absl::Status Handshake(const std::string& binary, const std::string& loading);

  enum class Io { kOk, kTimeout, kClosed };
  Io WriteAll(const char* data, size_t size, int64_t deadline_ns);
  Io ReadExact(char* data, size_t size, int64_t deadline_ns);
  // Reads one frame; kOk with `*valid` false when the header or size is nonsense.
  Io ReadFrame(wire::FrameHeader* header, uint64_t max_length, int64_t deadline_ns, bool* valid);
  // Kills (SIGKILL) the worker's process group and reaps the worker; returns its wait status.
  int KillAndReap();
  // The result for a worker that died on its own: its signal or exit status.
  InvokeResult Died(InvokeResult result);

  std::string function_name_;
  int memory_size_mb_;
  pid_t pid_;
  int fd_;
  int pid_fd_;
  std::shared_ptr<WorkerLogTag> tag_;
  wire::Buffer send_;
  wire::Buffer receive_;
  wire::ResponseMessage response_;
};

// "signal: SIGSEGV (Segmentation fault)" or "exit status 3", from a waitpid status.
std::string DescribeWaitStatus(int status);

}  // namespace runnel::runtime
