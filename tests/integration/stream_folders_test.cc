// Stream folders on disk: every valid stream name is a stream, whatever a crash left beside the
// streams is removed with a log line, and a creation that fails midway leaves nothing behind.
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/ringbuffer_sink.h"
#include "spdlog/spdlog.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

// Every line the broker logs while it lives.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::vector<std::string> Lines() const { return sink_->last_formatted(); }
  // The lines that mention `text`.
  std::vector<std::string> LinesWith(const std::string& text) const {
    std::vector<std::string> found;
    for (const std::string& line : Lines()) {
      if (line.find(text) != std::string::npos) found.push_back(line);
    }
    return found;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

std::vector<std::string> ListStreamNames(v1::StreamBroker::Stub& stub) {
  v1::ListStreamsRequest request;
  v1::ListStreamsResponse response;
  grpc::ClientContext context;
  EXPECT_TRUE(stub.ListStreams(&context, request, &response).ok());
  return {response.stream_names().begin(), response.stream_names().end()};
}

std::vector<std::string> FolderEntries(const fs::path& folder) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(StreamFoldersTest, EveryValidNameIsAStreamAcrossRestarts) {
  TempDir dir("stream-folders");
  // Names that look like the broker's own folders or files, or like a crash's leftovers.
  const std::vector<std::string> names = {".creating-x", ".creating-",
                                          "trash",       "scratch",
                                          "streams",     "checkpoints",
                                          "MANIFEST",    "LOCK",
                                          "..x",         ".",
                                          "..",          "_",
                                          "-",           std::string(128, 'a')};
  {
    InProcessBroker broker(dir.File("data"));
    for (const std::string& name : names) {
      ASSERT_TRUE(CreateStream(broker.stub(), name, 2).ok()) << name;
      grpc::Status status;
      PutRecords(broker.stub(), name, {{"k", "record of " + name}}, &status);
      ASSERT_TRUE(status.ok()) << name << ": " << status.error_message();
    }
    for (int restart = 0; restart < 2; ++restart) {
      broker.Restart();
      EXPECT_THAT(ListStreamNames(broker.stub()), UnorderedElementsAreArray(names));
      for (const std::string& name : names) {
        std::vector<v1::Record> records = ReadShard(broker.stub(), name, "shardId-000000000000");
        std::vector<v1::Record> more = ReadShard(broker.stub(), name, "shardId-000000000001");
        records.insert(records.end(), more.begin(), more.end());
        ASSERT_EQ(records.size(), 1u) << name;
        EXPECT_EQ(records[0].data(), "record of " + name);
      }
    }
  }
  // Deleting the streams named like the broker's folders leaves the others whole.
  InProcessBroker broker(dir.File("data"));
  for (const std::string& name : {"trash", "scratch", ".", ".."}) {
    v1::DeleteStreamRequest request;
    request.set_stream_name(name);
    v1::DeleteStreamResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(broker.stub().DeleteStream(&context, request, &response).ok()) << name;
  }
  broker.Restart();
  EXPECT_EQ(ListStreamNames(broker.stub()).size(), names.size() - 4);
  EXPECT_EQ(ReadShard(broker.stub(), "streams", "shardId-000000000000").size() +
                ReadShard(broker.stub(), "streams", "shardId-000000000001").size(),
            1u);
}

TEST(StreamFoldersTest, WhatACrashLeftIsRemovedWithALogLineAndStreamsStay) {
  TempDir dir("stream-leftovers");
  const fs::path data = dir.File("data");
  {
    InProcessBroker broker(data.string());
    ASSERT_TRUE(CreateStream(broker.stub(), ".creating-kept", 1).ok());
    ASSERT_TRUE(CreateStream(broker.stub(), "orders", 1).ok());
  }
  // What crashes leave: a stream half built in scratch/, one half deleted in trash/, and the
  // scratch folders of brokers that built streams in streams/.creating-*: one with no metadata
  // yet, one whose metadata names the stream it was becoming.
  WriteFile(data / "scratch" / "0123abcd0001" / "stream.meta", "stream_name: \"half\"\n");
  WriteFile(data / "trash" / "gone-42" / "shardId-000000000000" / "00000000000000000001.log", "x");
  fs::create_directories(data / "streams" / ".creating-0badc0de0002" / "shardId-000000000000");
  WriteFile(data / "streams" / ".creating-0badc0de0003" / "stream.meta",
            "stream_name: \"other\"\n");

  LogCapture logs;
  InProcessBroker broker(data.string());
  EXPECT_THAT(ListStreamNames(broker.stub()),
              UnorderedElementsAreArray({".creating-kept", "orders"}));
  EXPECT_THAT(FolderEntries(data / "scratch"), IsEmpty());
  EXPECT_THAT(FolderEntries(data / "trash"), IsEmpty());
  EXPECT_THAT(FolderEntries(data / "streams"),
              UnorderedElementsAreArray({".creating-kept", "orders"}));
  for (const std::string leftover :
       {"scratch/0123abcd0001", "trash/gone-42", "streams/.creating-0badc0de0002",
        "streams/.creating-0badc0de0003"}) {
    std::vector<std::string> lines = logs.LinesWith(leftover);
    ASSERT_EQ(lines.size(), 1u) << leftover;
    EXPECT_THAT(lines[0], HasSubstr("removing"));
    EXPECT_THAT(lines[0], HasSubstr("left by an interrupted stream"));
  }
}

// Lowers the process's open-file limit for its lifetime.
class OpenFileLimit {
 public:
  explicit OpenFileLimit(rlim_t soft) {
    getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    setrlimit(RLIMIT_NOFILE, &lowered);
  }
  ~OpenFileLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

TEST(StreamFoldersTest, ACreationThatFailsMidwayLeavesNothingBehind) {
#if defined(__SANITIZE_ADDRESS__)
  // The sanitizers' runtime needs descriptors of its own (UBSan's vptr check opens a pipe to
  // probe memory) and reports false errors once the process has none left.
  GTEST_SKIP() << "needs the process out of file descriptors, which the sanitizers cannot bear";
#endif
  TempDir dir("stream-create-fails");
  const fs::path data = dir.File("data");
  InProcessBroker broker(data.string());
  ASSERT_TRUE(CreateStream(broker.stub(), "small", 1).ok());
  v1::CreateStreamRequest request;
  request.set_stream_name("wide");
  request.set_shard_count(500);
  {
    // Each shard's log holds files open: 500 of them cannot be opened under a limit of 128, so
    // the creation fails after the folder was renamed into streams/.
    OpenFileLimit limit(128);
    absl::Status status = broker.broker().CreateStream(request);
    ASSERT_FALSE(status.ok());
    EXPECT_THAT(status.message(), HasSubstr("Too many open files"));
  }
  EXPECT_THAT(FolderEntries(data / "streams"), UnorderedElementsAreArray({"small"}));
  EXPECT_THAT(FolderEntries(data / "scratch"), IsEmpty());
  EXPECT_THAT(FolderEntries(data / "trash"), IsEmpty());
  broker.Restart();
  EXPECT_THAT(ListStreamNames(broker.stub()), UnorderedElementsAreArray({"small"}));
  // The name is free: with files to spare the same creation succeeds.
  ASSERT_TRUE(broker.broker().CreateStream(request).ok());
  EXPECT_THAT(ListStreamNames(broker.stub()), UnorderedElementsAreArray({"small", "wide"}));
}

}  // namespace
}  // namespace runnel::testing
