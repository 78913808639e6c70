// Lambda's FilterCriteria for Kinesis (docs/aws-semantics.md#filters): EventBridge-style patterns
// matched against the JSON in a record's data. A mapping's filters are compiled once when it
// starts; matching then parses each record's data once and walks the compiled patterns, never the
// pattern text.
//
// Supported pattern syntax (everything Lambda documents for Kinesis):
//   {"data": {"order": {"type": ["buy", "sell"]}}}   exact values: strings, numbers, true/false,
//                                                    null; a list matches if any value matches
//   {"prefix": "eu-"}, {"suffix": ".png"}            also {"prefix": {"equals-ignore-case": "x"}}
//   {"equals-ignore-case": "Buy"}                    ASCII case folding
//   {"anything-but": "x" | ["x", 5] | {"prefix": "x"} | {"suffix": "x"}
//                    | {"equals-ignore-case": "x" | ["x", "y"]}}
//   {"numeric": [">", 0, "<=", 5]}, {"numeric": ["=", 100]}
//   {"exists": true | false}                         leaves only, as in EventBridge
//   {"$or": [{...}, {...}]}                          at any object level, the top level included
//
// Semantics, as EventBridge and Lambda define them:
//   - Exact values compare by type and, for numbers, by their written form: 300 ≠ 300.0 ≠ "300".
//     `numeric` compares numerically.
//   - Where the data holds an array, a value pattern matches if any element matches, and an
//     object pattern matches if one element matches it as a whole (fields are not mixed across
//     elements).
//   - A field pattern other than {"exists": false} needs the field to be present.
//   - Data that is not valid JSON (UTF-8 checked) matches no pattern.
//   - The top level of a Kinesis pattern may only hold "data" (and "$or" of such patterns):
//     Lambda filters Kinesis records on data only, so a key such as "partitionKey" is refused at
//     compile time rather than silently never matching.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace runnel::poller {

namespace filter_internal {
struct Pattern;
}

// One compiled pattern. Cheap to copy (the compiled form is shared and immutable); thread-safe.
class Filter {
 public:
  // INVALID_ARGUMENT naming what is wrong and where (e.g. `data.price: numeric: ...`) for text
  // that is not JSON, an unknown operator, a malformed operand, a bad numeric range, an empty
  // list or object, or a top-level key other than "data".
  static absl::StatusOr<Filter> Compile(std::string_view pattern_json);

  // Whether a record with these data bytes (raw, not base64) passes this pattern.
  bool Matches(std::string_view record_data) const;

  // The pattern as compact JSON, keys in their written order, numbers as written.
  const std::string& canonical_json() const;

 private:
  friend class FilterSet;
  explicit Filter(std::shared_ptr<const filter_internal::Pattern> pattern)
      : pattern_(std::move(pattern)) {}
  std::shared_ptr<const filter_internal::Pattern> pattern_;
};

// A mapping's filters: a record passes if any filter matches it; an empty set passes everything.
class FilterSet {
 public:
  FilterSet() = default;
  // Errors are prefixed with "filters[i]: ".
  static absl::StatusOr<FilterSet> Compile(const std::vector<std::string>& patterns);

  // Parses the data once for all filters.
  bool Matches(std::string_view record_data) const;

  bool empty() const { return filters_.empty(); }
  size_t size() const { return filters_.size(); }

 private:
  std::vector<Filter> filters_;
};

}  // namespace runnel::poller
