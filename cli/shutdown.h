// Shutdown signals for the long-running commands (broker, poller, up): SIGINT and SIGTERM are
// blocked in every thread and taken by one sigwait(), so shutdown runs in ordinary code rather
// than in a signal handler; a second signal during the drain ends the process at once.
#pragma once

#include <signal.h>

#include <functional>

#include "absl/time/time.h"

namespace runnel::cli {

// Call before starting any thread, so every thread inherits the mask.
sigset_t BlockShutdownSignals();

// Waits for SIGINT or SIGTERM, then unblocks them (their default action ends the process if a
// second one comes while shutting down). Returns the signal's name.
const char* WaitForShutdownSignal(const sigset_t& signals);

// Runs `stop` on another thread and waits up to `deadline` for it to return. True when it did;
// false when the deadline passed first, in which case `stop` is still running and the caller is
// expected to end the process (ExitAfterCleanShutdown) without destroying what it uses.
bool StopWithin(const std::function<void()>& stop, absl::Duration deadline);

// Ends a long-running command once everything runnel owns is closed and on disk: logs
// "stopped", flushes, and exits 0 without static destructors (gRPC's library shutdown waits up
// to seconds for its poller threads, which only delays restarts).
[[noreturn]] void ExitAfterCleanShutdown();

}  // namespace runnel::cli
