// What the integration tests share: temporary folders, child processes (the real `runnel`
// binary), waiting on conditions with deadlines, and an in-process broker served over real gRPC
// on a loopback ephemeral port, with a clock the test can move.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/broker.h"
#include "broker/server.h"
#include "runnel/v1/broker.grpc.pb.h"

namespace runnel::testing {

// A fresh, empty folder under the test temp dir, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& name);
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Polls `condition` until it holds or `timeout` passes; true when it held.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// A child process running a command; killed (SIGKILL) and reaped by the destructor.
class ChildProcess {
 public:
  // Starts argv[0] with its stdout and stderr appended to `log_path`.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                             const std::string& log_path);
  ~ChildProcess();
  pid_t pid() const { return pid_; }
  void Signal(int signal_number);
  // The exit status as waitpid gives it, or an error when it did not exit in time.
  absl::StatusOr<int> Wait(absl::Duration timeout);

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  bool reaped_ = false;
};

// Runs a command to completion; returns its exit code and what it printed on stdout.
struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_text = "");

// `runnel broker` as a child process on `listen` (by default an ephemeral port; a restart passes
// the address the first one got).
class BrokerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<BrokerProcess>> Start(
      const std::string& data_dir, const std::vector<std::string>& extra_args = {},
      const std::string& listen = "127.0.0.1:0");
  const std::string& address() const { return address_; }
  ChildProcess& process() { return *process_; }
  std::unique_ptr<v1::StreamBroker::Stub> Stub() const;

 private:
  std::unique_ptr<ChildProcess> process_;
  std::string address_;
};

// A broker in this process, served over gRPC on a loopback ephemeral port, with a clock the
// test can move forward.
class InProcessBroker {
 public:
  explicit InProcessBroker(const std::string& data_dir,
                           std::function<void(broker::BrokerOptions&)> configure = nullptr);
  ~InProcessBroker();
  broker::Broker& broker() { return *broker_; }
  v1::StreamBroker::Stub& stub() { return *stub_; }
  const std::string& address() const { return server_->address(); }
  void AdvanceClock(absl::Duration by) { *clock_offset_ns_ += absl::ToInt64Nanoseconds(by); }
  // Closes and reopens the broker on the same folder (a clean restart).
  void Restart();

 private:
  void Open();
  std::string data_dir_;
  std::function<void(broker::BrokerOptions&)> configure_;
  std::shared_ptr<std::atomic<int64_t>> clock_offset_ns_ =
      std::make_shared<std::atomic<int64_t>>(0);
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::BrokerServer> server_;
  std::unique_ptr<v1::StreamBroker::Stub> stub_;
};

// Client helpers that fail the test on an RPC error.
grpc::Status CreateStream(v1::StreamBroker::Stub& stub, const std::string& name, int shards);
// Puts records; returns the response (the RPC status through `status`).
v1::PutRecordsResponse PutRecords(v1::StreamBroker::Stub& stub, const std::string& stream,
                                  const std::vector<std::pair<std::string, std::string>>& records,
                                  grpc::Status* status);
std::string ShardIterator(v1::StreamBroker::Stub& stub, const std::string& stream,
                          const std::string& shard_id, v1::ShardIteratorType type,
                          const std::string& sequence_number = "");
// Reads a shard from TRIM_HORIZON to its end.
std::vector<v1::Record> ReadShard(v1::StreamBroker::Stub& stub, const std::string& stream,
                                  const std::string& shard_id);

}  // namespace runnel::testing
