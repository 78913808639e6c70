// A small thread pool with timers: run a task now, or at a deadline unless cancelled first.
// Long polls and subscriptions wait on it instead of holding a thread each.
//
// Thread-safe. Tasks must not block for long: they share a few threads.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace runnel {

class Scheduler {
 public:
  using TaskId = uint64_t;

  explicit Scheduler(int threads);
  // Runs no further tasks; waits for the running ones. Pending tasks are dropped.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void Post(std::function<void()> task);
  // Runs `task` at `deadline` (at once if it has passed). The id can cancel it.
  TaskId PostAt(absl::Time deadline, std::function<void()> task);
  // True if the task was still waiting and will not run; false if it ran, runs now, or never was.
  bool Cancel(TaskId id);

 private:
  void Loop();

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  TaskId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<std::function<void()>> ready_ ABSL_GUARDED_BY(mu_);
  // Timed tasks ordered by (deadline, id), with an index by id for cancellation.
  std::map<std::pair<absl::Time, TaskId>, std::function<void()>> timed_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<TaskId, absl::Time> timed_by_id_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace runnel
