// Test plugin: forks a grandchild that sleeps for good, without exec: it inherits the worker's
// process group and every descriptor the worker has (its channel to runnel, its stdout and
// stderr), the hardest case for telling that the worker itself has ended. Appends the
// grandchild's pid to the file named by FORKER_PID_FILE, and then does what the record's data
// says:
//
//   ok     returns success          hang   never returns          crash  dies of SIGSEGV
//   exit   calls _exit(3)           oom    allocates until it runs out of memory
//
// Tests check that the grandchild is gone once the worker has ended, whichever way it ended.
#include <fcntl.h>
#include <runnel/handler.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

class Forker : public runnel::Handler {
 public:
  void Init(const runnel::Config& config) override { pid_file_ = config.env("FORKER_PID_FILE"); }

  runnel::Result Handle(const runnel::Event& event, runnel::Context&) override {
    pid_t child = ::fork();
    if (child < 0) throw std::runtime_error("fork failed");
    if (child == 0) {
      for (;;) ::pause();
    }
    std::string line = std::to_string(child) + "\n";
    int fd = ::open(pid_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      throw std::runtime_error("cannot write FORKER_PID_FILE " + pid_file_);
    }
    ::close(fd);
    std::string_view action = event.size() > 0 ? event.records()[0].data() : "ok";
    if (action == "hang") {
      for (;;) ::pause();
    } else if (action == "crash") {
      ::raise(SIGSEGV);
    } else if (action == "exit") {
      ::_exit(3);
    } else if (action == "oom") {
      std::vector<std::unique_ptr<char[]>> chunks;
      for (int i = 0; i < 4096; ++i) {
        chunks.emplace_back(new char[1 << 20]);
        std::memset(chunks.back().get(), i, 1 << 20);
      }
      throw std::runtime_error("allocated 4 GiB without running out of memory");
    }
    return runnel::Result::Success();
  }

 private:
  std::string pid_file_;
};

}  // namespace

RUNNEL_HANDLER(Forker)
