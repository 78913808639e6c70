// The channel between the runtime and a `runnel worker` process: length-prefixed binary frames
// over a Unix stream socketpair.
//
// Why not protobuf: a batch is up to 10,000 records and 6 MiB, and the worker should hand the
// handler views into the bytes it received without copying them again. A fixed little-endian
// layout (a table of record lengths, then the bytes) decodes into runnel_record views in one pass
// with no allocation per record; protobuf would parse into owned strings first. Why not shared
// memory: a socket write/read of a 100 KiB batch costs a few tens of microseconds on this machine
// (bench/README.md), well inside the targets, and a socket gives us EOF when the worker dies and
// poll() for the deadline for free, where shared memory would still need a socket or futex beside
// it for both.
//
// Frame: magic u32 "RNL1" | type u32 | payload length u64 | payload. All integers little-endian
// (the two ends are the same binary on the same machine, but the layout is explicit anyway).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/handler.h"
#include "runnel/runtime/function.h"

namespace runnel::runtime::wire {

inline constexpr uint32_t kMagic = 0x314c4e52;  // "RNL1"
inline constexpr size_t kHeaderSize = 16;
// Requests are bounded by the poller (6 MiB payloads) but allow a generous margin; responses
// come from plugin code and are capped harder so a broken worker cannot make us allocate much.
inline constexpr uint64_t kMaxRequestBytes = uint64_t{1} << 30;
inline constexpr uint64_t kMaxResponseBytes = uint64_t{64} << 20;

enum class FrameType : uint32_t {
  kInit = 1,         // runtime -> worker: the plugin and function configuration
  kReady = 2,        // worker -> runtime: plugin loaded, Init succeeded
  kInitError = 3,    // worker -> runtime: a loader or Init error (message), then it exits
  kRequest = 4,      // runtime -> worker: one batch
  kResponse = 5,     // worker -> runtime: the handler's result
  kOutOfMemory = 6,  // worker -> runtime: memory_size exceeded, then it exits
  kCheck = 7,        // runtime -> worker: a plugin path to open and check (no Init); answered
                     // with kReady or kInitError, then the worker exits
};

struct FrameHeader {
  uint32_t magic = kMagic;
  FrameType type = FrameType::kInit;
  uint64_t length = 0;
};

void EncodeHeader(const FrameHeader& header, char* out);
// False when the magic is wrong.
bool DecodeHeader(const char* in, FrameHeader* header);

// A growable byte buffer that does not zero what it grows into (a 6 MiB batch is rewritten for
// every invocation; std::string::resize would memset it each time).
class Buffer {
 public:
  char* data() { return data_.get(); }
  const char* data() const { return data_.get(); }
  size_t size() const { return size_; }
  // Makes the size `n`, keeping the first min(n, size()) bytes.
  void Resize(size_t n) {
    if (n > capacity_) Grow(n);
    size_ = n;
  }
  std::string_view view() const { return std::string_view(data_.get(), size_); }

 private:
  void Grow(size_t n);
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

struct InitMessage {
  std::string plugin_path;
  std::string function_name;
  int64_t timeout_ms = 0;
  int32_t memory_size_mb = 0;
  std::map<std::string, std::string> environment;
};
// Encodes header + payload into `out`.
void EncodeInit(const InitMessage& message, Buffer* out);
bool DecodeInit(std::string_view payload, InitMessage* message);

// One string payload (kInitError).
void EncodeText(FrameType type, std::string_view text, Buffer* out);

// Encodes header + payload of a kRequest frame.
void EncodeRequest(const InvokeRequest& request, std::string_view request_id,
                   std::string_view invoke_identity_arn, int64_t deadline_monotonic_ns,
                   Buffer* out);

// A decoded request: views into the payload it was decoded from.
struct RequestView {
  runnel_event event{};
  std::vector<runnel_record> records;  // event.records points here
  std::string_view request_id;
  int64_t deadline_monotonic_ns = 0;
  uint32_t attempt = 1;
};
// False when the payload is malformed (lengths that do not add up).
bool DecodeRequest(std::string_view payload, RequestView* request);

struct ResponseMessage {
  int32_t outcome = RUNNEL_OUTCOME_SUCCESS;
  std::string error_type;
  std::string error_message;
  std::vector<std::string> batch_item_failures;
  int64_t max_rss_kb = 0;
};
void EncodeResponse(const ResponseMessage& message, Buffer* out);
bool DecodeResponse(std::string_view payload, ResponseMessage* message);

}  // namespace runnel::runtime::wire
