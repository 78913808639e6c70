// Encoding and decoding of the worker channel's frames (layout in wire.h).
#include "runtime/wire.h"

#include <algorithm>

namespace runnel::runtime::wire {
namespace {

// x86-64 and aarch64 are little-endian; the memcpy is the portable unaligned load/store.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire layout assumes little-endian");

template <typename T>
void Store(char*& at, T value) {
  std::memcpy(at, &value, sizeof(T));
  at += sizeof(T);
}
void StoreBytes(char*& at, std::string_view bytes) {
  if (!bytes.empty()) std::memcpy(at, bytes.data(), bytes.size());
  at += bytes.size();
}
// A length-prefixed string: u32 length + bytes.
void StoreString(char*& at, std::string_view text) {
  Store<uint32_t>(at, static_cast<uint32_t>(text.size()));
  StoreBytes(at, text);
}
size_t StringSize(std::string_view text) { return 4 + text.size(); }

// Bounds-checked reads over a payload that may come from a broken worker.
class Reader {
 public:
  explicit Reader(std::string_view in) : at_(in.data()), left_(in.size()) {}
  template <typename T>
  bool Load(T* value) {
    if (left_ < sizeof(T)) return false;
    std::memcpy(value, at_, sizeof(T));
    at_ += sizeof(T);
    left_ -= sizeof(T);
    return true;
  }
  bool Bytes(size_t n, std::string_view* out) {
    if (left_ < n) return false;
    *out = std::string_view(at_, n);
    at_ += n;
    left_ -= n;
    return true;
  }
  bool String(std::string_view* out) {
    uint32_t n;
    return Load(&n) && Bytes(n, out);
  }
  bool String(std::string* out) {
    std::string_view view;
    if (!String(&view)) return false;
    out->assign(view);
    return true;
  }
  const char* at() const { return at_; }
  size_t left() const { return left_; }

 private:
  const char* at_;
  size_t left_;
};

runnel_bytes ToBytes(std::string_view view) { return runnel_bytes{view.data(), view.size()}; }

// Starts a frame of `payload_size` bytes in `out` and returns where the payload goes.
char* StartFrame(FrameType type, size_t payload_size, Buffer* out) {
  out->Resize(kHeaderSize + payload_size);
  EncodeHeader(FrameHeader{kMagic, type, payload_size}, out->data());
  return out->data() + kHeaderSize;
}

// The fixed part of each record in a request: lengths and the arrival time.
struct RecordEntry {
  uint32_t partition_key_size;
  uint32_t sequence_number_size;
  uint32_t data_size;
  uint32_t reserved;
  int64_t approximate_arrival_ms;
};
static_assert(sizeof(RecordEntry) == 24);

}  // namespace

void Buffer::Grow(size_t n) {
  size_t capacity = std::max(n, capacity_ + capacity_ / 2);
  std::unique_ptr<char[]> grown(new char[capacity]);
  if (size_ > 0) std::memcpy(grown.get(), data_.get(), size_);
  data_ = std::move(grown);
  capacity_ = capacity;
}

void EncodeHeader(const FrameHeader& header, char* out) {
  Store<uint32_t>(out, header.magic);
  Store<uint32_t>(out, static_cast<uint32_t>(header.type));
  Store<uint64_t>(out, header.length);
}

bool DecodeHeader(const char* in, FrameHeader* header) {
  uint32_t type;
  std::memcpy(&header->magic, in, 4);
  std::memcpy(&type, in + 4, 4);
  std::memcpy(&header->length, in + 8, 8);
  header->type = static_cast<FrameType>(type);
  return header->magic == kMagic;
}

void EncodeInit(const InitMessage& message, Buffer* out) {
  size_t size = StringSize(message.plugin_path) + StringSize(message.function_name) + 8 + 4 + 4;
  for (const auto& [key, value] : message.environment) size += StringSize(key) + StringSize(value);
  char* at = StartFrame(FrameType::kInit, size, out);
  StoreString(at, message.plugin_path);
  StoreString(at, message.function_name);
  Store<int64_t>(at, message.timeout_ms);
  Store<int32_t>(at, message.memory_size_mb);
  Store<uint32_t>(at, static_cast<uint32_t>(message.environment.size()));
  for (const auto& [key, value] : message.environment) {
    StoreString(at, key);
    StoreString(at, value);
  }
}

bool DecodeInit(std::string_view payload, InitMessage* message) {
  Reader in(payload);
  uint32_t count;
  if (!in.String(&message->plugin_path) || !in.String(&message->function_name) ||
      !in.Load(&message->timeout_ms) || !in.Load(&message->memory_size_mb) || !in.Load(&count)) {
    return false;
  }
  message->environment.clear();
  for (uint32_t i = 0; i < count; ++i) {
    std::string key, value;
    if (!in.String(&key) || !in.String(&value)) return false;
    message->environment.emplace(std::move(key), std::move(value));
  }
  return in.left() == 0;
}

void EncodeText(FrameType type, std::string_view text, Buffer* out) {
  char* at = StartFrame(type, text.size(), out);
  StoreBytes(at, text);
}

// Request payload: request_id, shard_id, event_source_arn, aws_region, invoke_identity_arn (each
// u32-prefixed) | deadline i64 | attempt u32 | record count u32 | count × RecordEntry | for each
// record: partition key, sequence number, data bytes (no prefixes: the table has the lengths).
void EncodeRequest(const InvokeRequest& request, std::string_view request_id,
                   std::string_view invoke_identity_arn, int64_t deadline_monotonic_ns,
                   Buffer* out) {
  size_t size = StringSize(request_id) + StringSize(request.shard_id) +
                StringSize(request.event_source_arn) + StringSize(request.aws_region) +
                StringSize(invoke_identity_arn) + 8 + 4 + 4 +
                request.records.size() * sizeof(RecordEntry);
  for (const RecordView& r : request.records) {
    size += r.partition_key.size() + r.sequence_number.size() + r.data.size();
  }
  char* at = StartFrame(FrameType::kRequest, size, out);
  StoreString(at, request_id);
  StoreString(at, request.shard_id);
  StoreString(at, request.event_source_arn);
  StoreString(at, request.aws_region);
  StoreString(at, invoke_identity_arn);
  Store<int64_t>(at, deadline_monotonic_ns);
  Store<uint32_t>(at, static_cast<uint32_t>(request.attempt));
  Store<uint32_t>(at, static_cast<uint32_t>(request.records.size()));
  for (const RecordView& r : request.records) {
    RecordEntry entry{static_cast<uint32_t>(r.partition_key.size()),
                      static_cast<uint32_t>(r.sequence_number.size()),
                      static_cast<uint32_t>(r.data.size()), 0, r.approximate_arrival_ms};
    std::memcpy(at, &entry, sizeof(entry));
    at += sizeof(entry);
  }
  for (const RecordView& r : request.records) {
    StoreBytes(at, r.partition_key);
    StoreBytes(at, r.sequence_number);
    StoreBytes(at, r.data);
  }
}

bool DecodeRequest(std::string_view payload, RequestView* request) {
  Reader in(payload);
  std::string_view shard_id, arn, region, role;
  uint32_t count;
  if (!in.String(&request->request_id) || !in.String(&shard_id) || !in.String(&arn) ||
      !in.String(&region) || !in.String(&role) || !in.Load(&request->deadline_monotonic_ns) ||
      !in.Load(&request->attempt) || !in.Load(&count)) {
    return false;
  }
  std::string_view table;
  if (!in.Bytes(size_t{count} * sizeof(RecordEntry), &table)) return false;
  request->records.resize(count);
  const char* entry_at = table.data();
  for (uint32_t i = 0; i < count; ++i) {
    RecordEntry entry;
    std::memcpy(&entry, entry_at + size_t{i} * sizeof(RecordEntry), sizeof(entry));
    std::string_view key, sequence, data;
    if (!in.Bytes(entry.partition_key_size, &key) ||
        !in.Bytes(entry.sequence_number_size, &sequence) || !in.Bytes(entry.data_size, &data)) {
      return false;
    }
    runnel_record& record = request->records[i];
    record.partition_key = ToBytes(key);
    record.sequence_number = ToBytes(sequence);
    record.data = ToBytes(data);
    record.approximate_arrival_ms = entry.approximate_arrival_ms;
  }
  if (in.left() != 0) return false;
  request->event.records = request->records.data();
  request->event.record_count = request->records.size();
  request->event.shard_id = ToBytes(shard_id);
  request->event.event_source_arn = ToBytes(arn);
  request->event.aws_region = ToBytes(region);
  request->event.invoke_identity_arn = ToBytes(role);
  return true;
}

// Response payload: outcome i32 | max_rss_kb i64 | error type | error message | count u32 |
// count × identifier (each u32-prefixed).
void EncodeResponse(const ResponseMessage& message, Buffer* out) {
  size_t size = 4 + 8 + StringSize(message.error_type) + StringSize(message.error_message) + 4;
  for (const std::string& id : message.batch_item_failures) size += StringSize(id);
  char* at = StartFrame(FrameType::kResponse, size, out);
  Store<int32_t>(at, message.outcome);
  Store<int64_t>(at, message.max_rss_kb);
  StoreString(at, message.error_type);
  StoreString(at, message.error_message);
  Store<uint32_t>(at, static_cast<uint32_t>(message.batch_item_failures.size()));
  for (const std::string& id : message.batch_item_failures) StoreString(at, id);
}

bool DecodeResponse(std::string_view payload, ResponseMessage* message) {
  Reader in(payload);
  uint32_t count;
  if (!in.Load(&message->outcome) || !in.Load(&message->max_rss_kb) ||
      !in.String(&message->error_type) || !in.String(&message->error_message) || !in.Load(&count)) {
    return false;
  }
  // Each identifier takes at least its 4-byte prefix: refuse counts the payload cannot hold
  // before reserving for them.
  if (count > in.left() / 4) return false;
  message->batch_item_failures.clear();
  message->batch_item_failures.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    std::string_view id;
    if (!in.String(&id)) return false;
    message->batch_item_failures.emplace_back(id);
  }
  return in.left() == 0;
}

}  // namespace runnel::runtime::wire
