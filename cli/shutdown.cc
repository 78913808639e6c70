#include "cli/shutdown.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>

#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
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

bool StopWithin(const std::function<void()>& stop, absl::Duration deadline) {
  // Shared with the thread: when the deadline passes, this frame returns while it still runs.
  auto done = std::make_shared<absl::Notification>();
  std::thread stopper([stop, done] {
    stop();
    done->Notify();
  });
  if (done->WaitForNotificationWithTimeout(deadline)) {
    stopper.join();
    return true;
  }
  stopper.detach();
  return false;
}

void ExitAfterCleanShutdown() {
  spdlog::info("stopped");
  spdlog::shutdown();
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace runnel::cli
