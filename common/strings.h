// Debian 12's Abseil is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0),
// so absl::StrCat and absl::SimpleAtoi do not take std::string_view. Wrap with Sv().
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace runnel {

inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace runnel
