// What the client tests share: `runnel broker --kinesis-listen 127.0.0.1:0` as a real process.
#pragma once

#include <signal.h>
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/test_support.h"

namespace runnel::testing {

struct KinesisBroker {
  std::unique_ptr<BrokerProcess> process;
  std::string endpoint;
};

// `extra_args` go to `runnel broker` as they are.
inline KinesisBroker StartBroker(const TempDir& dir, std::vector<std::string> extra_args = {}) {
  KinesisBroker broker;
  const std::string ready = dir.File("kinesis.ready");
  std::vector<std::string> args = {"--kinesis-listen", "127.0.0.1:0", "--kinesis-ready-file",
                                   ready};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  auto process = BrokerProcess::Start(dir.File("data"), args);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return broker;
  broker.process = std::move(*process);
  // Written before the gRPC ready file that BrokerProcess waited for.
  std::ifstream in(ready);
  std::getline(in, broker.endpoint);
  EXPECT_THAT(broker.endpoint, ::testing::StartsWith("http://127.0.0.1:"));
  return broker;
}

// The broker stops cleanly on SIGTERM with clients having come and gone.
inline void ExpectCleanStop(KinesisBroker& broker) {
  broker.process->process().Signal(SIGTERM);
  auto status = broker.process->process().Wait(absl::Seconds(20));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
}

}  // namespace runnel::testing
