// The nesting scanners agree with nlohmann's decoders on depth, for every shape a recursive
// decoder recurses on, and stop hostile inputs (150,000 levels) without recursing themselves.
#include "common/nesting_depth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace runnel {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

std::string Bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

// `depth` arrays, one inside the other, around `leaf`.
Json Nested(int depth, Json leaf = 1) {
  Json value = std::move(leaf);
  for (int i = 0; i < depth; ++i) value = Json::array({std::move(value)});
  return value;
}

std::string Cbor(const Json& value) {
  std::vector<uint8_t> bytes = Json::to_cbor(value);
  return std::string(bytes.begin(), bytes.end());
}

TEST(JsonNesting, CountsArraysAndObjectsButNotBracketsInStrings) {
  EXPECT_TRUE(CheckJsonNesting("1", 0).ok());
  EXPECT_TRUE(CheckJsonNesting("[]", 1).ok());
  EXPECT_FALSE(CheckJsonNesting("[]", 0).ok());
  EXPECT_TRUE(CheckJsonNesting(R"({"a":[{"b":[]}]})", 4).ok());
  EXPECT_FALSE(CheckJsonNesting(R"({"a":[{"b":[]}]})", 3).ok());
  EXPECT_TRUE(CheckJsonNesting(R"(["[[[[", "\"[[[", {"k[":"]]]{"}])", 2).ok());
  EXPECT_TRUE(CheckJsonNesting(R"([[1],[2],[3],{"a":[4]}])", 3).ok());
  EXPECT_FALSE(CheckJsonNesting(R"([[1],[2],[3],{"a":[4]}])", 2).ok());
  EXPECT_TRUE(CheckJsonNesting(R"("\\" , [[ ]])", 2).ok()) << "an escaped backslash ends";
  for (int depth = 0; depth <= 40; ++depth) {
    const std::string text = Nested(depth).dump();
    EXPECT_TRUE(CheckJsonNesting(text, depth).ok()) << depth;
    if (depth > 0) EXPECT_FALSE(CheckJsonNesting(text, depth - 1).ok()) << depth;
  }
}

TEST(JsonNesting, StopsAHostileDocumentAtTheBound) {
  const std::string deep = std::string(150000, '[') + std::string(150000, ']');
  absl::Status status = CheckJsonNesting(deep, 64);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "nested deeper than 64 levels (at byte 64)");
}

TEST(CborNesting, AgreesWithNlohmannOnEveryContainerKind) {
  for (int depth = 0; depth <= 40; ++depth) {
    for (const Json& leaf : {Json(1), Json("text"), Json::binary({1, 2, 3}), Json(2.5),
                             Json(nullptr), Json(-70000), Json(uint64_t{1} << 40)}) {
      const std::string bytes = Cbor(Nested(depth, leaf));
      EXPECT_TRUE(CheckCborNesting(bytes, depth).ok()) << depth << " " << leaf.dump();
      if (depth > 0) EXPECT_FALSE(CheckCborNesting(bytes, depth - 1).ok()) << depth;
    }
  }
  // Maps: keys and values each count once; an empty container is a level of its own.
  const Json request = {
      {"StreamName", "s"},
      {"Records",
       Json::array(
           {{{"Data", Json::binary({1})}, {"PartitionKey", "k"}}, Json::object(), Json::array()})}};
  EXPECT_TRUE(CheckCborNesting(Cbor(request), 3).ok());
  EXPECT_FALSE(CheckCborNesting(Cbor(request), 2).ok());
  EXPECT_TRUE(CheckCborNesting(Cbor(Json::array()), 1).ok());
  EXPECT_FALSE(CheckCborNesting(Cbor(Json::object()), 0).ok());
  // A sibling after a closed container is at the outer level again.
  const Json wide = Json::array({Nested(5), Nested(5), Nested(5)});
  EXPECT_TRUE(CheckCborNesting(Cbor(wide), 6).ok());
  EXPECT_FALSE(CheckCborNesting(Cbor(wide), 5).ok());
}

TEST(CborNesting, CountsTagsAndIndefiniteLengthsAsNlohmannRecursesOnThem) {
  // Tag 0 around tag 1 around 0: three levels for a recursive reader (two tags, the value).
  EXPECT_TRUE(CheckCborNesting(Bytes({0xC0, 0xC1, 0x00}), 2).ok());
  EXPECT_FALSE(CheckCborNesting(Bytes({0xC0, 0xC1, 0x00}), 1).ok());
  // [_ [_ ] ] and {_ "a": 1 } and (_ "ab" "c")
  EXPECT_TRUE(CheckCborNesting(Bytes({0x9F, 0x9F, 0xFF, 0xFF}), 2).ok());
  EXPECT_FALSE(CheckCborNesting(Bytes({0x9F, 0x9F, 0xFF, 0xFF}), 1).ok());
  EXPECT_TRUE(CheckCborNesting(Bytes({0xBF, 0x61, 'a', 0x01, 0xFF}), 1).ok());
  EXPECT_TRUE(CheckCborNesting(Bytes({0x7F, 0x62, 'a', 'b', 0x61, 'c', 0xFF}), 1).ok());
  // Mixed: [ [_ 1, {"k": [2]} ], 3 ]
  EXPECT_TRUE(
      CheckCborNesting(Bytes({0x82, 0x9F, 0x01, 0xA1, 0x61, 'k', 0x81, 0x02, 0xFF, 0x03}), 4).ok());
  EXPECT_FALSE(
      CheckCborNesting(Bytes({0x82, 0x9F, 0x01, 0xA1, 0x61, 'k', 0x81, 0x02, 0xFF, 0x03}), 3).ok());
}

TEST(CborNesting, StopsHostileBodiesAtTheBound) {
  for (int kind : {0x81, 0x9F, 0xA1, 0xBF, 0xC6, 0x7F, 0x5F}) {
    std::string deep(150000, static_cast<char>(kind));
    absl::Status status = CheckCborNesting(deep, 64);
    ASSERT_FALSE(status.ok()) << kind;
    EXPECT_EQ(status.message(), "nested deeper than 64 levels (at byte 64)") << kind;
  }
}

TEST(CborNesting, RefusesWhatCannotBeFollowed) {
  EXPECT_THAT(CheckCborNesting(Bytes({0x1C}), 8).message(), HasSubstr("reserved"));
  EXPECT_THAT(CheckCborNesting(Bytes({0x19, 0x01}), 8).message(), HasSubstr("truncated"));
  EXPECT_THAT(CheckCborNesting(Bytes({0x65, 'a'}), 8).message(), HasSubstr("past the end"));
  EXPECT_THAT(
      CheckCborNesting(Bytes({0x5B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}), 8).message(),
      HasSubstr("past the end"));
  EXPECT_THAT(CheckCborNesting(Bytes({0xFF}), 8).message(), HasSubstr("unexpected break"));
  EXPECT_THAT(CheckCborNesting(Bytes({0x81, 0xFF}), 8).message(), HasSubstr("unexpected break"));
  // A huge declared count is bounded by the bytes present, not by the count.
  EXPECT_TRUE(
      CheckCborNesting(Bytes({0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}), 8)
          .ok());
  EXPECT_TRUE(
      CheckCborNesting(Bytes({0xBB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}), 8)
          .ok());
}

}  // namespace
}  // namespace runnel
