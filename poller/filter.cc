// Compiles EventBridge-style filter patterns (Lambda FilterCriteria for Kinesis) into a small tree
// of matchers and matches record data against them. See filter.h for the supported syntax.
//
// JSON is read with RapidJSON's SAX reader into a tree of our own rather than a rapidjson Document
// because exact matching compares numbers by their written form (300 ≠ 300.0:
// docs/aws-semantics.md#filters), which a Document forgets; numbers are kept as text and converted
// only for `numeric`.
#include "poller/filter.h"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace runnel::poller {
namespace {

// Deeper documents are refused (patterns) or treated as non-JSON (data): it bounds the recursion
// of matching and of destroying the tree, whatever a producer writes into a record.
constexpr int kMaxDepth = 128;

struct Json {
  enum class Kind : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  std::string text;               // kString: the value; kNumber: the number as written
  std::vector<std::string> keys;  // kObject: member names, parallel to items
  std::vector<Json> items;        // kArray: elements; kObject: member values

  bool IsScalar() const { return kind != Kind::kArray && kind != Kind::kObject; }

  // The first member named `key`, or null (also when this is not an object).
  const Json* Find(std::string_view key) const {
    if (kind != Kind::kObject) return nullptr;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return &items[i];
    }
    return nullptr;
  }
};

const char* KindName(Json::Kind kind) {
  switch (kind) {
    case Json::Kind::kNull:
      return "null";
    case Json::Kind::kBool:
      return "a boolean";
    case Json::Kind::kNumber:
      return "a number";
    case Json::Kind::kString:
      return "a string";
    case Json::Kind::kArray:
      return "a list";
    case Json::Kind::kObject:
      return "an object";
  }
  return "?";
}

// SAX handler that builds a Json tree. Containers on the stack stay put while open: only the
// innermost open container gains children, so the pointers to its ancestors remain valid.
class TreeBuilder : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, TreeBuilder> {
 public:
  explicit TreeBuilder(Json* root) : root_(root) {}

  bool Null() { return Add(Json::Kind::kNull) != nullptr; }
  bool Bool(bool value) {
    Json* json = Add(Json::Kind::kBool);
    if (json != nullptr) json->boolean = value;
    return json != nullptr;
  }
  bool RawNumber(const char* text, rapidjson::SizeType length, bool) {
    Json* json = Add(Json::Kind::kNumber);
    if (json != nullptr) json->text.assign(text, length);
    return json != nullptr;
  }
  bool String(const char* text, rapidjson::SizeType length, bool) {
    Json* json = Add(Json::Kind::kString);
    if (json != nullptr) json->text.assign(text, length);
    return json != nullptr;
  }
  bool StartObject() { return Open(Json::Kind::kObject); }
  bool Key(const char* text, rapidjson::SizeType length, bool) {
    stack_.back()->keys.emplace_back(text, length);
    return true;
  }
  bool EndObject(rapidjson::SizeType) {
    stack_.pop_back();
    return true;
  }
  bool StartArray() { return Open(Json::Kind::kArray); }
  bool EndArray(rapidjson::SizeType) {
    stack_.pop_back();
    return true;
  }

  bool too_deep() const { return too_deep_; }

 private:
  Json* Add(Json::Kind kind) {
    Json* json;
    if (stack_.empty()) {
      json = root_;
    } else {
      stack_.back()->items.emplace_back();
      json = &stack_.back()->items.back();
    }
    json->kind = kind;
    return json;
  }
  bool Open(Json::Kind kind) {
    if (stack_.size() >= kMaxDepth) {
      too_deep_ = true;
      return false;
    }
    stack_.push_back(Add(kind));
    return true;
  }

  Json* root_;
  std::vector<Json*> stack_;
  bool too_deep_ = false;
};

// Parses one JSON document (UTF-8 validated). On failure returns false and, if `error` is set,
// describes the problem.
bool ParseJson(std::string_view text, Json* out, std::string* error) {
  constexpr unsigned kFlags = rapidjson::kParseNumbersAsStringsFlag |
                              rapidjson::kParseValidateEncodingFlag |
                              rapidjson::kParseIterativeFlag;
  rapidjson::MemoryStream stream(text.data(), text.size());
  TreeBuilder builder(out);
  rapidjson::Reader reader;
  rapidjson::ParseResult result = reader.Parse<kFlags>(stream, builder);
  if (result.IsError()) {
    if (error != nullptr) {
      *error = builder.too_deep()
                   ? absl::StrCat("nested more than ", kMaxDepth, " levels deep")
                   : absl::StrCat("not valid JSON: ", rapidjson::GetParseError_En(result.Code()),
                                  " (at offset ", result.Offset(), ")");
    }
    return false;
  }
  // MemoryStream reads a NUL byte as the end of input, so a document followed by a NUL and more
  // bytes would parse; such data is not one JSON document.
  if (stream.Tell() != text.size()) {
    if (error != nullptr) {
      *error = absl::StrCat("not valid JSON: a NUL byte at offset ", stream.Tell());
    }
    return false;
  }
  return true;
}

void WriteJson(const Json& json, rapidjson::Writer<rapidjson::StringBuffer>& writer) {
  switch (json.kind) {
    case Json::Kind::kNull:
      writer.Null();
      break;
    case Json::Kind::kBool:
      writer.Bool(json.boolean);
      break;
    case Json::Kind::kNumber:
      writer.RawValue(json.text.data(), json.text.size(), rapidjson::kNumberType);
      break;
    case Json::Kind::kString:
      writer.String(json.text.data(), static_cast<rapidjson::SizeType>(json.text.size()));
      break;
    case Json::Kind::kArray:
      writer.StartArray();
      for (const Json& item : json.items) WriteJson(item, writer);
      writer.EndArray();
      break;
    case Json::Kind::kObject:
      writer.StartObject();
      for (size_t i = 0; i < json.keys.size(); ++i) {
        writer.Key(json.keys[i].data(), static_cast<rapidjson::SizeType>(json.keys[i].size()));
        WriteJson(json.items[i], writer);
      }
      writer.EndObject();
      break;
  }
}

// A JSON number as a double; false for text that does not fit one.
bool NumberValue(std::string_view text, double* value) {
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size() && std::isfinite(*value);
}

// One element of a pattern's value list.
struct Matcher {
  enum class Kind {
    kExact,                  // values[0]
    kPrefix,                 // strings[0]
    kSuffix,                 // strings[0]
    kPrefixIgnoreCase,       // strings[0]
    kSuffixIgnoreCase,       // strings[0]
    kEqualsIgnoreCase,       // any of strings
    kAnythingBut,            // none of values
    kAnythingButPrefix,      // strings[0]
    kAnythingButSuffix,      // strings[0]
    kAnythingButIgnoreCase,  // none of strings
    kNumeric,                // the bounds
    kExists,                 // exists
  };
  Kind kind = Kind::kExact;
  std::vector<Json> values;  // scalars only
  std::vector<std::string> strings;
  bool has_lower = false, lower_inclusive = false, has_upper = false, upper_inclusive = false;
  double lower = 0, upper = 0;
  bool exists = false;
};

bool SameScalar(const Json& pattern, const Json& data) {
  if (pattern.kind != data.kind) return false;
  switch (pattern.kind) {
    case Json::Kind::kNull:
      return true;
    case Json::Kind::kBool:
      return pattern.boolean == data.boolean;
    default:
      return pattern.text == data.text;  // numbers by written form, as Lambda does
  }
}

bool AnyEqualsIgnoreCase(const std::vector<std::string>& strings, std::string_view text) {
  for (const std::string& s : strings) {
    if (absl::EqualsIgnoreCase(Sv(s), Sv(text))) return true;
  }
  return false;
}

// Whether one scalar of the data satisfies a matcher (kExists is decided by the caller).
bool LeafMatches(const Matcher& m, const Json& leaf) {
  const bool is_string = leaf.kind == Json::Kind::kString;
  absl::string_view text = Sv(leaf.text);
  switch (m.kind) {
    case Matcher::Kind::kExact:
      return SameScalar(m.values[0], leaf);
    case Matcher::Kind::kPrefix:
      return is_string && absl::StartsWith(text, Sv(m.strings[0]));
    case Matcher::Kind::kSuffix:
      return is_string && absl::EndsWith(text, Sv(m.strings[0]));
    case Matcher::Kind::kPrefixIgnoreCase:
      return is_string && absl::StartsWithIgnoreCase(text, Sv(m.strings[0]));
    case Matcher::Kind::kSuffixIgnoreCase:
      return is_string && absl::EndsWithIgnoreCase(text, Sv(m.strings[0]));
    case Matcher::Kind::kEqualsIgnoreCase:
      return is_string && AnyEqualsIgnoreCase(m.strings, leaf.text);
    case Matcher::Kind::kAnythingBut:
      for (const Json& value : m.values) {
        if (SameScalar(value, leaf)) return false;
      }
      return true;
    case Matcher::Kind::kAnythingButPrefix:
      return is_string && !absl::StartsWith(text, Sv(m.strings[0]));
    case Matcher::Kind::kAnythingButSuffix:
      return is_string && !absl::EndsWith(text, Sv(m.strings[0]));
    case Matcher::Kind::kAnythingButIgnoreCase:
      return is_string && !AnyEqualsIgnoreCase(m.strings, leaf.text);
    case Matcher::Kind::kNumeric: {
      double value;
      if (leaf.kind != Json::Kind::kNumber || !NumberValue(leaf.text, &value)) return false;
      if (m.has_lower && (m.lower_inclusive ? value < m.lower : value <= m.lower)) return false;
      if (m.has_upper && (m.upper_inclusive ? value > m.upper : value >= m.upper)) return false;
      return true;
    }
    case Matcher::Kind::kExists:
      return false;
  }
  return false;
}

// Whether a data value holds at least one scalar, directly or inside (nested) arrays: what
// EventBridge calls a leaf. An object, an empty list or an absent field has none.
bool HasLeaf(const Json& value) {
  if (value.IsScalar()) return true;
  if (value.kind == Json::Kind::kArray) {
    for (const Json& item : value.items) {
      if (HasLeaf(item)) return true;
    }
  }
  return false;
}

bool AnyLeafMatches(const Matcher& m, const Json& value) {
  if (value.IsScalar()) return LeafMatches(m, value);
  if (value.kind == Json::Kind::kArray) {
    for (const Json& item : value.items) {
      if (AnyLeafMatches(m, item)) return true;
    }
  }
  return false;
}

}  // namespace

namespace filter_internal {

// An object level of a pattern: every field must match, and one of the $or alternatives if any.
struct ObjectPattern {
  struct Field {
    std::string key;
    std::vector<ObjectPattern> nested;  // one element when the field's pattern is an object
    std::vector<Matcher> matchers;      // otherwise: any of these
  };
  std::vector<Field> fields;
  std::vector<ObjectPattern> any_of;
};

struct Pattern {
  ObjectPattern root;
  std::string canonical_json;
};

}  // namespace filter_internal

namespace {

using filter_internal::ObjectPattern;

bool MatchObject(const ObjectPattern& pattern, const Json* value);

bool MatchField(const ObjectPattern::Field& field, const Json* value) {
  if (!field.nested.empty()) return MatchObject(field.nested.front(), value);
  for (const Matcher& m : field.matchers) {
    if (m.kind == Matcher::Kind::kExists) {
      if ((value != nullptr && HasLeaf(*value)) == m.exists) return true;
    } else if (value != nullptr && AnyLeafMatches(m, *value)) {
      return true;
    }
  }
  return false;
}

// `value` is null when the field is absent.
bool MatchObject(const ObjectPattern& pattern, const Json* value) {
  if (value != nullptr && value->kind == Json::Kind::kArray) {
    // An object pattern matches a list if one element matches it as a whole; an empty list is
    // as good as an absent field.
    if (value->items.empty()) return MatchObject(pattern, nullptr);
    for (const Json& item : value->items) {
      if (MatchObject(pattern, &item)) return true;
    }
    return false;
  }
  for (const ObjectPattern::Field& field : pattern.fields) {
    if (!MatchField(field, value != nullptr ? value->Find(field.key) : nullptr)) return false;
  }
  if (pattern.any_of.empty()) return true;
  for (const ObjectPattern& alternative : pattern.any_of) {
    if (MatchObject(alternative, value)) return true;
  }
  return false;
}

bool MatchRoot(const filter_internal::Pattern& pattern, const Json& root) {
  return MatchObject(pattern.root, &root);
}

// Parses record data into the object Lambda matches patterns against: {"data": <the data>}.
bool ParseRecord(std::string_view record_data, Json* root) {
  Json data;
  if (!ParseJson(record_data, &data, nullptr)) return false;
  root->kind = Json::Kind::kObject;
  root->keys.emplace_back("data");
  root->items.push_back(std::move(data));
  return true;
}

// --- Compiling ---

constexpr const char* kOperators =
    "prefix, suffix, equals-ignore-case, anything-but, numeric, exists";

absl::Status PatternError(std::string_view path, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid filter pattern: ", Sv(path), path.empty() ? "" : ": ", Sv(what)));
}

std::string Join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(Sv(path), ".", Sv(key));
}

// A string operand, or for prefix/suffix also {"equals-ignore-case": "..."}.
absl::Status CompilePrefixOrSuffix(const Json& operand, bool prefix, std::string_view where,
                                   Matcher* m) {
  std::string_view op = prefix ? "prefix" : "suffix";
  if (operand.kind == Json::Kind::kString) {
    m->kind = prefix ? Matcher::Kind::kPrefix : Matcher::Kind::kSuffix;
    m->strings.push_back(operand.text);
    return absl::OkStatus();
  }
  if (operand.kind == Json::Kind::kObject && operand.keys.size() == 1 &&
      operand.keys[0] == "equals-ignore-case" && operand.items[0].kind == Json::Kind::kString) {
    m->kind = prefix ? Matcher::Kind::kPrefixIgnoreCase : Matcher::Kind::kSuffixIgnoreCase;
    m->strings.push_back(operand.items[0].text);
    return absl::OkStatus();
  }
  return PatternError(where, absl::StrCat(Sv(op), " takes a string or {\"equals-ignore-case\": ",
                                          "\"...\"}, not ", KindName(operand.kind)));
}

// One string or a non-empty list of strings.
absl::Status CompileStrings(const Json& operand, std::string_view where, std::string_view op,
                            std::vector<std::string>* out) {
  if (operand.kind == Json::Kind::kString) {
    out->push_back(operand.text);
    return absl::OkStatus();
  }
  if (operand.kind == Json::Kind::kArray && !operand.items.empty()) {
    for (const Json& item : operand.items) {
      if (item.kind != Json::Kind::kString) {
        return PatternError(where,
                            absl::StrCat(Sv(op), " takes strings only, not ", KindName(item.kind)));
      }
      out->push_back(item.text);
    }
    return absl::OkStatus();
  }
  return PatternError(where,
                      absl::StrCat(Sv(op), " takes a string or a non-empty list of strings"));
}

absl::Status CompileAnythingBut(const Json& operand, std::string_view where, Matcher* m) {
  auto is_value = [](const Json& v) {
    return v.kind == Json::Kind::kString || v.kind == Json::Kind::kNumber;
  };
  if (is_value(operand)) {
    m->kind = Matcher::Kind::kAnythingBut;
    m->values.push_back(operand);
    return absl::OkStatus();
  }
  if (operand.kind == Json::Kind::kArray) {
    if (operand.items.empty()) return PatternError(where, "anything-but: the list is empty");
    for (const Json& item : operand.items) {
      if (!is_value(item)) {
        return PatternError(where, absl::StrCat("anything-but: a list holds strings and numbers, "
                                                "not ",
                                                KindName(item.kind)));
      }
    }
    m->kind = Matcher::Kind::kAnythingBut;
    m->values = operand.items;
    return absl::OkStatus();
  }
  if (operand.kind == Json::Kind::kObject && operand.keys.size() == 1) {
    const std::string& op = operand.keys[0];
    const Json& inner = operand.items[0];
    if (op == "prefix" || op == "suffix") {
      if (inner.kind != Json::Kind::kString) {
        return PatternError(where, absl::StrCat("anything-but: ", op, " takes a string, not ",
                                                KindName(inner.kind)));
      }
      m->kind =
          op == "prefix" ? Matcher::Kind::kAnythingButPrefix : Matcher::Kind::kAnythingButSuffix;
      m->strings.push_back(inner.text);
      return absl::OkStatus();
    }
    if (op == "equals-ignore-case") {
      m->kind = Matcher::Kind::kAnythingButIgnoreCase;
      return CompileStrings(inner, where, "anything-but: equals-ignore-case", &m->strings);
    }
    return PatternError(where, absl::StrCat("anything-but: unknown operator \"", op,
                                            "\"; known: prefix, suffix, equals-ignore-case"));
  }
  return PatternError(where,
                      "anything-but takes a string, a number, a non-empty list of them, or an "
                      "object with one of prefix, suffix, equals-ignore-case");
}

absl::Status CompileNumeric(const Json& operand, std::string_view where, Matcher* m) {
  m->kind = Matcher::Kind::kNumeric;
  if (operand.kind != Json::Kind::kArray ||
      (operand.items.size() != 2 && operand.items.size() != 4)) {
    return PatternError(where,
                        "numeric takes [OP, NUMBER] or [OP, NUMBER, OP, NUMBER], e.g. "
                        "[\">\", 0, \"<=\", 5]");
  }
  for (size_t i = 0; i < operand.items.size(); i += 2) {
    const Json& op_json = operand.items[i];
    const Json& number = operand.items[i + 1];
    if (op_json.kind != Json::Kind::kString) {
      return PatternError(where, absl::StrCat("numeric: expected an operator (=, <, <=, >, >=), "
                                              "not ",
                                              KindName(op_json.kind)));
    }
    const std::string& op = op_json.text;
    double value;
    if (number.kind != Json::Kind::kNumber) {
      return PatternError(where, absl::StrCat("numeric: expected a number after \"", op, "\", not ",
                                              KindName(number.kind)));
    }
    if (!NumberValue(number.text, &value)) {
      return PatternError(where, absl::StrCat("numeric: ", number.text, " is out of range"));
    }
    if (op == "=") {
      if (operand.items.size() != 2) {
        return PatternError(where, "numeric: \"=\" cannot be combined with another operator");
      }
      m->has_lower = m->has_upper = m->lower_inclusive = m->upper_inclusive = true;
      m->lower = m->upper = value;
    } else if (op == ">" || op == ">=") {
      if (m->has_lower) return PatternError(where, "numeric: two lower bounds");
      m->has_lower = true;
      m->lower_inclusive = op == ">=";
      m->lower = value;
    } else if (op == "<" || op == "<=") {
      if (m->has_upper) return PatternError(where, "numeric: two upper bounds");
      m->has_upper = true;
      m->upper_inclusive = op == "<=";
      m->upper = value;
    } else {
      return PatternError(
          where, absl::StrCat("numeric: unknown operator \"", op, "\"; known: =, <, <=, >, >="));
    }
  }
  if (m->has_lower && m->has_upper &&
      (m->lower > m->upper ||
       (m->lower == m->upper && !(m->lower_inclusive && m->upper_inclusive)))) {
    return PatternError(where,
                        "numeric: the range is empty (the lower bound is not below the "
                        "upper bound)");
  }
  return absl::OkStatus();
}

absl::Status CompileMatcher(const Json& element, std::string_view where, Matcher* m) {
  if (element.IsScalar()) {
    m->kind = Matcher::Kind::kExact;
    m->values.push_back(element);
    return absl::OkStatus();
  }
  if (element.kind == Json::Kind::kArray) {
    return PatternError(where, "a value list cannot hold another list");
  }
  if (element.keys.size() != 1) {
    return PatternError(where, absl::StrCat("an operator object has exactly one key (one of ",
                                            kOperators, "), not ", element.keys.size()));
  }
  const std::string& op = element.keys[0];
  const Json& operand = element.items[0];
  if (op == "prefix") return CompilePrefixOrSuffix(operand, true, where, m);
  if (op == "suffix") return CompilePrefixOrSuffix(operand, false, where, m);
  if (op == "equals-ignore-case") {
    m->kind = Matcher::Kind::kEqualsIgnoreCase;
    return CompileStrings(operand, where, op, &m->strings);
  }
  if (op == "anything-but") return CompileAnythingBut(operand, where, m);
  if (op == "numeric") return CompileNumeric(operand, where, m);
  if (op == "exists") {
    if (operand.kind != Json::Kind::kBool) {
      return PatternError(where,
                          absl::StrCat("exists takes true or false, not ", KindName(operand.kind)));
    }
    m->kind = Matcher::Kind::kExists;
    m->exists = operand.boolean;
    return absl::OkStatus();
  }
  return PatternError(where, absl::StrCat("unknown operator \"", op, "\"; known: ", kOperators));
}

// `top_level`: the pattern's outermost object (or an alternative of its $or), where only "data"
// may appear.
absl::Status CompileObject(const Json& json, const std::string& path, bool top_level,
                           ObjectPattern* out) {
  if (json.kind != Json::Kind::kObject) {
    return PatternError(path, top_level
                                  ? absl::StrCat("a pattern is a JSON object like "
                                                 "{\"data\": {...}}, not ",
                                                 KindName(json.kind))
                                  : absl::StrCat("expected an object, not ", KindName(json.kind)));
  }
  if (json.keys.empty()) {
    return PatternError(path, "an empty object; give at least one field to match");
  }
  for (size_t i = 0; i < json.keys.size(); ++i) {
    const std::string& key = json.keys[i];
    const Json& value = json.items[i];
    for (size_t j = 0; j < i; ++j) {
      if (json.keys[j] == key) {
        return PatternError(path, absl::StrCat("the key \"", key, "\" appears twice"));
      }
    }
    if (key == "$or") {
      if (value.kind != Json::Kind::kArray || value.items.empty()) {
        return PatternError(Join(path, key), "expected a non-empty list of patterns");
      }
      for (size_t k = 0; k < value.items.size(); ++k) {
        out->any_of.emplace_back();
        RETURN_IF_ERROR(CompileObject(value.items[k], absl::StrCat(Join(path, key), "[", k, "]"),
                                      top_level, &out->any_of.back()));
      }
      continue;
    }
    if (top_level && key != "data") {
      return PatternError(path,
                          absl::StrCat("\"", key,
                                       "\": Kinesis filters match the record's data only; write "
                                       "{\"data\": {...}}"));
    }
    std::string where = Join(path, key);
    ObjectPattern::Field& field = out->fields.emplace_back();
    field.key = key;
    if (value.kind == Json::Kind::kObject) {
      field.nested.emplace_back();
      RETURN_IF_ERROR(CompileObject(value, where, false, &field.nested.back()));
    } else if (value.kind == Json::Kind::kArray) {
      if (value.items.empty()) {
        return PatternError(where, "an empty list matches nothing; give at least one value");
      }
      for (const Json& element : value.items) {
        RETURN_IF_ERROR(CompileMatcher(element, where, &field.matchers.emplace_back()));
      }
    } else {
      return PatternError(where, absl::StrCat("expected a list of values (e.g. [\"buy\"]) or an "
                                              "object, not ",
                                              KindName(value.kind)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Filter> Filter::Compile(std::string_view pattern_json) {
  Json json;
  std::string error;
  if (!ParseJson(pattern_json, &json, &error)) return PatternError("", error);
  auto pattern = std::make_shared<filter_internal::Pattern>();
  RETURN_IF_ERROR(CompileObject(json, "", true, &pattern->root));
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  WriteJson(json, writer);
  pattern->canonical_json.assign(buffer.GetString(), buffer.GetSize());
  return Filter(std::move(pattern));
}

bool Filter::Matches(std::string_view record_data) const {
  Json root;
  return ParseRecord(record_data, &root) && MatchRoot(*pattern_, root);
}

const std::string& Filter::canonical_json() const { return pattern_->canonical_json; }

absl::StatusOr<FilterSet> FilterSet::Compile(const std::vector<std::string>& patterns) {
  FilterSet set;
  for (size_t i = 0; i < patterns.size(); ++i) {
    absl::StatusOr<Filter> filter = Filter::Compile(patterns[i]);
    if (!filter.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("filters[", i, "]: ", filter.status().message()));
    }
    set.filters_.push_back(*std::move(filter));
  }
  return set;
}

bool FilterSet::Matches(std::string_view record_data) const {
  if (filters_.empty()) return true;
  Json root;
  if (!ParseRecord(record_data, &root)) return false;
  for (const Filter& filter : filters_) {
    if (MatchRoot(*filter.pattern_, root)) return true;
  }
  return false;
}

}  // namespace runnel::poller
