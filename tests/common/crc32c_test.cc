// CRC32C against the RFC 3720 (iSCSI) test vectors, plus the Extend and Mask contracts that the
// log format relies on.
#include "common/crc32c.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace runnel {
namespace {

TEST(Crc32cTest, MatchesCheckValue) { EXPECT_EQ(Crc32c("123456789"), 0xE3069283u); }

TEST(Crc32cTest, MatchesRfc3720Vectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  std::string descending(32, '\0');
  for (int i = 0; i < 32; ++i) descending[i] = static_cast<char>(31 - i);
  EXPECT_EQ(Crc32c(descending), 0x113FDB5Cu);
}

TEST(Crc32cTest, EmptyInputIsZero) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32cExtend(0x12345678u, nullptr, 0), 0x12345678u);
}

TEST(Crc32cTest, ExtendComposesAtEverySplitPoint) {
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  const uint32_t whole = Crc32c(data);
  for (size_t split = 0; split <= data.size(); ++split) {
    const uint32_t head = Crc32cExtend(0, data.data(), split);
    EXPECT_EQ(Crc32cExtend(head, data.data() + split, data.size() - split), whole)
        << "split at " << split;
  }
}

TEST(Crc32cTest, DifferentInputsGiveDifferentValues) {
  EXPECT_NE(Crc32c("a"), Crc32c("foo"));
  EXPECT_NE(Crc32c("foo"), Crc32c("fop"));
  EXPECT_NE(Crc32c(std::string(1, '\0')), Crc32c(std::string(2, '\0')));
}

TEST(Crc32cTest, LargeBufferMatchesPiecewise) {
  // Exercises the vectorised path over many cache lines and checks it against byte-wise extends.
  std::vector<unsigned char> data(1 << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 2654435761u);
  uint32_t piecewise = 0;
  for (size_t i = 0; i < data.size(); i += 4093) {
    piecewise = Crc32cExtend(piecewise, data.data() + i, std::min<size_t>(4093, data.size() - i));
  }
  EXPECT_EQ(Crc32cExtend(0, data.data(), data.size()), piecewise);
}

TEST(Crc32cTest, MaskRoundTripsAndChangesTheValue) {
  const uint32_t crc = Crc32c("foo");
  EXPECT_NE(MaskCrc(crc), crc);
  EXPECT_NE(MaskCrc(MaskCrc(crc)), crc);
  EXPECT_EQ(UnmaskCrc(MaskCrc(crc)), crc);
  EXPECT_EQ(UnmaskCrc(UnmaskCrc(MaskCrc(MaskCrc(crc)))), crc);
  for (uint32_t value : {0u, 1u, 0x80000000u, 0xffffffffu, 0xE3069283u, 0xa282ead8u}) {
    EXPECT_EQ(UnmaskCrc(MaskCrc(value)), value) << value;
    EXPECT_NE(MaskCrc(value), value) << value;
  }
}

}  // namespace
}  // namespace runnel
