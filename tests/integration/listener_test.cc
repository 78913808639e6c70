// Every listener refuses an address another process serves: the broker's gRPC --listen, the
// poller's admin --listen, `runnel up --listen`, --kinesis-listen and --metrics. gRPC turns
// SO_REUSEPORT on by default on Linux, so without care a second process on the same port starts
// and the kernel spreads clients over both. The second process must exit 1 with one line naming
// the flag and the address, before it creates anything, and the first must keep serving.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/server.h"
#include "common/grpc_server.h"
#include "common/metrics_server.h"
#include "kinesis/server.h"
#include "prometheus/registry.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr char kEchoPlugin[] = RUNNEL_BUILD_DIR "/handlers/echo.so";

std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The address in an http://HOST:PORT URL.
std::string WithoutScheme(const std::string& url) {
  return url.substr(url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
}

// POSTs a Kinesis ListStreams over HTTP/1.0 and returns the status line.
std::string KinesisListStreams(const std::string& address) {
  std::vector<std::string> parts = absl::StrSplit(address, ':');
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(parts.back())));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    ::close(fd);
    return "connect failed";
  }
  const std::string body = "{}";
  const std::string request = absl::StrCat(
      "POST / HTTP/1.0\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n"
      "Content-Type: application/x-amz-json-1.1\r\nContent-Length: ",
      body.size(), "\r\n\r\n", body);
  (void)!::write(fd, request.data(), request.size());
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) answer.append(buffer, n);
  ::close(fd);
  return answer.substr(0, answer.find("\r\n"));
}

bool ServesGrpc(const std::string& address) {
  auto stub = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(address));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListStreamsRequest request;
  v1::ListStreamsResponse response;
  return stub->ListStreams(&context, request, &response).ok();
}

// Runs the second process, which must exit 1 at once with exactly one line naming the flag and
// the address. One that starts instead is killed after a while (and the test fails).
void ExpectRefused(const std::vector<std::string>& argv, const std::string& flag,
                   const std::string& address, const std::string& log) {
  fs::remove(log);
  auto process = ChildProcess::Start(argv, log);
  ASSERT_TRUE(process.ok()) << process.status();
  auto status = (*process)->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.ok()) << "the second process started beside the first: " << ReadFile(log);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "wait status " << *status;
  EXPECT_EQ(ReadFile(log),
            absl::StrCat("runnel: ", flag, " ", address, ": address already in use\n"));
}

// A broker serving gRPC, metrics and the Kinesis endpoint, each on a free port.
class ListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = BrokerProcess::Start(
        dir_.File("first"),
        {"--metrics", "127.0.0.1:0", "--metrics-ready-file", dir_.File("metrics.ready"),
         "--kinesis-listen", "127.0.0.1:0", "--kinesis-ready-file", dir_.File("kinesis.ready")});
    ASSERT_TRUE(broker.ok()) << broker.status();
    first_ = std::move(*broker);
    metrics_ = ReadLine(dir_.File("metrics.ready"));
    kinesis_ = WithoutScheme(ReadLine(dir_.File("kinesis.ready")));
    ASSERT_FALSE(metrics_.empty());
    ASSERT_FALSE(kinesis_.empty());
  }

  // The first broker answers on every listener.
  void ExpectFirstServes() {
    EXPECT_TRUE(ServesGrpc(first_->address()));
    EXPECT_TRUE(HttpGet(metrics_, "/metrics").ok());
    EXPECT_EQ(KinesisListStreams(kinesis_), "HTTP/1.1 200 OK");
  }

  TempDir dir_{"listeners"};
  std::unique_ptr<BrokerProcess> first_;
  std::string metrics_;
  std::string kinesis_;
};

TEST_F(ListenerTest, ASecondBrokerOnATakenListenerExitsBeforeCreatingItsDataDirectory) {
  struct Case {
    std::string flag;
    std::string address;
    std::vector<std::string> args;
  };
  const std::vector<Case> cases = {
      {"--listen", first_->address(), {"--listen", first_->address()}},
      {"--metrics", metrics_, {"--listen", "127.0.0.1:0", "--metrics", metrics_}},
      {"--kinesis-listen",
       kinesis_,
       {"--listen", "127.0.0.1:0", "--metrics", "off", "--kinesis-listen", kinesis_}},
  };
  for (const char* command : {"broker", "up"}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(absl::StrCat(command, " ", c.flag));
      const std::string data = dir_.File(absl::StrCat("second-", command));
      std::vector<std::string> argv = {RUNNEL_BINARY, command, "--data-dir", data};
      argv.insert(argv.end(), c.args.begin(), c.args.end());
      ExpectRefused(argv, c.flag, c.address, dir_.File("second.log"));
      EXPECT_FALSE(fs::exists(data)) << "the second process created its data directory";
      ExpectFirstServes();
    }
  }
}

TEST_F(ListenerTest, ASecondPollerOnATakenListenerExitsBeforeItStarts) {
  ASSERT_TRUE(CreateStream(*first_->Stub(), "events", 1).ok());  // a poller creates none
  std::ofstream(dir_.File("poller.yaml"))
      << "streams:\n  - name: events\n    shards: 1\nfunctions:\n  - name: echo\n    plugin: "
      << kEchoPlugin
      << "\n    isolation: in_process\n    environment:\n      ECHO_FILE: " << dir_.File("echo.out")
      << "\nevent_source_mappings:\n  - function: echo\n"
      << "    stream: events\n";
  auto poller = ChildProcess::Start(
      {RUNNEL_BINARY, "poller", "-f", dir_.File("poller.yaml"), "--broker", first_->address(),
       "--listen", "127.0.0.1:0", "--ready-file", dir_.File("poller.ready"), "--metrics",
       "127.0.0.1:0", "--metrics-ready-file", dir_.File("poller-metrics.ready")},
      dir_.File("poller.log"));
  ASSERT_TRUE(poller.ok()) << poller.status();
  std::string admin;
  ASSERT_TRUE(WaitFor(
      [&] {
        admin = ReadLine(dir_.File("poller.ready"));
        return !admin.empty();
      },
      absl::Seconds(60)))
      << "the first poller did not start: " << ReadFile(dir_.File("poller.log"));
  const std::string poller_metrics = ReadLine(dir_.File("poller-metrics.ready"));

  const std::vector<std::string> base = {
      RUNNEL_BINARY, "poller", "-f", dir_.File("poller.yaml"), "--broker", first_->address()};
  std::vector<std::string> same_listen = base;
  same_listen.insert(same_listen.end(), {"--listen", admin, "--metrics", "off"});
  ExpectRefused(same_listen, "--listen", admin, dir_.File("second.log"));
  std::vector<std::string> same_metrics = base;
  same_metrics.insert(same_metrics.end(), {"--listen", "127.0.0.1:0", "--metrics", poller_metrics});
  ExpectRefused(same_metrics, "--metrics", poller_metrics, dir_.File("second.log"));

  // The first poller still answers its admin port, and no second one ever ran a mapping.
  CommandResult list = RunCommand({RUNNEL_BINARY, "mapping", "list", "--poller", admin});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("echo"));
  EXPECT_TRUE(HttpGet(poller_metrics, "/metrics").ok());
}

// The servers themselves refuse a port their own kind serves, without the early check: gRPC's
// SO_REUSEPORT is off, and civetweb and the Kinesis endpoint never set it.
TEST(ListenerServerTest, EveryServerRefusesAnAddressAnotherServerOfItsKindHolds) {
  auto first = GrpcServer::Start("127.0.0.1:0", {}, 1 << 20);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = GrpcServer::Start((*first)->address(), {}, 1 << 20, "--listen");
  ASSERT_FALSE(second.ok()) << "two gRPC servers share " << (*first)->address();
  EXPECT_EQ(second.status().message(),
            absl::StrCat("--listen ", (*first)->address(), ": address already in use"));

  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  auto metrics_again = MetricsServer::Start((*metrics)->address(), registry);
  ASSERT_FALSE(metrics_again.ok()) << "two metrics servers share " << (*metrics)->address();
  EXPECT_THAT(
      metrics_again.status().message(),
      HasSubstr(absl::StrCat("--metrics ", (*metrics)->address(), ": address already in use")));

  TempDir dir("listener-servers");
  auto broker = broker::Broker::Open({.data_dir = dir.File("data")});
  ASSERT_TRUE(broker.ok()) << broker.status();
  kinesis::KinesisHttpOptions options;
  options.listen = "127.0.0.1:0";
  auto kinesis = kinesis::KinesisHttpServer::Start(broker->get(), options);
  ASSERT_TRUE(kinesis.ok()) << kinesis.status();
  options.listen = (*kinesis)->address();
  auto kinesis_again = kinesis::KinesisHttpServer::Start(broker->get(), options);
  ASSERT_FALSE(kinesis_again.ok()) << "two Kinesis endpoints share " << options.listen;
  EXPECT_EQ(kinesis_again.status().message(),
            absl::StrCat("--kinesis-listen ", options.listen, ": address already in use"));
}

}  // namespace
}  // namespace runnel::testing
