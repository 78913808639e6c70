// The record frame: round trips, and that every damage to a frame (a flipped byte anywhere, a
// cut at any length, an impossible length) is reported and never decoded as a record.
#include "broker/log_format.h"

#include <cstring>
#include <string>

#include "absl/base/internal/endian.h"
#include "common/crc32c.h"
#include "gtest/gtest.h"

namespace runnel::broker {
namespace {

struct Decoded {
  FrameStatus status;
  RecordView record;
  size_t frame_size;
};

Decoded Decode(std::string_view buffer) {
  Decoded d;
  d.frame_size = 12345;
  d.status = DecodeFrame(buffer, &d.record, &d.frame_size);
  return d;
}

std::string Frame(uint64_t offset, int64_t arrival_ms, std::string_view key,
                  std::string_view data) {
  std::string out;
  AppendFrame(&out, offset, arrival_ms, key, data);
  return out;
}

// Rewrites the frame's checksum to match its (edited) contents, so a test can reach the checks
// that come after the CRC.
void FixChecksum(std::string* frame) {
  const uint32_t length = absl::little_endian::Load32(frame->data() + 4);
  const uint32_t crc = Crc32cExtend(0, frame->data() + 4, 4 + length);
  absl::little_endian::Store32(frame->data(), MaskCrc(crc));
}

void ExpectRoundTrip(uint64_t offset, int64_t arrival_ms, const std::string& key,
                     const std::string& data) {
  const std::string frame = Frame(offset, arrival_ms, key, data);
  ASSERT_EQ(frame.size(), FrameSize(key.size(), data.size()));
  Decoded d = Decode(frame);
  ASSERT_EQ(d.status, FrameStatus::kOk);
  EXPECT_EQ(d.frame_size, frame.size());
  EXPECT_EQ(d.record.offset, offset);
  EXPECT_EQ(d.record.arrival_ms, arrival_ms);
  EXPECT_EQ(d.record.partition_key, key);
  EXPECT_EQ(d.record.data, data);
}

TEST(LogFormatTest, RoundTripsOrdinaryRecords) {
  ExpectRoundTrip(1, 1700000000000, "user-42", "{\"order\":17}");
  ExpectRoundTrip(42, 0, "k", std::string("bin\0ary\xff", 8));
}

TEST(LogFormatTest, RoundTripsEmptyDataAndEmptyKey) {
  ExpectRoundTrip(7, 5, "key", "");
  ExpectRoundTrip(8, 5, "", "data");
  ExpectRoundTrip(9, 5, "", "");
  EXPECT_EQ(Frame(9, 5, "", "").size(), kFrameHeaderSize + kPayloadFixedSize);
}

TEST(LogFormatTest, RoundTripsExtremeFieldValues) {
  ExpectRoundTrip(0, INT64_MIN, "a", "b");
  ExpectRoundTrip(UINT64_MAX, INT64_MAX, "a", "b");
  ExpectRoundTrip(1, -1, "a", "b");
}

TEST(LogFormatTest, RoundTripsLargestKeyAndLargestPayload) {
  const std::string key(0xffff, 'k');
  ExpectRoundTrip(3, 4, key, "v");
  const std::string data(kMaxPayloadSize - kPayloadFixedSize - key.size(), 'd');
  ExpectRoundTrip(5, 6, key, data);
  const std::string data_only(kMaxPayloadSize - kPayloadFixedSize, 'x');
  ExpectRoundTrip(5, 6, "", data_only);
}

TEST(LogFormatTest, DecodesConsecutiveFramesOneAtATime) {
  std::string buffer;
  for (uint64_t i = 1; i <= 5; ++i) {
    AppendFrame(&buffer, i, 100 + i, std::string(i, 'k'), std::string(i * 3, 'd'));
  }
  std::string_view rest(buffer);
  for (uint64_t i = 1; i <= 5; ++i) {
    Decoded d = Decode(rest);
    ASSERT_EQ(d.status, FrameStatus::kOk) << i;
    EXPECT_EQ(d.record.offset, i);
    EXPECT_EQ(d.record.arrival_ms, static_cast<int64_t>(100 + i));
    EXPECT_EQ(d.record.partition_key, std::string(i, 'k'));
    EXPECT_EQ(d.record.data, std::string(i * 3, 'd'));
    rest.remove_prefix(d.frame_size);
  }
  EXPECT_TRUE(rest.empty());
}

TEST(LogFormatTest, AppendFrameAppendsWithoutTouchingEarlierBytes) {
  std::string out = "prefix";
  AppendFrame(&out, 1, 2, "k", "d");
  EXPECT_EQ(out.substr(0, 6), "prefix");
  EXPECT_EQ(Decode(std::string_view(out).substr(6)).status, FrameStatus::kOk);
}

TEST(LogFormatTest, EverySingleByteChangeIsDetected) {
  const std::string key = "partition-7";
  const std::string data = "some record data";
  const std::string frame = Frame(123456789, 1700000000123, key, data);
  for (size_t i = 0; i < frame.size(); ++i) {
    for (int x = 1; x < 256; ++x) {
      std::string damaged = frame;
      damaged[i] = static_cast<char>(damaged[i] ^ x);
      Decoded d = Decode(damaged);
      EXPECT_NE(d.status, FrameStatus::kOk)
          << "byte " << i << " xor " << x << " decoded as a record";
    }
  }
}

TEST(LogFormatTest, EverySingleByteChangeIsDetectedInAFrameFollowedByMore) {
  // A damaged length may point into the next frame; it must still not decode.
  std::string buffer;
  AppendFrame(&buffer, 1, 10, "a", "first");
  const size_t first_size = buffer.size();
  AppendFrame(&buffer, 2, 11, "b", "second frame follows");
  AppendFrame(&buffer, 3, 12, "", "");
  for (size_t i = 0; i < first_size; ++i) {
    for (int x = 1; x < 256; ++x) {
      std::string damaged = buffer;
      damaged[i] = static_cast<char>(damaged[i] ^ x);
      Decoded d = Decode(damaged);
      EXPECT_NE(d.status, FrameStatus::kOk) << "byte " << i << " xor " << x;
    }
  }
}

TEST(LogFormatTest, EveryTruncationIsTruncated) {
  const std::string frame = Frame(9, 99, "key", "0123456789abcdef");
  for (size_t length = 0; length < frame.size(); ++length) {
    Decoded d = Decode(std::string_view(frame).substr(0, length));
    EXPECT_EQ(d.status, FrameStatus::kTruncated) << "cut at " << length;
    if (length < kFrameHeaderSize) {
      EXPECT_EQ(d.frame_size, 0u) << "cut at " << length;
    } else {
      EXPECT_EQ(d.frame_size, frame.size()) << "cut at " << length << ": the claimed size";
    }
  }
  EXPECT_EQ(Decode(frame).status, FrameStatus::kOk);
}

TEST(LogFormatTest, LengthBelowFixedPayloadIsCorrupt) {
  std::string frame = Frame(1, 2, "", "");
  for (uint32_t length = 0; length < kPayloadFixedSize; ++length) {
    absl::little_endian::Store32(frame.data() + 4, length);
    FixChecksum(&frame);
    EXPECT_EQ(Decode(frame).status, FrameStatus::kCorrupt) << length;
  }
}

TEST(LogFormatTest, LengthAboveMaximumIsCorruptEvenWhenTheBufferIsShort) {
  std::string frame = Frame(1, 2, "k", "d");
  absl::little_endian::Store32(frame.data() + 4, static_cast<uint32_t>(kMaxPayloadSize + 1));
  EXPECT_EQ(Decode(frame).status, FrameStatus::kCorrupt);
  absl::little_endian::Store32(frame.data() + 4, 0xffffffffu);
  EXPECT_EQ(Decode(frame).status, FrameStatus::kCorrupt);
  EXPECT_EQ(Decode(std::string_view(frame).substr(0, kFrameHeaderSize)).status,
            FrameStatus::kCorrupt);
}

TEST(LogFormatTest, KeyLengthBeyondPayloadIsCorruptEvenWithAValidChecksum) {
  std::string frame = Frame(1, 2, "key", "data");  // payload: fixed + 7
  const size_t key_length_at = kFrameHeaderSize + 16;
  absl::little_endian::Store16(frame.data() + key_length_at, 8);
  FixChecksum(&frame);
  EXPECT_EQ(Decode(frame).status, FrameStatus::kCorrupt);
  absl::little_endian::Store16(frame.data() + key_length_at, 0xffff);
  FixChecksum(&frame);
  EXPECT_EQ(Decode(frame).status, FrameStatus::kCorrupt);
  // The whole payload as key, no data, is fine.
  absl::little_endian::Store16(frame.data() + key_length_at, 7);
  FixChecksum(&frame);
  Decoded d = Decode(frame);
  ASSERT_EQ(d.status, FrameStatus::kOk);
  EXPECT_EQ(d.record.partition_key, "keydata");
  EXPECT_EQ(d.record.data, "");
}

TEST(LogFormatTest, ChecksumIsStoredMasked) {
  const std::string frame = Frame(1, 2, "k", "d");
  const uint32_t stored = absl::little_endian::Load32(frame.data());
  const uint32_t length = absl::little_endian::Load32(frame.data() + 4);
  const uint32_t crc = Crc32cExtend(0, frame.data() + 4, 4 + length);
  EXPECT_EQ(stored, MaskCrc(crc));
  EXPECT_NE(stored, crc);
}

TEST(LogFormatTest, ZerosAreNotAFrame) {
  EXPECT_EQ(Decode(std::string(64, '\0')).status, FrameStatus::kCorrupt);
  EXPECT_EQ(Decode(std::string(4, '\0')).status, FrameStatus::kTruncated);
  EXPECT_EQ(Decode("").status, FrameStatus::kTruncated);
}

}  // namespace
}  // namespace runnel::broker
