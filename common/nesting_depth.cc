#include "common/nesting_depth.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace runnel {
namespace {

absl::Status TooDeep(int max_depth, size_t offset) {
  return absl::InvalidArgumentError(
      absl::StrCat("nested deeper than ", max_depth, " levels (at byte ", offset, ")"));
}

absl::Status Malformed(std::string_view why, size_t offset) {
  return absl::InvalidArgumentError(absl::StrCat("not CBOR: ", Sv(why), " at byte ", offset));
}

}  // namespace

absl::Status CheckJsonNesting(std::string_view json, int max_depth) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) return TooDeep(max_depth, i);
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckCborNesting(std::string_view cbor, int max_depth) {
  // One frame per open container: how many items it still holds (kIndefinite: until a break).
  constexpr uint64_t kIndefinite = std::numeric_limits<uint64_t>::max();
  std::vector<uint64_t> open;
  const auto* bytes = reinterpret_cast<const uint8_t*>(cbor.data());
  const size_t size = cbor.size();
  size_t i = 0;
  auto push = [&](uint64_t items, size_t at) -> absl::Status {
    if (static_cast<int64_t>(open.size()) + 1 > max_depth) return TooDeep(max_depth, at);
    open.push_back(items);
    return absl::OkStatus();
  };
  // Reading one item at a time; a finished item counts against its container.
  while (i < size) {
    const size_t at = i;
    const uint8_t initial = bytes[i++];
    const int major = initial >> 5;
    const int info = initial & 31;
    if (initial == 0xFF) {  // break: ends the innermost indefinite container
      if (open.empty() || open.back() != kIndefinite) return Malformed("unexpected break", at);
      open.pop_back();
    } else {
      uint64_t argument = 0;
      bool indefinite = false;
      if (info < 24) {
        argument = static_cast<uint64_t>(info);
      } else if (info <= 27) {
        const size_t length = size_t{1} << (info - 24);
        if (size - i < length) return Malformed("truncated argument", at);
        for (size_t k = 0; k < length; ++k) argument = (argument << 8) | bytes[i++];
      } else if (info == 31 && major >= 2 && major <= 5) {
        indefinite = true;
      } else {
        return Malformed("reserved additional information", at);
      }
      switch (major) {
        case 2:
        case 3:  // byte and text strings: skip the content, or open the chunks
          if (indefinite) {
            if (auto status = push(kIndefinite, at); !status.ok()) return status;
            continue;
          }
          if (argument > size - i) return Malformed("string past the end", at);
          i += static_cast<size_t>(argument);
          break;
        case 4:
        case 5: {  // arrays and maps (a map holds two items per entry)
          uint64_t items = argument;
          if (!indefinite && major == 5) {
            items = argument > kIndefinite / 2 - 1 ? kIndefinite - 1 : argument * 2;
          }
          if (indefinite) items = kIndefinite;
          if (items == 0) {  // empty: counts as a level, but nothing stays open
            if (static_cast<int64_t>(open.size()) + 1 > max_depth) return TooDeep(max_depth, at);
            break;
          }
          if (auto status = push(items, at); !status.ok()) return status;
          continue;
        }
        case 6:  // a tag: the next item is its content, one level down
          if (auto status = push(1, at); !status.ok()) return status;
          continue;
        default:  // integers, simple values and floats: the argument was all
          break;
      }
    }
    // One item is complete: count it in its container, closing those it fills.
    while (!open.empty() && open.back() != kIndefinite) {
      if (--open.back() > 0) break;
      open.pop_back();
    }
  }
  return absl::OkStatus();
}

}  // namespace runnel
