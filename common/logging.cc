#include "common/logging.h"

#include <time.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/spdlog.h"

namespace runnel {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};
// Set once by InitLogging before threads start; read by the formatter.
std::string* g_default_component = new std::string("runnel");

// The tags of this thread, innermost last.
thread_local std::vector<std::pair<std::string, std::string>> t_tags;

// Keys in the order a reader wants them: where the line comes from, then what it is about.
constexpr std::array<std::string_view, 6> kTagOrder = {kTagComponent, kTagMapping,  kTagStream,
                                                       kTagShard,     kTagFunction, kTagRequestId};

std::string_view TagValue(std::string_view key) {
  for (auto it = t_tags.rbegin(); it != t_tags.rend(); ++it) {
    if (it->first == key) return it->second;
  }
  if (key == kTagComponent) return *g_default_component;
  return {};
}

void AppendJsonString(std::string_view text, spdlog::memory_buf_t& out) {
  out.push_back('"');
  for (char c : text) {
    switch (c) {
      case '"':
        out.append(std::string_view("\\\""));
        break;
      case '\\':
        out.append(std::string_view("\\\\"));
        break;
      case '\n':
        out.append(std::string_view("\\n"));
        break;
      case '\r':
        out.append(std::string_view("\\r"));
        break;
      case '\t':
        out.append(std::string_view("\\t"));
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<int>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

// 2026-11-26T01:23:45.123Z: UTC, so lines from several hosts sort together.
void AppendTime(std::chrono::system_clock::time_point time, spdlog::memory_buf_t& out) {
  const auto since_epoch = time.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const time_t t = static_cast<time_t>(seconds.count());
  struct tm utc;
  gmtime_r(&t, &utc);
  fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                 utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                 utc.tm_sec, millis);
}

class RunnelFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& out) override {
    const spdlog::string_view_t level_name = spdlog::level::to_string_view(msg.level);
    const std::string_view level(level_name.data(), level_name.size());
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (g_format.load(std::memory_order_relaxed) == LogFormat::kJson) {
      out.append(std::string_view("{\"time\":\""));
      AppendTime(msg.time, out);
      out.append(std::string_view("\",\"level\":"));
      AppendJsonString(level, out);
      for (std::string_view key : kTagOrder) {
        const std::string_view value = TagValue(key);
        if (value.empty()) continue;
        out.push_back(',');
        AppendJsonString(key, out);
        out.push_back(':');
        AppendJsonString(value, out);
      }
      out.append(std::string_view(",\"message\":"));
      AppendJsonString(payload, out);
      out.append(std::string_view("}\n"));
      return;
    }
    // Text: "2026-11-26T01:23:45.123Z info [poller orders/process shardId-000000000001] ...".
    // The function and request id are left out: the mapping names the function, and a handler's
    // own lines carry "[function] [request id]" in the message (see LogInvocationLine).
    AppendTime(msg.time, out);
    out.push_back(' ');
    msg.color_range_start = out.size();
    out.append(level);
    msg.color_range_end = out.size();
    out.append(std::string_view(" ["));
    out.append(TagValue(kTagComponent));
    const std::string_view mapping = TagValue(kTagMapping);
    if (!mapping.empty()) {
      out.push_back(' ');
      out.append(mapping);
    } else if (const std::string_view stream = TagValue(kTagStream); !stream.empty()) {
      out.push_back(' ');
      out.append(stream);
    }
    if (const std::string_view shard = TagValue(kTagShard); !shard.empty()) {
      out.push_back(' ');
      out.append(shard);
    }
    out.append(std::string_view("] "));
    out.append(payload);
    out.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<RunnelFormatter>();
  }
};

}  // namespace

absl::Status ParseLogFormat(std::string_view text, LogFormat* format) {
  if (text == "text") {
    *format = LogFormat::kText;
  } else if (text == "json") {
    *format = LogFormat::kJson;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-format: \"", Sv(text), "\" is not one of text, json"));
  }
  return absl::OkStatus();
}

absl::Status InitLogging(std::string_view format, std::string_view level,
                         std::string_view default_component) {
  LogFormat parsed;
  if (absl::Status status = ParseLogFormat(format, &parsed); !status.ok()) return status;
  const spdlog::level::level_enum spd_level = spdlog::level::from_str(std::string(level));
  // from_str answers `off` for names it does not know; only "off" itself means that.
  if (spd_level == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-level: \"", Sv(level),
                     "\" is not one of trace, debug, info, warn, error, critical, off"));
  }
  g_format.store(parsed);
  *g_default_component = std::string(default_component);
  spdlog::set_formatter(std::make_unique<RunnelFormatter>());
  spdlog::set_level(spd_level);
  return absl::OkStatus();
}

LogFormat CurrentLogFormat() { return g_format.load(std::memory_order_relaxed); }

ScopedLogTags::ScopedLogTags(
    std::initializer_list<std::pair<std::string_view, std::string_view>> tags) {
  for (const auto& [key, value] : tags) {
    if (value.empty()) continue;
    t_tags.emplace_back(std::string(key), std::string(value));
    ++pushed_;
  }
}

ScopedLogTags::ScopedLogTags(const LogTagSnapshot& tags) {
  for (const auto& [key, value] : tags) {
    if (value.empty()) continue;
    t_tags.emplace_back(key, value);
    ++pushed_;
  }
}

LogTagSnapshot CurrentLogTags() { return t_tags; }

std::string_view CurrentLogTag(std::string_view key) { return TagValue(key); }

ScopedLogTags::~ScopedLogTags() { t_tags.resize(t_tags.size() - pushed_); }

void LogInvocationLine(int spdlog_level, std::string_view function, std::string_view request_id,
                       std::string_view message) {
  // default_logger() (a shared_ptr), not spdlog::log(): whoever swaps the default logger meanwhile
  // (runnel invoke does, tests do) must not pull it from under this call.
  const auto logger = spdlog::default_logger();
  const auto level = static_cast<spdlog::level::level_enum>(spdlog_level);
  if (!logger->should_log(level)) return;
  if (CurrentLogFormat() == LogFormat::kJson) {
    ScopedLogTags tags{{kTagFunction, function}, {kTagRequestId, request_id}};
    logger->log(level, "{}", message);
  } else {
    logger->log(level, "[{}] [{}] {}", function, request_id, message);
  }
}

}  // namespace runnel
