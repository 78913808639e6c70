// Last words for an `in_process` handler that crashes the process: one line on stderr naming
// the function, mapping, shard and request id (and recommending `isolation: process`), then the
// same signal with its default action, so the exit status still says what killed runnel.
//
// A signal handler may only do async-signal-safe work, so the line is formatted before each
// invocation into a buffer of the invoking thread (CrashNoteScope); the handler only adds the
// signal's name and write(2)s it. Crashes outside a handler call are left to whatever handled
// the signal before (the default action, or a sanitizer's report).
#pragma once

#include <string_view>

namespace runnel::runtime {

// While one lives, a SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT on this thread is reported as a
// crash of this handler call. Installs the signal handlers on first use (and an alternate signal
// stack for the thread, so that a handler's stack overflow can be reported too). Not nestable.
class CrashNoteScope {
 public:
  // `request_id` empty: the crash is reported as one in the handler's Init.
  CrashNoteScope(std::string_view function, std::string_view mapping, std::string_view shard,
                 std::string_view request_id);
  ~CrashNoteScope();
  CrashNoteScope(const CrashNoteScope&) = delete;
  CrashNoteScope& operator=(const CrashNoteScope&) = delete;
};

// The line as the signal handler writes it (without the newline), for tests: e.g.
// "runnel: function f (isolation: in_process) crashed with SIGSEGV (mapping m, shard s, request
// r); runnel dies with it. Set `isolation: process` on the function so that a crash fails only
// the invocation."
std::string_view CrashNoteForTest(int signal_number);

}  // namespace runnel::runtime
