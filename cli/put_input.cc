#include "cli/put_input.h"

#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"

namespace runnel::cli {
namespace {

absl::Status LineError(std::string_view where, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(where), ": ", Sv(what)));
}

const char* JsonTypeName(const rapidjson::Value& value) {
  if (value.IsNull()) return "null";
  if (value.IsBool()) return "a boolean";
  if (value.IsObject()) return "an object";
  if (value.IsArray()) return "an array";
  return "a value";
}

// The partition key of a JSON object line: its top-level field `field`, a string or a number
// (as written, so 42 keys as "42").
absl::StatusOr<std::string> KeyFromJsonField(const std::string& line, const std::string& field,
                                             std::string_view where) {
  rapidjson::Document document;
  // Iterative: nesting depth cannot overflow the stack, whatever the line holds. Numbers are
  // kept as written, so a numeric key is the text the producer wrote.
  document.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag>(
      line.data(), line.size());
  if (document.HasParseError()) {
    return LineError(where, absl::StrCat("not JSON (--key-field ", field,
                                         " needs a JSON object "
                                         "per line): ",
                                         rapidjson::GetParseError_En(document.GetParseError()),
                                         " at byte ", document.GetErrorOffset() + 1));
  }
  if (!document.IsObject()) {
    return LineError(
        where, absl::StrCat("not a JSON object (--key-field ", field, " needs one per line)"));
  }
  auto member = document.FindMember(
      rapidjson::Value(field.data(), static_cast<rapidjson::SizeType>(field.size())));
  if (member == document.MemberEnd()) {
    return LineError(where, absl::StrCat("no field \"", field, "\" for the partition key"));
  }
  if (!member->value.IsString()) {
    return LineError(where, absl::StrCat("field \"", field, "\" is ", JsonTypeName(member->value),
                                         ", not a string or number to use as partition key"));
  }
  return std::string(member->value.GetString(), member->value.GetStringLength());
}

}  // namespace

int Utf8Characters(std::string_view text) {
  int count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;
  return count;
}

absl::StatusOr<PutRecordInput> ParsePutLine(std::string line, const PutInputOptions& options,
                                            std::string where) {
  PutRecordInput record;
  switch (options.key_source) {
    case KeySource::kFixed:
      record.partition_key = options.fixed_key;
      record.data = std::move(line);
      break;
    case KeySource::kTabSeparated: {
      if (line.empty() && !options.allow_empty) break;  // reported as an empty record below
      const size_t tab = line.find('\t');
      if (tab == std::string::npos) {
        return LineError(where, "no tab: --keyed lines are KEY<TAB>DATA");
      }
      record.partition_key = line.substr(0, tab);
      record.data = line.substr(tab + 1);
      break;
    }
    case KeySource::kJsonField:
      if (line.empty()) break;  // reported as an empty record below
      // Check the size before parsing: a line over the limit is refused whatever its key.
      if (line.size() <= kMaxRecordBytes) {
        auto key = KeyFromJsonField(line, options.key_field, where);
        if (!key.ok()) return key.status();
        record.partition_key = std::move(*key);
      }
      record.data = std::move(line);
      break;
  }
  if (record.data.empty() && !options.allow_empty) {
    return LineError(where, "empty record (pass --allow-empty to put empty records)");
  }
  const size_t bytes = record.data.size() + record.partition_key.size();
  if (bytes > kMaxRecordBytes) {
    const std::string parts = record.partition_key.empty()
                                  ? ""
                                  : absl::StrCat(" (", record.data.size(), " of data + ",
                                                 record.partition_key.size(), " of partition key)");
    return LineError(where, absl::StrCat("record of ", bytes, " bytes", parts,
                                         " is over Kinesis's limit of 1048576 bytes"));
  }
  if (record.partition_key.empty()) {
    return LineError(where, options.key_source == KeySource::kFixed
                                ? "empty partition key (--partition-key needs 1-256 characters)"
                                : "empty partition key (a key has 1-256 characters)");
  }
  if (const int chars = Utf8Characters(record.partition_key); chars > kMaxPartitionKeyChars) {
    return LineError(where, absl::StrCat("partition key of ", chars,
                                         " characters is over Kinesis's limit of 256"));
  }
  record.where = std::move(where);
  return record;
}

PutInput ReadPutInput(std::istream& in, std::string_view name, const PutInputOptions& options,
                      size_t max_errors) {
  PutInput input;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    auto record = ParsePutLine(std::move(line), options, absl::StrCat(Sv(name), ":", number));
    if (record.ok()) {
      if (input.bad_lines == 0) input.records.push_back(std::move(*record));
      continue;
    }
    ++input.bad_lines;
    input.records.clear();  // nothing is put from a file with a bad line
    if (input.errors.size() < max_errors) input.errors.emplace_back(record.status().message());
  }
  return input;
}

}  // namespace runnel::cli
