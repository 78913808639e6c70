// Sequence numbers and shard ids: the wire forms of a record's position.
#include "broker/sequence_number.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace runnel::broker {
namespace {

using ::testing::HasSubstr;

TEST(SequenceNumberTest, HasTheDocumentedLayout) {
  EXPECT_EQ(FormatSequenceNumber(42, 3), "100000000000000000042000003");
  EXPECT_EQ(FormatSequenceNumber(0, 0), "100000000000000000000000000");
  EXPECT_EQ(FormatSequenceNumber(UINT64_MAX, kMaxShardIndex), "118446744073709551615999999");
}

TEST(SequenceNumberTest, IsAlways27Digits) {
  for (uint64_t offset : std::initializer_list<uint64_t>{0, 1, 9, 10, 123456789, UINT64_MAX}) {
    for (uint32_t shard : {0u, 1u, 999999u}) {
      const std::string text = FormatSequenceNumber(offset, shard);
      EXPECT_EQ(text.size(), kSequenceNumberLength);
      EXPECT_EQ(text[0], '1');
      EXPECT_TRUE(std::all_of(text.begin(), text.end(), [](char c) {
        return c >= '0' && c <= '9';
      })) << text;
    }
  }
}

TEST(SequenceNumberTest, FormatToWritesTheSameDigits) {
  char buffer[kSequenceNumberLength + 1];
  buffer[kSequenceNumberLength] = '#';
  FormatSequenceNumberTo(987654321, 12, buffer);
  EXPECT_EQ(std::string(buffer, kSequenceNumberLength), FormatSequenceNumber(987654321, 12));
  EXPECT_EQ(buffer[kSequenceNumberLength], '#') << "wrote past 27 bytes";
}

TEST(SequenceNumberTest, RoundTripsThroughParse) {
  for (uint64_t offset : std::initializer_list<uint64_t>{0, 1, 2, 99, 1ull << 32, (1ull << 63) + 5,
                                                         UINT64_MAX - 1, UINT64_MAX}) {
    for (uint32_t shard : {0u, 1u, 7u, 10u, 123456u, 999999u}) {
      auto position = ParseSequenceNumber(FormatSequenceNumber(offset, shard), "SequenceNumber");
      ASSERT_TRUE(position.ok()) << position.status();
      EXPECT_EQ(position->offset, offset);
      EXPECT_EQ(position->shard_index, shard);
    }
  }
}

TEST(SequenceNumberTest, LexicalOrderIsNumericOrderIsOffsetOrder) {
  std::mt19937_64 random(7);
  std::vector<uint64_t> offsets = {0, 1, 9, 10, 11, 99, 100, 101, UINT64_MAX - 1, UINT64_MAX};
  for (int i = 0; i < 500; ++i) offsets.push_back(random() >> (random() % 64));
  for (uint32_t shard : {0u, 5u, 999999u}) {
    std::vector<std::string> numbers;
    for (uint64_t offset : offsets) numbers.push_back(FormatSequenceNumber(offset, shard));
    for (size_t i = 0; i < offsets.size(); ++i) {
      for (size_t j = 0; j < offsets.size(); j += 7) {
        EXPECT_EQ(numbers[i] < numbers[j], offsets[i] < offsets[j])
            << numbers[i] << " vs " << numbers[j];
        // Equal length decimal strings compare as numbers do.
        EXPECT_EQ(numbers[i].size(), numbers[j].size());
      }
    }
  }
}

TEST(SequenceNumberTest, UniqueAcrossShards) {
  EXPECT_NE(FormatSequenceNumber(5, 1), FormatSequenceNumber(5, 2));
  EXPECT_NE(FormatSequenceNumber(50, 0), FormatSequenceNumber(5, 0));
}

void ExpectRejected(const std::string& text) {
  auto position = ParseSequenceNumber(text, "StartingSequenceNumber");
  ASSERT_FALSE(position.ok()) << "'" << text << "' was accepted";
  EXPECT_EQ(position.status().code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_THAT(position.status().message(), HasSubstr("StartingSequenceNumber")) << text;
  EXPECT_THAT(position.status().message(), HasSubstr("InvalidArgumentException")) << text;
}

TEST(SequenceNumberTest, ParseRejectsWrongLength) {
  const std::string good = FormatSequenceNumber(42, 3);
  ExpectRejected("");
  ExpectRejected("1");
  ExpectRejected(good.substr(0, 26));
  ExpectRejected(good + "0");
  ExpectRejected("49590338271490256608559692538361571095921575989136588898");  // a real Kinesis one
}

TEST(SequenceNumberTest, ParseRejectsNonDigits) {
  const std::string good = FormatSequenceNumber(42, 3);
  for (size_t i = 1; i < good.size(); ++i) {
    for (char c : {'a', ' ', '-', '+', '.', '\0'}) {
      std::string bad = good;
      bad[i] = c;
      ExpectRejected(bad);
    }
  }
}

TEST(SequenceNumberTest, ParseRejectsLeadingDigitOtherThanOne) {
  std::string text = FormatSequenceNumber(42, 3);
  for (char c : {'0', '2', '9', '+', ' '}) {
    text[0] = c;
    ExpectRejected(text);
  }
}

TEST(SequenceNumberTest, ParseRejectsOffsetsPastUint64) {
  ExpectRejected("118446744073709551616000000");  // UINT64_MAX + 1
  ExpectRejected("199999999999999999999000000");
}

TEST(SequenceNumberTest, ParseErrorQuotesTheText) {
  auto position = ParseSequenceNumber("12x", "ExclusiveStartSequenceNumber");
  ASSERT_FALSE(position.ok());
  EXPECT_THAT(position.status().message(), HasSubstr("'12x'"));
  EXPECT_THAT(position.status().message(), HasSubstr("ExclusiveStartSequenceNumber"));
}

TEST(ShardIdTest, FormatsTwelveDigits) {
  EXPECT_EQ(ShardIdFromIndex(0), "shardId-000000000000");
  EXPECT_EQ(ShardIdFromIndex(7), "shardId-000000000007");
  EXPECT_EQ(ShardIdFromIndex(999999), "shardId-000000999999");
}

TEST(ShardIdTest, RoundTrips) {
  for (uint32_t index : {0u, 1u, 42u, 1000u, 999999u}) {
    uint32_t parsed = 12345678;
    ASSERT_TRUE(ParseShardId(ShardIdFromIndex(index), &parsed)) << index;
    EXPECT_EQ(parsed, index);
  }
}

TEST(ShardIdTest, RejectsOtherForms) {
  uint32_t index = 77;
  for (const char* text :
       {"", "shardId-", "shardId-7", "shardId-00000000007", "shardId-0000000000007",
        "ShardId-000000000007", "shardid-000000000007", "shardId_000000000007",
        "shardId-00000000000a", "shardId-+00000000007", "shardId- 00000000007",
        "shardId-000001000000",  // past kMaxShardIndex
        "shardId-999999999999", "000000000007", " shardId-000000000007"}) {
    EXPECT_FALSE(ParseShardId(text, &index)) << text;
  }
  EXPECT_EQ(index, 77u) << "left untouched on failure";
}

}  // namespace
}  // namespace runnel::broker
