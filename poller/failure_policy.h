// The failure policy of one lane's batch: Lambda's retry, record-age, bisect and
// ReportBatchItemFailures rules (docs/aws-semantics.md#retries, #record-age, #bisect,
// #partial-batch-responses) as a pure state machine. It decides which records to invoke next,
// which are done, which are discarded (and with what on-failure metadata) and how long to back
// off; the caller does the invoking, the waiting, the dead-letter writes and the checkpointing.
// No I/O, no threads, no clock of its own (the caller passes `now_ms`), so every rule is tested
// by driving it with a scripted handler.
//
// Driving it (one FailurePolicy per batch the lane's batcher hands out):
//
//   FailurePolicy policy(options, records);
//   for (;;) {
//     FailurePolicy::Action action = policy.Next(NowMs());
//     switch (action.kind) {
//       case kInvoke:   policy.OnResult(Invoke(records [begin, end), attempt)); break;
//       case kDone:     mark [begin, end) done; break;
//       case kDiscard:  write the on-failure record (retrying until written), then mark the
//                       records done; break;
//       case kWait:     sleep until until_ms (or until stopped); break;
//       case kFinished: the batch is finished: take the next one.
//     }
//   }
//
// Every range is [begin, end) into the records given to the constructor. Records leave the
// policy only from the front and in order: Done and Discard ranges tile the batch from index 0
// upward, and an Invoke always starts at the first record not yet done or discarded. So the
// lane's order (and with it per-key order) holds, and nothing behind a failing record moves
// until that record succeeds or is discarded.
//
// THE RULES, exactly (N = retry_attempts, -1 = no limit):
//
// * A failed invocation is a function error: kFunctionError, kTimeout, kCrash,
//   kMemoryExceeded, kInvalidResponse, or (with report_batch_item_failures) an invalid
//   batch-item-failures response (an empty identifier or one that is not a sequence number of
//   the invoked records). Or a partial failure: a valid batch-item-failures response naming at
//   least one record. kUnavailable (the handler never ran) is neither: it is retried after the
//   back-off without counting toward N and without bisecting (invocation failures before the
//   function runs do not count: docs/aws-semantics.md#function-errors).
//
// * The retry counter belongs to a range of records (a "segment"): the batch starts as one
//   segment with count 0. Each function error or partial failure of a segment adds one, and
//   when the count exceeds N the segment is discarded with RetryAttemptsExhausted, so a
//   failing segment is invoked at most N + 1 times. Invoke::attempt is count + 1 (the
//   invocation about to happen), which is what InvokeRequest::attempt takes, and a discard
//   reports approximateInvokeCount = count (N + 1 when retries ran out), as AWS reports.
//
// * bisect_batch_on_error: a function error on a segment of more than one record is not
//   retried as is: the segment is split into [begin, mid) and [mid, end) with
//   mid = begin + size / 2 (the first half is the smaller when the size is odd), the first
//   half is invoked first, and EACH HALF STARTS WITH A FRESH COUNT OF 0. Why fresh: "splitting
//   does not use up retries" (docs/aws-semantics.md#bisect) is only true if halving never
//   consumes the quota; with inherited counts a batch of 8 with N = 2 would be discarded
//   whole after three halvings, good records and all, which defeats the point of bisecting.
//   With fresh counts a batch always reaches single records before the counter decides, so
//   exactly the poison records are discarded, each after N + 1 invocations of itself alone
//   (plus the log2(size) invocations of the ranges that contained it on the way down). This
//   is also the Yulin emulator's behaviour. Splitting happens whatever N is, -1 and 0
//   included.
//
// * report_batch_item_failures: kSuccess, or kBatchItemFailures with no identifiers, is
//   success. Otherwise every identifier must be non-empty and name a record of the invoked
//   range, else the whole invocation is a function error (it counts, and bisects when bisect
//   is on: AWS counts an invalid response as a function error,
//   docs/aws-semantics.md#function-errors). A valid response at lowest record k (the lowest
//   sequence number, which in shard order is the lowest index) makes [begin, k) Done, and the
//   segment continues as [k, end) with its count plus one (a partial failure is a failed
//   attempt: on AWS approximateInvokeCount reaches N + 1 and the discard covers the records
//   from the lowest reported one onward, docs/aws-semantics.md#partial-batch-responses). With
//   bisect on, "a partial response splits at the reported record" is exactly this: the split
//   point is the reported record instead of the middle, the part before it is done, the
//   remainder is retried. The remainder KEEPS the count (unlike a bisect half) because the
//   handler already isolated the failing record, so there is nothing left for halving to
//   find, and because a handler that keeps reporting the same record must run out of
//   retries. A function error on that remainder bisects it as usual.
//   Without report_batch_item_failures, kBatchItemFailures is success (Lambda ignores the
//   response).
//
// * max_record_age (kNoMaxAge = none): before each invocation, and also while backing off,
//   the records of the front segment with now_ms - arrival_ms > max_record_age_ms are
//   discarded with RecordAgeExceeded. Arrival times are non-decreasing in shard order, so the
//   expired records are a prefix; the discard stays within one segment (a segment's retry
//   count and last response describe all its records) and the segment continues with the
//   rest, keeping its count. The first check happens before the first invocation, so a batch
//   that is already too old is discarded with approximateInvokeCount 0 and never invoked.
//
// * Back-off: after a failed invocation (function error, partial failure or unavailable) the
//   next invocation, whatever range, waits min(kMaxBackoffMs, kMinBackoffMs * 2^(streak - 1))
//   where streak counts consecutive failed invocations since the last success or
//   retries-exhausted discard: 100, 200, 400, ... ms, capped at 10 s (the poller's RPC back-off
//   cap). The delay runs from the first Next after the failure. A Wait never runs past the
//   moment the front record expires, so an age discard happens on time. A success resets the
//   streak (progress: no reason to hold back the records after it), and so does a
//   retries-exhausted discard (the next records have not failed yet).
//
// * Discard metadata (for the on-failure record, docs/aws-semantics.md#on-failure-record):
//   approximate_invoke_count is the segment's count;
//   last_response is the last response that covered these records: kFunctionError
//   (functionError "Unhandled"), kPartialFailure (functionError null, as AWS observed), or
//   kNone when the records never reached the function (age-expired before any invocation, or
//   only kUnavailable so far). A bisect half inherits its parent's last response (the
//   parent's failing invocation contained its records), so it may report count 0 with
//   "Unhandled": count 0 means "never invoked as exactly this range".
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "poller/config.h"
#include "runnel/runtime/function.h"

namespace runnel::poller {

inline constexpr int64_t kNoMaxAge = -1;
inline constexpr int64_t kMinBackoffMs = 100;
inline constexpr int64_t kMaxBackoffMs = 10'000;

struct FailurePolicyOptions {
  int retry_attempts = -1;                // -1: no limit
  int64_t max_record_age_ms = kNoMaxAge;  // kNoMaxAge: no limit
  bool bisect_batch_on_error = false;
  bool report_batch_item_failures = false;

  static FailurePolicyOptions FromSpec(const MappingSpec& spec);
};

// What the policy needs of one record. The view must stay valid as long as the policy.
struct PolicyRecord {
  std::string_view sequence_number;
  int64_t arrival_ms = 0;  // approximateArrivalTimestamp, ms since the Unix epoch
};

enum class DiscardCondition { kRetryAttemptsExhausted, kRecordAgeExceeded };
// "RetryAttemptsExhausted" / "RecordAgeExceeded" (docs/aws-semantics.md#on-failure-record).
std::string_view DiscardConditionName(DiscardCondition condition);

// The last response covering some records, for the on-failure record's responseContext.
enum class LastResponse {
  kNone,            // never reached the function
  kFunctionError,   // functionError "Unhandled"
  kPartialFailure,  // functionError null
};

class FailurePolicy {
 public:
  struct Action {
    enum class Kind { kInvoke, kDone, kDiscard, kWait, kFinished };
    Kind kind = Kind::kFinished;
    size_t begin = 0;  // kInvoke, kDone, kDiscard: records [begin, end)
    size_t end = 0;
    // kInvoke: this invocation's number for these records, 1 for the first (InvokeRequest's
    // attempt).
    int attempt = 0;
    // kDiscard:
    DiscardCondition condition = DiscardCondition::kRetryAttemptsExhausted;
    int approximate_invoke_count = 0;
    LastResponse last_response = LastResponse::kNone;
    std::string error_type;  // the last failure's, for logs ("" for kNone)
    std::string error_message;
    std::string request_id;  // the last failed invocation's (the record's requestId; "": none)
    // With last_response kPartialFailure: how many of the discarded records the handler's last
    // response named as failed. The others were only behind the lowest one named (a partial
    // failure retries, and in the end discards, from that record to the end of the range).
    size_t reported_failed = 0;
    int64_t until_ms = 0;  // kWait: call Next again at (or after) this time

    size_t size() const { return end - begin; }
    // For logs and test traces: "invoke [0,8) #1", "done [0,4)", "wait 1100",
    // "discard [5,6) RetryAttemptsExhausted count=3 Unhandled", "finished".
    std::string ToString() const;
    // For a discard's log line: after a partial failure, "; the handler reported 1 of these 5
    // records as failed, the others came after it in the batch", else "".
    std::string ReportedFailedNote() const;
  };

  // `records`: the batch, in shard order, non-empty.
  FailurePolicy(FailurePolicyOptions options, std::vector<PolicyRecord> records);

  // What to do now. Done and Discard are final when returned: the policy has moved past those
  // records and the caller must carry the action out (for Discard: write the on-failure record,
  // retrying as long as it takes, before marking them done). After kInvoke, call OnResult
  // before Next (Next returns the same Invoke again until then). kWait and kFinished change
  // nothing and may be asked again.
  Action Next(int64_t now_ms);

  // The result of the invocation Next asked for.
  void OnResult(const runtime::InvokeResult& result);

  bool finished() const { return segments_.empty() && !pending_done_; }
  size_t size() const { return records_.size(); }
  // How many times a segment was split in two by bisect_batch_on_error so far (for metrics).
  int bisections() const { return bisections_; }

 private:
  struct Segment {
    size_t begin = 0;
    size_t end = 0;
    int count = 0;  // failed attempts (function errors and partial failures) of this segment
    LastResponse last = LastResponse::kNone;
    std::string error_type;
    std::string error_message;
    std::string request_id;
    std::vector<size_t> reported;  // last == kPartialFailure: the indices it named, ascending
  };

  // How many of `segment.reported` fall in [begin, end).
  static size_t ReportedIn(const Segment& segment, size_t begin, size_t end);

  void Failed();  // bookkeeping shared by every failed invocation (back-off)
  int64_t BackoffMs() const;

  const FailurePolicyOptions options_;
  const std::vector<PolicyRecord> records_;
  // Tiles the records not yet done or discarded, in order; the front one is the next invoked.
  std::deque<Segment> segments_;
  // A Done (a success or a partial failure's prefix) not yet reported.
  struct Range {
    size_t begin;
    size_t end;
  };
  std::optional<Range> pending_done_;
  bool exhausted_ = false;  // the front segment ran out of retries: discard it next
  bool in_flight_ = false;
  int streak_ = 0;            // consecutive failed invocations
  bool backoff_due_ = false;  // a failure whose back-off has not been scheduled yet
  int64_t retry_at_ms_ = 0;   // no invocation before this
  int bisections_ = 0;
};

}  // namespace runnel::poller
