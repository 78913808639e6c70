// The in_process crash report (see in_process_crash.h).
#include "runtime/in_process_crash.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

namespace runnel::runtime {
namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

// What each signal's action was before ours, to hand crashes outside handler calls back to.
struct sigaction g_previous[sizeof(kSignals) / sizeof(kSignals[0])];

// The part after the signal's name; the same for every call.
constexpr char kAdvice[] =
    "; runnel dies with it. Set `isolation: process` on the function so that a crash fails only "
    "the invocation.\n";

// Per thread, formatted before each handler call. Plain data (no constructor, no destructor):
// the signal handler may touch it without running any initialisation.
struct CrashNote {
  // "runnel: function NAME (isolation: in_process) crashed with " | signal | " (mapping ...)" |
  // kAdvice, assembled in `line` by the signal handler; `head` and `context` are kept apart.
  char head[160];
  size_t head_size;
  char context[512];
  size_t context_size;
  char line[160 + 40 + 512 + sizeof(kAdvice)];
  volatile sig_atomic_t armed;
};
thread_local CrashNote t_note;

// An alternate stack for the thread's signal handlers, so that a stack overflow in a handler
// call can still be reported. Kept for the thread's life; torn down before it is freed.
class AltStack {
 public:
  AltStack() {
    stack_t current;
    if (::sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) == 0) {
      return;  // the thread has one already (a sanitizer's, say): keep it
    }
    memory_ = std::make_unique<char[]>(kSize);
    stack_t ours{};
    ours.ss_sp = memory_.get();
    ours.ss_size = kSize;
    if (::sigaltstack(&ours, nullptr) != 0) memory_.reset();
  }
  ~AltStack() {
    if (memory_ == nullptr) return;
    stack_t off{};
    off.ss_flags = SS_DISABLE;
    ::sigaltstack(&off, nullptr);
  }

 private:
  static constexpr size_t kSize = 64 * 1024;
  std::unique_ptr<char[]> memory_;
};

size_t Append(char* out, size_t at, size_t capacity, std::string_view text) {
  size_t n = text.size() < capacity - at ? text.size() : capacity - at;
  std::memcpy(out + at, text.data(), n);
  return at + n;
}

// Async-signal-safe (no allocation, no locks, no stdio).
const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV (Segmentation fault)";
    case SIGBUS:
      return "SIGBUS (Bus error)";
    case SIGFPE:
      return "SIGFPE (Floating point exception)";
    case SIGILL:
      return "SIGILL (Illegal instruction)";
    case SIGABRT:
      return "SIGABRT (Aborted)";
  }
  return "a signal";
}

// Assembles the thread's line for `sig`; async-signal-safe. Returns its size.
size_t Compose(CrashNote& note, int sig) {
  size_t at = 0;
  at = Append(note.line, at, sizeof(note.line), std::string_view(note.head, note.head_size));
  at = Append(note.line, at, sizeof(note.line), SignalName(sig));
  at = Append(note.line, at, sizeof(note.line), std::string_view(note.context, note.context_size));
  return Append(note.line, at, sizeof(note.line), std::string_view(kAdvice, sizeof(kAdvice) - 1));
}

int IndexOf(int sig) {
  for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i) {
    if (kSignals[i] == sig) return static_cast<int>(i);
  }
  return -1;
}

void OnCrash(int sig, siginfo_t* info, void* ucontext) {
  int saved_errno = errno;
  CrashNote& note = t_note;
  if (note.armed) {
    note.armed = 0;
    size_t size = Compose(note, sig);
    for (size_t written = 0; written < size;) {
      ssize_t n = ::write(STDERR_FILENO, note.line + written, size - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      written += static_cast<size_t>(n);
    }
    // Die of the same signal, with its default action (a core dump where they are enabled).
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    ::sigaction(sig, &default_action, nullptr);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, sig);
    ::sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
    ::raise(sig);
    ::_exit(128 + sig);  // not reached
  }
  // Not in a handler call: give the signal back to whoever had it before.
  int index = IndexOf(sig);
  const struct sigaction& previous = g_previous[index];
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    errno = saved_errno;
    previous.sa_sigaction(sig, info, ucontext);
    return;
  }
  if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN &&
      previous.sa_handler != nullptr) {
    errno = saved_errno;
    previous.sa_handler(sig);
    return;
  }
  ::sigaction(sig, &previous, nullptr);
  // A fault (si_code > 0) happens again when the instruction is retried on return, now with the
  // previous action; a signal that was sent (kill, raise, abort) has to be sent again.
  if (info == nullptr || info->si_code <= 0) ::raise(sig);
  errno = saved_errno;
}

void InstallOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i) {
      struct sigaction action {};
      action.sa_sigaction = &OnCrash;
      action.sa_flags = SA_SIGINFO | SA_ONSTACK;
      sigemptyset(&action.sa_mask);
      ::sigaction(kSignals[i], &action, &g_previous[i]);
    }
  });
}

// Names are capped one by one, so that together they always fit and the line keeps its end.
std::string_view Clip(std::string_view text, size_t max) { return text.substr(0, max); }

size_t Format(char* out, size_t capacity, std::initializer_list<std::string_view> parts) {
  size_t at = 0;
  for (std::string_view part : parts) at = Append(out, at, capacity, part);
  return at;
}

}  // namespace

CrashNoteScope::CrashNoteScope(std::string_view function, std::string_view mapping,
                               std::string_view shard, std::string_view request_id) {
  thread_local bool ready = false;
  if (!ready) {
    InstallOnce();
    thread_local AltStack alt_stack;
    ready = true;
  }
  CrashNote& note = t_note;
  note.head_size =
      Format(note.head, sizeof(note.head),
             {"runnel: function ", Clip(function, 96), " (isolation: in_process) crashed with "});
  if (request_id.empty()) {
    note.context_size = Format(note.context, sizeof(note.context), {" in its Init"});
  } else {
    note.context_size =
        Format(note.context, sizeof(note.context),
               {" (mapping ", mapping.empty() ? std::string_view("none") : Clip(mapping, 256),
                ", shard ", shard.empty() ? std::string_view("none") : Clip(shard, 64),
                ", request ", Clip(request_id, 96), ")"});
  }
  note.armed = 1;
}

CrashNoteScope::~CrashNoteScope() { t_note.armed = 0; }

std::string_view CrashNoteForTest(int signal_number) {
  size_t size = Compose(t_note, signal_number);
  return std::string_view(t_note.line, size);
}

}  // namespace runnel::runtime
