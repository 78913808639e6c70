// The scheduler: immediate tasks, timed tasks in deadline order, cancellation, and shutdown.
// Every wait has a generous deadline; timing is only asserted as "not before the deadline".
#include "common/scheduler.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace runnel {
namespace {

using ::testing::ElementsAre;

// Far enough that a task waiting for it never runs during a test.
constexpr absl::Duration kNever = absl::Hours(1);
// How long a test waits for something that should happen almost at once.
constexpr absl::Duration kPatience = absl::Seconds(10);

// Records the order in which tasks ran.
class Journal {
 public:
  void Add(std::string entry) {
    absl::MutexLock lock(&mu_);
    entries_.push_back(std::move(entry));
  }
  std::vector<std::string> entries() {
    absl::MutexLock lock(&mu_);
    return entries_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> entries_ ABSL_GUARDED_BY(mu_);
};

TEST(SchedulerTest, PostRunsTheTask) {
  Scheduler scheduler(2);
  absl::Notification ran;
  scheduler.Post([&] { ran.Notify(); });
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(kPatience));
}

TEST(SchedulerTest, ManyPostsFromManyThreadsAllRun) {
  Scheduler scheduler(3);
  constexpr int kPosters = 4, kPerPoster = 500;
  absl::BlockingCounter remaining(kPosters * kPerPoster);
  std::atomic<int> runs{0};
  std::vector<std::thread> posters;
  for (int p = 0; p < kPosters; ++p) {
    posters.emplace_back([&] {
      for (int i = 0; i < kPerPoster; ++i) {
        scheduler.Post([&] {
          runs.fetch_add(1);
          remaining.DecrementCount();
        });
      }
    });
  }
  for (auto& t : posters) t.join();
  remaining.Wait();
  EXPECT_EQ(runs.load(), kPosters * kPerPoster);
}

TEST(SchedulerTest, TaskCanPostAnotherTask) {
  Scheduler scheduler(1);
  absl::Notification inner;
  scheduler.Post([&] { scheduler.Post([&] { inner.Notify(); }); });
  EXPECT_TRUE(inner.WaitForNotificationWithTimeout(kPatience));
}

TEST(SchedulerTest, PostAtDoesNotRunBeforeItsDeadline) {
  Scheduler scheduler(2);
  const absl::Time deadline = absl::Now() + absl::Milliseconds(60);
  absl::Notification ran;
  absl::Time ran_at;
  scheduler.PostAt(deadline, [&] {
    ran_at = absl::Now();
    ran.Notify();
  });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kPatience));
  EXPECT_GE(ran_at, deadline);
}

TEST(SchedulerTest, PostAtWithPastDeadlineRunsAtOnce) {
  Scheduler scheduler(1);
  absl::Notification ran;
  scheduler.PostAt(absl::Now() - absl::Seconds(5), [&] { ran.Notify(); });
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(kPatience));
}

TEST(SchedulerTest, TimedTasksRunInDeadlineOrder) {
  Scheduler scheduler(1);
  Journal journal;
  absl::Notification last;
  const absl::Time now = absl::Now();
  // Added out of order; two share a deadline and run in the order they were added.
  scheduler.PostAt(now + absl::Milliseconds(80), [&] {
    journal.Add("d");
    last.Notify();
  });
  scheduler.PostAt(now + absl::Milliseconds(20), [&] { journal.Add("a"); });
  scheduler.PostAt(now + absl::Milliseconds(50), [&] { journal.Add("b1"); });
  scheduler.PostAt(now + absl::Milliseconds(50), [&] { journal.Add("b2"); });
  scheduler.PostAt(now + absl::Milliseconds(60), [&] { journal.Add("c"); });
  ASSERT_TRUE(last.WaitForNotificationWithTimeout(kPatience));
  EXPECT_THAT(journal.entries(), ElementsAre("a", "b1", "b2", "c", "d"));
}

TEST(SchedulerTest, CancelBeforeRunReturnsTrueAndTheTaskNeverRuns) {
  Scheduler scheduler(1);
  Journal journal;
  const absl::Time now = absl::Now();
  Scheduler::TaskId cancelled =
      scheduler.PostAt(now + absl::Milliseconds(30), [&] { journal.Add("cancelled"); });
  absl::Notification sentinel;
  // Due after the cancelled one: with one thread, once it ran the cancelled one would have too.
  scheduler.PostAt(now + absl::Milliseconds(60), [&] {
    journal.Add("sentinel");
    sentinel.Notify();
  });
  EXPECT_TRUE(scheduler.Cancel(cancelled));
  EXPECT_FALSE(scheduler.Cancel(cancelled)) << "a second cancel finds nothing";
  ASSERT_TRUE(sentinel.WaitForNotificationWithTimeout(kPatience));
  EXPECT_THAT(journal.entries(), ElementsAre("sentinel"));
}

TEST(SchedulerTest, CancelAfterRunReturnsFalse) {
  Scheduler scheduler(1);
  absl::Notification ran;
  Scheduler::TaskId id = scheduler.PostAt(absl::Now(), [&] { ran.Notify(); });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kPatience));
  EXPECT_FALSE(scheduler.Cancel(id));
}

TEST(SchedulerTest, CancelWhileRunningReturnsFalse) {
  Scheduler scheduler(1);
  absl::Notification started, release, finished;
  Scheduler::TaskId id = scheduler.PostAt(absl::Now(), [&] {
    started.Notify();
    release.WaitForNotification();
    finished.Notify();
  });
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kPatience));
  EXPECT_FALSE(scheduler.Cancel(id));
  release.Notify();
  EXPECT_TRUE(finished.WaitForNotificationWithTimeout(kPatience));
}

TEST(SchedulerTest, CancelOfUnknownIdReturnsFalse) {
  Scheduler scheduler(1);
  EXPECT_FALSE(scheduler.Cancel(0));
  EXPECT_FALSE(scheduler.Cancel(12345));
}

TEST(SchedulerTest, EarlierDeadlineAddedWhileWaitingOnALaterOneRunsOnTime) {
  Scheduler scheduler(1);
  scheduler.PostAt(absl::Now() + kNever, [] { ADD_FAILURE() << "ran an hour early"; });
  // Let the thread settle into waiting for the far deadline.
  absl::Notification idle;
  scheduler.Post([&] { idle.Notify(); });
  ASSERT_TRUE(idle.WaitForNotificationWithTimeout(kPatience));

  absl::Notification ran;
  const absl::Time deadline = absl::Now() + absl::Milliseconds(20);
  absl::Time ran_at;
  scheduler.PostAt(deadline, [&] {
    ran_at = absl::Now();
    ran.Notify();
  });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kPatience));
  EXPECT_GE(ran_at, deadline);
}

TEST(SchedulerTest, PostWhileWaitingOnATimedTaskRunsAtOnce) {
  Scheduler scheduler(1);
  scheduler.PostAt(absl::Now() + kNever, [] { ADD_FAILURE() << "ran an hour early"; });
  absl::Notification ran;
  scheduler.Post([&] { ran.Notify(); });
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(kPatience));
}

TEST(SchedulerTest, CancellingTheAwaitedTaskLetsTheNextOneRun) {
  Scheduler scheduler(1);
  const absl::Time now = absl::Now();
  Scheduler::TaskId first =
      scheduler.PostAt(now + absl::Milliseconds(30), [] { ADD_FAILURE() << "cancelled task ran"; });
  absl::Notification second;
  scheduler.PostAt(now + absl::Milliseconds(40), [&] { second.Notify(); });
  EXPECT_TRUE(scheduler.Cancel(first));
  EXPECT_TRUE(second.WaitForNotificationWithTimeout(kPatience));
}

TEST(SchedulerTest, DestructorWithPendingTasksDoesNotHangOrRunThem) {
  auto token = std::make_shared<int>(0);
  std::atomic<int> runs{0};
  {
    Scheduler scheduler(2);
    for (int i = 0; i < 10; ++i) {
      scheduler.PostAt(absl::Now() + kNever, [token, &runs] { runs.fetch_add(1); });
    }
  }
  EXPECT_EQ(runs.load(), 0);
  EXPECT_EQ(token.use_count(), 1) << "dropped tasks are destroyed with the scheduler";
}

TEST(SchedulerTest, DestructorWaitsForTheRunningTask) {
  std::atomic<bool> finished{false};
  absl::Notification started;
  {
    Scheduler scheduler(1);
    scheduler.Post([&] {
      started.Notify();
      // Not a timing assertion: gives the destructor time to start while the task runs.
      absl::SleepFor(absl::Milliseconds(50));
      finished.store(true);
    });
    ASSERT_TRUE(started.WaitForNotificationWithTimeout(kPatience));
  }
  EXPECT_TRUE(finished.load());
}

TEST(SchedulerTest, ManyTimedTasksOnSeveralThreadsAllRunNotEarly) {
  Scheduler scheduler(4);
  constexpr int kTasks = 200;
  absl::BlockingCounter remaining(kTasks);
  std::atomic<int> early{0};
  const absl::Time now = absl::Now();
  for (int i = 0; i < kTasks; ++i) {
    const absl::Time deadline = now + absl::Milliseconds(i % 40);
    scheduler.PostAt(deadline, [&, deadline] {
      if (absl::Now() < deadline) early.fetch_add(1);
      remaining.DecrementCount();
    });
  }
  remaining.Wait();
  EXPECT_EQ(early.load(), 0);
}

}  // namespace
}  // namespace runnel
