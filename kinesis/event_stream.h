// AWS's event-stream framing (application/vnd.amazon.eventstream), which SubscribeToShard's
// answer is made of. One message:
//   total length (u32 BE) | headers length (u32 BE) | CRC32 of the 8 bytes before (u32 BE)
//   | headers | payload | CRC32 of everything before (u32 BE)
// A header: name length (u8) | name | type (u8; 7 = string) | value length (u16 BE) | value.
// CRC32 is zlib's (IEEE), not CRC32C.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace runnel::kinesis {

using EventStreamHeaders = std::vector<std::pair<std::string, std::string>>;

struct EventStreamMessage {
  EventStreamHeaders headers;  // string-valued headers only (the only kind Kinesis sends)
  std::string payload;
};

std::string EncodeEventStreamMessage(const EventStreamHeaders& headers, std::string_view payload);

// Decodes the message at the start of `data`; `consumed` gets its length. For tests and tools:
// refuses a bad CRC, a truncated message or a non-string header.
absl::StatusOr<EventStreamMessage> DecodeEventStreamMessage(std::string_view data,
                                                            size_t* consumed);

}  // namespace runnel::kinesis
