// Spawning and supervising `runnel worker` processes, and forwarding their output to the log.
#include "runtime/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/strings.h"
#include "runtime/invoke_outcome.h"
#include "runtime/plugin.h"

extern char** environ;

namespace runnel::runtime {

// What the log pump tags a worker's lines with. The request id is the invocation the worker
// last started: a line read just after an invocation returned still belongs to it.
struct WorkerLogTag {
  std::string function_name;
  pid_t pid = 0;
  absl::Mutex mu;
  std::string request_id ABSL_GUARDED_BY(mu);
  // The invoking thread's log tags (mapping, stream, shard, ...), for the lines forwarded from
  // the worker while it runs that invocation.
  LogTagSnapshot context ABSL_GUARDED_BY(mu);
  int open_streams ABSL_GUARDED_BY(mu) = 0;  // stdout/stderr pipes the pump still reads

  void SetInvocation(std::string_view id, LogTagSnapshot tags) {
    absl::MutexLock lock(&mu);
    request_id.assign(id);
    context = std::move(tags);
  }
  LogTagSnapshot Context() {
    absl::MutexLock lock(&mu);
    return context;
  }
  std::string RequestId() {
    absl::MutexLock lock(&mu);
    return request_id;
  }
  void StreamOpened() {
    absl::MutexLock lock(&mu);
    ++open_streams;
  }
  void StreamClosed() {
    absl::MutexLock lock(&mu);
    --open_streams;
  }
  // Waits (bounded: a grandchild may hold the pipes open) until the pump has logged everything
  // the worker wrote.
  void AwaitStreamsClosed(absl::Duration timeout) {
    absl::MutexLock lock(&mu);
    auto closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return open_streams == 0; };
    mu.AwaitWithTimeout(absl::Condition(&closed), timeout);
  }
};

namespace {

// Forks and execs from one long-lived thread. PR_SET_PDEATHSIG fires when the *thread* that
// forked the child exits, not the process: a worker forked by a poller lane thread would be
// killed when that lane ends, though the pool still holds it.
class Spawner {
 public:
  struct Request {
    const char* path;
    char* const* argv;
    int channel_fd;
    int stdout_fd;
    int stderr_fd;
    int stdin_fd;
    int parent_death_signal;
  };

  static Spawner& Get() {
    static Spawner* spawner = new Spawner();  // never destroyed: its thread runs until exit
    return *spawner;
  }

  absl::StatusOr<pid_t> Spawn(const Request& request) {
    Job job;
    job.request = request;
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(&job);
    }
    job.done.WaitForNotification();
    if (job.pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(job.error)));
    return job.pid;
  }

 private:
  struct Job {
    Request request;
    absl::Notification done;
    pid_t pid = -1;
    int error = 0;
  };

  Spawner() {
    std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    for (;;) {
      Job* job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](std::deque<Job*>* queue) { return !queue->empty(); }, &queue_));
        job = queue_.front();
        queue_.pop_front();
      }
      Fork(job);
      job->done.Notify();
    }
  }

  // Between fork and exec only async-signal-safe calls: the parent has other threads.
  static void Fork(Job* job) {
    const Request& r = job->request;
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      job->error = errno;
      return;
    }
    if (pid > 0) {
      // Also here, not only in the child: a KillAndReap that comes before the child has run must
      // find the group. (EACCES once the child has exec'd: it has made the group itself.)
      ::setpgid(pid, pid);
      job->pid = pid;
      return;
    }
    // Child. Its own process group, which everything the handler forks inherits: ending the
    // worker ends the group (see KillAndReap). It also keeps a Ctrl-C at the terminal for
    // runnel, which then stops its workers itself, not for workers in the middle of a batch.
    ::setpgid(0, 0);
    // Die with the parent (checked after setting, in case it died in between). The signal is one
    // `runnel worker` catches to kill its whole group; until it has installed that handler, the
    // signal's default action ends the worker alone (it has forked nothing yet).
    ::prctl(PR_SET_PDEATHSIG, r.parent_death_signal);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Move the fds out of 0-3 first so that the dup2s below cannot overwrite one another.
    int channel = ::fcntl(r.channel_fd, F_DUPFD_CLOEXEC, 10);
    int out = ::fcntl(r.stdout_fd, F_DUPFD_CLOEXEC, 10);
    int err = ::fcntl(r.stderr_fd, F_DUPFD_CLOEXEC, 10);
    int in = ::fcntl(r.stdin_fd, F_DUPFD_CLOEXEC, 10);
    if (channel < 0 || out < 0 || err < 0 || in < 0) ::_exit(127);
    if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0 || ::dup2(channel, 3) < 0) {
      ::_exit(127);
    }
    // Everything else the parent had open (other workers' sockets, the broker's files) stays
    // behind.
    ::syscall(SYS_close_range, 4u, ~0u, 0u);
    ::execve(r.path, r.argv, environ);
    ::_exit(127);
  }

  absl::Mutex mu_;
  std::deque<Job*> queue_ ABSL_GUARDED_BY(mu_);
};

// Reads every worker's stdout and stderr (one epoll thread for all of them) and logs each line,
// tagged with the function, the request id and the worker's pid. Lines the SDK's logger wrote
// carry their level and request id in a prefix ("\x1e<level><request id>\x1f<message>").
class LogPump {
 public:
  static LogPump& Get() {
    static LogPump* pump = new LogPump();  // never destroyed: its thread runs until exit
    return *pump;
  }

  // Takes ownership of `fd` (closed at end of file).
  void Add(int fd, std::shared_ptr<WorkerLogTag> tag, const char* stream) {
    tag->StreamOpened();
    auto* source = new Source{fd, std::move(tag), stream, {}};
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = source;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      spdlog::warn("runtime: cannot forward worker {} output: {}", stream, std::strerror(errno));
      ::close(fd);
      source->tag->StreamClosed();
      delete source;
    }
  }

 private:
  struct Source {
    int fd;
    std::shared_ptr<WorkerLogTag> tag;
    const char* stream;
    std::string partial;
  };

  LogPump() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
    std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    epoll_event events[16];
    char buffer[65536];
    for (;;) {
      int n = ::epoll_wait(epoll_fd_, events, 16, -1);
      for (int i = 0; i < n; ++i) {
        auto* source = static_cast<Source*>(events[i].data.ptr);
        ssize_t got = ::read(source->fd, buffer, sizeof(buffer));
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) {
          if (!source->partial.empty()) Emit(*source, source->partial);
          ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, source->fd, nullptr);
          ::close(source->fd);
          source->tag->StreamClosed();
          delete source;
          continue;
        }
        source->partial.append(buffer, static_cast<size_t>(got));
        size_t start = 0;
        for (size_t nl; (nl = source->partial.find('\n', start)) != std::string::npos;
             start = nl + 1) {
          Emit(*source, std::string_view(source->partial).substr(start, nl - start));
        }
        source->partial.erase(0, start);
        // A handler that never writes a newline must not make us buffer without bound.
        if (source->partial.size() > 64 * 1024) {
          Emit(*source, source->partial);
          source->partial.clear();
        }
      }
    }
  }

  static void Emit(Source& source, std::string_view line) {
    WorkerLogTag& tag = *source.tag;
    ScopedLogTags context(tag.Context());
    if (line.size() >= 2 && line[0] == '\x1e') {
      size_t separator = line.find('\x1f');
      if (separator != std::string_view::npos) {
        auto level = spdlog::level::info;
        switch (line[1]) {
          case '0':
            level = spdlog::level::debug;
            break;
          case '2':
            level = spdlog::level::warn;
            break;
          case '3':
            level = spdlog::level::err;
            break;
        }
        LogInvocationLine(level, tag.function_name, line.substr(2, separator - 2),
                          line.substr(separator + 1));
        return;
      }
    }
    LogInvocationLine(spdlog::level::info, tag.function_name, source.tag->RequestId(),
                      absl::StrCat("[worker ", tag.pid, " ", source.stream, "] ", Sv(line)));
  }

  int epoll_fd_;
};

// A pipe or socketpair whose ends are closed unless released.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

int64_t ToNanos(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }

}  // namespace

int WorkerParentDeathSignal() { return SIGRTMIN + 5; }

std::string DescribeWaitStatus(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* abbrev = ::sigabbrev_np(sig);
    const char* description = ::sigdescr_np(sig);
    return absl::StrCat("signal: ", abbrev != nullptr ? absl::StrCat("SIG", abbrev) : "unknown",
                        " (", description != nullptr ? description : "unknown signal", ")");
  }
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  return absl::StrCat("wait status ", status);
}

WorkerProcess::WorkerProcess(std::string function_name, int memory_size_mb, pid_t pid, int fd,
                             std::shared_ptr<WorkerLogTag> tag)
    : function_name_(std::move(function_name)),
      memory_size_mb_(memory_size_mb),
      pid_(pid),
      fd_(fd),
      // Readable once the worker has exited. Its socket alone cannot say so: a process the handler
      // forked holds a copy of it until the group is killed. (-1 on kernels before 5.3: then only
      // the socket's end of file tells.)
      pid_fd_(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))),
      tag_(std::move(tag)) {
  if (pid_fd_ >= 0) ::fcntl(pid_fd_, F_SETFD, FD_CLOEXEC);
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0) KillAndReap();
  // Its last words (a crash message, lines printed before a timeout) are logged before the
  // invocation's result is returned, and before `runnel invoke` exits.
  tag_->AwaitStreamsClosed(absl::Seconds(1));
}

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Spawn(
    const std::string& function_name, int memory_size_mb, const std::string& worker_binary) {
  const std::string& binary = worker_binary;
  if (::access(binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run the worker binary ", binary, ": ", std::strerror(errno)));
  }
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return absl::InternalError(absl::StrCat("socketpair: ", std::strerror(errno)));
  }
  Fd parent_end(sockets[0]), child_end(sockets[1]);
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  Fd err_read(err_pipe[0]), err_write(err_pipe[1]);
  Fd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (dev_null.fd < 0) {
    return absl::InternalError(absl::StrCat("open /dev/null: ", std::strerror(errno)));
  }
  // A whole 6 MiB batch in fewer, larger writes (the kernel caps this at net.core.wmem_max).
  int buffer_size = 4 << 20;
  ::setsockopt(parent_end.fd, SOL_SOCKET, SO_SNDBUF, &buffer_size, sizeof(buffer_size));
  ::setsockopt(child_end.fd, SOL_SOCKET, SO_SNDBUF, &buffer_size, sizeof(buffer_size));

  // `--function` is for ps(1) only; the configuration travels in the Init frame.
  std::vector<std::string> args = {"runnel", "worker",     "--channel-fd",
                                   "3",      "--function", function_name};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  absl::StatusOr<pid_t> pid =
      Spawner::Get().Spawn(Spawner::Request{binary.c_str(), argv.data(), child_end.fd, out_write.fd,
                                            err_write.fd, dev_null.fd, WorkerParentDeathSignal()});
  if (!pid.ok()) return pid.status();
  // The child has its copies; closing ours lets EOF mean "the worker is gone".
  ::close(child_end.release());
  ::close(out_write.release());
  ::close(err_write.release());

  auto tag = std::make_shared<WorkerLogTag>();
  tag->function_name = function_name;
  tag->pid = *pid;
  LogPump::Get().Add(out_read.release(), tag, "stdout");
  LogPump::Get().Add(err_read.release(), tag, "stderr");

  ::fcntl(parent_end.fd, F_SETFL, ::fcntl(parent_end.fd, F_GETFL) | O_NONBLOCK);
  return std::unique_ptr<WorkerProcess>(
      new WorkerProcess(function_name, memory_size_mb, *pid, parent_end.release(), std::move(tag)));
}

absl::Status WorkerProcess::Handshake(const std::string& binary, const std::string& loading) {
  int64_t deadline = MonotonicNanos() + ToNanos(kWorkerInitTimeout);
  Io io = WriteAll(send_.data(), send_.size(), deadline);
  wire::FrameHeader header;
  bool valid = true;
  if (io == Io::kOk) io = ReadFrame(&header, wire::kMaxResponseBytes, deadline, &valid);
  if (io == Io::kTimeout) {
    KillAndReap();
    return absl::DeadlineExceededError(absl::StrCat("the worker did not finish ", loading,
                                                    " within ",
                                                    absl::FormatDuration(kWorkerInitTimeout)));
  }
  if (io == Io::kClosed) {
    int status = KillAndReap();
    return absl::FailedPreconditionError(absl::StrCat(
        "the worker (", binary, ") exited with ", DescribeWaitStatus(status), " while ", loading));
  }
  if (!valid ||
      (header.type != wire::FrameType::kReady && header.type != wire::FrameType::kInitError)) {
    KillAndReap();
    return absl::InternalError(absl::StrCat("the worker answered with garbage while ", loading));
  }
  if (header.type == wire::FrameType::kInitError) {
    KillAndReap();
    std::string_view payload = receive_.view();
    uint32_t code = static_cast<uint32_t>(absl::StatusCode::kFailedPrecondition);
    if (payload.size() >= 4) {
      std::memcpy(&code, payload.data(), 4);
      payload.remove_prefix(4);
    }
    return absl::Status(static_cast<absl::StatusCode>(code), Sv(payload));
  }
  return absl::OkStatus();
}

namespace {
std::string WorkerBinary(const std::string& configured) {
  return configured.empty() ? "/proc/self/exe" : configured;
}
}  // namespace

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Start(const FunctionConfig& config) {
  const std::string binary = WorkerBinary(config.worker_binary);
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker =
      Spawn(config.name, config.memory_size_mb, binary);
  if (!worker.ok()) {
    return absl::Status(worker.status().code(),
                        absl::StrCat("function ", config.name, ": ", worker.status().message()));
  }
  // The handshake: Init -> Ready, or an error frame naming what is wrong with the plugin.
  wire::InitMessage init;
  init.plugin_path = config.plugin_path.empty() ? config.plugin : config.plugin_path;
  init.function_name = config.name;
  init.timeout_ms = absl::ToInt64Milliseconds(config.timeout);
  init.memory_size_mb = config.memory_size_mb;
  init.environment = config.environment;
  wire::EncodeInit(init, &(*worker)->send_);
  absl::Status ready =
      (*worker)->Handshake(binary, absl::StrCat("loading ", init.plugin_path, " and running Init"));
  if (!ready.ok()) {
    return absl::Status(ready.code(),
                        absl::StrCat("function ", config.name, ": ", ready.message()));
  }
  return worker;
}

absl::Status WorkerProcess::Check(const std::string& plugin_path,
                                  const std::string& worker_binary) {
  const std::string binary = WorkerBinary(worker_binary);
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker =
      Spawn("(plugin check)", kMinMemorySizeMb, binary);
  if (!worker.ok()) return worker.status();
  wire::EncodeText(wire::FrameType::kCheck, plugin_path, &(*worker)->send_);
  absl::Status checked = (*worker)->Handshake(binary, absl::StrCat("loading ", plugin_path));
  if (checked.ok()) (*worker)->KillAndReap();  // it exits after its answer; no need to wait
  return checked;
}

bool WorkerProcess::Healthy() {
  if (pid_ <= 0) return false;
  pollfd p[2] = {{fd_, POLLIN, 0}, {pid_fd_, POLLIN, 0}};
  // An idle worker has nothing to say: readable means it died (EOF) or scribbled on its socket.
  if (::poll(p, pid_fd_ >= 0 ? 2 : 1, 0) == 0) return true;
  int status = KillAndReap();
  ScopedLogTags tags{{kTagFunction, function_name_}};
  spdlog::warn("[{}] worker {} died while idle ({}); starting a new one", function_name_, tag_->pid,
               DescribeWaitStatus(status));
  return false;
}

int WorkerProcess::KillAndReap() {
  int status = 0;
  if (pid_ > 0) {
    // The whole process group: whatever the handler forked dies with the worker. Harmless when
    // the worker has already exited: it stays a zombie, its status kept, until the waitpid below,
    // and while it is a zombie its pid (the group's id) cannot be reused, so the group kill cannot
    // reach a stranger. A process that left the group (setsid, setpgid) is not reached.
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (pid_fd_ >= 0) {
    ::close(pid_fd_);
    pid_fd_ = -1;
  }
  return status;
}

WorkerProcess::Io WorkerProcess::WriteAll(const char* data, size_t size, int64_t deadline_ns) {
  while (size > 0) {
    ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return Io::kClosed;  // EPIPE, ECONNRESET: the worker is gone
    // The worker is not reading (busy or hung): wait for room until the deadline.
    int64_t left = deadline_ns - MonotonicNanos();
    if (left <= 0) return Io::kTimeout;
    pollfd p[2] = {{fd_, POLLOUT, 0}, {pid_fd_, POLLIN, 0}};
    timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
    int ready = ::ppoll(p, pid_fd_ >= 0 ? 2 : 1, &ts, nullptr);
    if (ready == 0) return Io::kTimeout;
    if (ready > 0 && ((p[0].revents & (POLLERR | POLLHUP)) != 0 || p[1].revents != 0)) {
      return Io::kClosed;  // the worker is gone (or will never read again)
    }
  }
  return Io::kOk;
}

WorkerProcess::Io WorkerProcess::ReadExact(char* data, size_t size, int64_t deadline_ns) {
  bool exited = false;
  while (size > 0) {
    ssize_t n = ::recv(fd_, data, size, MSG_DONTWAIT);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return Io::kClosed;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Io::kClosed;
    // Exited, and everything it wrote before (already in the socket) has been read.
    if (exited) return Io::kClosed;
    int64_t left = deadline_ns - MonotonicNanos();
    if (left < 0) left = 0;  // one last look: an answer that is there at the deadline counts
    pollfd p[2] = {{fd_, POLLIN, 0}, {pid_fd_, POLLIN, 0}};
    timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
    int ready = ::ppoll(p, pid_fd_ >= 0 ? 2 : 1, &ts, nullptr);
    if (ready == 0) return Io::kTimeout;
    if (ready > 0 && p[1].revents != 0) exited = true;
  }
  return Io::kOk;
}

WorkerProcess::Io WorkerProcess::ReadFrame(wire::FrameHeader* header, uint64_t max_length,
                                           int64_t deadline_ns, bool* valid) {
  char raw[wire::kHeaderSize];
  Io io = ReadExact(raw, sizeof(raw), deadline_ns);
  if (io != Io::kOk) return io;
  *valid = wire::DecodeHeader(raw, header) && header->length <= max_length;
  if (!*valid) return Io::kOk;
  receive_.Resize(header->length);
  return ReadExact(receive_.data(), header->length, deadline_ns);
}

InvokeResult WorkerProcess::Died(InvokeResult result) {
  int status = KillAndReap();
  result.status = InvokeStatus::kCrash;
  result.error_type = "Runtime.ExitError";
  result.error_message = absl::StrCat("Runtime exited with error: ", DescribeWaitStatus(status));
  LogInvocationLine(
      spdlog::level::warn, function_name_, result.request_id,
      absl::StrCat("worker ", result.worker_pid, " died: ", DescribeWaitStatus(status)));
  return result;
}

InvokeResult WorkerProcess::Invoke(const InvokeRequest& request, std::string_view request_id,
                                   std::string_view invoke_identity_arn, absl::Duration timeout) {
  InvokeResult result;
  result.request_id.assign(request_id);
  result.worker_pid = pid_;
  int64_t start = MonotonicNanos();
  int64_t deadline = start + ToNanos(timeout);
  auto finish = [&]() -> InvokeResult {
    result.duration = absl::Nanoseconds(MonotonicNanos() - start);
    return std::move(result);
  };
  tag_->SetInvocation(request_id, CurrentLogTags());

  wire::EncodeRequest(request, request_id, invoke_identity_arn, deadline, &send_);
  Io io = WriteAll(send_.data(), send_.size(), deadline);
  wire::FrameHeader header;
  bool valid = true;
  if (io == Io::kOk) io = ReadFrame(&header, wire::kMaxResponseBytes, deadline, &valid);
  if (io == Io::kTimeout) {
    KillAndReap();
    result.status = InvokeStatus::kTimeout;
    result.error_type = "Sandbox.Timedout";
    result.error_message = TimeoutMessage(timeout);
    LogInvocationLine(spdlog::level::warn, function_name_, result.request_id,
                      absl::StrCat(result.error_message, "; killed worker ", result.worker_pid));
    return finish();
  }
  if (io == Io::kClosed) return Died(finish());
  if (valid && header.type == wire::FrameType::kOutOfMemory) {
    KillAndReap();  // it is already on its way out (_exit after the frame)
    result.status = InvokeStatus::kMemoryExceeded;
    result.error_type = "Runtime.OutOfMemory";
    result.error_message =
        absl::StrCat("Runtime exited with error: memory_size of ", memory_size_mb_, " MB exceeded");
    result.max_memory_used_mb = memory_size_mb_;
    LogInvocationLine(spdlog::level::warn, function_name_, result.request_id,
                      absl::StrCat("worker ", result.worker_pid, " ran out of memory (memory_size ",
                                   memory_size_mb_, " MB)"));
    return finish();
  }
  if (!valid || header.type != wire::FrameType::kResponse ||
      !wire::DecodeResponse(receive_.view(), &response_)) {
    KillAndReap();
    result.status = InvokeStatus::kInvalidResponse;
    result.error_type = "Runtime.InvalidResponse";
    result.error_message = "the worker sent a malformed response";
    return finish();
  }
  result.max_memory_used_mb = response_.max_rss_kb / 1024;
  SetResultFromOutcome(response_.outcome, response_.error_type, response_.error_message,
                       response_.batch_item_failures, &result);
  return finish();
}

}  // namespace runnel::runtime
