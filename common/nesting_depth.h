// Bounds the nesting depth of JSON and CBOR documents before a recursive decoder sees them.
//
// nlohmann's CBOR reader recurses once per array, map, tag and indefinite-length string, and
// rapidjson's default reader and writer once per array or object, so a body of 150,000 nested
// arrays overflows the stack. These scanners walk the bytes iteratively, with constant memory,
// and stop at the first level past the bound. They judge nesting only: a document they pass may
// still be malformed, which the real decoder then reports.
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace runnel {

// INVALID_ARGUMENT "nested deeper than MAX levels (at byte OFFSET)" when an array or object of
// `json` opens at depth max_depth + 1 (the top-level value being depth 1). Brackets inside
// strings do not count.
absl::Status CheckJsonNesting(std::string_view json, int max_depth);

// The same for CBOR (RFC 8949): arrays, maps, tags and indefinite-length strings each add a
// level, as they do in a recursive decoder. Also INVALID_ARGUMENT when the structure cannot be
// followed (a reserved additional-information value, a length past the end).
absl::Status CheckCborNesting(std::string_view cbor, int max_depth);

}  // namespace runnel
