// A handler that misbehaves on purpose, for failure tests and demos. Records whose data contain
// "POISON:<action>" trigger the action when the handler reaches them (records before it are
// fine); every other record succeeds.
//
//   POISON:fail     returns a failure (errorType "PoisonFailure")
//   POISON:throw    throws std::runtime_error
//   POISON:crash    dies of SIGSEGV          POISON:abort    calls abort() (SIGABRT)
//   POISON:exit     calls _exit(3)           POISON:hang     never returns
//   POISON:sleep=N  sleeps N ms, then goes on
//   POISON:oom      allocates (and touches) memory until it runs out (stops at 2 GiB)
//   POISON:partial  reports this record as a batch-item failure (every such record)
//   POISON:garbage  reports batch-item failures that are not valid: "" and "not-a-sequence-number"
//   POISON:print    writes a line to stdout and one to stderr
#include <runnel/handler.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

class Poison : public runnel::Handler {
 public:
  runnel::Result Handle(const runnel::Event& event, runnel::Context& context) override {
    runnel::Result result = runnel::Result::Success();
    for (const runnel::Record& record : event.records()) {
      std::string_view data = record.data();
      size_t at = data.find("POISON:");
      if (at == std::string_view::npos) continue;
      std::string_view action = data.substr(at + 7);
      std::string seq(record.sequence_number());
      if (Starts(action, "fail")) {
        return runnel::Result::Failure("PoisonFailure", "poison record " + seq);
      } else if (Starts(action, "throw")) {
        throw std::runtime_error("poison record " + seq);
      } else if (Starts(action, "crash")) {
        ::raise(SIGSEGV);
      } else if (Starts(action, "abort")) {
        std::abort();
      } else if (Starts(action, "exit")) {
        ::_exit(3);
      } else if (Starts(action, "hang")) {
        for (;;) ::pause();
      } else if (Starts(action, "sleep=")) {
        ::usleep(static_cast<useconds_t>(std::atoi(std::string(action.substr(6)).c_str())) * 1000);
      } else if (Starts(action, "oom")) {
        EatMemory();
      } else if (Starts(action, "partial")) {
        result.AddBatchItemFailure(seq);
      } else if (Starts(action, "garbage")) {
        return runnel::Result::BatchItemFailures({"", "not-a-sequence-number"});
      } else if (Starts(action, "print")) {
        std::printf("poison stdout %s\n", seq.c_str());
        std::fflush(stdout);
        std::fprintf(stderr, "poison stderr %s\n", seq.c_str());
      }
    }
    return result;
  }

 private:
  static bool Starts(std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
  }

  static void EatMemory() {
    std::vector<std::unique_ptr<char[]>> chunks;
    for (int i = 0; i < 2048; ++i) {
      chunks.emplace_back(new char[1 << 20]);
      std::memset(chunks.back().get(), i, 1 << 20);  // touch it: really use the memory
    }
    throw std::runtime_error("POISON:oom allocated 2 GiB without running out of memory");
  }
};

}  // namespace

RUNNEL_HANDLER(Poison)
