// The YAML that declares streams, functions and event-source mappings, parsed into plain,
// validated structs (no YAML type leaves config.cc). Knob names are CDK/SAM's in snake_case,
// ranges are Lambda's; a bad file is refused with `file:line:column: what is wrong`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runnel/runtime/function.h"

namespace runnel::poller {

// Where something was written, 1-based, for messages.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
  // "file:line:column"
  std::string ToString() const;
};

struct StreamSpec {
  std::string name;
  int shards = 1;
  int retention_hours = 24;
  // Whether the file sets `retention`. Only a declared retention is applied to an existing
  // stream; otherwise the stream keeps what it has (e.g. set by `runnel stream retention`).
  bool retention_declared = false;
  SourceLocation where;
};

struct FunctionSpec {
  // plugin_path resolved against the YAML's folder when relative; plugin as written.
  runtime::FunctionConfig config;
  SourceLocation where;
  SourceLocation plugin_where;  // the `plugin:` key, where problems with the plugin are reported
};

enum class StartingPosition { kTrimHorizon, kLatest, kAtTimestamp };
// "TRIM_HORIZON", "LATEST" or "AT_TIMESTAMP", as Lambda's StartingPosition spells them.
const char* StartingPositionName(StartingPosition position);
enum class ConsumerType { kPolling, kFanOut };  // GetRecords long polls, or SubscribeToShard

struct OnFailureDestination {
  enum class Kind { kNone, kStream, kFile };
  Kind kind = Kind::kNone;
  // kStream: the stream's name. kFile: the path, resolved against the YAML's folder.
  std::string target;
};

struct FilterSpec {
  // The pattern as canonical JSON (a YAML mapping is converted; a string is parsed as JSON).
  std::string pattern_json;
  SourceLocation where;
};

struct MappingSpec {
  std::string function;
  std::string stream;
  bool enabled = true;
  StartingPosition starting_position = StartingPosition::kTrimHorizon;
  absl::Time starting_position_timestamp = absl::InfinitePast();  // with kAtTimestamp
  int batch_size = 100;                                           // 1..10,000
  absl::Duration maximum_batching_window = absl::ZeroDuration();  // 0..300 s
  int parallelization_factor = 1;                                 // 1..10
  ConsumerType consumer = ConsumerType::kPolling;
  bool bisect_batch_on_error = false;
  int retry_attempts = -1;  // -1 (until the records expire) .. 10,000
  // -1 (InfiniteDuration: no limit) or 60 s .. 7 days.
  absl::Duration max_record_age = absl::InfiniteDuration();
  OnFailureDestination on_failure;
  bool report_batch_item_failures = false;
  std::vector<FilterSpec> filters;  // at most 5; a record passes if any matches
  SourceLocation where;

  // The mapping's identity, which keys its checkpoints: AWS allows one mapping per (stream,
  // function), so the pair names it, stable across restarts and edits of every other knob.
  std::string Id() const { return stream + "/" + function; }
};

struct Config {
  std::string path;       // the file as given
  std::string directory;  // its folder, for relative paths
  std::vector<StreamSpec> streams;
  std::vector<FunctionSpec> functions;
  std::vector<MappingSpec> mappings;
};

// A rule a mapping's knobs break. Shared by the YAML loader and live updates (the admin API), so
// both refuse the same values with the same words.
struct MappingSpecError {
  std::string field;    // the YAML key, e.g. "batch_size"
  std::string problem;  // follows the field's name: " must be between 1 and 10000"
  bool limit = true;    // a range: messages add ", got <the value as the user wrote it>"
};

// Lambda's limits on a mapping's knobs: batch_size, maximum_batching_window,
// parallelization_factor, retry_attempts, max_record_age, and an on_failure destination that is
// not the mapping's own stream. Empty when all hold.
std::vector<MappingSpecError> ValidateMappingSpec(const MappingSpec& spec);

// Parses an on_failure value: "stream:NAME", "file:PATH" (a relative path is resolved against
// `directory`), or "" (none, as AWS). The error's message follows the field's name
// (": expected stream:NAME or file:PATH, got 'x'").
absl::StatusOr<OnFailureDestination> ParseOnFailureDestination(std::string_view text,
                                                               std::string_view directory);
// The value as the YAML writes it: "stream:NAME", "file:PATH" or "".
std::string OnFailureDestinationText(const OnFailureDestination& destination);

// Parses a duration as the YAML writes them: "500ms", "5s", "1m", "48h", "7d", "1h30m".
bool ParseConfigDuration(std::string_view text, absl::Duration* out);

// "5s", "300s", "1.5s", "500ms": a duration in the units the limits use.
std::string FormatSeconds(absl::Duration duration);

// Reads and validates a file. Errors read "file:line:column: what is wrong" (with the closest
// valid key suggested for an unknown one).
absl::StatusOr<Config> LoadConfig(const std::string& path);
// The same for text in memory; `path` is used in messages and for relative paths.
absl::StatusOr<Config> ParseConfig(std::string_view yaml, const std::string& path);

}  // namespace runnel::poller
