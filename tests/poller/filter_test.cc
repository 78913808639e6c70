// Filter patterns (Lambda FilterCriteria for Kinesis, docs/aws-semantics.md#filters): every
// operator matching and not matching, array semantics, non-JSON data, and malformed patterns
// refused with a reason.
#include "poller/filter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace runnel::poller {
namespace {

using ::testing::HasSubstr;

Filter MustCompile(const std::string& pattern) {
  absl::StatusOr<Filter> filter = Filter::Compile(pattern);
  EXPECT_TRUE(filter.ok()) << pattern << ": " << filter.status();
  return filter.ok() ? *filter : *Filter::Compile(R"({"data":{"never":["x"]}})");
}

std::string CompileError(const std::string& pattern) {
  absl::StatusOr<Filter> filter = Filter::Compile(pattern);
  EXPECT_FALSE(filter.ok()) << pattern << " compiled";
  if (filter.ok()) return "";
  EXPECT_EQ(filter.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(filter.status().message());
}

struct Case {
  std::string pattern;
  std::string data;
  bool matches;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.pattern << " on " << c.data << (c.matches ? " matches" : " does not match");
}

class FilterMatchTest : public ::testing::TestWithParam<Case> {};

TEST_P(FilterMatchTest, Matches) {
  const Case& c = GetParam();
  EXPECT_EQ(MustCompile(c.pattern).Matches(c.data), c.matches);
  // A set of one behaves as the filter itself.
  absl::StatusOr<FilterSet> set = FilterSet::Compile({c.pattern});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->Matches(c.data), c.matches);
}

INSTANTIATE_TEST_SUITE_P(
    Exact, FilterMatchTest,
    ::testing::Values(
        Case{R"({"data":{"type":["buy"]}})", R"({"type":"buy"})", true},
        Case{R"({"data":{"type":["buy"]}})", R"({"type":"sell"})", false},
        Case{R"({"data":{"type":["buy","sell"]}})", R"({"type":"sell"})", true},
        Case{R"({"data":{"type":["buy"]}})", R"({"type":"BUY"})", false},
        Case{R"({"data":{"type":["buy"]}})", R"({"other":"buy"})", false},
        Case{R"({"data":{"type":["buy"]}})", R"({})", false},
        // Numbers by their written form (docs/aws-semantics.md#filters: 300 ≠ 300.0), and never
        // equal to strings.
        Case{R"({"data":{"n":[300]}})", R"({"n":300})", true},
        Case{R"({"data":{"n":[300]}})", R"({"n":300.0})", false},
        Case{R"({"data":{"n":[300.0]}})", R"({"n":300.0})", true},
        Case{R"({"data":{"n":[300]}})", R"({"n":3e2})", false},
        Case{R"({"data":{"n":[300]}})", R"({"n":"300"})", false},
        Case{R"({"data":{"n":["300"]}})", R"({"n":300})", false},
        Case{R"({"data":{"b":[true]}})", R"({"b":true})", true},
        Case{R"({"data":{"b":[true]}})", R"({"b":false})", false},
        Case{R"({"data":{"b":[true]}})", R"({"b":"true"})", false},
        Case{R"({"data":{"v":[null]}})", R"({"v":null})", true},
        Case{R"({"data":{"v":[null]}})", R"({})", false},  // null needs the field present
        Case{R"({"data":{"v":[null]}})", R"({"v":"null"})", false},
        Case{R"({"data":{"s":[""]}})", R"({"s":""})", true},
        Case{R"({"data":{"s":[""]}})", R"({"s":" "})", false},
        // Nested objects.
        Case{R"({"data":{"order":{"type":["buy"]}}})", R"({"order":{"type":"buy"}})", true},
        Case{R"({"data":{"order":{"type":["buy"]}}})", R"({"order":{"type":"sell"}})", false},
        Case{R"({"data":{"order":{"type":["buy"]}}})", R"({"type":"buy"})", false},
        Case{R"({"data":{"order":{"type":["buy"]}}})", R"({"order":"buy"})", false},
        // Every field of an object must match (AND).
        Case{R"({"data":{"a":["1"],"b":["2"]}})", R"({"a":"1","b":"2"})", true},
        Case{R"({"data":{"a":["1"],"b":["2"]}})", R"({"a":"1","b":"3"})", false},
        // The whole data as a value.
        Case{R"({"data":["plain"]})", R"("plain")", true}, Case{R"({"data":[42]})", R"(42)", true},
        Case{R"({"data":[42]})", R"(43)", false}));

INSTANTIATE_TEST_SUITE_P(
    Arrays, FilterMatchTest,
    ::testing::Values(
        // A value pattern matches if any element of a data array matches.
        Case{R"({"data":{"tags":["red"]}})", R"({"tags":["blue","red"]})", true},
        Case{R"({"data":{"tags":["red"]}})", R"({"tags":["blue","green"]})", false},
        Case{R"({"data":{"tags":["red"]}})", R"({"tags":[["x",["red"]]]})", true},
        Case{R"({"data":{"tags":["red"]}})", R"({"tags":[]})", false},
        Case{R"({"data":{"tags":["red"]}})", R"({"tags":[{"red":1}]})", false},
        // An object pattern matches one array element as a whole.
        Case{R"({"data":{"items":{"sku":["a"]}}})", R"({"items":[{"sku":"b"},{"sku":"a"}]})", true},
        Case{R"({"data":{"items":{"sku":["a"],"qty":[2]}}})",
             R"({"items":[{"sku":"a","qty":1},{"sku":"b","qty":2}]})", false},
        Case{R"({"data":{"items":{"sku":["a"],"qty":[2]}}})",
             R"({"items":[{"sku":"b","qty":1},{"sku":"a","qty":2}]})", true},
        // Data that is itself an array.
        Case{R"({"data":{"k":["v"]}})", R"([{"k":"x"},{"k":"v"}])", true}));

INSTANTIATE_TEST_SUITE_P(
    PrefixSuffix, FilterMatchTest,
    ::testing::Values(Case{R"({"data":{"r":[{"prefix":"eu-"}]}})", R"({"r":"eu-west-1"})", true},
                      Case{R"({"data":{"r":[{"prefix":"eu-"}]}})", R"({"r":"us-east-1"})", false},
                      Case{R"({"data":{"r":[{"prefix":"eu-"}]}})", R"({"r":"EU-west-1"})", false},
                      Case{R"({"data":{"r":[{"prefix":"1"}]}})", R"({"r":10})",
                           false},  // strings only
                      Case{R"({"data":{"r":[{"prefix":""}]}})", R"({"r":"anything"})", true},
                      Case{R"({"data":{"r":[{"prefix":{"equals-ignore-case":"EU-"}}]}})",
                           R"({"r":"eu-west"})", true},
                      Case{R"({"data":{"r":[{"prefix":{"equals-ignore-case":"EU-"}}]}})",
                           R"({"r":"us-east"})", false},
                      Case{R"({"data":{"f":[{"suffix":".png"}]}})", R"({"f":"cat.png"})", true},
                      Case{R"({"data":{"f":[{"suffix":".png"}]}})", R"({"f":"cat.jpg"})", false},
                      Case{R"({"data":{"f":[{"suffix":".png"}]}})", R"({"f":"cat.PNG"})", false},
                      Case{R"({"data":{"f":[{"suffix":{"equals-ignore-case":".PNG"}}]}})",
                           R"({"f":"a.png"})", true},
                      Case{R"({"data":{"f":[{"suffix":{"equals-ignore-case":".PNG"}}]}})",
                           R"({"f":"a.gif"})", false}));

INSTANTIATE_TEST_SUITE_P(
    EqualsIgnoreCase, FilterMatchTest,
    ::testing::Values(
        Case{R"({"data":{"t":[{"equals-ignore-case":"Buy"}]}})", R"({"t":"bUY"})", true},
        Case{R"({"data":{"t":[{"equals-ignore-case":"Buy"}]}})", R"({"t":"buyer"})", false},
        Case{R"({"data":{"t":[{"equals-ignore-case":["buy","sell"]}]}})", R"({"t":"SELL"})", true},
        Case{R"({"data":{"t":[{"equals-ignore-case":"1"}]}})", R"({"t":1})", false}));

INSTANTIATE_TEST_SUITE_P(
    AnythingBut, FilterMatchTest,
    ::testing::Values(
        Case{R"({"data":{"s":[{"anything-but":"done"}]}})", R"({"s":"open"})", true},
        Case{R"({"data":{"s":[{"anything-but":"done"}]}})", R"({"s":"done"})", false},
        Case{R"({"data":{"s":[{"anything-but":"done"}]}})", R"({})", false},  // needs the field
        Case{R"({"data":{"s":[{"anything-but":["a","b"]}]}})", R"({"s":"b"})", false},
        Case{R"({"data":{"s":[{"anything-but":["a","b"]}]}})", R"({"s":"c"})", true},
        Case{R"({"data":{"n":[{"anything-but":[1,2]}]}})", R"({"n":2})", false},
        Case{R"({"data":{"n":[{"anything-but":[1,2]}]}})", R"({"n":3})", true},
        Case{R"({"data":{"n":[{"anything-but":5}]}})", R"({"n":5})", false},
        Case{R"({"data":{"n":[{"anything-but":5}]}})", R"({"n":"5"})", true},
        Case{R"({"data":{"s":[{"anything-but":{"prefix":"tmp"}}]}})", R"({"s":"tmp-1"})", false},
        Case{R"({"data":{"s":[{"anything-but":{"prefix":"tmp"}}]}})", R"({"s":"prod-1"})", true},
        Case{R"({"data":{"s":[{"anything-but":{"suffix":".tmp"}}]}})", R"({"s":"a.tmp"})", false},
        Case{R"({"data":{"s":[{"anything-but":{"suffix":".tmp"}}]}})", R"({"s":"a.txt"})", true},
        Case{R"({"data":{"s":[{"anything-but":{"equals-ignore-case":["X","y"]}}]}})",
             R"({"s":"Y"})", false},
        Case{R"({"data":{"s":[{"anything-but":{"equals-ignore-case":"X"}}]}})", R"({"s":"z"})",
             true},
        // With an array in the data, any element that is not excluded lets it through.
        Case{R"({"data":{"s":[{"anything-but":"a"}]}})", R"({"s":["a","b"]})", true},
        Case{R"({"data":{"s":[{"anything-but":"a"}]}})", R"({"s":["a"]})", false}));

INSTANTIATE_TEST_SUITE_P(
    Numeric, FilterMatchTest,
    ::testing::Values(
        Case{R"({"data":{"p":[{"numeric":[">",0,"<=",5]}]}})", R"({"p":5})", true},
        Case{R"({"data":{"p":[{"numeric":[">",0,"<=",5]}]}})", R"({"p":0.5})", true},
        Case{R"({"data":{"p":[{"numeric":[">",0,"<=",5]}]}})", R"({"p":0})", false},
        Case{R"({"data":{"p":[{"numeric":[">",0,"<=",5]}]}})", R"({"p":5.01})", false},
        Case{R"({"data":{"p":[{"numeric":[">=",0,"<",5]}]}})", R"({"p":0})", true},
        Case{R"({"data":{"p":[{"numeric":[">=",0,"<",5]}]}})", R"({"p":5})", false},
        Case{R"({"data":{"p":[{"numeric":["<",5,">",0]}]}})", R"({"p":3})", true},
        Case{R"({"data":{"p":[{"numeric":["=",100]}]}})", R"({"p":100})", true},
        Case{R"({"data":{"p":[{"numeric":["=",100]}]}})", R"({"p":100.0})", true},  // by value
        Case{R"({"data":{"p":[{"numeric":["=",100]}]}})", R"({"p":1e2})", true},
        Case{R"({"data":{"p":[{"numeric":["=",100]}]}})", R"({"p":101})", false},
        Case{R"({"data":{"p":[{"numeric":["=",100]}]}})", R"({"p":"100"})", false},
        Case{R"({"data":{"p":[{"numeric":["<",-1.5]}]}})", R"({"p":-2})", true},
        Case{R"({"data":{"p":[{"numeric":["<",-1.5]}]}})", R"({"p":-1.5})", false},
        Case{R"({"data":{"p":[{"numeric":[">",10]}]}})", R"({"p":[1,2,30]})", true},
        Case{R"({"data":{"p":[{"numeric":[">",10]}]}})", R"({})", false}));

INSTANTIATE_TEST_SUITE_P(
    Exists, FilterMatchTest,
    ::testing::Values(
        Case{R"({"data":{"c":[{"exists":true}]}})", R"({"c":"x"})", true},
        Case{R"({"data":{"c":[{"exists":true}]}})", R"({"c":null})", true},
        Case{R"({"data":{"c":[{"exists":true}]}})", R"({"d":1})", false},
        // exists works on leaves, as in EventBridge: an object or an empty list is not one.
        Case{R"({"data":{"c":[{"exists":true}]}})", R"({"c":{"x":1}})", false},
        Case{R"({"data":{"c":[{"exists":true}]}})", R"({"c":[]})", false},
        Case{R"({"data":{"c":[{"exists":false}]}})", R"({"d":1})", true},
        Case{R"({"data":{"c":[{"exists":false}]}})", R"({"c":0})", false},
        Case{R"({"data":{"o":{"c":[{"exists":false}]}}})", R"({})", true},
        Case{R"({"data":{"o":{"c":[{"exists":false}]}}})", R"({"o":{"c":1}})", false},
        // Several matchers in one list: any of them.
        Case{R"({"data":{"c":[{"exists":false},"x"]}})", R"({"c":"x"})", true},
        Case{R"({"data":{"c":[{"exists":false},"x"]}})", R"({"c":"y"})", false}));

INSTANTIATE_TEST_SUITE_P(
    Or, FilterMatchTest,
    ::testing::Values(Case{R"({"data":{"$or":[{"a":["1"]},{"b":["2"]}]}})", R"({"b":"2"})", true},
                      Case{R"({"data":{"$or":[{"a":["1"]},{"b":["2"]}]}})", R"({"a":"1"})", true},
                      Case{R"({"data":{"$or":[{"a":["1"]},{"b":["2"]}]}})", R"({"a":"2","b":"1"})",
                           false},
                      // $or beside other fields: the fields AND one alternative.
                      Case{R"({"data":{"t":["x"],"$or":[{"a":["1"]},{"b":["2"]}]}})",
                           R"({"t":"x","a":"1"})", true},
                      Case{R"({"data":{"t":["x"],"$or":[{"a":["1"]},{"b":["2"]}]}})",
                           R"({"t":"y","a":"1"})", false},
                      // $or at the top level, over data patterns.
                      Case{R"({"$or":[{"data":{"a":["1"]}},{"data":{"b":[{"numeric":[">",5]}]}}]})",
                           R"({"b":6})", true},
                      Case{R"({"$or":[{"data":{"a":["1"]}},{"data":{"b":[{"numeric":[">",5]}]}}]})",
                           R"({"b":5})", false}));

INSTANTIATE_TEST_SUITE_P(
    NotJson, FilterMatchTest,
    ::testing::Values(
        // Data that is not JSON cannot match a data pattern, not even an exists:false one.
        Case{R"({"data":{"c":[{"exists":false}]}})", "not json", false},
        Case{R"({"data":{"c":[{"exists":false}]}})", "", false},
        Case{R"({"data":{"c":["x"]}})", R"({"c":"x"} trailing)", false},
        Case{R"({"data":{"c":["x"]}})", std::string("{\"c\":\"x\"}\0{}", 11), false},
        Case{R"({"data":{"c":["x"]}})", "{\"c\":\"\xff\"}", false},  // not UTF-8
        Case{R"({"data":{"c":["x"]}})", std::string(1000, '[') + std::string(1000, ']'), false},
        Case{R"({"data":{"c":["x"]}})", R"( {"c":"x"} )", true}));

TEST(FilterSetTest, EmptySetLetsEverythingThrough) {
  FilterSet empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_TRUE(empty.Matches("not even json"));
  absl::StatusOr<FilterSet> compiled = FilterSet::Compile({});
  ASSERT_TRUE(compiled.ok());
  EXPECT_TRUE(compiled->Matches(R"({"a":1})"));
}

TEST(FilterSetTest, AnyFilterMatchingLetsARecordThrough) {
  absl::StatusOr<FilterSet> set = FilterSet::Compile(
      {R"({"data":{"type":["buy"]}})", R"({"data":{"amount":[{"numeric":[">",100]}]}})"});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->size(), 2u);
  EXPECT_TRUE(set->Matches(R"({"type":"buy","amount":1})"));
  EXPECT_TRUE(set->Matches(R"({"type":"sell","amount":500})"));
  EXPECT_FALSE(set->Matches(R"({"type":"sell","amount":5})"));
  EXPECT_FALSE(set->Matches("not json"));
}

TEST(FilterSetTest, ErrorsNameTheFilter) {
  absl::StatusOr<FilterSet> set =
      FilterSet::Compile({R"({"data":{"a":["x"]}})", R"({"data":{"a":[{"wildcard":"x*"}]}})"});
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(set.status().message()),
              ::testing::StartsWith("filters[1]: invalid filter pattern: data.a: unknown "
                                    "operator \"wildcard\""));
}

TEST(FilterTest, CanonicalJsonIsCompactAndKeepsNumbersAsWritten) {
  Filter filter = MustCompile(R"( { "data" : { "n" : [ 300.0 , 1e2 ], "s": ["a\"b"] } } )");
  EXPECT_EQ(filter.canonical_json(), R"({"data":{"n":[300.0,1e2],"s":["a\"b"]}})");
}

TEST(FilterTest, CopiesShareTheCompiledPattern) {
  Filter a = MustCompile(R"({"data":{"t":["x"]}})");
  Filter b = a;
  EXPECT_TRUE(b.Matches(R"({"t":"x"})"));
  EXPECT_EQ(&a.canonical_json(), &b.canonical_json());
}

struct BadPattern {
  std::string pattern;
  std::string error;  // the whole message
};

class FilterCompileErrorTest : public ::testing::TestWithParam<BadPattern> {};

TEST_P(FilterCompileErrorTest, IsRefusedWithAReason) {
  EXPECT_EQ(CompileError(GetParam().pattern), GetParam().error);
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, FilterCompileErrorTest,
    ::testing::Values(
        BadPattern{R"({"data":)",
                   "invalid filter pattern: not valid JSON: Invalid value. (at offset 8)"},
        BadPattern{R"(["data"])",
                   "invalid filter pattern: a pattern is a JSON object like {\"data\": {...}}, "
                   "not a list"},
        BadPattern{R"({})",
                   "invalid filter pattern: an empty object; give at least one field to match"},
        BadPattern{R"({"partitionKey":["a"]})",
                   "invalid filter pattern: \"partitionKey\": Kinesis filters match the "
                   "record's data only; write {\"data\": {...}}"},
        BadPattern{R"({"data":{}})",
                   "invalid filter pattern: data: an empty object; give at least one field to "
                   "match"},
        BadPattern{R"({"data":{"a":"buy"}})",
                   "invalid filter pattern: data.a: expected a list of values (e.g. [\"buy\"]) "
                   "or an object, not a string"},
        BadPattern{R"({"data":{"a":[]}})",
                   "invalid filter pattern: data.a: an empty list matches nothing; give at least "
                   "one value"},
        BadPattern{R"({"data":{"a":[["x"]]}})",
                   "invalid filter pattern: data.a: a value list cannot hold another list"},
        BadPattern{R"({"data":{"a":["x"],"a":["y"]}})",
                   "invalid filter pattern: data: the key \"a\" appears twice"},
        BadPattern{R"({"data":{"a":[{"wildcard":"x*"}]}})",
                   "invalid filter pattern: data.a: unknown operator \"wildcard\"; known: "
                   "prefix, suffix, equals-ignore-case, anything-but, numeric, exists"},
        BadPattern{R"({"data":{"a":[{"prefix":"x","suffix":"y"}]}})",
                   "invalid filter pattern: data.a: an operator object has exactly one key (one "
                   "of prefix, suffix, equals-ignore-case, anything-but, numeric, exists), not 2"},
        BadPattern{R"({"data":{"a":[{"prefix":5}]}})",
                   "invalid filter pattern: data.a: prefix takes a string or "
                   "{\"equals-ignore-case\": \"...\"}, not a number"},
        BadPattern{R"({"data":{"a":[{"suffix":["x"]}]}})",
                   "invalid filter pattern: data.a: suffix takes a string or "
                   "{\"equals-ignore-case\": \"...\"}, not a list"},
        BadPattern{R"({"data":{"a":[{"equals-ignore-case":5}]}})",
                   "invalid filter pattern: data.a: equals-ignore-case takes a string or a "
                   "non-empty list of strings"},
        BadPattern{R"({"data":{"a":[{"equals-ignore-case":["x",1]}]}})",
                   "invalid filter pattern: data.a: equals-ignore-case takes strings only, not a "
                   "number"},
        BadPattern{R"({"data":{"a":[{"anything-but":[]}]}})",
                   "invalid filter pattern: data.a: anything-but: the list is empty"},
        BadPattern{R"({"data":{"a":[{"anything-but":[true]}]}})",
                   "invalid filter pattern: data.a: anything-but: a list holds strings and "
                   "numbers, not a boolean"},
        BadPattern{R"({"data":{"a":[{"anything-but":{"wildcard":"x"}}]}})",
                   "invalid filter pattern: data.a: anything-but: unknown operator "
                   "\"wildcard\"; known: prefix, suffix, equals-ignore-case"},
        BadPattern{R"({"data":{"a":[{"anything-but":{"prefix":1}}]}})",
                   "invalid filter pattern: data.a: anything-but: prefix takes a string, not a "
                   "number"},
        BadPattern{R"({"data":{"a":[{"anything-but":null}]}})",
                   "invalid filter pattern: data.a: anything-but takes a string, a number, a "
                   "non-empty list of them, or an object with one of prefix, suffix, "
                   "equals-ignore-case"},
        BadPattern{R"({"data":{"a":[{"numeric":[">"]}]}})",
                   "invalid filter pattern: data.a: numeric takes [OP, NUMBER] or [OP, NUMBER, "
                   "OP, NUMBER], e.g. [\">\", 0, \"<=\", 5]"},
        BadPattern{R"({"data":{"a":[{"numeric":5}]}})",
                   "invalid filter pattern: data.a: numeric takes [OP, NUMBER] or [OP, NUMBER, "
                   "OP, NUMBER], e.g. [\">\", 0, \"<=\", 5]"},
        BadPattern{R"({"data":{"a":[{"numeric":[">","5"]}]}})",
                   "invalid filter pattern: data.a: numeric: expected a number after \">\", not "
                   "a string"},
        BadPattern{R"({"data":{"a":[{"numeric":[5,">"]}]}})",
                   "invalid filter pattern: data.a: numeric: expected an operator (=, <, <=, >, "
                   ">=), not a number"},
        BadPattern{R"({"data":{"a":[{"numeric":["!=",5]}]}})",
                   "invalid filter pattern: data.a: numeric: unknown operator \"!=\"; known: =, "
                   "<, <=, >, >="},
        BadPattern{R"({"data":{"a":[{"numeric":["=",5,"<",6]}]}})",
                   "invalid filter pattern: data.a: numeric: \"=\" cannot be combined with "
                   "another operator"},
        BadPattern{R"({"data":{"a":[{"numeric":[">",5,">=",6]}]}})",
                   "invalid filter pattern: data.a: numeric: two lower bounds"},
        BadPattern{R"({"data":{"a":[{"numeric":["<",5,"<=",6]}]}})",
                   "invalid filter pattern: data.a: numeric: two upper bounds"},
        BadPattern{R"({"data":{"a":[{"numeric":[">",5,"<",5]}]}})",
                   "invalid filter pattern: data.a: numeric: the range is empty (the lower "
                   "bound is not below the upper bound)"},
        BadPattern{R"({"data":{"a":[{"numeric":[">",10,"<=",5]}]}})",
                   "invalid filter pattern: data.a: numeric: the range is empty (the lower "
                   "bound is not below the upper bound)"},
        BadPattern{R"({"data":{"a":[{"numeric":[">",1e999]}]}})",
                   "invalid filter pattern: not valid JSON: Number too big to be stored in "
                   "double. (at offset 30)"},
        BadPattern{R"({"data":{"a":[{"exists":"yes"}]}})",
                   "invalid filter pattern: data.a: exists takes true or false, not a string"},
        BadPattern{R"({"data":{"$or":[]}})",
                   "invalid filter pattern: data.$or: expected a non-empty list of patterns"},
        BadPattern{R"({"data":{"$or":[{"a":["x"]},"b"]}})",
                   "invalid filter pattern: data.$or[1]: expected an object, not a string"},
        BadPattern{R"({"$or":[{"data":{"a":["x"]}},{"meta":{"a":["x"]}}]})",
                   "invalid filter pattern: $or[1]: \"meta\": Kinesis filters match the "
                   "record's data only; write {\"data\": {...}}"}));

TEST(FilterTest, NumericAcceptsEqualInclusiveBounds) {
  Filter filter = MustCompile(R"({"data":{"a":[{"numeric":[">=",5,"<=",5]}]}})");
  EXPECT_TRUE(filter.Matches(R"({"a":5})"));
  EXPECT_FALSE(filter.Matches(R"({"a":5.5})"));
}

TEST(FilterTest, DeeplyNestedPatternIsRefused) {
  std::string pattern = R"({"data":)";
  for (int i = 0; i < 200; ++i) pattern += R"({"a":)";
  pattern += R"(["x"])";
  for (int i = 0; i < 201; ++i) pattern += "}";
  EXPECT_THAT(CompileError(pattern), HasSubstr("nested more than 128 levels deep"));
}

TEST(FilterTest, EveryPrefixOfAPatternIsHandled) {
  const std::string pattern =
      R"({"data":{"a":[{"numeric":[">",0,"<=",5]},{"anything-but":{"prefix":"x"}}],)"
      R"("$or":[{"b":[{"exists":false}]},{"c":{"d":["e",1,null,true]}}]}})";
  ASSERT_TRUE(Filter::Compile(pattern).ok());
  for (size_t n = 0; n < pattern.size(); ++n) {
    absl::StatusOr<Filter> filter = Filter::Compile(pattern.substr(0, n));
    EXPECT_FALSE(filter.ok()) << n;
    EXPECT_EQ(filter.status().code(), absl::StatusCode::kInvalidArgument) << n;
  }
}

}  // namespace
}  // namespace runnel::poller
