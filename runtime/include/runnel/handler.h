// The runnel handler SDK: everything a stream handler plugin includes.
//
// Two layers live here.
//
// 1. A plain-C ABI (the `runnel_*` structs and the `runnel_handler_entry` symbol). This is the only
//    thing that crosses the boundary between runnel and a plugin, so a plugin built with another
//    compiler or standard library still loads. Buffers are `{pointer, size}` pairs owned by the
//    side that passes them and valid only for the duration of the call; results flow back through
//    host callbacks, so no memory is ever freed on the other side of the boundary. The ABI carries
//    a version that the loader checks before it touches anything else.
//
// 2. A header-only C++ layer on top (namespace `runnel`): derive from `runnel::Handler`, override
//    `Handle`, and export the class with `RUNNEL_HANDLER(MyHandler)`:
//
//      #include <runnel/handler.h>
//
//      class Orders : public runnel::Handler {
//       public:
//        runnel::Result Handle(const runnel::Event& event, runnel::Context& context) override {
//          for (const runnel::Record& record : event.records()) {
//            context.logger().info("got " + std::string(record.sequence_number()));
//          }
//          return runnel::Result::Success();
//        }
//      };
//      RUNNEL_HANDLER(Orders)
//
//    Every exception a handler throws is caught at the ABI boundary and becomes a failure whose
//    error type is the exception's type and whose message is its what().
//
// The header depends on nothing but the C and C++17 standard libraries.
#ifndef RUNNEL_HANDLER_H_
#define RUNNEL_HANDLER_H_

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------ */
/* The C ABI.                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Bumped whenever any struct below changes layout or meaning. The loader refuses a plugin whose
 * `runnel_handler_api.abi_version` differs. */
#define RUNNEL_HANDLER_ABI_VERSION 1u

/* The one symbol a plugin exports. */
#define RUNNEL_HANDLER_ENTRY_SYMBOL "runnel_handler_entry"

#ifdef __cplusplus
extern "C" {
#endif

/* A borrowed byte range; `data` may be NULL when `size` is 0. Not NUL-terminated. */
typedef struct runnel_bytes {
  const char* data;
  size_t size;
} runnel_bytes;

/* One Kinesis record. */
typedef struct runnel_record {
  runnel_bytes partition_key;
  runnel_bytes sequence_number;   /* decimal digits, as Kinesis prints them */
  runnel_bytes data;              /* the raw record bytes, never re-encoded */
  int64_t approximate_arrival_ms; /* milliseconds since the Unix epoch */
} runnel_record;

/* One batch: records of one shard, in shard order. */
typedef struct runnel_event {
  const runnel_record* records;
  size_t record_count;
  runnel_bytes shard_id;            /* "shardId-000000000003" */
  runnel_bytes event_source_arn;    /* "arn:aws:kinesis:<region>:<account>:stream/<name>" */
  runnel_bytes aws_region;          /* "eu-west-1" */
  runnel_bytes invoke_identity_arn; /* the function's role ARN */
} runnel_event;

typedef struct runnel_env_entry {
  runnel_bytes key;
  runnel_bytes value;
} runnel_env_entry;

/* Log levels for the host's log callback. */
#define RUNNEL_LOG_DEBUG 0
#define RUNNEL_LOG_INFO 1
#define RUNNEL_LOG_WARN 2
#define RUNNEL_LOG_ERROR 3

/* Host callbacks. `host_data` is passed back unchanged. Callbacks never throw and may be called
 * only during the call that received them. */
typedef void (*runnel_log_fn)(void* host_data, int32_t level, runnel_bytes message);
typedef void (*runnel_set_error_fn)(void* host_data, runnel_bytes error_type,
                                    runnel_bytes error_message);
typedef void (*runnel_add_item_failure_fn)(void* host_data, runnel_bytes item_identifier);

/* What `create` receives: the function's configuration from YAML. */
typedef struct runnel_init_config {
  runnel_bytes function_name;
  const runnel_env_entry* environment;
  size_t environment_count;
  int64_t timeout_ms;
  int32_t memory_size_mb;
  void* host_data;
  runnel_log_fn log;
  runnel_set_error_fn set_error; /* why `create` returned NULL */
} runnel_init_config;

/* What `handle` receives besides the event. */
typedef struct runnel_context {
  runnel_bytes function_name;
  runnel_bytes request_id;
  int64_t deadline_monotonic_ns; /* CLOCK_MONOTONIC, the same clock in every process */
  uint32_t attempt;              /* 1 for the first invocation of these records */
  void* host_data;
  runnel_log_fn log;
  runnel_set_error_fn set_error;                     /* with RUNNEL_OUTCOME_FAILURE */
  runnel_add_item_failure_fn add_batch_item_failure; /* with RUNNEL_OUTCOME_BATCH_ITEM_FAILURES */
} runnel_context;

/* What `handle` returns. */
#define RUNNEL_OUTCOME_SUCCESS 0
#define RUNNEL_OUTCOME_FAILURE 1
#define RUNNEL_OUTCOME_BATCH_ITEM_FAILURES 2

/* The table a plugin exports. `abi_version` stays the first member in every version so that the
 * loader can always read it. A plugin instance serves one `handle` call at a time. */
typedef struct runnel_handler_api {
  uint32_t abi_version; /* RUNNEL_HANDLER_ABI_VERSION */
  uint32_t struct_size; /* sizeof(runnel_handler_api) as the plugin saw it */
  const char* description;
  /* Makes an instance; NULL refuses to start (after calling config->set_error). */
  void* (*create)(const runnel_init_config* config);
  void (*destroy)(void* instance);
  int32_t (*handle)(void* instance, const runnel_event* event, const runnel_context* context);
} runnel_handler_api;

typedef const runnel_handler_api* (*runnel_handler_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

/* ------------------------------------------------------------------------------------------ */
/* The C++ layer.                                                                              */
/* ------------------------------------------------------------------------------------------ */
#ifdef __cplusplus

#include <time.h>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#if defined(__GNUC__) || defined(__clang__)
#include <cxxabi.h>
#define RUNNEL_HANDLER_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define RUNNEL_HANDLER_EXPORT extern "C"
#endif

namespace runnel {

namespace internal {
inline std::string_view View(runnel_bytes bytes) {
  return bytes.size == 0 ? std::string_view() : std::string_view(bytes.data, bytes.size);
}
inline runnel_bytes Bytes(std::string_view view) { return runnel_bytes{view.data(), view.size()}; }
}  // namespace internal

enum class LogLevel : int32_t {
  kDebug = RUNNEL_LOG_DEBUG,
  kInfo = RUNNEL_LOG_INFO,
  kWarn = RUNNEL_LOG_WARN,
  kError = RUNNEL_LOG_ERROR,
};

// Writes to runnel's log; each line is tagged with the function name and (inside Handle) the
// request id. Cheap to copy; valid as long as the Config or Context it came from.
class Logger {
 public:
  Logger(runnel_log_fn log, void* host_data) : log_(log), host_data_(host_data) {}
  void Log(LogLevel level, std::string_view message) const {
    if (log_ != nullptr) log_(host_data_, static_cast<int32_t>(level), internal::Bytes(message));
  }
  void debug(std::string_view message) const { Log(LogLevel::kDebug, message); }
  void info(std::string_view message) const { Log(LogLevel::kInfo, message); }
  void warn(std::string_view message) const { Log(LogLevel::kWarn, message); }
  void error(std::string_view message) const { Log(LogLevel::kError, message); }

 private:
  runnel_log_fn log_;
  void* host_data_;
};

using Environment = std::map<std::string, std::string, std::less<>>;

// The function's configuration, given once to Handler::Init.
class Config {
 public:
  Config(const runnel_init_config* config, const Environment* environment)
      : config_(config), environment_(environment) {}
  std::string_view function_name() const { return internal::View(config_->function_name); }
  // `environment:` from the function's YAML.
  const Environment& environment() const { return *environment_; }
  // One environment value, or `fallback` when it is not set.
  std::string env(std::string_view key, std::string_view fallback = {}) const {
    auto it = environment_->find(key);
    return it == environment_->end() ? std::string(fallback) : it->second;
  }
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(config_->timeout_ms);
  }
  int memory_size_mb() const { return config_->memory_size_mb; }
  Logger logger() const { return Logger(config_->log, config_->host_data); }

 private:
  const runnel_init_config* config_;
  const Environment* environment_;
};

// One record of the batch: a view into memory the runtime owns, valid during Handle only.
class Record {
 public:
  Record(const runnel_record* record, const runnel_event* event) : record_(record), event_(event) {}
  std::string_view partition_key() const { return internal::View(record_->partition_key); }
  std::string_view sequence_number() const { return internal::View(record_->sequence_number); }
  // The record's bytes, not copied (binary-safe; not NUL-terminated).
  std::string_view data() const { return internal::View(record_->data); }
  const unsigned char* data_bytes() const {
    return reinterpret_cast<const unsigned char*>(record_->data.data);
  }
  size_t data_size() const { return record_->data.size; }
  std::chrono::system_clock::time_point approximate_arrival_timestamp() const {
    return std::chrono::system_clock::time_point(
        std::chrono::milliseconds(record_->approximate_arrival_ms));
  }
  int64_t approximate_arrival_timestamp_ms() const { return record_->approximate_arrival_ms; }
  std::string_view shard_id() const { return internal::View(event_->shard_id); }
  // "shardId-000000000003:<sequence number>", Lambda's eventID.
  std::string event_id() const {
    std::string id(shard_id());
    id += ':';
    id += sequence_number();
    return id;
  }

 private:
  const runnel_record* record_;
  const runnel_event* event_;
};

// The records of a batch as a random-access range of Record views.
class Records {
 public:
  class iterator {
   public:
    using value_type = Record;
    using difference_type = std::ptrdiff_t;
    iterator(const runnel_record* at, const runnel_event* event) : at_(at), event_(event) {}
    Record operator*() const { return Record(at_, event_); }
    iterator& operator++() {
      ++at_;
      return *this;
    }
    iterator operator++(int) {
      iterator copy = *this;
      ++at_;
      return copy;
    }
    bool operator==(const iterator& other) const { return at_ == other.at_; }
    bool operator!=(const iterator& other) const { return at_ != other.at_; }

   private:
    const runnel_record* at_;
    const runnel_event* event_;
  };

  explicit Records(const runnel_event* event) : event_(event) {}
  iterator begin() const { return iterator(event_->records, event_); }
  iterator end() const { return iterator(event_->records + event_->record_count, event_); }
  size_t size() const { return event_->record_count; }
  bool empty() const { return event_->record_count == 0; }
  Record operator[](size_t i) const { return Record(event_->records + i, event_); }

 private:
  const runnel_event* event_;
};

// The batch handed to Handle: records of one shard, in shard order.
class Event {
 public:
  explicit Event(const runnel_event* event) : event_(event) {}
  Records records() const { return Records(event_); }
  size_t size() const { return event_->record_count; }
  std::string_view shard_id() const { return internal::View(event_->shard_id); }
  std::string_view event_source_arn() const { return internal::View(event_->event_source_arn); }
  std::string_view aws_region() const { return internal::View(event_->aws_region); }
  std::string_view invoke_identity_arn() const {
    return internal::View(event_->invoke_identity_arn);
  }
  const runnel_event* c_event() const { return event_; }

  // Lambda's Kinesis event, byte for byte in the field order Lambda uses:
  // {"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":…,"sequenceNumber":…,
  // "data":<base64>,"approximateArrivalTimestamp":<seconds.millis>},"eventSource":"aws:kinesis",
  // "eventVersion":"1.0","eventID":"<shard>:<seq>","eventName":"aws:kinesis:record",
  // "invokeIdentityArn":…,"awsRegion":…,"eventSourceARN":…}]}
  std::string ToJson() const;

 private:
  const runnel_event* event_;
};

// Per-invocation information, like Lambda's context object.
class Context {
 public:
  Context(const runnel_context* context, const Environment* environment)
      : context_(context), environment_(environment) {}
  std::string_view function_name() const { return internal::View(context_->function_name); }
  std::string_view request_id() const { return internal::View(context_->request_id); }
  // Time left before the invocation's timeout (zero once it has passed).
  std::chrono::milliseconds remaining_time() const {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t now_ns = static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
    int64_t left_ns = context_->deadline_monotonic_ns - now_ns;
    return std::chrono::milliseconds(left_ns > 0 ? left_ns / 1000000 : 0);
  }
  // 1 for the first invocation of these records, 2 for the first retry, ...
  int attempt() const { return static_cast<int>(context_->attempt); }
  const Environment& environment() const { return *environment_; }
  std::string env(std::string_view key, std::string_view fallback = {}) const {
    auto it = environment_->find(key);
    return it == environment_->end() ? std::string(fallback) : it->second;
  }
  // Lines are tagged with the function name and this invocation's request id.
  Logger logger() const { return Logger(context_->log, context_->host_data); }

 private:
  const runnel_context* context_;
  const Environment* environment_;
};

// What Handle returns: success, a failure (the whole batch failed), or batch-item failures (the
// sequence numbers of the records that failed, as Lambda's ReportBatchItemFailures; the poller
// checkpoints before the lowest one and retries from there).
class Result {
 public:
  enum class Kind { kSuccess, kFailure, kBatchItemFailures };

  static Result Success() { return Result(Kind::kSuccess); }
  static Result Failure(std::string error_type, std::string error_message) {
    Result result(Kind::kFailure);
    result.error_type_ = std::move(error_type);
    result.error_message_ = std::move(error_message);
    return result;
  }
  static Result BatchItemFailures(std::vector<std::string> sequence_numbers) {
    Result result(Kind::kBatchItemFailures);
    result.batch_item_failures_ = std::move(sequence_numbers);
    return result;
  }
  // Adds one failed record (turns a Success into batch-item failures).
  Result& AddBatchItemFailure(std::string_view sequence_number) {
    if (kind_ == Kind::kSuccess) kind_ = Kind::kBatchItemFailures;
    batch_item_failures_.emplace_back(sequence_number);
    return *this;
  }

  Kind kind() const { return kind_; }
  bool is_success() const { return kind_ == Kind::kSuccess; }
  const std::string& error_type() const { return error_type_; }
  const std::string& error_message() const { return error_message_; }
  const std::vector<std::string>& batch_item_failures() const { return batch_item_failures_; }

 private:
  explicit Result(Kind kind) : kind_(kind) {}
  Kind kind_;
  std::string error_type_;
  std::string error_message_;
  std::vector<std::string> batch_item_failures_;
};

// Derive from this and export the class with RUNNEL_HANDLER. runnel makes one instance per
// execution environment (a worker process, or an in-process slot) and calls Handle on it for one
// batch at a time, so a handler needs no locking of its own state.
class Handler {
 public:
  virtual ~Handler() = default;
  // Called once before the first batch. Throw to refuse to start: the function then fails to
  // load, with the exception's type and message.
  virtual void Init(const Config& config) {}
  virtual Result Handle(const Event& event, Context& context) = 0;
};

namespace internal {

inline void AppendJsonString(std::string& out, std::string_view text) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

inline void AppendBase64(std::string& out, std::string_view data) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char* in = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = uint32_t{in[i]} << 16;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (n - i == 2) {
    uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
}

// Epoch milliseconds as seconds with a three-digit fraction: 1718000000123 -> "1718000000.123".
inline void AppendEpochSeconds(std::string& out, int64_t ms) {
  if (ms < 0) {
    out += '-';
    ms = -ms;
  }
  out += std::to_string(ms / 1000);
  int64_t frac = ms % 1000;
  out += '.';
  out += static_cast<char>('0' + frac / 100);
  out += static_cast<char>('0' + frac / 10 % 10);
  out += static_cast<char>('0' + frac % 10);
}

// The dynamic type of the exception being handled, demangled ("std::runtime_error").
inline std::string CurrentExceptionTypeName(const std::type_info* type) {
  if (type == nullptr) return "UnknownException";
#if defined(__GNUC__) || defined(__clang__)
  int status = 0;
  char* demangled = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
  if (status == 0 && demangled != nullptr) {
    std::string name(demangled);
    std::free(demangled);
    return name;
  }
  std::free(demangled);
#endif
  return type->name();
}

// Runs `body`; an exception becomes (type, message) through `report`. Returns false on exception.
template <typename Body, typename Report>
bool CatchAll(Body&& body, Report&& report) noexcept {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    try {
      report(CurrentExceptionTypeName(&typeid(e)), std::string(e.what()));
    } catch (...) {
      report(std::string(), std::string());
    }
  } catch (...) {
    const std::type_info* type = nullptr;
#if defined(__GNUC__) || defined(__clang__)
    type = abi::__cxa_current_exception_type();
#endif
    try {
      report(CurrentExceptionTypeName(type), std::string("unknown exception"));
    } catch (...) {
      report(std::string(), std::string());
    }
  }
  return false;
}

struct Instance {
  std::string function_name;
  Environment environment;
  std::unique_ptr<Handler> handler;
};

template <typename H>
struct Adapter {
  static void* Create(const runnel_init_config* c) noexcept {
    Instance* instance = nullptr;
    bool ok = CatchAll(
        [&] {
          auto owned = std::make_unique<Instance>();
          owned->function_name = std::string(View(c->function_name));
          for (size_t i = 0; i < c->environment_count; ++i) {
            owned->environment.emplace(std::string(View(c->environment[i].key)),
                                       std::string(View(c->environment[i].value)));
          }
          owned->handler = std::make_unique<H>();
          owned->handler->Init(Config(c, &owned->environment));
          instance = owned.release();
        },
        [&](const std::string& type, const std::string& message) {
          if (c->set_error != nullptr) c->set_error(c->host_data, Bytes(type), Bytes(message));
        });
    return ok ? instance : nullptr;
  }

  static void Destroy(void* instance) noexcept {
    CatchAll([&] { delete static_cast<Instance*>(instance); },
             [](const std::string&, const std::string&) {});
  }

  static int32_t Handle(void* opaque, const runnel_event* event,
                        const runnel_context* context) noexcept {
    Instance* instance = static_cast<Instance*>(opaque);
    int32_t outcome = RUNNEL_OUTCOME_SUCCESS;
    bool ok = CatchAll(
        [&] {
          Context cpp_context(context, &instance->environment);
          Result result = instance->handler->Handle(Event(event), cpp_context);
          switch (result.kind()) {
            case Result::Kind::kSuccess:
              outcome = RUNNEL_OUTCOME_SUCCESS;
              break;
            case Result::Kind::kFailure:
              context->set_error(context->host_data, Bytes(result.error_type()),
                                 Bytes(result.error_message()));
              outcome = RUNNEL_OUTCOME_FAILURE;
              break;
            case Result::Kind::kBatchItemFailures:
              for (const std::string& id : result.batch_item_failures()) {
                context->add_batch_item_failure(context->host_data, Bytes(id));
              }
              outcome = RUNNEL_OUTCOME_BATCH_ITEM_FAILURES;
              break;
          }
        },
        [&](const std::string& type, const std::string& message) {
          context->set_error(context->host_data, Bytes(type), Bytes(message));
        });
    return ok ? outcome : RUNNEL_OUTCOME_FAILURE;
  }

  static runnel_handler_api Api() {
    runnel_handler_api api;
    std::memset(&api, 0, sizeof(api));
    api.abi_version = RUNNEL_HANDLER_ABI_VERSION;
    api.struct_size = sizeof(runnel_handler_api);
    api.description = "runnel C++ SDK";
    api.create = &Create;
    api.destroy = &Destroy;
    api.handle = &Handle;
    return api;
  }
};

}  // namespace internal

inline std::string Event::ToJson() const {
  std::string out;
  size_t estimate = 16;
  for (size_t i = 0; i < event_->record_count; ++i) {
    const runnel_record& r = event_->records[i];
    estimate += 420 + r.data.size * 4 / 3 + r.partition_key.size + 2 * r.sequence_number.size +
                event_->shard_id.size + event_->event_source_arn.size +
                event_->invoke_identity_arn.size;
  }
  out.reserve(estimate);
  out += "{\"Records\":[";
  for (size_t i = 0; i < event_->record_count; ++i) {
    const runnel_record& r = event_->records[i];
    if (i != 0) out += ',';
    out += "{\"kinesis\":{\"kinesisSchemaVersion\":\"1.0\",\"partitionKey\":";
    internal::AppendJsonString(out, internal::View(r.partition_key));
    out += ",\"sequenceNumber\":";
    internal::AppendJsonString(out, internal::View(r.sequence_number));
    out += ",\"data\":\"";
    internal::AppendBase64(out, internal::View(r.data));
    out += "\",\"approximateArrivalTimestamp\":";
    internal::AppendEpochSeconds(out, r.approximate_arrival_ms);
    out += "},\"eventSource\":\"aws:kinesis\",\"eventVersion\":\"1.0\",\"eventID\":";
    internal::AppendJsonString(out, Record(&r, event_).event_id());
    out += ",\"eventName\":\"aws:kinesis:record\",\"invokeIdentityArn\":";
    internal::AppendJsonString(out, invoke_identity_arn());
    out += ",\"awsRegion\":";
    internal::AppendJsonString(out, aws_region());
    out += ",\"eventSourceARN\":";
    internal::AppendJsonString(out, event_source_arn());
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace runnel

// Exports `HandlerClass` (default-constructible, derived from runnel::Handler) as the plugin's
// entry point. Use it once per plugin, at namespace scope.
#define RUNNEL_HANDLER(HandlerClass)                                                        \
  RUNNEL_HANDLER_EXPORT const runnel_handler_api* runnel_handler_entry(void) {              \
    static const runnel_handler_api api = ::runnel::internal::Adapter<HandlerClass>::Api(); \
    return &api;                                                                            \
  }

#endif /* __cplusplus */

#endif /* RUNNEL_HANDLER_H_ */
