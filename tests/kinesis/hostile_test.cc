// Hostile clients against a real `runnel broker --kinesis-listen`: inputs and behaviour meant to
// crash the broker or exhaust it. Each test checks that the hostile client gets the error a
// client expects and that a well-behaved client keeps being served meanwhile.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/kinesis/client_support.h"
#include "tests/kinesis/raw_http.h"

namespace runnel::testing {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

std::string Address(const KinesisBroker& broker) {
  return broker.endpoint.substr(std::string("http://").size());
}

// A well-behaved client's call: ListStreams answers 200.
void ExpectServes(const KinesisBroker& broker) {
  auto answer = KinesisPost(Address(broker), "ListStreams", "{}");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200) << answer->body;
}

// 150,000 nested CBOR arrays overflowed the stack of the recursive decoder: one request took
// the broker (every stream) down with SIGSEGV.
TEST(KinesisHostileTest, DeeplyNestedBodiesAreRefusedAndTheBrokerKeepsServing) {
  TempDir dir("kinesis-deep");
  KinesisBroker broker = StartBroker(dir);
  ASSERT_NE(broker.process, nullptr);
  const std::string deep_cbor = "\xA1\x6AStreamName" + std::string(150000, '\x81') + '\x01';
  const std::string deep_json = std::string(150000, '[') + std::string(150000, ']');
  for (const auto& [body, type] :
       {std::pair{deep_cbor, std::string("application/x-amz-cbor-1.1")},
        std::pair{deep_json, std::string("application/x-amz-json-1.1")}}) {
    auto answer = KinesisPost(Address(broker), "PutRecord", body, type);
    ASSERT_TRUE(answer.ok()) << answer.status() << " (" << type << ")";
    EXPECT_EQ(answer->status, 400);
    EXPECT_THAT(answer->headers, HasSubstr("x-amzn-errortype: SerializationException"));
    ExpectServes(broker);
  }
  ExpectCleanStop(broker);
}

}  // namespace
}  // namespace runnel::testing
