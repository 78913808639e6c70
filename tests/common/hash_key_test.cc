// Kinesis hash keys: MD5 of the partition key as a big-endian uint128, the decimal wire form, and
// the even split of the key space that CreateStream makes.
#include "common/hash_key.h"

#include <string>

#include "absl/numeric/int128.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace runnel {
namespace {

using ::testing::HasSubstr;

constexpr char kMax[] = "340282366920938463463374607431768211455";       // 2^128 - 1
constexpr char kTwoTo128[] = "340282366920938463463374607431768211456";  // 2^128

absl::uint128 Parse(const std::string& text) {
  auto value = ParseHashKey(text, "HashKey");
  EXPECT_TRUE(value.ok()) << text << ": " << value.status();
  return value.ok() ? *value : 0;
}

TEST(PartitionKeyHashTest, IsMd5ReadBigEndian) {
  // MD5("") = d41d8cd98f00b204e9800998ecf8427e
  EXPECT_EQ(PartitionKeyHash(""), absl::MakeUint128(0xd41d8cd98f00b204u, 0xe9800998ecf8427eu));
  // MD5("abc") = 900150983cd24fb0d6963f7d28e17f72
  EXPECT_EQ(PartitionKeyHash("abc"), absl::MakeUint128(0x900150983cd24fb0u, 0xd6963f7d28e17f72u));
  // MD5("message digest") = f96b697d7cb7938d525a2f31aaf161d0 (RFC 1321)
  EXPECT_EQ(PartitionKeyHash("message digest"),
            absl::MakeUint128(0xf96b697d7cb7938du, 0x525a2f31aaf161d0u));
}

TEST(PartitionKeyHashTest, MatchesDecimalValuesFromMd5sum) {
  // `printf %s KEY | md5sum`, converted to decimal.
  EXPECT_EQ(FormatHashKey(PartitionKeyHash("")), "281949768489412648962353822266799178366");
  EXPECT_EQ(FormatHashKey(PartitionKeyHash("a")), "16955237001963240173058271559858726497");
  EXPECT_EQ(FormatHashKey(PartitionKeyHash("partition-1")),
            "198019941650871988756153596255032211816");
  EXPECT_EQ(FormatHashKey(PartitionKeyHash("user-42")), "157107139746365290205026809710278036035");
}

TEST(PartitionKeyHashTest, HashesEmbeddedNulAndNonAsciiBytes) {
  const std::string with_nul("a\0b", 3);
  EXPECT_NE(PartitionKeyHash(with_nul), PartitionKeyHash("a"));
  EXPECT_NE(PartitionKeyHash("\xc3\xa9"), PartitionKeyHash("e"));
  // The same key always hashes the same (the per-thread context is reset between calls).
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(PartitionKeyHash("abc"), absl::MakeUint128(0x900150983cd24fb0u, 0xd6963f7d28e17f72u));
  }
}

TEST(ParseHashKeyTest, AcceptsTheWholeRange) {
  EXPECT_EQ(Parse("0"), 0);
  EXPECT_EQ(Parse("1"), 1);
  EXPECT_EQ(Parse("18446744073709551616"), absl::MakeUint128(1, 0));
  EXPECT_EQ(Parse("170141183460469231731687303715884105727"),
            absl::MakeUint128(0x7fffffffffffffffu, 0xffffffffffffffffu));
  EXPECT_EQ(Parse(kMax), absl::Uint128Max());
}

TEST(ParseHashKeyTest, RejectsValuesAboveTheRange) {
  EXPECT_FALSE(ParseHashKey(kTwoTo128, "HashKey").ok());
  EXPECT_FALSE(ParseHashKey("340282366920938463463374607431768211460", "HashKey").ok());
  EXPECT_FALSE(ParseHashKey("999999999999999999999999999999999999999", "HashKey").ok());
  EXPECT_FALSE(ParseHashKey("1000000000000000000000000000000000000000", "HashKey").ok());  // 40
}

TEST(ParseHashKeyTest, RejectsMalformedText) {
  for (const char* text :
       {"", "00", "01", "007", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "abc", "１"}) {
    auto value = ParseHashKey(text, "ExplicitHashKey");
    EXPECT_FALSE(value.ok()) << "'" << text << "' was accepted";
    if (!value.ok()) {
      EXPECT_EQ(value.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_FALSE(ParseHashKey(std::string("1\0", 2), "HashKey").ok());
}

TEST(ParseHashKeyTest, ErrorNamesTheFieldAndTheValue) {
  auto value = ParseHashKey("-5", "ExplicitHashKey");
  ASSERT_FALSE(value.ok());
  EXPECT_THAT(value.status().message(), HasSubstr("ExplicitHashKey"));
  EXPECT_THAT(value.status().message(), HasSubstr("'-5'"));
  EXPECT_THAT(value.status().message(), HasSubstr("InvalidArgumentException"));
}

TEST(FormatHashKeyTest, RoundTripsThroughParse) {
  EXPECT_EQ(FormatHashKey(0), "0");
  EXPECT_EQ(FormatHashKey(absl::Uint128Max()), kMax);
  const absl::uint128 values[] = {1,
                                  9,
                                  10,
                                  99,
                                  100,
                                  absl::MakeUint128(0, ~0ull),
                                  absl::MakeUint128(1, 0),
                                  absl::MakeUint128(0x7fffffffffffffffu, 0xffffffffffffffffu),
                                  absl::Uint128Max() - 1,
                                  PartitionKeyHash("abc")};
  for (absl::uint128 value : values) {
    EXPECT_EQ(Parse(FormatHashKey(value)), value) << FormatHashKey(value);
  }
  absl::uint128 x = 1;
  for (int digits = 1; digits <= 38; ++digits, x *= 10) {
    EXPECT_EQ(Parse(FormatHashKey(x)), x);
    EXPECT_EQ(Parse(FormatHashKey(x - 1)), x - 1);
    EXPECT_EQ(FormatHashKey(x).size(), static_cast<size_t>(digits));
  }
}

// Checks that `ranges` tile [0, 2^128-1] in order, with no gap or overlap.
void ExpectTiling(const std::vector<HashKeyRangeValue>& ranges, int n) {
  ASSERT_EQ(ranges.size(), static_cast<size_t>(n));
  EXPECT_EQ(ranges.front().start, 0);
  EXPECT_EQ(ranges.back().end, absl::Uint128Max());
  for (int i = 0; i < n; ++i) {
    EXPECT_LE(ranges[i].start, ranges[i].end) << "N=" << n << " shard " << i;
    if (i > 0) {
      EXPECT_EQ(ranges[i].start, ranges[i - 1].end + 1) << "N=" << n << " shard " << i;
    }
  }
}

TEST(SplitHashKeySpaceTest, TilesTheKeySpaceWithoutGapsOrOverlaps) {
  for (int n = 1; n <= 50; ++n) ExpectTiling(SplitHashKeySpace(n), n);
  for (int n : {64, 100, 127, 128, 500, 1000, 4096, 10000}) ExpectTiling(SplitHashKeySpace(n), n);
}

TEST(SplitHashKeySpaceTest, MatchesKinesisLayout) {
  // size = floor(2^128 / N); shard i = [i*size, (i+1)*size-1]; the last ends at 2^128-1.
  for (int n = 1; n <= 50; ++n) {
    const auto ranges = SplitHashKeySpace(n);
    ASSERT_EQ(ranges.size(), static_cast<size_t>(n));
    // floor(2^128/N) == floor((2^128-1)/N) unless N divides 2^128 (N a power of two).
    const bool power_of_two = (n & (n - 1)) == 0;
    const absl::uint128 size =
        n == 1 ? 0 : absl::Uint128Max() / static_cast<uint64_t>(n) + (power_of_two ? 1 : 0);
    for (int i = 0; i + 1 < n; ++i) {
      EXPECT_EQ(ranges[i].start, size * static_cast<uint64_t>(i)) << "N=" << n << " i=" << i;
      EXPECT_EQ(ranges[i].end, size * static_cast<uint64_t>(i + 1) - 1) << "N=" << n << " i=" << i;
    }
    EXPECT_EQ(ranges[n - 1].start, size * static_cast<uint64_t>(n - 1));
  }
}

TEST(SplitHashKeySpaceTest, KnownBoundaries) {
  auto one = SplitHashKeySpace(1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].start, 0);
  EXPECT_EQ(FormatHashKey(one[0].end), kMax);

  auto two = SplitHashKeySpace(2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(FormatHashKey(two[0].end), "170141183460469231731687303715884105727");
  EXPECT_EQ(FormatHashKey(two[1].start), "170141183460469231731687303715884105728");

  auto three = SplitHashKeySpace(3);
  EXPECT_EQ(FormatHashKey(three[0].end), "113427455640312821154458202477256070484");
  EXPECT_EQ(FormatHashKey(three[2].start), "226854911280625642308916404954512140970");
  EXPECT_EQ(FormatHashKey(three[2].end), kMax);

  auto four = SplitHashKeySpace(4);
  EXPECT_EQ(FormatHashKey(four[3].start), "255211775190703847597530955573826158592");

  auto seven = SplitHashKeySpace(7);
  EXPECT_EQ(FormatHashKey(seven[0].end), "48611766702991209066196372490252601635");
  EXPECT_EQ(FormatHashKey(seven[6].start), "291670600217947254397178234941515609816");

  auto thousand = SplitHashKeySpace(1000);
  EXPECT_EQ(FormatHashKey(thousand[999].start), "339942084554017524999911232824336442789");
}

TEST(SplitHashKeySpaceTest, LargeCounts) {
  auto ranges = SplitHashKeySpace(1 << 20);
  ExpectTiling(ranges, 1 << 20);
  EXPECT_EQ(FormatHashKey(ranges[1].start), "324518553658426726783156020576256");
  EXPECT_EQ(FormatHashKey(ranges.back().start), "340282042402384805036647824275747635200");
}

TEST(SplitHashKeySpaceTest, NonPositiveCountGivesNoRanges) {
  EXPECT_TRUE(SplitHashKeySpace(0).empty());
  EXPECT_TRUE(SplitHashKeySpace(-3).empty());
}

TEST(SplitHashKeySpaceTest, EveryKeyFallsInExactlyOneRange) {
  const auto ranges = SplitHashKeySpace(7);
  for (const char* key : {"", "a", "abc", "partition-1", "user-42", "message digest"}) {
    int hits = 0;
    for (const auto& range : ranges) hits += range.Contains(PartitionKeyHash(key)) ? 1 : 0;
    EXPECT_EQ(hits, 1) << key;
  }
  for (absl::uint128 key : {absl::uint128(0), absl::Uint128Max(), ranges[3].start, ranges[3].end}) {
    int hits = 0;
    for (const auto& range : ranges) hits += range.Contains(key) ? 1 : 0;
    EXPECT_EQ(hits, 1);
  }
}

}  // namespace
}  // namespace runnel
