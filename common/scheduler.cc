#include "common/scheduler.h"

namespace runnel {

Scheduler::Scheduler(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

Scheduler::~Scheduler() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& thread : threads_) thread.join();
}

void Scheduler::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  ready_.push_back(std::move(task));
}

Scheduler::TaskId Scheduler::PostAt(absl::Time deadline, std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  TaskId id = next_id_++;
  timed_.emplace(std::make_pair(deadline, id), std::move(task));
  timed_by_id_.emplace(id, deadline);
  return id;
}

bool Scheduler::Cancel(TaskId id) {
  absl::MutexLock lock(&mu_);
  auto it = timed_by_id_.find(id);
  if (it == timed_by_id_.end()) return false;
  timed_.erase(std::make_pair(it->second, id));
  timed_by_id_.erase(it);
  return true;
}

void Scheduler::Loop() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (stopping_) return;
        if (!ready_.empty()) {
          task = std::move(ready_.front());
          ready_.pop_front();
          break;
        }
        absl::Time now = absl::Now();
        if (!timed_.empty() && timed_.begin()->first.first <= now) {
          auto node = timed_.extract(timed_.begin());
          timed_by_id_.erase(node.key().second);
          task = std::move(node.mapped());
          break;
        }
        absl::Time wake = timed_.empty() ? absl::InfiniteFuture() : timed_.begin()->first.first;
        // Also wake when a task is added that is due before `wake`.
        auto has_work = [this, wake]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !ready_.empty() ||
                 (!timed_.empty() && timed_.begin()->first.first < wake);
        };
        mu_.AwaitWithDeadline(absl::Condition(&has_work), wake);
      }
    }
    task();
  }
}

}  // namespace runnel
