// Log lines with context: every line carries the component that wrote it (broker, poller,
// runtime, ...) and, where it applies, the stream, shard, mapping, function and request id, as
// fields in JSON (`--log-format json`, one object per line, for log shippers) or as a short
// bracketed prefix in the human-readable default.
//
// The context is per thread: a thread that works for one mapping and shard sets its tags once
// (ScopedLogTags), and every spdlog call on that thread carries them, including calls from code
// that knows nothing of mappings. Tags nest; an inner scope's value wins for the same key.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace runnel {

enum class LogFormat { kText, kJson };

// Installs runnel's formatter on spdlog's default logger (and on loggers made later through
// spdlog::set_formatter's global pattern) and sets the level. `default_component` tags lines of
// threads that set no component of their own. `format` is "text" or "json"; `level` one of
// spdlog's names (trace, debug, info, warn, error, critical, off).
absl::Status InitLogging(std::string_view format, std::string_view level,
                         std::string_view default_component);

// Parses "text" / "json"; the error names the flag and the accepted values.
absl::Status ParseLogFormat(std::string_view text, LogFormat* format);

LogFormat CurrentLogFormat();

// A thread's tags, to carry to a thread that logs on its behalf (e.g. the thread forwarding a
// worker process's output).
using LogTagSnapshot = std::vector<std::pair<std::string, std::string>>;
LogTagSnapshot CurrentLogTags();
// One tag of this thread ("" when unset), without copying them all; valid while its scope lives.
std::string_view CurrentLogTag(std::string_view key);

// Tags for the lines this thread logs while the object lives. Keys are the fixed names below;
// an empty value leaves the key out.
class ScopedLogTags {
 public:
  ScopedLogTags(std::initializer_list<std::pair<std::string_view, std::string_view>> tags);
  explicit ScopedLogTags(const LogTagSnapshot& tags);
  ~ScopedLogTags();
  ScopedLogTags(const ScopedLogTags&) = delete;
  ScopedLogTags& operator=(const ScopedLogTags&) = delete;

 private:
  size_t pushed_ = 0;
};

// Tag keys, so call sites and log queries agree on spelling.
inline constexpr std::string_view kTagComponent = "component";
inline constexpr std::string_view kTagStream = "stream";
inline constexpr std::string_view kTagShard = "shard";
inline constexpr std::string_view kTagMapping = "mapping";
inline constexpr std::string_view kTagFunction = "function";
inline constexpr std::string_view kTagRequestId = "request_id";

// A line a handler logged (or its runtime logged about one invocation). In text the line reads
// "[function] [request id] message", as Lambda's logs do; in JSON the two are fields.
void LogInvocationLine(int spdlog_level, std::string_view function, std::string_view request_id,
                       std::string_view message);

}  // namespace runnel
