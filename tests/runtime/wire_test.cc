// The worker channel's framing: round trips, and refusal of every truncated or inflated payload
// (the runtime decodes responses that a broken worker may have scribbled).
#include "runtime/wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace runnel::runtime::wire {
namespace {

using ::testing::ElementsAre;

std::string_view Payload(const Buffer& frame) { return frame.view().substr(kHeaderSize); }

TEST(WireTest, HeaderRoundTripsAndChecksTheMagic) {
  char raw[kHeaderSize];
  EncodeHeader(FrameHeader{kMagic, FrameType::kResponse, 123456789012}, raw);
  FrameHeader header;
  ASSERT_TRUE(DecodeHeader(raw, &header));
  EXPECT_EQ(header.type, FrameType::kResponse);
  EXPECT_EQ(header.length, 123456789012u);
  raw[0] ^= 1;
  EXPECT_FALSE(DecodeHeader(raw, &header));
}

TEST(WireTest, RequestRoundTripsAsViewsIntoThePayload) {
  std::string binary("\0\xff\n", 3);
  std::vector<RecordView> records = {{"pk-1", "100", binary, 1718000000123}, {"", "101", "", -5}};
  InvokeRequest request;
  request.shard_id = "shardId-000000000007";
  request.event_source_arn = "arn:aws:kinesis:us-east-1:1:stream/s";
  request.aws_region = "us-east-1";
  request.attempt = 3;
  request.records = records;
  Buffer frame;
  EncodeRequest(request, "req-9", "arn:role", 42, &frame);
  FrameHeader header;
  ASSERT_TRUE(DecodeHeader(frame.data(), &header));
  EXPECT_EQ(header.type, FrameType::kRequest);
  EXPECT_EQ(header.length, frame.size() - kHeaderSize);

  RequestView view;
  ASSERT_TRUE(DecodeRequest(Payload(frame), &view));
  EXPECT_EQ(view.request_id, "req-9");
  EXPECT_EQ(view.deadline_monotonic_ns, 42);
  EXPECT_EQ(view.attempt, 3u);
  ASSERT_EQ(view.event.record_count, 2u);
  const runnel_record& r0 = view.event.records[0];
  EXPECT_EQ(std::string_view(r0.partition_key.data, r0.partition_key.size), "pk-1");
  EXPECT_EQ(std::string_view(r0.sequence_number.data, r0.sequence_number.size), "100");
  EXPECT_EQ(std::string_view(r0.data.data, r0.data.size), binary);
  EXPECT_EQ(r0.approximate_arrival_ms, 1718000000123);
  // Zero-copy: the record's bytes live inside the received frame.
  EXPECT_GE(r0.data.data, frame.data());
  EXPECT_LT(r0.data.data, frame.data() + frame.size());
  EXPECT_EQ(view.event.records[1].partition_key.size, 0u);
  EXPECT_EQ(view.event.records[1].approximate_arrival_ms, -5);
  EXPECT_EQ(std::string_view(view.event.shard_id.data, view.event.shard_id.size),
            "shardId-000000000007");
  EXPECT_EQ(
      std::string_view(view.event.invoke_identity_arn.data, view.event.invoke_identity_arn.size),
      "arn:role");
}

TEST(WireTest, EveryTruncatedRequestIsRefused) {
  std::vector<RecordView> records = {{"a", "1", "xyz", 1}, {"b", "2", "uvw", 2}};
  InvokeRequest request;
  request.records = records;
  Buffer frame;
  EncodeRequest(request, "r", "", 0, &frame);
  std::string payload(Payload(frame));
  RequestView view;
  for (size_t n = 0; n < payload.size(); ++n) {
    EXPECT_FALSE(DecodeRequest(std::string_view(payload).substr(0, n), &view)) << n;
  }
  EXPECT_FALSE(DecodeRequest(payload + "x", &view));
  EXPECT_TRUE(DecodeRequest(payload, &view));
}

TEST(WireTest, ResponseRoundTripsKeepingEmptyAndDuplicateIdentifiers) {
  ResponseMessage message;
  message.outcome = RUNNEL_OUTCOME_BATCH_ITEM_FAILURES;
  message.batch_item_failures = {"5", "", "5"};
  message.max_rss_kb = 4096;
  Buffer frame;
  EncodeResponse(message, &frame);
  ResponseMessage decoded;
  ASSERT_TRUE(DecodeResponse(Payload(frame), &decoded));
  EXPECT_EQ(decoded.outcome, RUNNEL_OUTCOME_BATCH_ITEM_FAILURES);
  EXPECT_THAT(decoded.batch_item_failures, ElementsAre("5", "", "5"));
  EXPECT_EQ(decoded.max_rss_kb, 4096);
}

TEST(WireTest, GarbageResponsesAreRefused) {
  ResponseMessage message;
  message.outcome = RUNNEL_OUTCOME_FAILURE;
  message.error_type = "T";
  message.error_message = "M";
  Buffer frame;
  EncodeResponse(message, &frame);
  std::string payload(Payload(frame));
  ResponseMessage decoded;
  for (size_t n = 0; n < payload.size(); ++n) {
    EXPECT_FALSE(DecodeResponse(std::string_view(payload).substr(0, n), &decoded)) << n;
  }
  // A count of identifiers the payload cannot hold is refused before anything is reserved.
  std::string inflated = payload;
  uint32_t huge = 0xffffffff;
  std::memcpy(inflated.data() + inflated.size() - 4, &huge, 4);
  EXPECT_FALSE(DecodeResponse(inflated, &decoded));
}

TEST(WireTest, InitRoundTrips) {
  InitMessage init;
  init.plugin_path = "/p/x.so";
  init.function_name = "fn";
  init.timeout_ms = 2500;
  init.memory_size_mb = 256;
  init.environment = {{"A", "1"}, {"EMPTY", ""}};
  Buffer frame;
  EncodeInit(init, &frame);
  InitMessage decoded;
  ASSERT_TRUE(DecodeInit(Payload(frame), &decoded));
  EXPECT_EQ(decoded.plugin_path, "/p/x.so");
  EXPECT_EQ(decoded.function_name, "fn");
  EXPECT_EQ(decoded.timeout_ms, 2500);
  EXPECT_EQ(decoded.memory_size_mb, 256);
  EXPECT_EQ(decoded.environment, init.environment);
}

}  // namespace
}  // namespace runnel::runtime::wire
