#include "tests/integration/test_support.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

extern char** environ;

namespace runnel::testing {

namespace fs = std::filesystem;

// Every `runnel` process a test starts serves its metrics on a free port unless the test says
// otherwise: the default (127.0.0.1:9567) would collide between tests running in parallel, and
// with whatever else runs on the machine. ctest sets the same (tests/CMakeLists.txt); this covers
// test binaries run by hand.
[[maybe_unused]] const bool kMetricsOnFreePorts = [] {
  setenv("RUNNEL_METRICS", "127.0.0.1:0", /*overwrite=*/0);
  return true;
}();

TempDir::TempDir(const std::string& name) {
  std::random_device device;
  path_ = (fs::path(::testing::TempDir()) /
           absl::StrCat("runnel-", name, "-", ::getpid(), "-", device()))
              .string();
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration pause = absl::Milliseconds(1);
  while (!condition()) {
    if (absl::Now() >= deadline) return condition();
    absl::SleepFor(pause);
    pause = std::min(pause * 2, absl::Milliseconds(50));
  }
  return true;
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(absl::StrCat("spawn ", argv[0], ": ", strerror(rc)));
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid));
}

ChildProcess::~ChildProcess() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void ChildProcess::Signal(int signal_number) { ::kill(pid_, signal_number); }

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  int status = 0;
  bool exited = WaitFor(
      [&] {
        if (reaped_) return true;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) reaped_ = true;
        return reaped_;
      },
      timeout);
  if (!exited) return absl::DeadlineExceededError("child did not exit in time");
  return status;
}

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_text) {
  TempDir dir("cmd");
  const std::string in_path = dir.File("stdin"), out_path = dir.File("stdout"),
                    err_path = dir.File("stderr");
  std::ofstream(in_path, std::ios::binary) << stdin_text;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  CommandResult result;
  pid_t pid;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) == 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&actions);
  auto slurp = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  };
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  return result;
}

absl::StatusOr<std::unique_ptr<BrokerProcess>> BrokerProcess::Start(
    const std::string& data_dir, const std::vector<std::string>& extra_args,
    const std::string& listen) {
  const std::string ready = data_dir + ".ready";
  fs::remove(ready);
  std::vector<std::string> argv = {RUNNEL_BINARY, "broker", "--listen",     listen,
                                   "--data-dir",  data_dir, "--ready-file", ready};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  auto process = ChildProcess::Start(argv, data_dir + ".log");
  if (!process.ok()) return process.status();
  auto broker = std::make_unique<BrokerProcess>();
  broker->process_ = std::move(*process);
  std::string address;
  bool ready_in_time = WaitFor(
      [&] {
        std::ifstream in(ready);
        return static_cast<bool>(std::getline(in, address)) && !address.empty();
      },
      absl::Seconds(30));
  if (!ready_in_time) {
    return absl::DeadlineExceededError(
        absl::StrCat("broker did not become ready; see ", data_dir, ".log"));
  }
  broker->address_ = address;
  return broker;
}

std::unique_ptr<v1::StreamBroker::Stub> BrokerProcess::Stub() const {
  return v1::StreamBroker::NewStub(broker::MakeBrokerChannel(address_));
}

InProcessBroker::InProcessBroker(const std::string& data_dir,
                                 std::function<void(broker::BrokerOptions&)> configure)
    : data_dir_(data_dir), configure_(std::move(configure)) {
  Open();
}

InProcessBroker::~InProcessBroker() {
  stub_.reset();
  server_.reset();
  broker_.reset();
}

void InProcessBroker::Open() {
  broker::BrokerOptions options;
  options.data_dir = data_dir_;
  options.clock = [offset = clock_offset_ns_] {
    return absl::Now() + absl::Nanoseconds(offset->load());
  };
  if (configure_) configure_(options);
  auto broker = broker::Broker::Open(options);
  ASSERT_TRUE(broker.ok()) << broker.status();
  broker_ = std::move(*broker);
  broker::ServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  auto server = broker::BrokerServer::Start(broker_.get(), server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  stub_ = v1::StreamBroker::NewStub(broker::MakeBrokerChannel(server_->address()));
}

void InProcessBroker::Restart() {
  stub_.reset();
  server_.reset();
  broker_.reset();
  Open();
}

grpc::Status CreateStream(v1::StreamBroker::Stub& stub, const std::string& name, int shards) {
  v1::CreateStreamRequest request;
  request.set_stream_name(name);
  request.set_shard_count(shards);
  v1::CreateStreamResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return stub.CreateStream(&context, request, &response);
}

v1::PutRecordsResponse PutRecords(v1::StreamBroker::Stub& stub, const std::string& stream,
                                  const std::vector<std::pair<std::string, std::string>>& records,
                                  grpc::Status* status) {
  v1::PutRecordsRequest request;
  request.set_stream_name(stream);
  for (const auto& [key, data] : records) {
    auto* entry = request.add_records();
    entry->set_partition_key(key);
    entry->set_data(data);
  }
  v1::PutRecordsResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  *status = stub.PutRecords(&context, request, &response);
  return response;
}

std::string ShardIterator(v1::StreamBroker::Stub& stub, const std::string& stream,
                          const std::string& shard_id, v1::ShardIteratorType type,
                          const std::string& sequence_number) {
  v1::GetShardIteratorRequest request;
  request.set_stream_name(stream);
  request.set_shard_id(shard_id);
  request.set_shard_iterator_type(type);
  request.set_starting_sequence_number(sequence_number);
  v1::GetShardIteratorResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status status = stub.GetShardIterator(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.shard_iterator();
}

std::vector<v1::Record> ReadShard(v1::StreamBroker::Stub& stub, const std::string& stream,
                                  const std::string& shard_id) {
  std::vector<v1::Record> records;
  std::string iterator = ShardIterator(stub, stream, shard_id, v1::TRIM_HORIZON);
  for (;;) {
    v1::GetRecordsRequest request;
    request.set_shard_iterator(iterator);
    v1::GetRecordsResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status status = stub.GetRecords(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok() || response.records().empty()) break;
    records.insert(records.end(), response.records().begin(), response.records().end());
    iterator = response.next_shard_iterator();
  }
  return records;
}

}  // namespace runnel::testing
