#include "cli/shutdown.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>

#include "spdlog/spdlog.h"

namespace runnel::cli {

sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

const char* WaitForShutdownSignal(const sigset_t& signals) {
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
  return signal_number == SIGINT ? "SIGINT" : "SIGTERM";
}

void ExitAfterCleanShutdown() {
  spdlog::info("stopped");
  spdlog::shutdown();
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace runnel::cli
