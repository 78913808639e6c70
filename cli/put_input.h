// What `runnel put` sends: each input line turned into a record (its data and where its partition
// key comes from), checked against Kinesis's per-record limits before anything is put, so that a
// bad line in the middle of a file never leaves the file half put. Errors name the input as
// FILE:LINE (`<stdin>:LINE`, or the flag for --data), the way a compiler would, rather than the
// request field (`records.2.member.data`) the broker would name.
//
// Pure (no I/O beyond the stream it is given), so tests can enumerate the cases.
#pragma once

#include <cstddef>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace runnel::cli {

// Kinesis's limits on one record (the broker enforces them too; checking here first names the
// line and keeps a bad file from being put in part).
inline constexpr size_t kMaxRecordBytes = 1u << 20;  // data + partition key
inline constexpr int kMaxPartitionKeyChars = 256;

enum class KeySource {
  kFixed,         // --partition-key K: every record gets K
  kJsonField,     // --key-field NAME: each line is a JSON object; the key is its field NAME
  kTabSeparated,  // --keyed: each line is KEY<TAB>DATA
};

struct PutInputOptions {
  KeySource key_source = KeySource::kFixed;
  std::string fixed_key;  // kFixed
  std::string key_field;  // kJsonField
  // Kinesis accepts empty data, but an empty line is nearly always a stray blank line: refused
  // unless asked for.
  bool allow_empty = false;
};

struct PutRecordInput {
  std::string partition_key;
  std::string data;
  std::string where;  // "orders.jsonl:3": for messages about this record
};

// One line (without its newline) as a record, or an InvalidArgument error "WHERE: what is wrong".
absl::StatusOr<PutRecordInput> ParsePutLine(std::string line, const PutInputOptions& options,
                                            std::string where);

struct PutInput {
  std::vector<PutRecordInput> records;  // complete only when `errors` is empty
  std::vector<std::string> errors;      // the first `max_errors` bad lines, "FILE:LINE: ..."
  size_t bad_lines = 0;                 // all of them
};

// Reads every line of `in` (named `name` in messages) and checks each one.
PutInput ReadPutInput(std::istream& in, std::string_view name, const PutInputOptions& options,
                      size_t max_errors);

// Number of UTF-8 characters (as Kinesis counts partition key length).
int Utf8Characters(std::string_view text);

}  // namespace runnel::cli
