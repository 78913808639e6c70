// What both invocation modes say the same way: the result a handler's outcome stands for, and
// Lambda's wording for a timeout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "runnel/runtime/function.h"

namespace runnel::runtime {

// Sets result->status (and the error fields or item failures, moved from the arguments) for what
// a handler returned: success, a failure, batch-item failures (an empty list is success, as on
// Lambda), or an outcome code that does not exist (kInvalidResponse).
void SetResultFromOutcome(int32_t outcome, std::string& error_type, std::string& error_message,
                          std::vector<std::string>& batch_item_failures, InvokeResult* result);

// "Task timed out after 3.00 seconds": Lambda's wording, seconds with two decimals.
std::string TimeoutMessage(absl::Duration timeout);

}  // namespace runnel::runtime
