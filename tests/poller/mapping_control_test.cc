// The pure parts of live mapping control: an update checked by the YAML's own limits (and
// named the same way), and the text form of a seek target.
#include "gtest/gtest.h"
#include "poller/config.h"
#include "poller/mapping_controller.h"

namespace runnel::poller {
namespace {

MappingSpec Spec() {
  MappingSpec spec;
  spec.stream = "events";
  spec.function = "echo";
  return spec;
}

google::protobuf::Duration Duration(int64_t seconds, int32_t nanos = 0) {
  google::protobuf::Duration d;
  d.set_seconds(seconds);
  d.set_nanos(nanos);
  return d;
}

TEST(ApplyUpdateTest, SetsOnlyTheFieldsGiven) {
  MappingSpec spec = Spec();
  spec.retry_attempts = 7;
  v1::UpdateEventSourceMappingRequest request;
  request.set_batch_size(25);
  *request.mutable_maximum_batching_window() = Duration(0, 500'000'000);
  request.set_parallelization_factor(4);
  request.set_bisect_batch_on_function_error(true);
  request.mutable_destination_config()->mutable_on_failure()->set_destination("file:dlq.jsonl");
  request.set_report_batch_item_failures(true);
  ASSERT_TRUE(ApplyUpdate(request, "/etc/runnel", &spec).ok());
  EXPECT_EQ(spec.batch_size, 25);
  EXPECT_EQ(spec.maximum_batching_window, absl::Milliseconds(500));
  EXPECT_EQ(spec.parallelization_factor, 4);
  EXPECT_TRUE(spec.bisect_batch_on_error);
  EXPECT_EQ(spec.on_failure.kind, OnFailureDestination::Kind::kFile);
  EXPECT_EQ(spec.on_failure.target, "/etc/runnel/dlq.jsonl");
  EXPECT_TRUE(spec.report_batch_item_failures);
  EXPECT_EQ(spec.retry_attempts, 7);  // not in the request
  EXPECT_EQ(spec.max_record_age, absl::InfiniteDuration());
}

TEST(ApplyUpdateTest, MinusOneSecondMeansNoRecordAgeLimitAndEmptyRemovesTheDestination) {
  MappingSpec spec = Spec();
  spec.max_record_age = absl::Minutes(5);
  spec.on_failure = {OnFailureDestination::Kind::kStream, "dlq"};
  v1::UpdateEventSourceMappingRequest request;
  *request.mutable_maximum_record_age() = Duration(-1);
  request.mutable_destination_config()->mutable_on_failure()->set_destination("");
  ASSERT_TRUE(ApplyUpdate(request, "/", &spec).ok());
  EXPECT_EQ(spec.max_record_age, absl::InfiniteDuration());
  EXPECT_EQ(spec.on_failure.kind, OnFailureDestination::Kind::kNone);
}

struct BadUpdate {
  std::string name;
  std::function<void(v1::UpdateEventSourceMappingRequest&)> set;
  std::string message;  // after "InvalidParameterValueException: "
};

class ApplyUpdateLimitsTest : public ::testing::TestWithParam<BadUpdate> {};

TEST_P(ApplyUpdateLimitsTest, RefusedWithTheYamlsWordsAndTheSpecUntouched) {
  MappingSpec spec = Spec();
  const MappingSpec before = spec;
  v1::UpdateEventSourceMappingRequest request;
  GetParam().set(request);
  absl::Status status = ApplyUpdate(request, "/", &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "InvalidParameterValueException: " + GetParam().message);
  EXPECT_EQ(spec.batch_size, before.batch_size);
  EXPECT_EQ(spec.parallelization_factor, before.parallelization_factor);
}

INSTANTIATE_TEST_SUITE_P(
    Limits, ApplyUpdateLimitsTest,
    ::testing::Values(
        BadUpdate{"BatchSizeZero", [](auto& r) { r.set_batch_size(0); },
                  "batch_size must be between 1 and 10000, got 0"},
        BadUpdate{"BatchSizeTooLarge", [](auto& r) { r.set_batch_size(10001); },
                  "batch_size must be between 1 and 10000, got 10001"},
        BadUpdate{"Window", [](auto& r) { *r.mutable_maximum_batching_window() = Duration(301); },
                  "maximum_batching_window must be between 0s and 300s (5m), got 301s"},
        BadUpdate{"Parallelization", [](auto& r) { r.set_parallelization_factor(11); },
                  "parallelization_factor must be between 1 and 10, got 11"},
        BadUpdate{"Retries", [](auto& r) { r.set_maximum_retry_attempts(-2); },
                  "retry_attempts must be between -1 and 10000, got -2"},
        BadUpdate{"RecordAge", [](auto& r) { *r.mutable_maximum_record_age() = Duration(59); },
                  "max_record_age must be -1 (no limit) or between 60s and 7d (604800s), got 59s"},
        BadUpdate{"OwnStream",
                  [](auto& r) {
                    r.mutable_destination_config()->mutable_on_failure()->set_destination(
                        "stream:events");
                  },
                  "on_failure: the destination is the mapping's own stream, so failed records "
                  "would be read and fail again; use another stream"},
        BadUpdate{"DestinationSyntax",
                  [](auto& r) {
                    r.mutable_destination_config()->mutable_on_failure()->set_destination("sqs:q");
                  },
                  "on_failure: expected stream:NAME or file:PATH, got 'sqs:q'"},
        BadUpdate{"Several",
                  [](auto& r) {
                    r.set_batch_size(0);
                    r.set_parallelization_factor(0);
                  },
                  "batch_size must be between 1 and 10000, got 0; parallelization_factor must "
                  "be between 1 and 10, got 0"}),
    [](const auto& info) { return info.param.name; });

TEST(ValidateMappingSpecTest, TheDefaultsAreValid) {
  EXPECT_TRUE(ValidateMappingSpec(Spec()).empty());
}

TEST(ParseSeekPositionTest, EveryForm) {
  auto horizon = ParseSeekPosition("TRIM_HORIZON");
  ASSERT_TRUE(horizon.ok());
  EXPECT_EQ(horizon->type(), v1::TRIM_HORIZON);
  auto latest = ParseSeekPosition("LATEST");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->type(), v1::LATEST);
  auto at = ParseSeekPosition("AT_SEQUENCE_NUMBER:100000000000000000042000003");
  ASSERT_TRUE(at.ok());
  EXPECT_EQ(at->type(), v1::AT_SEQUENCE_NUMBER);
  EXPECT_EQ(at->sequence_number(), "100000000000000000042000003");
  auto after = ParseSeekPosition("AFTER_SEQUENCE_NUMBER:7");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->type(), v1::AFTER_SEQUENCE_NUMBER);
  auto rfc = ParseSeekPosition("AT_TIMESTAMP:2024-06-10T12:00:00.250Z");
  ASSERT_TRUE(rfc.ok());
  EXPECT_EQ(rfc->type(), v1::AT_TIMESTAMP);
  EXPECT_EQ(rfc->timestamp().seconds(), 1718020800);
  EXPECT_EQ(rfc->timestamp().nanos(), 250'000'000);
  auto epoch = ParseSeekPosition("AT_TIMESTAMP:1718020800.5");
  ASSERT_TRUE(epoch.ok());
  EXPECT_EQ(epoch->timestamp().seconds(), 1718020800);
  EXPECT_EQ(epoch->timestamp().nanos(), 500'000'000);
}

TEST(ParseSeekPositionTest, MistakesAreNamed) {
  EXPECT_EQ(ParseSeekPosition("trim_horizon").status().message(),
            "'trim_horizon': expected TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER:<seq>, "
            "AFTER_SEQUENCE_NUMBER:<seq> or AT_TIMESTAMP:<RFC 3339 time or epoch seconds>");
  EXPECT_NE(ParseSeekPosition("LATEST:5").status().message().find("LATEST takes no value"),
            std::string::npos);
  EXPECT_NE(ParseSeekPosition("AT_SEQUENCE_NUMBER:").status().message().find("needs a sequence"),
            std::string::npos);
  EXPECT_NE(ParseSeekPosition("AT_SEQUENCE_NUMBER:12ab").status().message().find("got '12ab'"),
            std::string::npos);
  EXPECT_NE(ParseSeekPosition("AT_TIMESTAMP:yesterday").status().message().find("RFC 3339"),
            std::string::npos);
  EXPECT_FALSE(ParseSeekPosition("AT_TIMESTAMP:0").ok());
}

}  // namespace
}  // namespace runnel::poller
