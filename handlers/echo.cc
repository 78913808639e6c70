// Appends every record it sees to a file, one line per record, so tests can check order and
// duplicates: "<sequence number>\t<partition key>\t<data>\n" with the data escaped (\\, \n, \r,
// \t, and \xNN for other control bytes). The file is the environment's ECHO_FILE; without it the
// records are logged instead. A batch is written with one write(2) on an O_APPEND file, so
// batches from concurrent workers never interleave within a batch. With ECHO_FAIL_ON=MARKER, a
// batch holding a record whose data contains MARKER fails (and writes nothing), so tests can
// check what a mapping's failure handling lets through, and in which order. With ECHO_BATCHES
// set, each batch starts with a line "# batch <record count>" (no tab, so readers of the record
// lines skip it), so tests can see batch sizes. With ECHO_DELAY_MS=N, each invocation takes N ms
// before it writes, so tests can catch invocations in flight (e.g. a shutdown under load); with
// ECHO_STARTED_FILE=PATH, each invocation first appends a line to PATH, so a test knows one is
// running.
#include <fcntl.h>
#include <runnel/handler.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace {

void AppendEscaped(std::string& out, std::string_view data) {
  static const char kHex[] = "0123456789abcdef";
  for (char c : data) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
}

class Echo : public runnel::Handler {
 public:
  void Init(const runnel::Config& config) override {
    path_ = config.env("ECHO_FILE");
    fail_on_ = config.env("ECHO_FAIL_ON");
    delay_ms_ = std::atoi(config.env("ECHO_DELAY_MS").c_str());
    started_path_ = config.env("ECHO_STARTED_FILE");
    batches_ = !config.env("ECHO_BATCHES").empty();
  }

  runnel::Result Handle(const runnel::Event& event, runnel::Context& context) override {
    if (!fail_on_.empty()) {
      for (const runnel::Record& record : event.records()) {
        if (record.data().find(fail_on_) != std::string_view::npos) {
          return runnel::Result::Failure(
              "EchoFailOn",
              "record " + std::string(record.sequence_number()) + " holds " + fail_on_);
        }
      }
    }
    if (!started_path_.empty()) Append(started_path_, "started\n");
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    std::string lines;
    if (batches_) lines = "# batch " + std::to_string(event.records().size()) + "\n";
    for (const runnel::Record& record : event.records()) {
      lines += record.sequence_number();
      lines += '\t';
      lines += record.partition_key();
      lines += '\t';
      AppendEscaped(lines, record.data());
      lines += '\n';
    }
    if (path_.empty()) {
      context.logger().info(lines);
      return runnel::Result::Success();
    }
    Append(path_, lines);
    return runnel::Result::Success();
  }

 private:
  // One write(2) on an O_APPEND file: concurrent writers never interleave within it.
  static void Append(const std::string& path, std::string_view text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
    ssize_t written = ::write(fd, text.data(), text.size());
    int error = errno;
    ::close(fd);
    if (written != static_cast<ssize_t>(text.size())) {
      throw std::system_error(written < 0 ? error : EIO, std::generic_category(), "write " + path);
    }
  }

  std::string path_;
  std::string started_path_;
  std::string fail_on_;
  int delay_ms_ = 0;
  bool batches_ = false;
};

}  // namespace

RUNNEL_HANDLER(Echo)
