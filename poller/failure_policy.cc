// The failure policy's state machine; the rules and the reasons for them are in the header.
#include "poller/failure_policy.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/strings.h"

namespace runnel::poller {

FailurePolicyOptions FailurePolicyOptions::FromSpec(const MappingSpec& spec) {
  FailurePolicyOptions options;
  options.retry_attempts = spec.retry_attempts;
  options.max_record_age_ms = spec.max_record_age == absl::InfiniteDuration()
                                  ? kNoMaxAge
                                  : absl::ToInt64Milliseconds(spec.max_record_age);
  options.bisect_batch_on_error = spec.bisect_batch_on_error;
  options.report_batch_item_failures = spec.report_batch_item_failures;
  return options;
}

std::string_view DiscardConditionName(DiscardCondition condition) {
  return condition == DiscardCondition::kRecordAgeExceeded ? "RecordAgeExceeded"
                                                           : "RetryAttemptsExhausted";
}

std::string FailurePolicy::Action::ToString() const {
  switch (kind) {
    case Kind::kInvoke:
      return absl::StrCat("invoke [", begin, ",", end, ") #", attempt);
    case Kind::kDone:
      return absl::StrCat("done [", begin, ",", end, ")");
    case Kind::kDiscard: {
      std::string_view last = last_response == LastResponse::kFunctionError    ? "Unhandled"
                              : last_response == LastResponse::kPartialFailure ? "partial"
                                                                               : "never-invoked";
      return absl::StrCat("discard [", begin, ",", end, ") ", Sv(DiscardConditionName(condition)),
                          " count=", approximate_invoke_count, " ", Sv(last));
    }
    case Kind::kWait:
      return absl::StrCat("wait ", until_ms);
    case Kind::kFinished:
      break;
  }
  return "finished";
}

std::string FailurePolicy::Action::ReportedFailedNote() const {
  if (kind != Kind::kDiscard || last_response != LastResponse::kPartialFailure) return "";
  if (reported_failed == size()) {
    return absl::StrCat("; the handler reported ", reported_failed == 1 ? "it" : "all of them",
                        " as failed");
  }
  return absl::StrCat("; the handler reported ", reported_failed, " of these ", size(),
                      " records as failed, the others came after it in the batch");
}

FailurePolicy::FailurePolicy(FailurePolicyOptions options, std::vector<PolicyRecord> records)
    : options_(options), records_(std::move(records)) {
  if (!records_.empty()) {
    Segment whole;
    whole.end = records_.size();
    segments_.push_back(std::move(whole));
  }
}

int64_t FailurePolicy::BackoffMs() const {
  if (streak_ <= 0) return 0;
  // 100 << 7 already exceeds the cap; stop shifting before it could overflow.
  if (streak_ - 1 >= 7) return kMaxBackoffMs;
  return std::min(kMaxBackoffMs, kMinBackoffMs << (streak_ - 1));
}

FailurePolicy::Action FailurePolicy::Next(int64_t now_ms) {
  Action action;
  if (in_flight_) {
    // Still waiting for OnResult: the same invocation is what is to be done.
    const Segment& front = segments_.front();
    action.kind = Action::Kind::kInvoke;
    action.begin = front.begin;
    action.end = front.end;
    action.attempt = front.count + 1;
    return action;
  }
  // A partial failure's done prefix comes before anything about the records behind it.
  if (pending_done_) {
    action.kind = Action::Kind::kDone;
    action.begin = pending_done_->begin;
    action.end = pending_done_->end;
    pending_done_.reset();
    return action;
  }
  if (exhausted_) {
    Segment& front = segments_.front();
    action.kind = Action::Kind::kDiscard;
    action.begin = front.begin;
    action.end = front.end;
    action.condition = DiscardCondition::kRetryAttemptsExhausted;
    action.approximate_invoke_count = front.count;
    action.last_response = front.last;
    action.error_type = std::move(front.error_type);
    action.error_message = std::move(front.error_message);
    action.request_id = std::move(front.request_id);
    action.reported_failed = ReportedIn(front, front.begin, front.end);
    segments_.pop_front();
    exhausted_ = false;
    // The records behind have not failed on their own yet: no reason to hold them back.
    streak_ = 0;
    backoff_due_ = false;
    retry_at_ms_ = 0;
    return action;
  }
  if (segments_.empty()) {
    action.kind = Action::Kind::kFinished;
    return action;
  }
  if (backoff_due_) {
    retry_at_ms_ = now_ms + BackoffMs();
    backoff_due_ = false;
  }
  Segment& front = segments_.front();
  int64_t expires_at_ms = INT64_MAX;  // when the front record becomes too old
  if (options_.max_record_age_ms != kNoMaxAge) {
    size_t expired = front.begin;
    while (expired < front.end &&
           now_ms - records_[expired].arrival_ms > options_.max_record_age_ms) {
      ++expired;
    }
    if (expired > front.begin) {
      action.kind = Action::Kind::kDiscard;
      action.begin = front.begin;
      action.end = expired;
      action.condition = DiscardCondition::kRecordAgeExceeded;
      action.approximate_invoke_count = front.count;
      action.last_response = front.last;
      action.error_type = front.error_type;
      action.error_message = front.error_message;
      action.request_id = front.request_id;
      action.reported_failed = ReportedIn(front, front.begin, expired);
      if (expired == front.end) {
        segments_.pop_front();
      } else {
        front.begin = expired;  // the rest keeps its count: still the same retry
      }
      return action;
    }
    expires_at_ms = records_[front.begin].arrival_ms + options_.max_record_age_ms + 1;
  }
  if (now_ms < retry_at_ms_) {
    action.kind = Action::Kind::kWait;
    action.until_ms = std::min(retry_at_ms_, expires_at_ms);
    return action;
  }
  action.kind = Action::Kind::kInvoke;
  action.begin = front.begin;
  action.end = front.end;
  action.attempt = front.count + 1;
  in_flight_ = true;
  return action;
}

size_t FailurePolicy::ReportedIn(const Segment& segment, size_t begin, size_t end) {
  if (segment.last != LastResponse::kPartialFailure) return 0;
  return static_cast<size_t>(std::count_if(segment.reported.begin(), segment.reported.end(),
                                           [&](size_t i) { return i >= begin && i < end; }));
}

void FailurePolicy::Failed() {
  ++streak_;
  backoff_due_ = true;
}

void FailurePolicy::OnResult(const runtime::InvokeResult& result) {
  assert(in_flight_ && !segments_.empty());
  if (!in_flight_ || segments_.empty()) return;
  in_flight_ = false;
  Segment& front = segments_.front();
  const size_t begin = front.begin;
  const size_t end = front.end;

  enum class Outcome { kSuccess, kFunctionError, kPartial, kUnavailable };
  Outcome outcome = Outcome::kFunctionError;
  std::string error_type = result.error_type;
  std::string error_message = result.error_message;
  size_t lowest = end;           // kPartial: the lowest reported record
  std::vector<size_t> reported;  // kPartial: every reported record
  switch (result.status) {
    case runtime::InvokeStatus::kSuccess:
      outcome = Outcome::kSuccess;
      break;
    case runtime::InvokeStatus::kUnavailable:
      outcome = Outcome::kUnavailable;
      break;
    case runtime::InvokeStatus::kBatchItemFailures: {
      if (!options_.report_batch_item_failures || result.batch_item_failures.empty()) {
        outcome = Outcome::kSuccess;
        break;
      }
      // Every identifier must name a record of this invocation; one that does not (empty,
      // unknown, from another range) fails the whole invocation
      // (docs/aws-semantics.md#partial-batch-responses).
      bool valid = true;
      for (const std::string& id : result.batch_item_failures) {
        size_t found = end;
        if (!id.empty()) {
          for (size_t i = begin; i < end; ++i) {
            if (records_[i].sequence_number == id) {
              found = i;
              break;
            }
          }
        }
        if (found == end) {
          valid = false;
          error_type = "InvalidBatchItemFailures";
          error_message = id.empty() ? "batchItemFailures: an itemIdentifier is empty"
                                     : absl::StrCat("batchItemFailures: itemIdentifier \"", id,
                                                    "\" is not in the batch");
          break;
        }
        lowest = std::min(lowest, found);
        reported.push_back(found);
      }
      outcome = valid ? Outcome::kPartial : Outcome::kFunctionError;
      if (valid) {
        error_type = "PartialBatchFailure";
        error_message =
            absl::StrCat("batchItemFailures from ", Sv(records_[lowest].sequence_number));
      }
      break;
    }
    default:  // kFunctionError, kTimeout, kCrash, kMemoryExceeded, kInvalidResponse
      outcome = Outcome::kFunctionError;
      break;
  }

  const bool limited = options_.retry_attempts >= 0;
  switch (outcome) {
    case Outcome::kSuccess:
      pending_done_ = Range{begin, end};
      segments_.pop_front();
      streak_ = 0;
      backoff_due_ = false;
      retry_at_ms_ = 0;
      return;
    case Outcome::kUnavailable:
      // Not an attempt: same range, same count, same last response; only the back-off grows.
      Failed();
      return;
    case Outcome::kPartial:
      Failed();
      if (lowest > begin) pending_done_ = Range{begin, lowest};
      front.begin = lowest;
      ++front.count;
      front.last = LastResponse::kPartialFailure;
      front.error_type = std::move(error_type);
      front.error_message = std::move(error_message);
      front.request_id = result.request_id;
      std::sort(reported.begin(), reported.end());
      reported.erase(std::unique(reported.begin(), reported.end()), reported.end());
      front.reported = std::move(reported);
      exhausted_ = limited && front.count > options_.retry_attempts;
      return;
    case Outcome::kFunctionError:
      Failed();
      if (options_.bisect_batch_on_error && end - begin > 1) {
        // Split; each half starts a fresh count (see the header for why) and inherits the last
        // response, which covered its records.
        const size_t mid = begin + (end - begin) / 2;
        Segment first{begin,
                      mid,
                      0,
                      LastResponse::kFunctionError,
                      error_type,
                      error_message,
                      result.request_id,
                      {}};
        Segment second{mid,
                       end,
                       0,
                       LastResponse::kFunctionError,
                       std::move(error_type),
                       std::move(error_message),
                       result.request_id,
                       {}};
        segments_.pop_front();
        segments_.push_front(std::move(second));
        segments_.push_front(std::move(first));
        ++bisections_;
        return;
      }
      ++front.count;
      front.last = LastResponse::kFunctionError;
      front.error_type = std::move(error_type);
      front.error_message = std::move(error_message);
      front.request_id = result.request_id;
      exhausted_ = limited && front.count > options_.retry_attempts;
      return;
  }
}

}  // namespace runnel::poller
