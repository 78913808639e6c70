// Parses and validates the YAML that declares streams, functions and event-source mappings
// (poller/config.h). Every problem is reported as `file:line:column: what is wrong`, and all of
// them are collected (in file order) so that one run of `runnel validate` shows every mistake.
// yaml-cpp throws; every call into it stays inside ParseConfig's try block.
#include "poller/config.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/strings.h"
#include "poller/filter.h"

namespace runnel::poller {

std::string SourceLocation::ToString() const { return absl::StrCat(file, ":", line, ":", column); }

const char* StartingPositionName(StartingPosition position) {
  switch (position) {
    case StartingPosition::kLatest:
      return "LATEST";
    case StartingPosition::kAtTimestamp:
      return "AT_TIMESTAMP";
    case StartingPosition::kTrimHorizon:
      break;
  }
  return "TRIM_HORIZON";
}

namespace {

// Lambda's and Kinesis's limits, in the YAML's units (docs/aws-semantics.md#mapping-settings,
// #limits).
constexpr int kMaxShards = 1024;  // the broker's limit per stream
constexpr int kMinRetentionHours = 24;
constexpr int kMaxRetentionHours = 8760;
constexpr int kMinBatchSize = 1;
constexpr int kMaxBatchSize = 10000;
constexpr absl::Duration kMaxBatchingWindow = absl::Seconds(300);
constexpr int kMaxParallelizationFactor = 10;
constexpr int kMaxRetryAttempts = 10000;
constexpr absl::Duration kMinRecordAge = absl::Seconds(60);
constexpr absl::Duration kMaxRecordAge = absl::Seconds(604800);
constexpr size_t kMaxFilters = 5;
// A pattern written as YAML is turned into JSON by a recursive walk, and YAML aliases let a few
// lines stand for billions of nodes (each alias of an alias multiplies): both are bounded.
constexpr int kMaxPatternDepth = 64;
constexpr size_t kMaxPatternJsonBytes = 64 << 10;
constexpr size_t kMaxReportedErrors = 20;

constexpr const char* kTopLevelKeys[] = {"streams", "functions", "event_source_mappings"};
constexpr const char* kStreamKeys[] = {"name", "shards", "retention"};
constexpr const char* kFunctionKeys[] = {"name",        "plugin",    "timeout",
                                         "memory_size", "isolation", "max_concurrency",
                                         "environment", "role"};
constexpr const char* kMappingKeys[] = {"function",
                                        "stream",
                                        "enabled",
                                        "starting_position",
                                        "starting_position_timestamp",
                                        "batch_size",
                                        "maximum_batching_window",
                                        "parallelization_factor",
                                        "consumer",
                                        "bisect_batch_on_error",
                                        "retry_attempts",
                                        "max_record_age",
                                        "on_failure",
                                        "report_batch_item_failures",
                                        "filters"};

// AWS API and CloudFormation names whose snake_case differs from ours by more than spelling, so
// that a key copied from a template gets the right suggestion.
constexpr std::pair<std::string_view, std::string_view> kAwsAliases[] = {
    {"eventsourcearn", "stream"},
    {"functionname", "function"},
    {"maximumbatchingwindowinseconds", "maximum_batching_window"},
    {"maxbatchingwindow", "maximum_batching_window"},
    {"bisectbatchonfunctionerror", "bisect_batch_on_error"},
    {"maximumretryattempts", "retry_attempts"},
    {"maximumrecordageinseconds", "max_record_age"},
    {"destinationconfig", "on_failure"},
    {"functionresponsetypes", "report_batch_item_failures"},
    {"filtercriteria", "filters"},
    {"retentionperiodhours", "retention"},
    {"retentionperiod", "retention"},
    {"shardcount", "shards"},
    {"reservedconcurrentexecutions", "max_concurrency"},
    {"variables", "environment"},
    {"code", "plugin"},
    {"handler", "plugin"},
};

// Lowercase without '_' and '-', so that BatchSize, batchSize and batch-size all meet batch_size.
std::string Normalize(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c != '_' && c != '-') out += absl::ascii_tolower(static_cast<unsigned char>(c));
  }
  return out;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate closest to `key`, if close enough to be a plausible typo.
template <typename Candidates>
std::optional<std::string> ClosestMatch(std::string_view key, const Candidates& candidates) {
  std::string normalized = Normalize(key);
  for (const auto& [alias, target] : kAwsAliases) {
    if (normalized == alias) {
      for (const auto& candidate : candidates) {
        if (std::string_view(candidate) == target) return std::string(target);
      }
    }
  }
  std::optional<std::string> best;
  size_t best_distance = SIZE_MAX;
  for (const auto& candidate : candidates) {
    size_t distance = EditDistance(normalized, Normalize(candidate));
    if (distance < best_distance) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  if (best && best_distance <= std::max<size_t>(2, normalized.size() / 3)) return best;
  return std::nullopt;
}

// [a-zA-Z0-9_.-]{1,128}, as the broker accepts.
bool ValidStreamName(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

// [a-zA-Z0-9_-]{1,64}, as Lambda accepts.
bool ValidFunctionName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  }
  return true;
}

bool LooksLikeBareNumber(std::string_view text) {
  double ignored;
  return absl::SimpleAtod(Sv(text), &ignored) && !absl::StrContains(Sv(text), "inf") &&
         !absl::StrContains(Sv(text), "nan");
}

// "500ms", "5s", "1m", "48h", "7d", "1h30m", "1d12h". absl::ParseDuration knows every unit but
// days, so a leading "<N>d" is taken off first. A bare number (absl takes "0"), "inf" and a
// leading '+' are not durations here; a leading '-' is, for the range checks to refuse by name.
bool ParseDurationText(std::string_view text, absl::Duration* out) {
  std::string rest(absl::StripAsciiWhitespace(Sv(text)));
  const bool negative = !rest.empty() && rest[0] == '-';
  if (negative) rest.erase(0, 1);
  auto starts_number = [](const std::string& s) {
    return !s.empty() && (absl::ascii_isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.');
  };
  if (!starts_number(rest)) return false;
  absl::Duration total = absl::ZeroDuration();
  if (size_t d = rest.find('d'); d != std::string::npos) {
    std::string number = rest.substr(0, d);
    double count;
    if (number.find_first_not_of("0123456789.") != std::string::npos ||
        !absl::SimpleAtod(number, &count)) {
      return false;
    }
    total += absl::Hours(24) * count;
    rest.erase(0, d + 1);
    if (!rest.empty() && !starts_number(rest)) return false;
  }
  if (!rest.empty()) {
    absl::Duration parsed;
    if (LooksLikeBareNumber(rest) || !absl::ParseDuration(rest, &parsed)) return false;
    total += parsed;
  }
  *out = negative ? -total : total;
  return true;
}

// A path from the file, relative to the file's folder unless absolute; "./" and "../" folded.
std::string ResolvePath(std::string_view path, std::string_view directory) {
  return std::filesystem::path(runtime::ResolvePluginPath(path, directory))
      .lexically_normal()
      .string();
}

std::string JoinNames(const std::vector<std::string>& names) {
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

std::string OnFailureProblem(std::string_view text) {
  return absl::StrCat(": expected stream:NAME or file:PATH, got '", Sv(text), "'");
}

// True when a plain (unquoted) scalar is a JSON number as written.
bool IsJsonNumber(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i;
    return i > start;
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (i < s.size() && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == s.size();
}

}  // namespace

std::vector<MappingSpecError> ValidateMappingSpec(const MappingSpec& spec) {
  std::vector<MappingSpecError> errors;
  auto int_range = [&](const char* field, int value, int min, int max) {
    if (value < min || value > max) {
      errors.push_back({field, absl::StrCat(" must be between ", min, " and ", max)});
    }
  };
  int_range("batch_size", spec.batch_size, kMinBatchSize, kMaxBatchSize);
  if (spec.maximum_batching_window < absl::ZeroDuration() ||
      spec.maximum_batching_window > kMaxBatchingWindow) {
    errors.push_back({"maximum_batching_window", " must be between 0s and 300s (5m)"});
  }
  int_range("parallelization_factor", spec.parallelization_factor, 1, kMaxParallelizationFactor);
  int_range("retry_attempts", spec.retry_attempts, -1, kMaxRetryAttempts);
  // Lambda refuses 0-59 s too, although they are inside its "-1 to 604800" range.
  if (spec.max_record_age != absl::InfiniteDuration() &&
      (spec.max_record_age < kMinRecordAge || spec.max_record_age > kMaxRecordAge)) {
    errors.push_back({"max_record_age", " must be -1 (no limit) or between 60s and 7d (604800s)"});
  }
  if (spec.on_failure.kind == OnFailureDestination::Kind::kStream &&
      spec.on_failure.target == spec.stream) {
    errors.push_back({"on_failure",
                      ": the destination is the mapping's own stream, so failed records would be "
                      "read and fail again; use another stream",
                      false});
  }
  return errors;
}

absl::StatusOr<OnFailureDestination> ParseOnFailureDestination(std::string_view text,
                                                               std::string_view directory) {
  OnFailureDestination destination;
  if (text.empty()) return destination;  // "" means none, as AWS
  std::string target;
  if (absl::StartsWith(Sv(text), "stream:")) {
    target = std::string(text.substr(7));
    if (!ValidStreamName(target)) {
      return absl::InvalidArgumentError(absl::StrCat(
          ": '", target, "' is not a valid stream name: 1 to 128 of a-z A-Z 0-9 _ . -"));
    }
    destination.kind = OnFailureDestination::Kind::kStream;
    destination.target = target;
  } else if (absl::StartsWith(Sv(text), "file:")) {
    target = std::string(text.substr(5));
    if (target.empty()) return absl::InvalidArgumentError(": file: needs a path");
    destination.kind = OnFailureDestination::Kind::kFile;
    destination.target = ResolvePath(target, directory);
  } else {
    return absl::InvalidArgumentError(OnFailureProblem(text));
  }
  return destination;
}

std::string OnFailureDestinationText(const OnFailureDestination& destination) {
  switch (destination.kind) {
    case OnFailureDestination::Kind::kStream:
      return "stream:" + destination.target;
    case OnFailureDestination::Kind::kFile:
      return "file:" + destination.target;
    default:
      return "";
  }
}

bool ParseConfigDuration(std::string_view text, absl::Duration* out) {
  return ParseDurationText(text, out);
}

std::string FormatSeconds(absl::Duration duration) {
  if (duration == absl::InfiniteDuration()) return "-1";
  if (duration % absl::Seconds(1) == absl::ZeroDuration()) {
    return absl::StrCat(absl::ToInt64Seconds(duration), "s");
  }
  if (duration % absl::Milliseconds(1) == absl::ZeroDuration()) {
    return absl::StrCat(absl::ToInt64Milliseconds(duration), "ms");
  }
  return absl::FormatDuration(duration);
}

namespace {

class ConfigParser {
 public:
  ConfigParser(std::string path, std::string directory) {
    config_.path = std::move(path);
    config_.directory = std::move(directory);
  }

  absl::StatusOr<Config> Parse(std::string_view yaml);

 private:
  struct Error {
    int line;
    int column;
    std::string message;
  };
  // One `key: value` of a mapping.
  struct Field {
    YAML::Node key;
    YAML::Node value;
  };
  // A mapping of the file (the top level or a list entry) with its keys checked.
  struct Entry {
    YAML::Node node;
    std::string context;  // "event_source_mappings[2]", for messages
    std::map<std::string, Field, std::less<>> fields;
    const Field* Find(std::string_view key) const {
      auto it = fields.find(key);
      return it == fields.end() ? nullptr : &it->second;
    }
  };

  SourceLocation Where(const YAML::Mark& mark) const {
    return SourceLocation{config_.path, mark.is_null() ? 1 : mark.line + 1,
                          mark.is_null() ? 1 : mark.column + 1};
  }
  void AddError(const YAML::Mark& mark, std::string message) {
    AddError(Where(mark), std::move(message));
  }
  void AddError(const SourceLocation& where, std::string message) {
    errors_.push_back(Error{where.line, where.column, std::move(message)});
  }
  // Null values (`key:` with nothing after it) carry the mark of whatever follows, so problems
  // with them are reported at the key.
  static YAML::Mark ValueMark(const Field& field) {
    return field.value.IsNull() ? field.key.Mark() : field.value.Mark();
  }
  static std::string Describe(const YAML::Node& node) {
    switch (node.Type()) {
      case YAML::NodeType::Map:
        return "a mapping";
      case YAML::NodeType::Sequence:
        return "a list";
      case YAML::NodeType::Scalar:
        return absl::StrCat("'", node.Scalar(), "'");
      default:
        return "nothing";
    }
  }
  static std::string Name(const Entry& entry, std::string_view key) {
    return absl::StrCat(entry.context, ".", Sv(key));
  }

  template <typename Keys>
  bool ReadEntry(const YAML::Node& node, std::string context, const Keys& keys, Entry* entry);
  template <typename Keys>
  bool Require(const Entry& entry, const Keys& keys);

  // Each returns false (after recording an error) when the field is present but wrong, and
  // leaves *out alone when the field is absent.
  bool GetString(const Entry& entry, std::string_view key, std::string* out);
  bool GetInt(const Entry& entry, std::string_view key, int64_t min, int64_t max, int* out);
  // An integer whose limits ValidateMappingSpec checks: one too large for an int is kept as the
  // nearest int, which is out of every such range.
  bool GetUncheckedInt(const Entry& entry, std::string_view key, int* out) {
    int64_t value = 0;
    int ignored;
    const Field* field = entry.Find(key);
    if (field == nullptr) return true;
    if (!field->value.IsScalar() || !absl::SimpleAtoi(field->value.Scalar(), &value)) {
      return GetInt(entry, key, INT64_MIN, INT64_MAX, &ignored);  // reports the type error
    }
    *out = static_cast<int>(std::clamp<int64_t>(value, INT32_MIN, INT32_MAX));
    return true;
  }
  bool GetBool(const Entry& entry, std::string_view key, bool* out);
  // `unit_hint` suggests a unit for a bare number ("write 5s").
  std::optional<absl::Duration> GetDuration(const Entry& entry, std::string_view key,
                                            std::string_view unit_hint);
  // `range` shows the bounds in messages ("0s and 300s (5m)").
  bool GetDurationInRange(const Entry& entry, std::string_view key, absl::Duration min,
                          absl::Duration max, std::string_view range, std::string_view unit_hint,
                          absl::Duration* out);

  std::vector<YAML::Node> GetList(const YAML::Node& top, std::string_view key);
  void ParseStream(const YAML::Node& node, size_t index);
  void ParseFunction(const YAML::Node& node, size_t index);
  void ParseMapping(const YAML::Node& node, size_t index);
  void ParseMemorySize(const Entry& entry, int* out);
  void ParseEnvironment(const Entry& entry, std::map<std::string, std::string>* out);
  void ParseOnFailure(const Entry& entry, MappingSpec* mapping);
  void ParseFilters(const Entry& entry, MappingSpec* mapping);
  // Writes a filter pattern given as YAML as JSON; false (with an error at the node) past
  // kMaxPatternDepth levels or kMaxPatternJsonBytes of JSON.
  bool YamlToJson(const YAML::Node& node, const rapidjson::StringBuffer& buffer,
                  rapidjson::Writer<rapidjson::StringBuffer>& writer, int depth = 1);
  void CheckReferences();

  absl::Status ErrorsToStatus();

  Config config_;
  std::vector<Error> errors_;
  // Where each mapping's stream and function values are, for the cross-reference checks.
  std::vector<std::pair<YAML::Mark, YAML::Mark>> mapping_marks_;
};

template <typename Keys>
bool ConfigParser::ReadEntry(const YAML::Node& node, std::string context, const Keys& keys,
                             Entry* entry) {
  entry->node = node;
  entry->context = std::move(context);
  if (!node.IsMap()) {
    AddError(node.Mark(), absl::StrCat(entry->context, ": expected a mapping of keys (",
                                       absl::StrJoin(keys, ", "), "), got ", Describe(node)));
    return false;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    YAML::Node key = it->first;  // a copy: `it->` yields a temporary
    if (!key.IsScalar()) {
      AddError(key.Mark(), absl::StrCat("a key in ", entry->context, " must be a plain name, got ",
                                        Describe(key)));
      continue;
    }
    const std::string& name = key.Scalar();
    if (auto seen = entry->fields.find(name); seen != entry->fields.end()) {
      AddError(key.Mark(), absl::StrCat("duplicate key '", name, "' in ", entry->context,
                                        " (first at line ", seen->second.key.Mark().line + 1, ")"));
      continue;
    }
    if (std::find(std::begin(keys), std::end(keys), name) == std::end(keys)) {
      std::optional<std::string> closest = ClosestMatch(name, keys);
      AddError(key.Mark(), closest ? absl::StrCat("unknown key '", name, "' in ", entry->context,
                                                  "; did you mean '", *closest, "'?")
                                   : absl::StrCat("unknown key '", name, "' in ", entry->context,
                                                  "; valid keys: ", absl::StrJoin(keys, ", ")));
      continue;
    }
    entry->fields.emplace(name, Field{key, it->second});
  }
  return true;
}

template <typename Keys>
bool ConfigParser::Require(const Entry& entry, const Keys& keys) {
  bool ok = true;
  for (std::string_view key : keys) {
    if (entry.Find(key) == nullptr) {
      AddError(entry.node.Mark(),
               absl::StrCat(entry.context, ": missing required key '", Sv(key), "'"));
      ok = false;
    }
  }
  return ok;
}

bool ConfigParser::GetString(const Entry& entry, std::string_view key, std::string* out) {
  const Field* field = entry.Find(key);
  if (field == nullptr) return true;
  if (!field->value.IsScalar()) {
    AddError(ValueMark(*field),
             absl::StrCat(Name(entry, key), ": expected a string, got ", Describe(field->value)));
    return false;
  }
  *out = field->value.Scalar();
  return true;
}

bool ConfigParser::GetInt(const Entry& entry, std::string_view key, int64_t min, int64_t max,
                          int* out) {
  const Field* field = entry.Find(key);
  if (field == nullptr) return true;
  int64_t value;
  if (!field->value.IsScalar() || !absl::SimpleAtoi(field->value.Scalar(), &value)) {
    AddError(ValueMark(*field),
             absl::StrCat(Name(entry, key), ": expected an integer, got ", Describe(field->value)));
    return false;
  }
  if (value < min || value > max) {
    AddError(ValueMark(*field),
             max == INT32_MAX && value < min
                 ? absl::StrCat(Name(entry, key), " must be ", min, " or more, got ", value)
                 : absl::StrCat(Name(entry, key), " must be between ", min, " and ", max, ", got ",
                                value));
    return false;
  }
  *out = static_cast<int>(value);
  return true;
}

bool ConfigParser::GetBool(const Entry& entry, std::string_view key, bool* out) {
  const Field* field = entry.Find(key);
  if (field == nullptr) return true;
  bool value;
  if (!field->value.IsScalar() || !YAML::convert<bool>::decode(field->value, value)) {
    AddError(ValueMark(*field), absl::StrCat(Name(entry, key), ": expected true or false, got ",
                                             Describe(field->value)));
    return false;
  }
  *out = value;
  return true;
}

std::optional<absl::Duration> ConfigParser::GetDuration(const Entry& entry, std::string_view key,
                                                        std::string_view unit_hint) {
  const Field* field = entry.Find(key);
  if (field == nullptr) return std::nullopt;
  absl::Duration value;
  if (field->value.IsScalar() && ParseDurationText(field->value.Scalar(), &value)) return value;
  std::string message =
      absl::StrCat(Name(entry, key), ": expected a duration like 500ms, 5s, 1m, 48h or 7d, got ",
                   Describe(field->value));
  if (field->value.IsScalar() && LooksLikeBareNumber(field->value.Scalar())) {
    absl::StrAppend(&message, " (a number needs a unit: write ", field->value.Scalar(),
                    Sv(unit_hint), ")");
  }
  AddError(ValueMark(*field), std::move(message));
  return std::nullopt;
}

bool ConfigParser::GetDurationInRange(const Entry& entry, std::string_view key, absl::Duration min,
                                      absl::Duration max, std::string_view range,
                                      std::string_view unit_hint, absl::Duration* out) {
  const Field* field = entry.Find(key);
  if (field == nullptr) return true;
  std::optional<absl::Duration> value = GetDuration(entry, key, unit_hint);
  if (!value) return false;
  if (*value < min || *value > max) {
    AddError(ValueMark(*field), absl::StrCat(Name(entry, key), " must be between ", Sv(range),
                                             ", got ", field->value.Scalar()));
    return false;
  }
  *out = *value;
  return true;
}

std::vector<YAML::Node> ConfigParser::GetList(const YAML::Node& top, std::string_view key) {
  std::vector<YAML::Node> items;
  for (auto it = top.begin(); it != top.end(); ++it) {
    if (!it->first.IsScalar() || it->first.Scalar() != key) continue;
    YAML::Node value = it->second;
    if (value.IsNull()) return items;  // `streams:` with nothing under it
    if (!value.IsSequence()) {
      AddError(value.Mark(), absl::StrCat(Sv(key),
                                          ": expected a list (entries starting with "
                                          "'- '), got ",
                                          Describe(value)));
      return items;
    }
    for (auto item = value.begin(); item != value.end(); ++item) items.push_back(*item);
    return items;
  }
  return items;
}

void ConfigParser::ParseStream(const YAML::Node& node, size_t index) {
  Entry entry;
  if (!ReadEntry(node, absl::StrCat("streams[", index, "]"), kStreamKeys, &entry)) return;
  Require(entry, std::array<std::string_view, 1>{"name"});
  StreamSpec stream;
  stream.where = Where(node.Mark());
  if (GetString(entry, "name", &stream.name) && entry.Find("name") != nullptr &&
      !ValidStreamName(stream.name)) {
    AddError(ValueMark(*entry.Find("name")),
             absl::StrCat("streams[", index, "].name '", stream.name,
                          "' is not a valid stream name: 1 to 128 of a-z A-Z 0-9 _ . -"));
  }
  GetInt(entry, "shards", 1, kMaxShards, &stream.shards);
  absl::Duration retention = absl::Hours(stream.retention_hours);
  if (GetDurationInRange(entry, "retention", absl::Hours(kMinRetentionHours),
                         absl::Hours(kMaxRetentionHours), "24h and 8760h (365d)", "h",
                         &retention)) {
    if (retention % absl::Hours(1) != absl::ZeroDuration()) {
      const Field* field = entry.Find("retention");
      AddError(ValueMark(*field),
               absl::StrCat(Name(entry, "retention"), " must be whole hours (as Kinesis), got ",
                            field->value.Scalar()));
    } else {
      stream.retention_hours = static_cast<int>(absl::ToInt64Hours(retention));
      stream.retention_declared = entry.Find("retention") != nullptr;
    }
  }
  if (const Field* name = entry.Find("name"); name != nullptr && !stream.name.empty()) {
    for (const StreamSpec& other : config_.streams) {
      if (other.name == stream.name) {
        AddError(ValueMark(*name),
                 absl::StrCat("stream '", stream.name, "' is already declared at line ",
                              other.where.line));
        return;
      }
    }
  }
  config_.streams.push_back(std::move(stream));
}

void ConfigParser::ParseMemorySize(const Entry& entry, int* out) {
  const Field* field = entry.Find("memory_size");
  if (field == nullptr) return;
  // An integer is megabytes; a string may say so ("512MB", "512 MiB") or use gigabytes ("1GB").
  double megabytes = -1;
  if (field->value.IsScalar()) {
    std::string text(absl::StripAsciiWhitespace(field->value.Scalar()));
    std::string lower = absl::AsciiStrToLower(text);
    double factor = 1;
    for (auto [suffix, f] :
         {std::pair<std::string_view, double>{"mib", 1}, {"mb", 1}, {"gib", 1024}, {"gb", 1024}}) {
      if (absl::EndsWith(lower, Sv(suffix))) {
        text = std::string(
            absl::StripTrailingAsciiWhitespace(text.substr(0, text.size() - suffix.size())));
        factor = f;
        break;
      }
    }
    double number;
    if (!text.empty() && text.find_first_not_of("0123456789.") == std::string::npos &&
        absl::SimpleAtod(text, &number)) {
      megabytes = number * factor;
    }
  }
  if (megabytes < 0 || megabytes != std::floor(megabytes)) {
    AddError(ValueMark(*field),
             absl::StrCat(Name(entry, "memory_size"),
                          ": expected megabytes as an integer (512) or a size like 512MB or 1GB, "
                          "got ",
                          Describe(field->value)));
    return;
  }
  if (megabytes < runtime::kMinMemorySizeMb || megabytes > runtime::kMaxMemorySizeMb) {
    AddError(
        ValueMark(*field),
        absl::StrCat(Name(entry, "memory_size"), " must be between ", runtime::kMinMemorySizeMb,
                     " and ", runtime::kMaxMemorySizeMb, " (MB), got ", field->value.Scalar()));
    return;
  }
  *out = static_cast<int>(megabytes);
}

void ConfigParser::ParseEnvironment(const Entry& entry, std::map<std::string, std::string>* out) {
  const Field* field = entry.Find("environment");
  if (field == nullptr || field->value.IsNull()) return;
  if (!field->value.IsMap()) {
    AddError(ValueMark(*field),
             absl::StrCat(Name(entry, "environment"), ": expected a mapping of NAME: value, got ",
                          Describe(field->value)));
    return;
  }
  for (auto it = field->value.begin(); it != field->value.end(); ++it) {
    YAML::Node key = it->first;
    YAML::Node value = it->second;
    if (!key.IsScalar() || key.Scalar().empty() || absl::StrContains(key.Scalar(), "=")) {
      AddError(key.Mark(), absl::StrCat(Name(entry, "environment"),
                                        ": a variable name must be a non-empty string without "
                                        "'=', got ",
                                        Describe(key)));
      continue;
    }
    if (out->count(key.Scalar()) != 0) {
      AddError(key.Mark(),
               absl::StrCat("duplicate key '", key.Scalar(), "' in ", Name(entry, "environment")));
      continue;
    }
    if (value.IsNull()) {
      (*out)[key.Scalar()] = "";  // `NAME:` with nothing: the empty string
    } else if (value.IsScalar()) {
      (*out)[key.Scalar()] = value.Scalar();  // numbers and booleans as written
    } else {
      AddError(value.Mark(),
               absl::StrCat(Name(entry, "environment"), ".", key.Scalar(),
                            ": expected a string, number or boolean, got ", Describe(value)));
    }
  }
}

void ConfigParser::ParseFunction(const YAML::Node& node, size_t index) {
  Entry entry;
  if (!ReadEntry(node, absl::StrCat("functions[", index, "]"), kFunctionKeys, &entry)) return;
  size_t errors_before = errors_.size();
  Require(entry, std::array<std::string_view, 2>{"name", "plugin"});
  FunctionSpec function;
  runtime::FunctionConfig& config = function.config;
  function.where = Where(node.Mark());
  if (GetString(entry, "name", &config.name) && entry.Find("name") != nullptr &&
      !ValidFunctionName(config.name)) {
    AddError(ValueMark(*entry.Find("name")),
             absl::StrCat(Name(entry, "name"), " '", config.name,
                          "' is not a valid function name: 1 to 64 of a-z A-Z 0-9 _ -"));
  }
  function.plugin_where =
      entry.Find("plugin") != nullptr ? Where(entry.Find("plugin")->key.Mark()) : function.where;
  if (GetString(entry, "plugin", &config.plugin) && entry.Find("plugin") != nullptr) {
    if (config.plugin.empty()) {
      AddError(ValueMark(*entry.Find("plugin")),
               absl::StrCat(Name(entry, "plugin"), " must not be empty"));
    } else if (absl::StrContains(config.plugin, "/")) {
      // A path is taken relative to this file's folder; a bare name (order_processor,
      // liborder_processor.so) is left for the poller's search of its plugin folders.
      config.plugin_path = ResolvePath(config.plugin, config_.directory);
    }
  }
  if (std::optional<absl::Duration> timeout = GetDuration(entry, "timeout", "s")) {
    if (*timeout <= absl::ZeroDuration() || *timeout > runtime::kMaxTimeout) {
      AddError(
          ValueMark(*entry.Find("timeout")),
          absl::StrCat(Name(entry, "timeout"), " must be more than 0s and at most 15m (900s), got ",
                       entry.Find("timeout")->value.Scalar()));
    } else {
      config.timeout = *timeout;
    }
  }
  ParseMemorySize(entry, &config.memory_size_mb);
  std::string isolation;
  if (GetString(entry, "isolation", &isolation) && entry.Find("isolation") != nullptr) {
    absl::StatusOr<runtime::Isolation> parsed = runtime::ParseIsolation(isolation);
    if (parsed.ok()) {
      config.isolation = *parsed;
    } else {
      AddError(ValueMark(*entry.Find("isolation")),
               absl::StrCat(Name(entry, "isolation"), " must be process or in_process, got '",
                            isolation, "'"));
    }
  }
  GetInt(entry, "max_concurrency", 0, INT32_MAX, &config.max_concurrency);
  ParseEnvironment(entry, &config.environment);
  GetString(entry, "role", &config.role);
  if (errors_.size() == errors_before) {
    // The runtime's own check, so that the file and Function::Load never disagree.
    if (absl::Status valid = runtime::ValidateFunctionConfig(config); !valid.ok()) {
      AddError(node.Mark(), std::string(valid.message()));
    }
  }
  if (const Field* name = entry.Find("name"); name != nullptr && !config.name.empty()) {
    for (const FunctionSpec& other : config_.functions) {
      if (other.config.name == config.name) {
        AddError(ValueMark(*name),
                 absl::StrCat("function '", config.name, "' is already declared at line ",
                              other.where.line));
        return;
      }
    }
  }
  config_.functions.push_back(std::move(function));
}

void ConfigParser::ParseOnFailure(const Entry& entry, MappingSpec* mapping) {
  const Field* field = entry.Find("on_failure");
  if (field == nullptr || field->value.IsNull()) return;
  std::string text;
  if (!GetString(entry, "on_failure", &text)) return;
  absl::StatusOr<OnFailureDestination> destination =
      ParseOnFailureDestination(text, config_.directory);
  if (!destination.ok()) {
    AddError(ValueMark(*field),
             absl::StrCat(Name(entry, "on_failure"), destination.status().message()));
    return;
  }
  mapping->on_failure = std::move(*destination);
}

bool ConfigParser::YamlToJson(const YAML::Node& node, const rapidjson::StringBuffer& buffer,
                              rapidjson::Writer<rapidjson::StringBuffer>& writer, int depth) {
  if ((node.IsMap() || node.IsSequence()) && depth > kMaxPatternDepth) {
    AddError(node.Mark(),
             absl::StrCat("a filter pattern nested deeper than ", kMaxPatternDepth, " levels"));
    return false;
  }
  if (buffer.GetSize() > kMaxPatternJsonBytes) {
    AddError(node.Mark(), absl::StrCat("a filter pattern longer than ", kMaxPatternJsonBytes,
                                       " bytes as JSON (YAML aliases are expanded)"));
    return false;
  }
  switch (node.Type()) {
    case YAML::NodeType::Map:
      writer.StartObject();
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (!it->first.IsScalar()) {
          AddError(it->first.Mark(), absl::StrCat("a filter pattern's keys must be strings, got ",
                                                  Describe(it->first)));
          return false;
        }
        std::string key = it->first.Scalar();
        writer.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
        if (!YamlToJson(it->second, buffer, writer, depth + 1)) return false;
      }
      writer.EndObject();
      return true;
    case YAML::NodeType::Sequence:
      writer.StartArray();
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (!YamlToJson(*it, buffer, writer, depth + 1)) return false;
      }
      writer.EndArray();
      return true;
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      // Quoted scalars and !!str are strings; plain ones are resolved as YAML's core schema
      // does, numbers kept exactly as written (filters compare numbers by their written form).
      if (node.Tag() == "?") {
        if (text == "~" || text == "null" || text == "Null" || text == "NULL") {
          writer.Null();
          return true;
        }
        if (text == "true" || text == "True" || text == "TRUE") {
          writer.Bool(true);
          return true;
        }
        if (text == "false" || text == "False" || text == "FALSE") {
          writer.Bool(false);
          return true;
        }
        if (IsJsonNumber(text)) {
          writer.RawValue(text.data(), text.size(), rapidjson::kNumberType);
          return true;
        }
      }
      writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
      return true;
    }
    default:
      writer.Null();
      return true;
  }
}

void ConfigParser::ParseFilters(const Entry& entry, MappingSpec* mapping) {
  const Field* field = entry.Find("filters");
  if (field == nullptr || field->value.IsNull()) return;
  if (!field->value.IsSequence()) {
    AddError(ValueMark(*field),
             absl::StrCat(Name(entry, "filters"), ": expected a list of patterns, got ",
                          Describe(field->value)));
    return;
  }
  size_t index = 0;
  for (auto it = field->value.begin(); it != field->value.end(); ++it, ++index) {
    const YAML::Node& item = *it;
    std::string context = absl::StrCat(Name(entry, "filters"), "[", index, "]");
    if (index == kMaxFilters) {
      AddError(item.Mark(), absl::StrCat(Name(entry, "filters"), ": at most ", kMaxFilters,
                                         " filters per mapping (Lambda's limit)"));
      return;
    }
    std::string json;
    if (item.IsMap()) {
      rapidjson::StringBuffer buffer;
      rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
      if (!YamlToJson(item, buffer, writer)) continue;
      json.assign(buffer.GetString(), buffer.GetSize());
    } else if (item.IsScalar()) {
      json = item.Scalar();
    } else {
      AddError(item.Mark(), absl::StrCat(context,
                                         ": expected a pattern (a mapping, or a string of JSON), "
                                         "got ",
                                         Describe(item)));
      continue;
    }
    absl::StatusOr<Filter> filter = Filter::Compile(json);
    if (!filter.ok()) {
      AddError(item.Mark(), absl::StrCat(context, ": ", filter.status().message()));
      continue;
    }
    mapping->filters.push_back(FilterSpec{filter->canonical_json(), Where(item.Mark())});
  }
}

void ConfigParser::ParseMapping(const YAML::Node& node, size_t index) {
  Entry entry;
  std::string context = absl::StrCat("event_source_mappings[", index, "]");
  if (!ReadEntry(node, context, kMappingKeys, &entry)) return;
  Require(entry, std::array<std::string_view, 2>{"function", "stream"});
  MappingSpec mapping;
  mapping.where = Where(node.Mark());
  GetString(entry, "function", &mapping.function);
  GetString(entry, "stream", &mapping.stream);
  GetBool(entry, "enabled", &mapping.enabled);

  std::string position;
  if (GetString(entry, "starting_position", &position) &&
      entry.Find("starting_position") != nullptr) {
    if (position == "TRIM_HORIZON") {
      mapping.starting_position = StartingPosition::kTrimHorizon;
    } else if (position == "LATEST") {
      mapping.starting_position = StartingPosition::kLatest;
    } else if (position == "AT_TIMESTAMP") {
      mapping.starting_position = StartingPosition::kAtTimestamp;
    } else {
      AddError(ValueMark(*entry.Find("starting_position")),
               absl::StrCat(Name(entry, "starting_position"),
                            " must be TRIM_HORIZON, LATEST or AT_TIMESTAMP, got '", position, "'"));
      position.clear();
    }
  }
  if (const Field* field = entry.Find("starting_position_timestamp"); field != nullptr) {
    std::string text;
    if (GetString(entry, "starting_position_timestamp", &text)) {
      absl::Time time;
      std::string ignored;
      double seconds;
      if (absl::ParseTime(absl::RFC3339_full, text, &time, &ignored)) {
        mapping.starting_position_timestamp = time;
      } else if (text.find_first_not_of("0123456789.") == std::string::npos &&
                 absl::SimpleAtod(text, &seconds)) {
        mapping.starting_position_timestamp =
            absl::UnixEpoch() + absl::Microseconds(std::llround(seconds * 1e6));
      } else {
        AddError(ValueMark(*field),
                 absl::StrCat(Name(entry, "starting_position_timestamp"),
                              ": expected an RFC 3339 time (2024-06-10T12:00:00Z) or epoch "
                              "seconds, got ",
                              Describe(field->value)));
      }
    }
    // (An invalid starting_position has its own error already.)
    if (!position.empty() && mapping.starting_position != StartingPosition::kAtTimestamp) {
      AddError(field->key.Mark(),
               absl::StrCat(Name(entry, "starting_position_timestamp"),
                            " is only used with starting_position: AT_TIMESTAMP"));
    } else if (entry.Find("starting_position") == nullptr) {
      AddError(field->key.Mark(),
               absl::StrCat(Name(entry, "starting_position_timestamp"),
                            " is only used with starting_position: AT_TIMESTAMP (the default is "
                            "TRIM_HORIZON)"));
    }
  } else if (mapping.starting_position == StartingPosition::kAtTimestamp) {
    AddError(ValueMark(*entry.Find("starting_position")),
             absl::StrCat(Name(entry, "starting_position"),
                          " AT_TIMESTAMP needs starting_position_timestamp"));
  }

  // Types here; limits in ValidateMappingSpec below (shared with live updates).
  GetUncheckedInt(entry, "batch_size", &mapping.batch_size);
  if (auto window = GetDuration(entry, "maximum_batching_window", "s")) {
    mapping.maximum_batching_window = *window;
  }
  GetUncheckedInt(entry, "parallelization_factor", &mapping.parallelization_factor);
  std::string consumer;
  if (GetString(entry, "consumer", &consumer) && entry.Find("consumer") != nullptr) {
    if (consumer == "polling") {
      mapping.consumer = ConsumerType::kPolling;
    } else if (consumer == "fan_out") {
      mapping.consumer = ConsumerType::kFanOut;
    } else {
      AddError(ValueMark(*entry.Find("consumer")),
               absl::StrCat(Name(entry, "consumer"), " must be polling or fan_out, got '", consumer,
                            "'"));
    }
  }
  GetBool(entry, "bisect_batch_on_error", &mapping.bisect_batch_on_error);
  GetUncheckedInt(entry, "retry_attempts", &mapping.retry_attempts);
  if (const Field* field = entry.Find("max_record_age"); field != nullptr) {
    int64_t number;
    if (field->value.IsScalar() && absl::SimpleAtoi(field->value.Scalar(), &number) &&
        number == -1) {
      mapping.max_record_age = absl::InfiniteDuration();
    } else if (std::optional<absl::Duration> age = GetDuration(entry, "max_record_age", "s")) {
      mapping.max_record_age = *age;
    }
  }
  ParseOnFailure(entry, &mapping);
  GetBool(entry, "report_batch_item_failures", &mapping.report_batch_item_failures);
  ParseFilters(entry, &mapping);
  for (const MappingSpecError& error : ValidateMappingSpec(mapping)) {
    const Field* field = entry.Find(error.field);
    if (field == nullptr) continue;  // a default value breaks no rule
    AddError(ValueMark(*field),
             absl::StrCat(Name(entry, error.field), error.problem,
                          error.limit ? absl::StrCat(", got ", field->value.Scalar()) : ""));
  }

  const Field* function = entry.Find("function");
  const Field* stream = entry.Find("stream");
  mapping_marks_.emplace_back(function != nullptr ? ValueMark(*function) : node.Mark(),
                              stream != nullptr ? ValueMark(*stream) : node.Mark());
  config_.mappings.push_back(std::move(mapping));
}

void ConfigParser::CheckReferences() {
  std::vector<std::string> streams, functions;
  for (const StreamSpec& s : config_.streams) streams.push_back(s.name);
  for (const FunctionSpec& f : config_.functions) functions.push_back(f.config.name);
  for (size_t i = 0; i < config_.mappings.size(); ++i) {
    const MappingSpec& mapping = config_.mappings[i];
    const auto& [function_mark, stream_mark] = mapping_marks_[i];
    std::string context = absl::StrCat("event_source_mappings[", i, "]");
    if (!mapping.function.empty() &&
        std::find(functions.begin(), functions.end(), mapping.function) == functions.end()) {
      std::optional<std::string> closest = ClosestMatch(mapping.function, functions);
      AddError(function_mark,
               absl::StrCat(context, ": function '", mapping.function,
                            "' is not declared under functions",
                            closest ? absl::StrCat("; did you mean '", *closest, "'?")
                                    : absl::StrCat(" (declared: ", JoinNames(functions), ")")));
    }
    // `runnel up` creates the declared streams, and `runnel poller` checks that they exist, so a
    // mapping must name one the file declares.
    if (!mapping.stream.empty() &&
        std::find(streams.begin(), streams.end(), mapping.stream) == streams.end()) {
      std::optional<std::string> closest = ClosestMatch(mapping.stream, streams);
      AddError(
          stream_mark,
          absl::StrCat(context, ": stream '", mapping.stream, "' is not declared under streams",
                       closest ? absl::StrCat("; did you mean '", *closest, "'?")
                               : absl::StrCat(" (declared: ", JoinNames(streams), ")")));
    }
    for (size_t j = 0; j < i; ++j) {
      const MappingSpec& earlier = config_.mappings[j];
      if (!mapping.stream.empty() && !mapping.function.empty() &&
          earlier.stream == mapping.stream && earlier.function == mapping.function) {
        AddError(mapping.where,
                 absl::StrCat(context, ": ResourceConflictException: The event source arn (stream ",
                              mapping.stream, ") and function (", mapping.function,
                              ") provided mapping already exists (event_source_mappings[", j,
                              "] at line ", earlier.where.line,
                              "); a stream and a function have at most one mapping, as on AWS"));
        break;
      }
    }
  }
}

absl::Status ConfigParser::ErrorsToStatus() {
  std::stable_sort(errors_.begin(), errors_.end(), [](const Error& a, const Error& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  std::vector<std::string> lines;
  for (size_t i = 0; i < errors_.size() && i < kMaxReportedErrors; ++i) {
    lines.push_back(absl::StrCat(config_.path, ":", errors_[i].line, ":", errors_[i].column, ": ",
                                 errors_[i].message));
  }
  if (errors_.size() > kMaxReportedErrors) {
    lines.push_back(absl::StrCat("... and ", errors_.size() - kMaxReportedErrors, " more errors"));
  }
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

absl::StatusOr<Config> ConfigParser::Parse(std::string_view yaml) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's parser recurses per level and stops itself at 2000 ("bad file").
    AddError(e.mark, "YAML nested too deeply (yaml-cpp stops at 2000 levels)");
    return ErrorsToStatus();
  } catch (const YAML::Exception& e) {
    AddError(e.mark, absl::StrCat("YAML syntax error: ", e.msg));
    return ErrorsToStatus();
  }
  if (documents.size() > 1) {
    AddError(documents[1].Mark(), "a second YAML document ('---'): put everything in one document");
    return ErrorsToStatus();
  }
  if (documents.empty() || documents[0].IsNull()) return std::move(config_);  // an empty file
  const YAML::Node& top = documents[0];
  if (!top.IsMap()) {
    AddError(top.Mark(), absl::StrCat("expected a mapping with streams, functions and "
                                      "event_source_mappings, got ",
                                      Describe(top)));
    return ErrorsToStatus();
  }
  Entry top_entry;
  ReadEntry(top, "the file", kTopLevelKeys, &top_entry);
  std::vector<YAML::Node> streams = GetList(top, "streams");
  for (size_t i = 0; i < streams.size(); ++i) ParseStream(streams[i], i);
  std::vector<YAML::Node> functions = GetList(top, "functions");
  for (size_t i = 0; i < functions.size(); ++i) ParseFunction(functions[i], i);
  std::vector<YAML::Node> mappings = GetList(top, "event_source_mappings");
  for (size_t i = 0; i < mappings.size(); ++i) ParseMapping(mappings[i], i);
  CheckReferences();
  if (!errors_.empty()) return ErrorsToStatus();
  return std::move(config_);
}

std::string FolderOf(const std::string& path) {
  std::error_code error;
  std::filesystem::path absolute = std::filesystem::absolute(path, error);
  if (error) absolute = path;
  return absolute.lexically_normal().parent_path().string();
}

}  // namespace

absl::StatusOr<Config> ParseConfig(std::string_view yaml, const std::string& path) {
  ConfigParser parser(path, FolderOf(path));
  try {
    return parser.Parse(yaml);
  } catch (const YAML::Exception& e) {
    // Not expected (the parser uses only non-throwing accessors), but no exception may escape.
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(path, ": ", e.what()));
  }
}

absl::StatusOr<Config> LoadConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return ParseConfig(*text, path);
}

}  // namespace runnel::poller
