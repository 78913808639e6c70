// Crash safety: a `runnel broker` process is killed with SIGKILL in the middle of concurrent
// puts, restarted on the same data directory, and read back. Every acknowledged record must be
// there exactly once, under the sequence number it was acknowledged with, in order per key, and
// nothing may appear that no producer sent. Repeated on one growing data directory, so recovery
// also runs over logs that earlier crashes left behind.
//
// RUNNEL_CRASH_ITERATIONS overrides the number of rounds (scripts/crash-loop runs many).
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "broker/sequence_number.h"
#include "gtest/gtest.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

constexpr int kShards = 4;
constexpr int kProducers = 4;
constexpr int kKeysPerProducer = 5;

int Iterations() {
  int iterations = 8;
  if (const char* env = std::getenv("RUNNEL_CRASH_ITERATIONS")) {
    (void)absl::SimpleAtoi(env, &iterations);
  }
  return iterations;
}

// A record's identity, carried in its data: "round/producer/counter".
struct Sent {
  std::string key;
  std::string sequence_number;  // empty until acknowledged
};

TEST(BrokerCrashTest, AcknowledgedRecordsSurviveSigkillExactlyOnceInOrder) {
  TempDir dir("crash");
  const std::string data_dir = dir.File("data");
  std::mt19937 random(12345);
  // Everything ever sent, by data; acknowledged ones carry their sequence number.
  std::map<std::string, Sent> sent;
  absl::Mutex sent_mu;
  bool created = false;

  for (int round = 0; round < Iterations(); ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    auto broker = BrokerProcess::Start(data_dir);
    ASSERT_TRUE(broker.ok()) << broker.status();
    if (!created) {
      ASSERT_TRUE(CreateStream(*(*broker)->Stub(), "crash", kShards).ok());
      created = true;
    }
    std::atomic<bool> stop{false};
    std::atomic<int> acknowledged{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        auto stub = (*broker)->Stub();
        std::mt19937 local(static_cast<unsigned>(round * 100 + p));
        for (int counter = 0; !stop.load();) {
          std::vector<std::pair<std::string, std::string>> batch;
          const int size = 1 + static_cast<int>(local() % 40);
          for (int i = 0; i < size; ++i, ++counter) {
            std::string key = absl::StrCat("p", p, "-k", local() % kKeysPerProducer);
            std::string data = absl::StrCat(round, "/", p, "/", counter);
            batch.emplace_back(key, data);
            absl::MutexLock lock(&sent_mu);
            sent[data] = {key, ""};
          }
          grpc::Status status;
          auto response = PutRecords(*stub, "crash", batch, &status);
          if (!status.ok()) return;  // the broker died under us
          absl::MutexLock lock(&sent_mu);
          for (int i = 0; i < response.records_size(); ++i) {
            ASSERT_TRUE(response.records(i).error_code().empty());
            sent[batch[static_cast<size_t>(i)].second].sequence_number =
                response.records(i).sequence_number();
          }
          acknowledged += response.records_size();
        }
      });
    }
    // Let the producers get going, then kill at a random moment mid-stream.
    ASSERT_TRUE(WaitFor([&] { return acknowledged.load() > 200; }, absl::Seconds(60)));
    absl::SleepFor(absl::Milliseconds(random() % 200));
    (*broker)->process().Signal(SIGKILL);
    ASSERT_TRUE((*broker)->process().Wait(absl::Seconds(30)).ok());
    stop = true;
    for (auto& producer : producers) producer.join();
    broker->reset();

    // Restart and read everything back.
    auto restarted = BrokerProcess::Start(data_dir);
    ASSERT_TRUE(restarted.ok()) << restarted.status();
    auto stub = (*restarted)->Stub();
    std::set<std::string> seen;
    std::map<std::string, std::pair<int, int>> last_by_key;  // key -> (round, counter)
    for (int s = 0; s < kShards; ++s) {
      for (const auto& record : ReadShard(*stub, "crash", broker::ShardIdFromIndex(s))) {
        absl::MutexLock lock(&sent_mu);
        auto it = sent.find(record.data());
        ASSERT_NE(it, sent.end()) << "a record no producer sent: " << record.data();
        EXPECT_EQ(it->second.key, record.partition_key());
        ASSERT_TRUE(seen.insert(record.data()).second) << "duplicate: " << record.data();
        if (!it->second.sequence_number.empty()) {
          EXPECT_EQ(it->second.sequence_number, record.sequence_number()) << record.data();
        }
        std::vector<std::string> parts = absl::StrSplit(record.data(), '/');
        std::pair<int, int> position{std::stoi(parts[0]), std::stoi(parts[2])};
        auto& last = last_by_key.try_emplace(record.partition_key(), -1, -1).first->second;
        EXPECT_LT(last, position) << "out of order for key " << record.partition_key();
        last = position;
      }
    }
    absl::MutexLock lock(&sent_mu);
    int acked = 0;
    for (const auto& [data, record] : sent) {
      if (record.sequence_number.empty()) continue;
      ++acked;
      EXPECT_TRUE(seen.contains(data)) << "acknowledged record lost: " << data;
    }
    EXPECT_GT(acked, 0);
    // Records sent but never acknowledged may or may not be there; they stay in `sent`, so a
    // later round still checks that they appear at most once.
    (*restarted)->process().Signal(SIGTERM);
    auto exit_status = (*restarted)->process().Wait(absl::Seconds(30));
    ASSERT_TRUE(exit_status.ok());
    EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
        << "broker did not stop cleanly on SIGTERM";
  }
}

}  // namespace
}  // namespace runnel::testing
