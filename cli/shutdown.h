// Shutdown signals for the long-running commands (broker, poller, up): SIGINT and SIGTERM are
// blocked in every thread and taken by one sigwait(), so shutdown runs in ordinary code rather
// than in a signal handler; a second signal during the drain ends the process at once.
#pragma once

#include <signal.h>

namespace runnel::cli {

// Call before starting any thread, so every thread inherits the mask.
sigset_t BlockShutdownSignals();

// Waits for SIGINT or SIGTERM, then unblocks them (their default action ends the process if a
// second one comes while shutting down). Returns the signal's name.
const char* WaitForShutdownSignal(const sigset_t& signals);

// Ends a long-running command once everything runnel owns is closed and on disk: logs
// "stopped", flushes, and exits 0 without static destructors (gRPC's library shutdown waits up
// to seconds for its poller threads, which only delays restarts).
[[noreturn]] void ExitAfterCleanShutdown();

}  // namespace runnel::cli
