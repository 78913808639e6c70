// A randomized model test of `runnel dlq redrive` on a `file:` destination and its redrive marks
// (`PATH.redriven`, `PATH.redriven-ids`), against a real `runnel broker`: a seeded sequence of
// failure records appended, full redrives, `--id` redrives, redrives killed by SIGKILL at a
// random moment, and damaged marks; after every step the target stream must hold each failure
// record's records as often as the model allows: once per redrive that marked it, plus at most
// one more for the record a killed redrive had put but not yet marked (at-least-once, never
// lost, never repeated otherwise).
//
// RUNNEL_MODEL_STEPS / RUNNEL_MODEL_SEED (tests/common/model_check.h) for longer runs or a replay.
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "poller/destination.h"
#include "tests/common/model_check.h"
#include "tests/integration/test_support.h"

namespace runnel::testing {
namespace {

struct Op {
  enum Kind { kAppend, kRedriveAll, kRedriveOne, kKilledRedrive, kDamagedMark } kind = kAppend;
  int records = 1;        // kAppend: records in the failure record
  int pick = 0;           // kRedriveOne: which line (modulo the lines there are)
  int kill_after_ms = 0;  // kKilledRedrive
};

std::string Describe(const Op& op) {
  switch (op.kind) {
    case Op::kAppend:
      return absl::StrCat("append(", op.records, " records)");
    case Op::kRedriveAll:
      return "redrive";
    case Op::kRedriveOne:
      return absl::StrCat("redrive --id (pick ", op.pick, ")");
    case Op::kKilledRedrive:
      return absl::StrCat("redrive killed after ", op.kill_after_ms, " ms");
    case Op::kDamagedMark:
      return "damaged mark";
  }
  return "?";
}

std::vector<Op> Generate(uint64_t seed, int steps) {
  std::mt19937_64 random(seed);
  std::vector<Op> ops;
  for (int i = 0; i < steps; ++i) {
    Op op;
    const int dice = static_cast<int>(random() % 100);
    if (dice < 45) {
      op.kind = Op::kAppend;
      op.records = 1 + static_cast<int>(random() % 4);
    } else if (dice < 65) {
      op.kind = Op::kRedriveAll;
    } else if (dice < 80) {
      op.kind = Op::kRedriveOne;
      op.pick = static_cast<int>(random() % 1000);
    } else if (dice < 95) {
      op.kind = Op::kKilledRedrive;
      op.kill_after_ms = static_cast<int>(random() % 150);
    } else {
      op.kind = Op::kDamagedMark;
    }
    ops.push_back(op);
  }
  return ops;
}

// One failure record of the file, as the model knows it.
struct Entry {
  std::vector<std::string> data;  // its records' data, in order
  bool marked = false;            // a redrive remembered it
  int min_puts = 0, max_puts = 0;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class Runner {
 public:
  explicit Runner(const std::string& name) : dir_(name), file_(dir_.File("dlq.jsonl")) {}

  std::optional<std::string> Run(const std::vector<Op>& ops) {
    auto broker = BrokerProcess::Start(dir_.File("data"));
    if (!broker.ok()) return broker.status().ToString();
    broker_ = std::move(*broker);
    stub_ = broker_->Stub();
    if (!CreateStream(*stub_, "replay", 1).ok()) return "cannot create the replay stream";
    destination_ = poller::MakeFileDestination(file_);
    for (size_t step = 0; step < ops.size(); ++step) {
      std::string failure = Apply(ops[step]);
      if (failure.empty()) failure = Check();
      if (!failure.empty()) {
        return absl::StrCat("step ", step, " (", Describe(ops[step]), "): ", failure);
      }
    }
    return std::nullopt;
  }

 private:
  std::vector<std::string> Command(std::vector<std::string> args) const {
    args.insert(args.begin(), RUNNEL_BINARY);
    args.push_back("--broker");
    args.push_back(broker_->address());
    return args;
  }

  std::string Apply(const Op& op) {
    switch (op.kind) {
      case Op::kAppend: {
        poller::FailureRecord record;
        record.request_id = absl::StrCat("req-", entries_.size() + 1);
        record.condition = "RetryAttemptsExhausted";
        record.shard_id = "shardId-000000000000";
        record.stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/events";
        record.has_payload = true;
        record.payload.shard_id = record.shard_id;
        record.payload.event_source_arn = record.stream_arn;
        record.payload.aws_region = "us-east-1";
        Entry entry;
        for (int i = 0; i < op.records; ++i) {
          const std::string data = absl::StrCat("e", entries_.size() + 1, "-r", i);
          record.payload.records.push_back(
              {absl::StrCat("key-", i % 2), absl::StrCat(1000 + i), data, 1'700'000'000'000});
          entry.data.push_back(data);
        }
        record.batch_size = op.records;
        record.start_sequence_number = record.payload.records.front().sequence_number;
        record.end_sequence_number = record.payload.records.back().sequence_number;
        if (absl::Status status = destination_->Write(record); !status.ok()) {
          return status.ToString();
        }
        entries_.push_back(std::move(entry));
        return "";
      }
      case Op::kRedriveAll: {
        if (entries_.empty()) return "";  // no file yet
        CommandResult r =
            RunCommand(Command({"dlq", "redrive", "file:" + file_, "--to", "replay"}));
        if (r.exit_code != 0) return absl::StrCat("redrive exited ", r.exit_code, ": ", r.err);
        for (Entry& entry : entries_) {
          if (!entry.marked) {
            entry.marked = true;
            ++entry.min_puts;
            ++entry.max_puts;
          }
        }
        return "";
      }
      case Op::kRedriveOne: {
        if (entries_.empty()) return "";
        const size_t line = static_cast<size_t>(op.pick) % entries_.size();
        CommandResult r = RunCommand(Command(
            {"dlq", "redrive", "file:" + file_, "--to", "replay", "--id", absl::StrCat(line + 1)}));
        if (r.exit_code != 0) return absl::StrCat("redrive --id exited ", r.exit_code, ": ", r.err);
        Entry& entry = entries_[line];
        if (!entry.marked) {
          entry.marked = true;
          ++entry.min_puts;
          ++entry.max_puts;
        }
        return "";
      }
      case Op::kKilledRedrive:
        return KilledRedrive(op);
      case Op::kDamagedMark: {
        // A damaged mark stops redrive before it puts anything (read as 0, it would put every
        // record again); with the mark put back, redrive goes on as before.
        const std::string mark = file_ + ".redriven";
        const bool had_mark = std::filesystem::exists(mark);
        const std::string saved = had_mark ? ReadAll(mark) : "";
        std::ofstream(mark, std::ios::binary | std::ios::trunc) << "\x01garbage";
        CommandResult r =
            RunCommand(Command({"dlq", "redrive", "file:" + file_, "--to", "replay"}));
        if (r.exit_code != 1) {
          return absl::StrCat("redrive with a damaged mark exited ", r.exit_code, ": ", r.out);
        }
        if (had_mark) {
          std::ofstream(mark, std::ios::binary | std::ios::trunc) << saved;
        } else {
          std::filesystem::remove(mark);
        }
        return "";
      }
    }
    return "?";
  }

  // A redrive killed mid-way: lines up to its mark were put (and marked); the first unmarked line
  // after the mark may have been put without being marked, and then is put again by the next
  // redrive.
  std::string KilledRedrive(const Op& op) {
    if (entries_.empty()) return "";
    auto child = ChildProcess::Start(Command({"dlq", "redrive", "file:" + file_, "--to", "replay"}),
                                     dir_.File("killed.log"));
    if (!child.ok()) return child.status().ToString();
    absl::SleepFor(absl::Milliseconds(op.kill_after_ms));
    (*child)->Signal(SIGKILL);
    if (!(*child)->Wait(absl::Seconds(30)).ok()) return "the killed redrive did not end";
    size_t mark = 0;
    if (std::filesystem::exists(file_ + ".redriven")) {
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadAll(file_ + ".redriven")), &mark)) {
        return absl::StrCat("the mark is damaged after a kill: '", ReadAll(file_ + ".redriven"),
                            "'");
      }
    }
    if (mark > entries_.size()) return absl::StrCat("the mark ", mark, " is past the last line");
    for (size_t line = 0; line < mark; ++line) {
      if (!entries_[line].marked) {
        entries_[line].marked = true;
        ++entries_[line].min_puts;
        ++entries_[line].max_puts;
      }
    }
    for (size_t line = mark; line < entries_.size(); ++line) {
      if (!entries_[line].marked) {
        ++entries_[line].max_puts;  // perhaps put, not marked: the next redrive puts it again
        break;
      }
    }
    return "";
  }

  // The replay stream holds each entry's records between min_puts and max_puts times, each
  // entry's records together and in order, and nothing else.
  std::string Check() {
    std::map<std::string, int> count;
    std::vector<std::string> order;
    for (const v1::Record& record : ReadShard(*stub_, "replay", "shardId-000000000000")) {
      ++count[record.data()];
      order.push_back(record.data());
    }
    for (size_t line = 0; line < entries_.size(); ++line) {
      const Entry& entry = entries_[line];
      for (const std::string& data : entry.data) {
        const int n = count[data];
        if (n < entry.min_puts || n > entry.max_puts) {
          return absl::StrCat("line ", line + 1, "'s record ", data, " was put ", n,
                              " times; the model allows ", entry.min_puts, "..", entry.max_puts);
        }
        count.erase(data);
      }
    }
    if (!count.empty())
      return absl::StrCat("a record no failure record holds: ", count.begin()->first);
    // Within one put of an entry, its records are consecutive and in order.
    for (size_t i = 0; i < order.size(); ++i) {
      std::vector<std::string> parts = absl::StrSplit(order[i], "-r");
      if (parts.size() == 2 && parts[1] != "0") {
        const std::string previous = absl::StrCat(parts[0], "-r", std::stoi(parts[1]) - 1);
        if (i == 0 || order[i - 1] != previous) {
          return absl::StrCat(order[i], " does not follow ", previous, " in the stream");
        }
      }
    }
    return "";
  }

  TempDir dir_;
  const std::string file_;
  std::unique_ptr<BrokerProcess> broker_;
  std::unique_ptr<v1::StreamBroker::Stub> stub_;
  std::unique_ptr<poller::FailureDestination> destination_;
  std::vector<Entry> entries_;
};

TEST(DlqRedriveModelTest, RedrivesKillsAndDamagedMarksPutEachRecordAsTheModelAllows) {
  const uint64_t seed = ModelSeed(7001);
  const int steps = ModelSteps(40);
  auto run = [&](const std::vector<Op>& ops) { return Runner("dlq-model").Run(ops); };
  const std::vector<Op> ops = Generate(seed, steps);
  // Each run starts a broker: a small shrinking budget keeps a failure's report quick.
  if (auto report = RunModel<Op>(seed, steps, ops, run, Describe, 15)) FAIL() << *report;
}

}  // namespace
}  // namespace runnel::testing
