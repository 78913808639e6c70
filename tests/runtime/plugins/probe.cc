// Test plugin: reports what it sees. It "fails" with errorType "Probe" and a JSON message holding
// the worker's pid, its instance number, the context and event fields, the environment and a
// digest of every record, so tests can check what crossed the boundary. PROBE_SLEEP_MS in the
// environment makes each invocation sleep first (for concurrency tests).
#include <runnel/handler.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace {

std::atomic<int> g_instances{0};

// FNV-1a over each record's fields, with lengths, so that moved bytes change the digest.
uint64_t Fnv(uint64_t hash, const void* data, size_t size) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= p[i];
    hash *= 1099511628211ULL;
  }
  return hash;
}

class Probe : public runnel::Handler {
 public:
  Probe() : instance_(++g_instances) {}

  void Init(const runnel::Config& config) override {
    sleep_ms_ = std::stoi(config.env("PROBE_SLEEP_MS", "0"));
    init_timeout_ms_ = config.timeout().count();
    init_memory_ = config.memory_size_mb();
    config.logger().info("probe init");
  }

  runnel::Result Handle(const runnel::Event& event, runnel::Context& context) override {
    if (sleep_ms_ > 0) ::usleep(static_cast<useconds_t>(sleep_ms_) * 1000);
    uint64_t digest = 14695981039346656037ULL;
    for (const runnel::Record& r : event.records()) {
      for (std::string_view field : {r.partition_key(), r.sequence_number(), r.data()}) {
        uint64_t size = field.size();
        digest = Fnv(digest, &size, sizeof(size));
        digest = Fnv(digest, field.data(), field.size());
      }
      int64_t arrival = r.approximate_arrival_timestamp_ms();
      digest = Fnv(digest, &arrival, sizeof(arrival));
    }
    context.logger().info("probe handled " + std::to_string(event.size()) + " records");
    std::string json = "{";
    auto add = [&](const char* key, const std::string& value, bool quote) {
      if (json.size() > 1) json += ',';
      json += '"';
      json += key;
      json += "\":";
      if (quote) {
        runnel::internal::AppendJsonString(json, value);
      } else {
        json += value;
      }
    };
    add("pid", std::to_string(::getpid()), false);
    add("instance", std::to_string(instance_), false);
    add("function", std::string(context.function_name()), true);
    add("request_id", std::string(context.request_id()), true);
    add("attempt", std::to_string(context.attempt()), false);
    add("remaining_ms", std::to_string(context.remaining_time().count()), false);
    add("init_timeout_ms", std::to_string(init_timeout_ms_), false);
    add("init_memory_mb", std::to_string(init_memory_), false);
    add("records", std::to_string(event.size()), false);
    add("digest", std::to_string(digest), true);
    add("shard_id", std::string(event.shard_id()), true);
    add("event_source_arn", std::string(event.event_source_arn()), true);
    add("aws_region", std::string(event.aws_region()), true);
    add("role", std::string(event.invoke_identity_arn()), true);
    std::string env = "{";
    for (const auto& [key, value] : context.environment()) {
      if (env.size() > 1) env += ',';
      runnel::internal::AppendJsonString(env, key);
      env += ':';
      runnel::internal::AppendJsonString(env, value);
    }
    env += '}';
    add("env", env, false);
    json += '}';
    return runnel::Result::Failure("Probe", json);
  }

 private:
  int instance_;
  int sleep_ms_ = 0;
  int64_t init_timeout_ms_ = 0;
  int init_memory_ = 0;
};

}  // namespace

RUNNEL_HANDLER(Probe)
