// The worker process's loop: Init handshake, then read a batch, call the handler, write the
// result, until the runtime closes the channel.
#include "runnel/runtime/worker.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/plugin.h"
#include "runtime/wire.h"
#include "runtime/worker_process.h"

namespace runnel::runtime {
namespace {

int g_channel_fd = -1;
// A kOutOfMemory frame, encoded before the memory limit is set: the new-handler that sends it
// must not allocate.
char g_out_of_memory_frame[wire::kHeaderSize];

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// False at end of file or on an error.
bool ReadExact(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadFrame(int fd, wire::FrameHeader* header, wire::Buffer* payload) {
  char raw[wire::kHeaderSize];
  if (!ReadExact(fd, raw, sizeof(raw))) return false;
  if (!wire::DecodeHeader(raw, header) || header->length > wire::kMaxRequestBytes) {
    std::fprintf(stderr, "runnel worker: malformed frame from the runtime\n");
    return false;
  }
  payload->Resize(header->length);
  return ReadExact(fd, payload->data(), header->length);
}

// The handler's log lines go to stderr with their level and request id in a prefix that the
// runtime's log pump parses (see worker_process.cc); one write per line keeps lines whole.
void WorkerLog(int32_t level, std::string_view function_name, std::string_view request_id,
               std::string_view message) {
  if (level < RUNNEL_LOG_DEBUG || level > RUNNEL_LOG_ERROR) level = RUNNEL_LOG_INFO;
  size_t start = 0;
  do {
    size_t end = message.find('\n', start);
    std::string_view line =
        message.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    std::string out = absl::StrCat("\x1e", level);
    out.append(request_id).append("\x1f").append(line).append("\n");
    WriteAll(2, out.data(), out.size());
    start = end == std::string_view::npos ? message.size() + 1 : end + 1;
  } while (start <= message.size());
}

[[noreturn]] void OnOutOfMemory() {
  WriteAll(g_channel_fd, g_out_of_memory_frame, sizeof(g_out_of_memory_frame));
  ::_exit(kWorkerExitOutOfMemory);
}

// Caps the address space at what the worker uses now (binary, libraries, the plugin and its
// Init) plus memory_size, so the handler gets memory_size MiB to itself. Under AddressSanitizer
// an address-space limit breaks the sanitizer's own reservations, so there is none.
void LimitMemory(int memory_size_mb) {
#if defined(__SANITIZE_ADDRESS__)
  (void)memory_size_mb;
#else
  long pages = 0;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%ld", &pages) != 1) pages = 0;
    std::fclose(statm);
  }
  rlim_t limit = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) +
                 (static_cast<rlim_t>(memory_size_mb) << 20);
  rlimit rl{limit, limit};
  if (::setrlimit(RLIMIT_AS, &rl) != 0) {
    std::fprintf(stderr, "runnel worker: cannot limit memory: %s\n", std::strerror(errno));
  }
#endif
}

int64_t MaxRssKb() {
  rusage usage;
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// Answers the handshake with a kInitError frame (the status code, then its message); returns the
// worker's exit status.
int FailInit(int channel_fd, const absl::Status& status, wire::Buffer* out) {
  std::string payload(4, '\0');
  uint32_t code = static_cast<uint32_t>(status.code());
  std::memcpy(payload.data(), &code, 4);
  payload += std::string(status.message());
  wire::EncodeText(wire::FrameType::kInitError, payload, out);
  WriteAll(channel_fd, out->data(), out->size());
  return kWorkerExitInitFailed;
}

// runnel died (the parent-death signal): end the worker's whole process group, itself included,
// so that nothing the handler forked outlives runnel. Only async-signal-safe calls.
void OnParentDied(int) { ::kill(0, SIGKILL); }

}  // namespace

int RunWorker(int channel_fd) {
  g_channel_fd = channel_fd;
  // A program the handler runs (system(), popen(), fork+exec) does not inherit the channel.
  ::fcntl(channel_fd, F_SETFD, FD_CLOEXEC);
  struct sigaction parent_died {};
  parent_died.sa_handler = &OnParentDied;
  sigemptyset(&parent_died.sa_mask);
  ::sigaction(WorkerParentDeathSignal(), &parent_died, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // A handler's crash must end the worker with its own signal, which the runtime reports. Under
  // AddressSanitizer the sanitizer's SEGV handler would turn it into "exit status 1".
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, SIG_DFL);
  // Line-buffered, so a handler's printf reaches the log now and is not lost in a crash.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  wire::FrameHeader header;
  wire::Buffer in;
  wire::Buffer out;
  wire::InitMessage init;
  bool have_frame = ReadFrame(channel_fd, &header, &in);
  if (have_frame && header.type == wire::FrameType::kCheck) {
    // `runnel validate` and the start-up checks: open the plugin (its constructors run here),
    // check its table, answer, exit. No Init: it may need what only a running system has.
    absl::StatusOr<std::shared_ptr<const Plugin>> plugin = Plugin::Open(std::string(in.view()));
    if (!plugin.ok()) return FailInit(channel_fd, plugin.status(), &out);
    wire::EncodeText(wire::FrameType::kReady, "", &out);
    return WriteAll(channel_fd, out.data(), out.size()) ? 0 : 1;
  }
  if (!have_frame || header.type != wire::FrameType::kInit || !wire::DecodeInit(in.view(), &init)) {
    std::fprintf(stderr,
                 "runnel worker: no Init from the runtime (this command is started by runnel, "
                 "not by hand)\n");
    return 2;
  }
  absl::StatusOr<std::shared_ptr<const Plugin>> plugin = Plugin::Open(init.plugin_path);
  if (!plugin.ok()) return FailInit(channel_fd, plugin.status(), &out);
  InitParams params{init.function_name, init.environment, init.timeout_ms, init.memory_size_mb};
  absl::StatusOr<std::unique_ptr<PluginInstance>> instance =
      PluginInstance::Create(*plugin, params, &WorkerLog);
  if (!instance.ok()) return FailInit(channel_fd, instance.status(), &out);

  wire::EncodeHeader(wire::FrameHeader{wire::kMagic, wire::FrameType::kOutOfMemory, 0},
                     g_out_of_memory_frame);
  LimitMemory(init.memory_size_mb);
  std::set_new_handler(&OnOutOfMemory);

  wire::EncodeText(wire::FrameType::kReady, "", &out);
  if (!WriteAll(channel_fd, out.data(), out.size())) return 1;

  wire::RequestView request;
  HandleOutcome outcome;
  wire::ResponseMessage response;
  for (;;) {
    if (!ReadFrame(channel_fd, &header, &in)) return 0;  // the runtime closed the channel
    if (header.type != wire::FrameType::kRequest || !wire::DecodeRequest(in.view(), &request)) {
      std::fprintf(stderr, "runnel worker: malformed request from the runtime\n");
      return 2;
    }
    (*instance)->Handle(request.event, request.request_id, request.deadline_monotonic_ns,
                        request.attempt, &outcome);
    response.outcome = outcome.outcome;
    response.error_type.swap(outcome.error_type);
    response.error_message.swap(outcome.error_message);
    response.batch_item_failures.swap(outcome.batch_item_failures);
    response.max_rss_kb = MaxRssKb();
    wire::EncodeResponse(response, &out);
    if (!WriteAll(channel_fd, out.data(), out.size())) return 1;
  }
}

}  // namespace runnel::runtime
