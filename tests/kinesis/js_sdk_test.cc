// The AWS SDK for JavaScript v3 with its default HTTP/2 handler (tests/kinesis/js/sdk_test.js)
// against `runnel broker --kinesis-listen` as a real process. Its packages come from `npm ci`
// into the build tree (the kinesis_js ctest fixture).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/time/clock.h"
#include "tests/kinesis/client_support.h"

namespace runnel::testing {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

TEST(KinesisClients, JavaScriptSdkV3DefaultHttp2Client) {
  TempDir dir("kinesis-js");
  KinesisBroker broker = StartBroker(dir);
  ASSERT_NE(broker.process, nullptr);
  CommandResult result = RunCommand(
      {"/usr/bin/env", "NODE_PATH=" RUNNEL_KINESIS_JS_DIR "/node_modules", "NODE_NO_WARNINGS=1",
       RUNNEL_NODE, RUNNEL_SOURCE_DIR "/tests/kinesis/js/sdk_test.js", broker.endpoint});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("sdk_test: ok"));
  ExpectCleanStop(broker);
}

}  // namespace
}  // namespace runnel::testing
