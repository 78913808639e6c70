// `runnel put`'s input: each key source, every refusal with its FILE:LINE, and that a file with
// a bad line yields no records at all.
#include "cli/put_input.h"

#include <sstream>

#include "absl/strings/str_cat.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace runnel::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

PutInputOptions Fixed(std::string key = "k") {
  PutInputOptions options;
  options.fixed_key = std::move(key);
  return options;
}

PutInputOptions Field(std::string field) {
  PutInputOptions options;
  options.key_source = KeySource::kJsonField;
  options.key_field = std::move(field);
  return options;
}

PutInputOptions Keyed() {
  PutInputOptions options;
  options.key_source = KeySource::kTabSeparated;
  return options;
}

PutInputOptions AllowEmpty(PutInputOptions options) {
  options.allow_empty = true;
  return options;
}

std::string ErrorOf(const std::string& line, const PutInputOptions& options) {
  auto record = ParsePutLine(line, options, "f.jsonl:7");
  EXPECT_FALSE(record.ok()) << line;
  return record.ok() ? "" : std::string(record.status().message());
}

TEST(PutInputTest, AFixedKeyIsEveryRecordsKey) {
  auto record = ParsePutLine("{\"a\":1}", Fixed("c-1"), "f:1");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->partition_key, "c-1");
  EXPECT_EQ(record->data, "{\"a\":1}");
  EXPECT_EQ(record->where, "f:1");
}

TEST(PutInputTest, AKeyFieldTakesAStringOrANumberAsWritten) {
  auto text = ParsePutLine(R"({"orderId":"o-1","customerId":"c-9"})", Field("customerId"), "f:1");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->partition_key, "c-9");
  EXPECT_EQ(text->data, R"({"orderId":"o-1","customerId":"c-9"})");  // data unchanged
  auto number = ParsePutLine(R"({"customerId":42})", Field("customerId"), "f:1");
  ASSERT_TRUE(number.ok()) << number.status();
  EXPECT_EQ(number->partition_key, "42");
  auto decimal = ParsePutLine(R"({"customerId":1.50})", Field("customerId"), "f:1");
  ASSERT_TRUE(decimal.ok()) << decimal.status();
  EXPECT_EQ(decimal->partition_key, "1.50");
  // Only a top-level field counts.
  EXPECT_THAT(ErrorOf(R"({"order":{"customerId":"c-1"}})", Field("customerId")),
              HasSubstr("f.jsonl:7: no field \"customerId\""));
}

TEST(PutInputTest, AKeyFieldLineThatCannotGiveAKeyIsRefusedWithItsLine) {
  EXPECT_THAT(ErrorOf(R"({"orderId":"o-1"})", Field("customerId")),
              HasSubstr("f.jsonl:7: no field \"customerId\" for the partition key"));
  EXPECT_THAT(ErrorOf("not json", Field("k")), HasSubstr("f.jsonl:7: not JSON"));
  EXPECT_THAT(ErrorOf(R"({"k":"a"} trailing)", Field("k")), HasSubstr("f.jsonl:7: not JSON"));
  EXPECT_THAT(ErrorOf(R"(["k"])", Field("k")), HasSubstr("f.jsonl:7: not a JSON object"));
  EXPECT_THAT(ErrorOf(R"({"k":null})", Field("k")), HasSubstr("field \"k\" is null"));
  EXPECT_THAT(ErrorOf(R"({"k":true})", Field("k")), HasSubstr("field \"k\" is a boolean"));
  EXPECT_THAT(ErrorOf(R"({"k":{"a":1}})", Field("k")), HasSubstr("field \"k\" is an object"));
  EXPECT_THAT(ErrorOf(R"({"k":[1]})", Field("k")), HasSubstr("field \"k\" is an array"));
  EXPECT_THAT(ErrorOf(R"({"k":""})", Field("k")), HasSubstr("f.jsonl:7: empty partition key"));
  EXPECT_THAT(ErrorOf(absl::StrCat(R"({"k":")", std::string(257, 'x'), "\"}"), Field("k")),
              HasSubstr("partition key of 257 characters is over Kinesis's limit of 256"));
  // 256 characters of two bytes each are fine: the limit counts characters.
  std::string wide;
  for (int i = 0; i < 256; ++i) wide += "\xc3\xa9";
  EXPECT_TRUE(ParsePutLine(absl::StrCat(R"({"k":")", wide, "\"}"), Field("k"), "f:1").ok());
}

TEST(PutInputTest, DeepNestingIsAnErrorNotACrash) {
  const std::string deep = std::string(200'000, '[') + std::string(200'000, ']');
  EXPECT_THAT(ErrorOf(absl::StrCat("{\"a\":", deep, "}"), Field("k")), HasSubstr("no field \"k\""));
}

TEST(PutInputTest, KeyedLinesAreKeyTabData) {
  auto record = ParsePutLine("c-1\t{\"a\":\"x\\ty\"}\tmore", Keyed(), "f:1");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->partition_key, "c-1");
  EXPECT_EQ(record->data, "{\"a\":\"x\\ty\"}\tmore");  // split at the first tab only
  EXPECT_THAT(ErrorOf("no tab here", Keyed()),
              HasSubstr("f.jsonl:7: no tab: --keyed lines are KEY<TAB>DATA"));
  EXPECT_THAT(ErrorOf("\tdata", Keyed()), HasSubstr("f.jsonl:7: empty partition key"));
  EXPECT_THAT(ErrorOf("key\t", Keyed()), HasSubstr("f.jsonl:7: empty record"));
  auto empty_data = ParsePutLine("key\t", AllowEmpty(Keyed()), "f:1");
  ASSERT_TRUE(empty_data.ok()) << empty_data.status();
  EXPECT_EQ(empty_data->data, "");
}

TEST(PutInputTest, AnEmptyLineIsRefusedUnlessAllowed) {
  const std::string message = "f.jsonl:7: empty record (pass --allow-empty to put empty records)";
  EXPECT_EQ(ErrorOf("", Fixed()), message);
  EXPECT_EQ(ErrorOf("", Field("k")), message);
  EXPECT_EQ(ErrorOf("", Keyed()), message);
  auto allowed = ParsePutLine("", AllowEmpty(Fixed()), "f:1");
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_EQ(allowed->data, "");
  // Allowed, an empty line still has no key to give.
  EXPECT_THAT(ErrorOf("", AllowEmpty(Field("k"))), HasSubstr("empty partition key"));
  EXPECT_THAT(ErrorOf("", AllowEmpty(Keyed())), HasSubstr("no tab"));
}

TEST(PutInputTest, ARecordOverOneMebibyteKeyIncludedIsRefused) {
  const std::string at_limit(kMaxRecordBytes - 1, 'x');  // + key "k" = exactly 1 MiB
  EXPECT_TRUE(ParsePutLine(at_limit, Fixed("k"), "f:1").ok());
  EXPECT_THAT(ErrorOf(at_limit, Fixed("kk")),
              HasSubstr("f.jsonl:7: record of 1048577 bytes (1048575 of data + 2 of partition "
                        "key) is over Kinesis's limit of 1048576 bytes"));
  // A JSON line over the limit is refused for its size, before it is parsed.
  const std::string big_json = absl::StrCat("{\"k\":\"", std::string(kMaxRecordBytes, 'x'), "\"}");
  EXPECT_THAT(ErrorOf(big_json, Field("k")), HasSubstr("is over Kinesis's limit of 1048576"));
}

TEST(PutInputTest, AFileWithABadLineYieldsNoRecordsAndNamesEveryBadLine) {
  std::istringstream in("{\"k\":\"a\"}\n\n{\"k\":\"b\"}\n{\"x\":1}\n{\"k\":\"c\"}\n\n");
  PutInput input = ReadPutInput(in, "orders.jsonl", Field("k"), 10);
  EXPECT_TRUE(input.records.empty());
  EXPECT_EQ(input.bad_lines, 3u);
  EXPECT_THAT(
      input.errors,
      ElementsAre("orders.jsonl:2: empty record (pass --allow-empty to put empty records)",
                  "orders.jsonl:4: no field \"k\" for the partition key",
                  "orders.jsonl:6: empty record (pass --allow-empty to put empty records)"));
  std::istringstream again("\n\n\n");
  PutInput capped = ReadPutInput(again, "<stdin>", Fixed(), 2);
  EXPECT_EQ(capped.bad_lines, 3u);
  EXPECT_EQ(capped.errors.size(), 2u);
}

TEST(PutInputTest, AGoodFileYieldsEveryLineInOrderWithoutItsNewline) {
  std::istringstream in("a\tone\nb\ttwo\na\tthree");  // no newline after the last line
  PutInput input = ReadPutInput(in, "<stdin>", Keyed(), 10);
  ASSERT_TRUE(input.errors.empty());
  ASSERT_EQ(input.records.size(), 3u);
  EXPECT_EQ(input.records[0].partition_key, "a");
  EXPECT_EQ(input.records[1].data, "two");
  EXPECT_EQ(input.records[2].data, "three");
  EXPECT_EQ(input.records[2].where, "<stdin>:3");
}

}  // namespace
}  // namespace runnel::cli
