#include "kinesis/event_stream.h"

#include <zlib.h>

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace runnel::kinesis {
namespace {

uint32_t Crc32(std::string_view data) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

void PutU32(std::string* out, uint32_t value) {
  const char bytes[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
                         static_cast<char>(value >> 8), static_cast<char>(value)};
  out->append(bytes, 4);
}

uint32_t GetU32(std::string_view data, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data() + at);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

constexpr uint8_t kStringHeader = 7;
constexpr size_t kPreludeBytes = 12;

}  // namespace

std::string EncodeEventStreamMessage(const EventStreamHeaders& headers, std::string_view payload) {
  std::string encoded_headers;
  for (const auto& [name, value] : headers) {
    encoded_headers.push_back(static_cast<char>(name.size()));
    encoded_headers.append(name);
    encoded_headers.push_back(static_cast<char>(kStringHeader));
    encoded_headers.push_back(static_cast<char>(value.size() >> 8));
    encoded_headers.push_back(static_cast<char>(value.size() & 0xff));
    encoded_headers.append(value);
  }
  const size_t total = kPreludeBytes + encoded_headers.size() + payload.size() + 4;
  std::string out;
  out.reserve(total);
  PutU32(&out, static_cast<uint32_t>(total));
  PutU32(&out, static_cast<uint32_t>(encoded_headers.size()));
  PutU32(&out, Crc32(out));
  out.append(encoded_headers);
  out.append(payload);
  PutU32(&out, Crc32(out));
  return out;
}

absl::StatusOr<EventStreamMessage> DecodeEventStreamMessage(std::string_view data,
                                                            size_t* consumed) {
  if (data.size() < kPreludeBytes) return absl::DataLossError("event-stream: truncated prelude");
  const uint32_t total = GetU32(data, 0);
  const uint32_t headers_length = GetU32(data, 4);
  if (GetU32(data, 8) != Crc32(data.substr(0, 8))) {
    return absl::DataLossError("event-stream: prelude CRC mismatch");
  }
  if (total < kPreludeBytes + 4 + headers_length || data.size() < total) {
    return absl::DataLossError(
        absl::StrCat("event-stream: message of ", total, " bytes, ", data.size(), " available"));
  }
  if (GetU32(data, total - 4) != Crc32(data.substr(0, total - 4))) {
    return absl::DataLossError("event-stream: message CRC mismatch");
  }
  EventStreamMessage message;
  size_t at = kPreludeBytes;
  const size_t headers_end = kPreludeBytes + headers_length;
  while (at < headers_end) {
    const size_t name_length = static_cast<unsigned char>(data[at]);
    if (at + 1 + name_length + 3 > headers_end) {
      return absl::DataLossError("event-stream: truncated header");
    }
    std::string name(data.substr(at + 1, name_length));
    at += 1 + name_length;
    if (static_cast<unsigned char>(data[at]) != kStringHeader) {
      return absl::DataLossError(absl::StrCat("event-stream: header ", name, " is not a string"));
    }
    const size_t value_length =
        (static_cast<size_t>(static_cast<unsigned char>(data[at + 1])) << 8) |
        static_cast<unsigned char>(data[at + 2]);
    at += 3;
    if (at + value_length > headers_end) {
      return absl::DataLossError("event-stream: truncated header value");
    }
    message.headers.emplace_back(std::move(name), std::string(data.substr(at, value_length)));
    at += value_length;
  }
  message.payload = std::string(data.substr(headers_end, total - 4 - headers_end));
  *consumed = total;
  return message;
}

}  // namespace runnel::kinesis
