// Lambda's batching triggers, one by one: size, window, payload cap, window 0.
#include "poller/batcher.h"

#include <algorithm>

#include "gtest/gtest.h"

namespace runnel::poller {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

TEST(BatcherTest, EmptyQueueIsNeverReady) {
  Batcher batcher({.batch_size = 10, .window = absl::ZeroDuration()});
  EXPECT_EQ(batcher.Ready(kT0), 0u);
  EXPECT_EQ(batcher.Deadline(), absl::InfiniteFuture());
}

TEST(BatcherTest, WindowZeroInvokesAsSoonAsRecordsAreThere) {
  Batcher batcher({.batch_size = 100, .window = absl::ZeroDuration()});
  batcher.Add(500, kT0);
  EXPECT_EQ(batcher.Ready(kT0), 1u);
  batcher.Add(500, kT0);
  batcher.Add(500, kT0);
  EXPECT_EQ(batcher.Ready(kT0), 3u);
}

TEST(BatcherTest, FullBatchGoesAtOnceEvenInsideTheWindow) {
  Batcher batcher({.batch_size = 3, .window = absl::Seconds(5)});
  batcher.Add(500, kT0);
  batcher.Add(500, kT0);
  EXPECT_EQ(batcher.Ready(kT0), 0u);
  batcher.Add(500, kT0);
  EXPECT_EQ(batcher.Ready(kT0), 3u);
  // More than a batch queued: one batch of batch_size at a time.
  batcher.Add(500, kT0);
  EXPECT_EQ(batcher.Ready(kT0), 3u);
  batcher.Take(3);
  EXPECT_EQ(batcher.size(), 1u);
}

TEST(BatcherTest, WindowCountsFromTheBatchsFirstRecord) {
  Batcher batcher({.batch_size = 100, .window = absl::Seconds(5)});
  batcher.Add(500, kT0);
  batcher.Add(500, kT0 + absl::Seconds(3));
  EXPECT_EQ(batcher.Deadline(), kT0 + absl::Seconds(5));
  EXPECT_EQ(batcher.Ready(kT0 + absl::Seconds(4)), 0u);
  EXPECT_EQ(batcher.Ready(kT0 + absl::Milliseconds(4999)), 0u);
  EXPECT_EQ(batcher.Ready(kT0 + absl::Seconds(5)), 2u);
  batcher.Take(2);
  // The next batch's window starts at its own first record.
  batcher.Add(500, kT0 + absl::Seconds(7));
  EXPECT_EQ(batcher.Deadline(), kT0 + absl::Seconds(12));
  EXPECT_EQ(batcher.Ready(kT0 + absl::Seconds(11)), 0u);
  EXPECT_EQ(batcher.Ready(kT0 + absl::Seconds(12)), 1u);
}

TEST(BatcherTest, PayloadCapClosesTheBatchBeforeTheRecordThatWouldPassIt) {
  Batcher batcher({.batch_size = 10'000, .window = absl::Seconds(300), .max_payload_bytes = 1000});
  batcher.Add(400, kT0);
  batcher.Add(400, kT0);
  EXPECT_EQ(batcher.Ready(kT0), 0u);  // 800 bytes fit, and the window is open
  batcher.Add(201, kT0);              // 1001 would pass the cap
  EXPECT_EQ(batcher.Ready(kT0), 2u);
  batcher.Take(2);
  EXPECT_EQ(batcher.Ready(kT0), 0u);
}

TEST(BatcherTest, ExactlyTheCapFits) {
  Batcher batcher({.batch_size = 10'000, .window = absl::Seconds(300), .max_payload_bytes = 1000});
  batcher.Add(500, kT0);
  batcher.Add(500, kT0);
  EXPECT_EQ(batcher.Ready(kT0), 0u);
  batcher.Add(1, kT0);
  EXPECT_EQ(batcher.Ready(kT0), 2u);
}

TEST(BatcherTest, ARecordLargerThanTheCapGoesAlone) {
  Batcher batcher({.batch_size = 100, .window = absl::Seconds(300), .max_payload_bytes = 1000});
  batcher.Add(5000, kT0);
  batcher.Add(10, kT0);
  EXPECT_EQ(batcher.Ready(kT0), 1u);
}

TEST(BatcherTest, RealLimitsTenThousandSmallRecordsOrSixMegabytes) {
  Batcher batcher({.batch_size = 10'000, .window = absl::Seconds(1)});
  const size_t bytes = EventBytes(8, 100);
  for (int i = 0; i < 12'000; ++i) batcher.Add(bytes, kT0);
  // 100-byte records: batch_size binds (10,000 of them make about 6.2 MB of event, under 6 MiB).
  EXPECT_EQ(batcher.Ready(kT0), std::min<size_t>(10'000, kMaxInvokePayloadBytes / bytes));
  // 1 KiB records: the payload cap binds first.
  Batcher big({.batch_size = 10'000, .window = absl::Seconds(1)});
  const size_t big_bytes = EventBytes(8, 1024);
  for (int i = 0; i < 12'000; ++i) big.Add(big_bytes, kT0);
  const size_t ready = big.Ready(kT0);
  EXPECT_LT(ready, 10'000u);
  EXPECT_LE(ready * big_bytes, kMaxInvokePayloadBytes);
  EXPECT_GT((ready + 1) * big_bytes, kMaxInvokePayloadBytes);
}

TEST(BatcherTest, EventBytesCountsBase64AndFixedFields) {
  EXPECT_EQ(EventBytes(0, 0, 0), EventBytes(0, 0, 0));
  EXPECT_EQ(EventBytes(0, 3, 0) - EventBytes(0, 0, 0), 4u);
  EXPECT_EQ(EventBytes(0, 4, 0) - EventBytes(0, 0, 0), 8u);
  EXPECT_EQ(EventBytes(10, 0, 0) - EventBytes(0, 0, 0), 10u);
  EXPECT_GT(EventBytes(0, 0, 27), EventBytes(0, 0, 0));
}

}  // namespace
}  // namespace runnel::poller
