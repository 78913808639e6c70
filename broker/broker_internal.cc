#include "broker/broker_internal.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/strings.h"

namespace runnel::broker {

absl::Status ValidationError(std::string_view field, std::string_view value,
                             std::string_view constraint) {
  std::string shown(value.substr(0, 256));
  return absl::InvalidArgumentError(absl::StrFormat(
      "ValidationException: 1 validation error detected: Value '%s' at '%s' failed to satisfy "
      "constraint: %s",
      shown, field, constraint));
}

absl::Status ValidateStreamName(const std::string& name, std::string_view field) {
  if (name.empty()) {
    return ValidationError(field, name, "Member must have length greater than or equal to 1");
  }
  if (name.size() > kMaxStreamNameLength) {
    return ValidationError(field, name, "Member must have length less than or equal to 128");
  }
  for (char c : name) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      return ValidationError(field, name,
                             "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRetention(int hours, std::string_view field) {
  if (hours < kMinRetentionHours || hours > kMaxRetentionHours) {
    return absl::InvalidArgumentError(
        absl::StrCat("InvalidArgumentException: ", Sv(field), " ", hours,
                     " is out of range: retention must be between 24 and 8760 hours"));
  }
  return absl::OkStatus();
}

FsyncMode ToFsyncMode(v1::FsyncPolicy policy) {
  switch (policy) {
    case v1::FSYNC_INTERVAL:
      return FsyncMode::kInterval;
    case v1::FSYNC_NEVER:
      return FsyncMode::kNever;
    default:
      return FsyncMode::kAlways;
  }
}

}  // namespace runnel::broker
