// Checks that a listener's address is free before a process creates or locks anything, so that
// a second runnel on a taken port fails at once with one line naming the flag and the address
// (`--listen 127.0.0.1:4567: address already in use`) instead of starting beside the first.
//
// Every runnel listener binds without SO_REUSEPORT (gRPC turns it on by default on Linux; see
// GrpcServer), so the real bind fails too when two processes start at the same instant and both
// pass this check; the check only moves the failure before the data directory is touched.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace runnel {

// OK when every address HOST:PORT ([v6]:PORT for IPv6) resolves to can be bound now (port 0 and
// forms that are not HOST:PORT, e.g. gRPC's unix:PATH, are left to the server to judge).
// UNAVAILABLE "FLAG ADDRESS: address already in use" (or the kernel's other reason) otherwise.
absl::Status CheckListenAddressFree(std::string_view flag, std::string_view address);

// Why binding `address` fails, in the kernel's words lower-cased ("address already in use"), or
// "" when it can be bound now. For servers whose own error says only that they failed.
std::string BindFailureReason(std::string_view address);

}  // namespace runnel
