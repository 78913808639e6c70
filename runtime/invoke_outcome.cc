#include "runtime/invoke_outcome.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runnel/handler.h"

namespace runnel::runtime {

void SetResultFromOutcome(int32_t outcome, std::string& error_type, std::string& error_message,
                          std::vector<std::string>& batch_item_failures, InvokeResult* result) {
  switch (outcome) {
    case RUNNEL_OUTCOME_SUCCESS:
      result->status = InvokeStatus::kSuccess;
      break;
    case RUNNEL_OUTCOME_FAILURE:
      result->status = InvokeStatus::kFunctionError;
      result->error_type = std::move(error_type);
      result->error_message = std::move(error_message);
      break;
    case RUNNEL_OUTCOME_BATCH_ITEM_FAILURES:
      result->status =
          batch_item_failures.empty() ? InvokeStatus::kSuccess : InvokeStatus::kBatchItemFailures;
      result->batch_item_failures = std::move(batch_item_failures);
      break;
    default:
      // The plugin returned nonsense (in process mode the worker itself framed it fine).
      result->status = InvokeStatus::kInvalidResponse;
      result->error_type = "Runtime.InvalidResponse";
      result->error_message = absl::StrCat("the handler returned an unknown outcome ", outcome);
      break;
  }
}

std::string TimeoutMessage(absl::Duration timeout) {
  return absl::StrFormat("Task timed out after %.2f seconds", absl::ToDoubleSeconds(timeout));
}

}  // namespace runnel::runtime
