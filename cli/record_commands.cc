// `runnel put` and `runnel get`: produce records and read them back, one JSON line per record.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/client_util.h"
#include "cli/commands.h"
#include "cli/put_input.h"
#include "common/hash_key.h"
#include "google/protobuf/util/time_util.h"

namespace runnel::cli {
namespace {

constexpr int kMaxBatchRecords = 500;
constexpr size_t kMaxBatchBytes = 5u << 20;
constexpr absl::Duration kCallTimeout = absl::Seconds(30);

struct PutOptions {
  ClientOptions client;
  std::string stream;
  std::string partition_key;
  CLI::Option* partition_key_option = nullptr;
  std::string key_field;
  bool keyed = false;
  bool allow_empty = false;
  std::string explicit_hash_key;
  std::string data;
  CLI::Option* data_option = nullptr;  // to tell an empty --data from none
  std::string file;
  int retries = 5;
};

// Bad lines reported before giving up (all are counted).
constexpr size_t kMaxReportedBadLines = 10;

// The broker names a record of a request by its field ("records.3.member.data"); the user knows
// it by its line. Rewrites such a name in `message` to the record's FILE:LINE.
std::string NameRecordsByLine(std::string message, const std::vector<PutRecordInput>& batch) {
  static constexpr std::string_view kPrefix = "records.";
  const size_t at = message.find(kPrefix);
  if (at == std::string::npos) return message;
  size_t end = at + kPrefix.size();
  while (end < message.size() && absl::ascii_isdigit(static_cast<unsigned char>(message[end]))) {
    ++end;
  }
  size_t index = 0;
  if (!absl::SimpleAtoi(message.substr(at + kPrefix.size(), end - at - kPrefix.size()), &index) ||
      index < 1 || index > batch.size()) {
    return message;
  }
  size_t field_end = end;
  if (message.compare(end, 8, ".member.") == 0) {
    field_end = end + 8;
    while (field_end < message.size() &&
           absl::ascii_isalpha(static_cast<unsigned char>(message[field_end]))) {
      ++field_end;
    }
    const std::string field = message.substr(end + 8, field_end - end - 8);
    return message.replace(at, field_end - at,
                           absl::StrCat(batch[index - 1].where, " (", field, ")"));
  }
  return message.replace(at, end - at, batch[index - 1].where);
}

// Sends one batch, resending records that failed (throttled) with back-off. Prints one line per
// record in input order. Returns false when a record could not be put.
bool PutBatch(client::BrokerClient& stub, const PutOptions& options,
              const std::vector<PutRecordInput>& batch, absl::Status* rpc_error) {
  std::vector<v1::PutRecordsResultEntry> results(batch.size());
  std::vector<size_t> todo(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) todo[i] = i;
  absl::Duration backoff = absl::Milliseconds(50);
  for (int attempt = 0; !todo.empty() && attempt <= options.retries; ++attempt) {
    if (attempt > 0) {
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(2));
    }
    v1::PutRecordsRequest request;
    request.set_stream_name(options.stream);
    std::vector<PutRecordInput> sent;  // in request order, to name records in errors
    for (size_t i : todo) {
      auto* entry = request.add_records();
      entry->set_partition_key(batch[i].partition_key);
      entry->set_explicit_hash_key(options.explicit_hash_key);
      entry->set_data(batch[i].data);
      sent.push_back({"", "", batch[i].where});
    }
    auto put = stub.PutRecords(request, {.timeout = kCallTimeout});
    if (!put.ok()) {
      *rpc_error = absl::Status(put.status().code(),
                                NameRecordsByLine(std::string(put.status().message()), sent));
      return false;
    }
    const v1::PutRecordsResponse& response = *put;
    std::vector<size_t> failed;
    for (int k = 0; k < response.records_size(); ++k) {
      results[todo[static_cast<size_t>(k)]] = response.records(k);
      if (!response.records(k).error_code().empty()) failed.push_back(todo[static_cast<size_t>(k)]);
    }
    todo = std::move(failed);
  }
  for (const auto& result : results) {
    if (result.error_code().empty()) {
      std::printf("{\"shardId\":\"%s\",\"sequenceNumber\":\"%s\"}\n", result.shard_id().c_str(),
                  result.sequence_number().c_str());
    } else {
      std::printf("{\"errorCode\":%s,\"errorMessage\":%s}\n",
                  JsonString(result.error_code()).c_str(),
                  JsonString(result.error_message()).c_str());
    }
  }
  std::fflush(stdout);
  return todo.empty();
}

// Where each record's partition key comes from: exactly one of the three flags.
absl::StatusOr<PutInputOptions> KeyOptions(const PutOptions& options) {
  const bool fixed = options.partition_key_option->count() > 0;
  const bool field = !options.key_field.empty();
  if (int(fixed) + int(field) + int(options.keyed) != 1) {
    return absl::InvalidArgumentError(
        "give exactly one of --partition-key KEY, --key-field NAME (the key is each JSON "
        "line's field NAME) or --keyed (lines are KEY<TAB>DATA)");
  }
  PutInputOptions input;
  input.allow_empty = options.allow_empty;
  if (fixed) {
    const int chars = Utf8Characters(options.partition_key);
    if (chars < 1 || chars > kMaxPartitionKeyChars) {
      return absl::InvalidArgumentError(
          absl::StrCat("--partition-key: a key has 1-256 characters, this one has ", chars));
    }
    input.key_source = KeySource::kFixed;
    input.fixed_key = options.partition_key;
  } else if (field) {
    input.key_source = KeySource::kJsonField;
    input.key_field = options.key_field;
  } else {
    input.key_source = KeySource::kTabSeparated;
  }
  return input;
}

int Put(const PutOptions& options) {
  const bool has_data = options.data_option->count() > 0;
  if (has_data == !options.file.empty()) {
    PrintError("give exactly one of --data TEXT or --file PATH");
    return kExitUsage;
  }
  auto input_options = KeyOptions(options);
  if (!input_options.ok()) {
    PrintError(std::string(input_options.status().message()));
    return kExitUsage;
  }
  if (!options.explicit_hash_key.empty()) {
    if (auto key = ParseHashKey(options.explicit_hash_key, "--explicit-hash-key"); !key.ok()) {
      PrintError(std::string(key.status().message()));
      return kExitUsage;
    }
  }
  // Every record is read and checked before the first is put: a bad line puts nothing.
  PutInput input;
  if (has_data) {
    auto record = ParsePutLine(options.data, *input_options, "--data");
    if (record.ok()) {
      input.records.push_back(std::move(*record));
    } else {
      input.bad_lines = 1;
      input.errors.emplace_back(record.status().message());
    }
  } else if (options.file == "-") {
    input = ReadPutInput(std::cin, "<stdin>", *input_options, kMaxReportedBadLines);
  } else {
    std::ifstream file_stream(options.file, std::ios::binary);
    if (!file_stream) {
      PrintError(absl::StrCat("--file: cannot open ", options.file));
      return kExitUsage;
    }
    input = ReadPutInput(file_stream, options.file, *input_options, kMaxReportedBadLines);
  }
  if (input.bad_lines > 0) {
    for (const std::string& error : input.errors) PrintError(error);
    if (input.bad_lines > 1) {
      PrintError(absl::StrCat(input.bad_lines, " bad records",
                              input.bad_lines > input.errors.size()
                                  ? absl::StrCat(" (the first ", input.errors.size(), " shown)")
                                  : "",
                              "; nothing was put"));
    }
    return kExitError;
  }
  auto stub = ConnectBroker(options.client);
  absl::Status rpc_error;
  bool all_put = true;
  std::vector<PutRecordInput> batch;
  size_t batch_bytes = 0;
  for (PutRecordInput& record : input.records) {
    const size_t bytes = record.data.size() + record.partition_key.size();
    if (!batch.empty() &&
        (batch.size() == kMaxBatchRecords || batch_bytes + bytes > kMaxBatchBytes)) {
      all_put &= PutBatch(*stub, options, batch, &rpc_error);
      if (!rpc_error.ok()) break;
      batch.clear();
      batch_bytes = 0;
    }
    batch.push_back(std::move(record));
    batch_bytes += bytes;
  }
  if (rpc_error.ok() && !batch.empty()) all_put &= PutBatch(*stub, options, batch, &rpc_error);
  if (!rpc_error.ok()) return ReportRpcError(rpc_error, options.client);
  if (!all_put) {
    PrintError("some records could not be put (see their errorCode lines)");
    return kExitError;
  }
  return kExitOk;
}

struct GetOptions {
  ClientOptions client;
  std::string stream;
  std::string shard;
  std::string from = "trim-horizon";
  int64_t limit = 0;
  bool follow = false;
  bool text = false;
};

struct Position {
  v1::ShardIteratorType type = v1::TRIM_HORIZON;
  std::string sequence_number;
  absl::Time timestamp;
};

absl::StatusOr<Position> ParseFrom(const std::string& from) {
  Position position;
  if (from == "trim-horizon") return position;
  if (from == "latest") {
    position.type = v1::LATEST;
    return position;
  }
  if (from.starts_with("at:") || from.starts_with("after:")) {
    position.type = from.starts_with("at:") ? v1::AT_SEQUENCE_NUMBER : v1::AFTER_SEQUENCE_NUMBER;
    position.sequence_number = from.substr(from.find(':') + 1);
    return position;
  }
  if (from.starts_with("at-time:")) {
    position.type = v1::AT_TIMESTAMP;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, from.substr(8), &position.timestamp, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--from at-time: '", from.substr(8),
                       "' is not an RFC 3339 time like 2026-01-31T12:00:00Z (", error, ")"));
    }
    return position;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--from: '", from, "' is not one of trim-horizon, latest, at:SEQ, after:SEQ, at-time:TIME"));
}

class RecordPrinter {
 public:
  RecordPrinter(bool text, int64_t limit) : text_(text), remaining_(limit > 0 ? limit : -1) {}
  // Prints what it may; false once the limit is reached.
  bool Print(const std::string& shard_id, const v1::Record& record) {
    std::lock_guard<std::mutex> lock(mu_);
    if (remaining_ == 0) return false;
    std::printf(
        "{\"shardId\":\"%s\",\"sequenceNumber\":\"%s\",\"partitionKey\":%s,"
        "\"approximateArrivalTimestamp\":%s,\"data\":%s}\n",
        shard_id.c_str(), record.sequence_number().c_str(),
        JsonString(record.partition_key()).c_str(),
        EpochSecondsText(record.approximate_arrival_timestamp()).c_str(),
        JsonString(text_ ? record.data() : Base64(record.data())).c_str());
    std::fflush(stdout);
    if (remaining_ > 0) --remaining_;
    return remaining_ != 0;
  }
  bool Done() {
    std::lock_guard<std::mutex> lock(mu_);
    return remaining_ == 0;
  }
  int64_t Remaining() {
    std::lock_guard<std::mutex> lock(mu_);
    return remaining_;
  }

 private:
  std::mutex mu_;
  const bool text_;
  int64_t remaining_;  // -1: no limit
};

// Reads one shard from `position`: to its end, or forever with `follow`.
absl::Status ReadShard(client::BrokerClient& stub, const GetOptions& options,
                       const std::string& shard_id, const Position& position,
                       RecordPrinter& printer) {
  v1::GetShardIteratorRequest iterator_request;
  iterator_request.set_stream_name(options.stream);
  iterator_request.set_shard_id(shard_id);
  iterator_request.set_shard_iterator_type(position.type);
  iterator_request.set_starting_sequence_number(position.sequence_number);
  if (position.type == v1::AT_TIMESTAMP) {
    *iterator_request.mutable_timestamp() =
        google::protobuf::util::TimeUtil::MillisecondsToTimestamp(
            absl::ToUnixMillis(position.timestamp));
  }
  auto iterator_response = stub.GetShardIterator(iterator_request, {.timeout = kCallTimeout});
  if (!iterator_response.ok()) return iterator_response.status();
  std::string iterator = iterator_response->shard_iterator();
  while (!printer.Done()) {
    v1::GetRecordsRequest request;
    request.set_shard_iterator(iterator);
    const int64_t remaining = printer.Remaining();
    request.set_limit(remaining > 0 ? static_cast<int>(std::min<int64_t>(remaining, 10'000)) : 0);
    if (options.follow) request.mutable_wait_time()->set_seconds(10);
    auto got = stub.GetRecords(request, {.timeout = kCallTimeout});
    if (!got.ok()) return got.status();
    const v1::GetRecordsResponse& response = *got;
    for (const auto& record : response.records()) {
      if (!printer.Print(shard_id, record)) return absl::OkStatus();
    }
    iterator = response.next_shard_iterator();
    if (!options.follow && response.records().empty() && response.millis_behind_latest() == 0) {
      break;
    }
  }
  return absl::OkStatus();
}

int Get(const GetOptions& options) {
  auto position = ParseFrom(options.from);
  if (!position.ok()) {
    PrintError(std::string(position.status().message()));
    return kExitUsage;
  }
  auto stub = ConnectBroker(options.client);
  std::vector<std::string> shards;
  if (!options.shard.empty()) {
    shards.push_back(options.shard);
  } else {
    v1::ListShardsRequest request;
    request.set_stream_name(options.stream);
    request.set_max_results(10'000);
    auto listed = stub->ListShards(request, {.timeout = kCallTimeout});
    if (!listed.ok()) return ReportRpcError(listed.status(), options.client);
    for (const auto& shard : listed->shards()) shards.push_back(shard.shard_id());
  }
  RecordPrinter printer(options.text, options.limit);
  if (!options.follow || shards.size() == 1) {
    for (const std::string& shard : shards) {
      absl::Status status = ReadShard(*stub, options, shard, *position, printer);
      if (!status.ok()) return ReportRpcError(status, options.client);
      if (printer.Done()) break;
    }
    return kExitOk;
  }
  // Following several shards: one reader each, lines interleaved as records arrive.
  std::mutex mu;
  absl::Status failure;
  std::vector<std::thread> readers;
  for (const std::string& shard : shards) {
    readers.emplace_back([&, shard] {
      absl::Status status = ReadShard(*stub, options, shard, *position, printer);
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (failure.ok()) failure = status;
        std::fflush(stdout);
        ReportRpcError(status, options.client);
        std::_Exit(kExitError);
      }
    });
  }
  for (auto& reader : readers) reader.join();
  return kExitOk;
}

}  // namespace

void AddRecordCommands(CLI::App& app, int* exit_code) {
  auto put = std::make_shared<PutOptions>();
  CLI::App* put_command = app.add_subcommand(
      "put",
      "Put records into a stream. Prints one JSON line per record: shardId and sequenceNumber "
      "(or errorCode and errorMessage). Every line is checked before the first record is put: a "
      "bad line (FILE:LINE: what is wrong) puts nothing. Throttled records are resent with "
      "back-off.");
  put_command->add_option("STREAM", put->stream, "Stream name")->required();
  put->partition_key_option = put_command->add_option(
      "-k,--partition-key", put->partition_key,
      "Partition key of every record (1-256 characters): records with one key stay in order");
  put_command->add_option("--key-field", put->key_field,
                          "Each line is a JSON object; its top-level field NAME (a string or a "
                          "number) is the record's partition key");
  put_command->add_flag("--keyed", put->keyed,
                        "Each line is KEY<TAB>DATA: the partition key, a tab, the record's data");
  put->data_option = put_command->add_option("--data", put->data, "One record with this text");
  put_command->add_option("--file", put->file, "One record per line of this file (- for stdin)");
  put_command->add_flag("--allow-empty", put->allow_empty,
                        "Put empty lines as empty records (refused otherwise: a blank line is "
                        "usually a mistake)");
  put_command->add_option("--explicit-hash-key", put->explicit_hash_key,
                          "Route every record by this decimal hash key (0 .. 2^128-1) instead of "
                          "its partition key's MD5");
  put_command->add_option("--retries", put->retries, "Resend throttled records this many times")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  AddBrokerOption(*put_command, &put->client);
  put_command->callback([put, exit_code] { *exit_code = Put(*put); });

  auto get = std::make_shared<GetOptions>();
  CLI::App* get_command = app.add_subcommand(
      "get",
      "Read records from a stream, one JSON line per record (shardId, sequenceNumber, "
      "partitionKey, approximateArrivalTimestamp, data in base64). Without --shard every shard "
      "is read, each in its order; without --follow it stops at the end of each shard.");
  get_command->add_option("STREAM", get->stream, "Stream name")->required();
  get_command->add_option("--shard", get->shard, "Only this shard, e.g. shardId-000000000001");
  get_command
      ->add_option("--from", get->from,
                   "trim-horizon | latest | at:SEQ | after:SEQ | at-time:RFC3339")
      ->capture_default_str();
  get_command->add_option("--limit", get->limit, "Stop after this many records (0: no limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  get_command->add_flag("-f,--follow", get->follow, "Keep waiting for new records");
  get_command->add_flag("--text", get->text, "Print data as text instead of base64");
  AddBrokerOption(*get_command, &get->client);
  get_command->callback([get, exit_code] { *exit_code = Get(*get); });
}

}  // namespace runnel::cli
