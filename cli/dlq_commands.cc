// `runnel dlq list|show|redrive DEST`: the failure records an on_failure destination holds
// (DEST is `stream:NAME` or `file:PATH`, as in the YAML), one decoded, and a redrive that puts
// the discarded records back (to their source stream, or --to another) with their partition
// keys, in their original order. Each failure record is redriven at most once: the redrive
// remembers how far it got (a broker checkpoint for a stream, a `PATH.redriven` file for a
// file), so a second run skips what the first did. `redrive --id ID` redrives one failure record
// and remembers that one alone (a broker checkpoint of its own, or a line in `PATH.redriven-ids`),
// so neither a second `--id` nor a later full redrive puts it again. A crash between putting a
// record's payload and remembering it redrives that one record again: at-least-once, never lost.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/client_util.h"
#include "cli/commands.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "poller/failure_record.h"

namespace runnel::cli {
namespace {

constexpr char kRedriveConsumer[] = "runnel-dlq-redrive";
constexpr absl::Duration kTimeout = absl::Seconds(30);

struct DlqOptions {
  ClientOptions client;
  std::string destination;
  std::string id;
  std::string to;
  bool dry_run = false;
};

// One failure record as stored, with where it is (for ids and redrive marks).
struct Entry {
  std::string id;        // file: the line number; stream: the record's sequence number
  std::string shard_id;  // stream destinations: the DLQ shard it is in
  std::string json;
  bool redriven = false;
};

struct Destination {
  bool is_stream = false;
  std::string target;  // stream name or file path
};

absl::StatusOr<Destination> ParseDestination(const std::string& text) {
  if (text.starts_with("stream:") && text.size() > 7) return Destination{true, text.substr(7)};
  if (text.starts_with("file:") && text.size() > 5) return Destination{false, text.substr(5)};
  return absl::InvalidArgumentError(absl::StrCat(
      "DEST '", text, "' is neither stream:NAME nor file:PATH (the mapping's on_failure)"));
}

std::string RedriveMarkPath(const std::string& file) { return file + ".redriven"; }

// How many lines of `path` a full redrive has done (0 without a mark). A mark that is not a line
// number is an error, not 0: reading it as 0 would redrive everything again.
absl::StatusOr<size_t> ReadRedriveMark(const std::string& path) {
  auto mark = ReadFileToString(RedriveMarkPath(path));
  if (!mark.ok()) {
    if (absl::IsNotFound(mark.status())) return 0;
    return mark.status();
  }
  size_t redriven = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*mark), &redriven)) {
    return absl::DataLossError(absl::StrCat(
        RedriveMarkPath(path), " is damaged: it should hold the number of the last line redriven, ",
        "holds '", absl::CHexEscape(mark->substr(0, 40)), "'; put the right number in it (see ",
        "`runnel dlq list file:", path, "`) or remove it to redrive everything again"));
  }
  return redriven;
}

absl::StatusOr<std::vector<Entry>> ReadFileEntries(const std::string& path) {
  ASSIGN_OR_RETURN(std::string contents, ReadFileToString(path));
  ASSIGN_OR_RETURN(const size_t redriven, ReadRedriveMark(path));
  std::vector<Entry> entries;
  size_t line_number = 0, start = 0;
  while (start < contents.size()) {
    size_t end = contents.find('\n', start);
    if (end == std::string::npos) {
      // Only the end can be torn: a write that did not complete (never acknowledged, so the
      // poller writes that record again, and cuts this before its next write).
      std::fprintf(stderr,
                   "runnel: %s:%zu: ignoring an unfinished last line of %zu bytes (a write that "
                   "did not complete; the poller cuts it before its next write)\n",
                   path.c_str(), line_number + 1, contents.size() - start);
      break;
    }
    ++line_number;
    if (end > start) {
      entries.push_back({std::to_string(line_number), "", contents.substr(start, end - start),
                         line_number <= redriven});
    }
    start = end + 1;
  }
  return entries;
}

absl::Status ReadStreamEntries(client::BrokerClient& stub, const std::string& stream,
                               std::vector<Entry>* entries) {
  v1::ListShardsRequest list;
  list.set_stream_name(stream);
  list.set_max_results(10'000);
  auto shards = stub.ListShards(list, {.timeout = kTimeout});
  if (!shards.ok()) return shards.status();
  std::map<std::string, std::string> marks;  // shard -> last redriven sequence number
  v1::ListCheckpointsRequest checkpoints_request;
  checkpoints_request.set_consumer_name(kRedriveConsumer);
  checkpoints_request.set_stream_name(stream);
  auto checkpoints = stub.ListCheckpoints(checkpoints_request, {.timeout = kTimeout});
  if (!checkpoints.ok()) return checkpoints.status();
  for (const auto& c : checkpoints->checkpoints()) marks[c.shard_id()] = c.sequence_number();
  for (const auto& shard : shards->shards()) {
    v1::GetShardIteratorRequest iterator_request;
    iterator_request.set_stream_name(stream);
    iterator_request.set_shard_id(shard.shard_id());
    iterator_request.set_shard_iterator_type(v1::TRIM_HORIZON);
    auto iterator = stub.GetShardIterator(iterator_request, {.timeout = kTimeout});
    if (!iterator.ok()) return iterator.status();
    std::string next = iterator->shard_iterator();
    for (;;) {
      v1::GetRecordsRequest request;
      request.set_shard_iterator(next);
      auto got = stub.GetRecords(request, {.timeout = kTimeout});
      if (!got.ok()) return got.status();
      const v1::GetRecordsResponse& response = *got;
      for (const auto& record : response.records()) {
        const std::string& mark = marks[shard.shard_id()];
        // Sequence numbers of one shard compare as numbers; runnel's also as strings of equal
        // length, but compare by length first to be safe with any Kinesis-style numbers.
        const std::string& seq = record.sequence_number();
        const bool redriven = !mark.empty() && (seq.size() < mark.size() ||
                                                (seq.size() == mark.size() && seq <= mark));
        entries->push_back({seq, shard.shard_id(), record.data(), redriven});
      }
      if (response.records().empty()) break;
      next = response.next_shard_iterator();
    }
  }
  return absl::OkStatus();
}

// Failure records redriven one at a time (`redrive --id`), beside the mark of how far a full
// redrive got. A stream destination keeps each as a checkpoint of its own consumer
// (kSingleRedrivePrefix + sequence number, at that record); a file destination as one line
// number per line of `PATH.redriven-ids`, rewritten whole (atomically) for each one added.
constexpr char kSingleRedrivePrefix[] = "runnel-dlq-redrive@";

std::string SingleMarksPath(const std::string& file) { return file + ".redriven-ids"; }

absl::StatusOr<std::set<std::string>> ReadSingleMarks(client::BrokerClient& stub,
                                                      const Destination& dest,
                                                      absl::Status* rpc_status) {
  std::set<std::string> ids;
  if (dest.is_stream) {
    v1::ListCheckpointsRequest request;
    request.set_stream_name(dest.target);  // every consumer: the marks are one consumer each
    auto response = stub.ListCheckpoints(request, {.timeout = kTimeout});
    *rpc_status = response.status();
    if (!rpc_status->ok()) return absl::UnavailableError(rpc_status->message());
    for (const auto& checkpoint : response->checkpoints()) {
      if (checkpoint.consumer_name().starts_with(kSingleRedrivePrefix)) {
        ids.insert(checkpoint.sequence_number());
      }
    }
    return ids;
  }
  auto contents = ReadFileToString(SingleMarksPath(dest.target));
  if (!contents.ok()) {
    if (absl::IsNotFound(contents.status())) return ids;
    return contents.status();
  }
  for (absl::string_view line : absl::StrSplit(*contents, '\n', absl::SkipWhitespace())) {
    ids.insert(std::string(absl::StripAsciiWhitespace(line)));
  }
  return ids;
}

// Remembers that `entry` alone was redriven.
absl::Status MarkOneRedriven(client::BrokerClient& stub, const Destination& dest,
                             const Entry& entry, absl::Status* rpc_status) {
  if (dest.is_stream) {
    v1::SetCheckpointRequest mark;
    mark.set_consumer_name(absl::StrCat(kSingleRedrivePrefix, entry.id));
    mark.set_stream_name(dest.target);
    mark.set_shard_id(entry.shard_id);
    mark.set_sequence_number(entry.id);
    *rpc_status = stub.SetCheckpoint(mark, {.timeout = kTimeout}).status();
    if (!rpc_status->ok()) return absl::UnavailableError(rpc_status->message());
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::set<std::string> ids, ReadSingleMarks(stub, dest, rpc_status));
  ids.insert(entry.id);
  return WriteFileAtomically(SingleMarksPath(dest.target),
                             absl::StrCat(absl::StrJoin(ids, "\n"), "\n"));
}

// Loads DEST's entries, or prints the error and returns the exit code through `exit_code`.
bool LoadEntries(const DlqOptions& options, client::BrokerClient& stub, Destination* dest,
                 std::vector<Entry>* entries, int* exit_code) {
  auto parsed = ParseDestination(options.destination);
  if (!parsed.ok()) {
    PrintError(std::string(parsed.status().message()));
    *exit_code = kExitUsage;
    return false;
  }
  *dest = *parsed;
  if (dest->is_stream) {
    absl::Status status = ReadStreamEntries(stub, dest->target, entries);
    if (!status.ok()) {
      *exit_code = ReportRpcError(status, options.client);
      return false;
    }
  } else {
    auto file_entries = ReadFileEntries(dest->target);
    if (!file_entries.ok()) {
      PrintError(std::string(file_entries.status().message()));
      *exit_code = kExitError;
      return false;
    }
    *entries = std::move(*file_entries);
  }
  absl::Status rpc_status;
  auto single = ReadSingleMarks(stub, *dest, &rpc_status);
  if (!single.ok()) {
    if (!rpc_status.ok()) {
      *exit_code = ReportRpcError(rpc_status, options.client);
    } else {
      PrintError(std::string(single.status().message()));
      *exit_code = kExitError;
    }
    return false;
  }
  for (Entry& entry : *entries) entry.redriven |= single->contains(entry.id);
  return true;
}

std::string StreamFromArn(const std::string& arn) {
  const size_t slash = arn.rfind("stream/");
  return slash == std::string::npos ? "" : arn.substr(slash + 7);
}

int List(const DlqOptions& options) {
  auto stub = ConnectBroker(options.client);
  Destination dest;
  std::vector<Entry> entries;
  int exit_code = kExitOk;
  if (!LoadEntries(options, *stub, &dest, &entries, &exit_code)) return exit_code;
  if (options.client.output != "json") {
    std::printf("%-28s %-24s %-22s %-22s %7s %6s %-8s %s\n", "ID", "DISCARDED", "CONDITION",
                "SHARD", "RECORDS", "TRIES", "REDRIVEN", "FIRST SEQUENCE NUMBER");
  }
  int corrupt = 0;
  for (const Entry& entry : entries) {
    auto record = poller::ParseFailureRecord(entry.json);
    if (!record.ok()) {
      // One bad entry does not hide the others: list them all, then fail.
      ++corrupt;
      const std::string where = dest.is_stream
                                    ? absl::StrCat(options.destination, ": record ", entry.id)
                                    : absl::StrCat(dest.target, ":", entry.id);
      std::fprintf(stderr, "runnel: %s: not a failure record: %s\n", where.c_str(),
                   std::string(record.status().message()).c_str());
      continue;
    }
    if (options.client.output == "json") {
      std::printf("{\"id\":%s,\"redriven\":%s,\"record\":%s}\n", JsonString(entry.id).c_str(),
                  entry.redriven ? "true" : "false", entry.json.c_str());
    } else {
      std::printf("%-28s %-24s %-22s %-22s %7d %6d %-8s %s\n", entry.id.c_str(),
                  poller::FormatIsoMillis(record->timestamp_ms).c_str(), record->condition.c_str(),
                  record->shard_id.c_str(), record->batch_size, record->approximate_invoke_count,
                  entry.redriven ? "yes" : "no", record->start_sequence_number.c_str());
    }
  }
  if (corrupt > 0) {
    PrintError(absl::StrCat(options.destination, " is corrupt: ", corrupt, " of ", entries.size(),
                            " entries are not failure records (named above)"));
    return kExitError;
  }
  return kExitOk;
}

int Show(const DlqOptions& options) {
  auto stub = ConnectBroker(options.client);
  Destination dest;
  std::vector<Entry> entries;
  int exit_code = kExitOk;
  if (!LoadEntries(options, *stub, &dest, &entries, &exit_code)) return exit_code;
  for (const Entry& entry : entries) {
    if (entry.id != options.id) continue;
    if (options.client.output == "json") {  // as `dlq list --output json` prints it
      std::printf("{\"id\":%s,\"redriven\":%s,\"record\":%s}\n", JsonString(entry.id).c_str(),
                  entry.redriven ? "true" : "false", entry.json.c_str());
      return kExitOk;
    }
    auto record = poller::ParseFailureRecord(entry.json);
    if (!record.ok()) {
      PrintError(absl::StrCat("entry ", entry.id,
                              " is not a failure record: ", record.status().message()));
      return kExitError;
    }
    std::printf(
        "id:          %s%s\ndiscarded:   %s\ncondition:   %s after %d invocation(s)\n"
        "error:       %s\nrequest id:  %s\nfunction:    %s\nstream:      %s\nshard:       %s\n"
        "sequence:    %s .. %s (%d records)\narrivals:    %s .. %s\n",
        entry.id.c_str(), entry.redriven ? " (redriven)" : "",
        poller::FormatIsoMillis(record->timestamp_ms).c_str(), record->condition.c_str(),
        record->approximate_invoke_count,
        record->function_error.value_or("(none: never invoked, or a partial failure)").c_str(),
        record->request_id.c_str(), record->function_arn.c_str(), record->stream_arn.c_str(),
        record->shard_id.c_str(), record->start_sequence_number.c_str(),
        record->end_sequence_number.c_str(), record->batch_size,
        poller::FormatIsoMillis(record->approximate_arrival_of_first_record_ms).c_str(),
        poller::FormatIsoMillis(record->approximate_arrival_of_last_record_ms).c_str());
    if (!record->has_payload) {
      std::printf("records:     not included (an AWS-style record without payload)\n");
      return kExitOk;
    }
    std::printf("records:\n");
    for (const auto& r : record->payload.records) {
      std::printf("  %s  key=%s  data=%s\n", r.sequence_number.c_str(),
                  JsonString(r.partition_key).c_str(), JsonString(r.data).c_str());
    }
    return kExitOk;
  }
  PrintError(absl::StrCat("no entry ", options.id, " in ", options.destination,
                          " (see `runnel dlq list ", options.destination, "`)"));
  return kExitError;
}

absl::Status PutInOrder(client::BrokerClient& stub, const std::string& stream,
                        const runtime::OwnedEvent& payload) {
  // Sequential PutRecords of at most 500 records, each answered before the next: the broker
  // appends a request's records to a shard in request order, so each key keeps its order.
  size_t i = 0;
  while (i < payload.records.size()) {
    v1::PutRecordsRequest request;
    request.set_stream_name(stream);
    size_t bytes = 0;
    for (; i < payload.records.size() && request.records_size() < 500; ++i) {
      const auto& r = payload.records[i];
      if (request.records_size() > 0 &&
          bytes + r.data.size() + r.partition_key.size() > (5u << 20)) {
        break;
      }
      auto* entry = request.add_records();
      entry->set_partition_key(r.partition_key);
      entry->set_data(r.data);
      bytes += r.data.size() + r.partition_key.size();
    }
    for (int attempt = 0;; ++attempt) {
      auto response = stub.PutRecords(request, {.timeout = kTimeout});
      if (!response.ok()) return response.status();
      if (response->failed_record_count() == 0) break;
      // Throttled: resend the whole request (only in order is it correct), backing off.
      if (attempt == 10) {
        return absl::ResourceExhaustedError("records were throttled 10 times; try again later");
      }
      absl::SleepFor(absl::Milliseconds(100) * (1 << std::min(attempt, 5)));
    }
  }
  return absl::OkStatus();
}

int Redrive(const DlqOptions& options) {
  auto stub = ConnectBroker(options.client);
  Destination dest;
  std::vector<Entry> entries;
  int exit_code = kExitOk;
  if (!LoadEntries(options, *stub, &dest, &entries, &exit_code)) return exit_code;
  if (!options.id.empty()) {
    // One failure record: the others stay as they are, and so does the full redrive's mark.
    std::erase_if(entries, [&](const Entry& entry) { return entry.id != options.id; });
    if (entries.empty()) {
      PrintError(absl::StrCat("no entry ", options.id, " in ", options.destination,
                              " (see `runnel dlq list ", options.destination, "`)"));
      return kExitError;
    }
    if (entries[0].redriven) {
      std::printf("%s was redriven before: nothing put (each failure record is redriven once)\n",
                  options.id.c_str());
      return kExitOk;
    }
  }
  int redriven = 0, skipped = 0;
  size_t records = 0;
  for (const Entry& entry : entries) {
    if (entry.redriven) {
      ++skipped;
      continue;
    }
    auto record = poller::ParseFailureRecord(entry.json);
    if (!record.ok() || !record->has_payload) {
      PrintError(absl::StrCat(dest.is_stream ? absl::StrCat(options.destination, ": record ")
                                             : absl::StrCat(dest.target, ":"),
                              entry.id, ": no records to redrive",
                              record.ok() ? "" : absl::StrCat(": ", record.status().message())));
      return kExitError;
    }
    const std::string target = options.to.empty() ? StreamFromArn(record->stream_arn) : options.to;
    if (options.dry_run) {
      std::printf("would redrive %s: %zu records to %s\n", entry.id.c_str(),
                  record->payload.records.size(), target.c_str());
      continue;
    }
    if (absl::Status status = PutInOrder(*stub, target, record->payload); !status.ok()) {
      return ReportRpcError(status, options.client);
    }
    // Remember it before the next one, so a second run skips it.
    if (!options.id.empty()) {
      absl::Status rpc_status;
      if (absl::Status status = MarkOneRedriven(*stub, dest, entry, &rpc_status); !status.ok()) {
        if (!rpc_status.ok()) return ReportRpcError(rpc_status, options.client);
        PrintError(std::string(status.message()));
        return kExitError;
      }
    } else if (dest.is_stream) {
      v1::SetCheckpointRequest mark;
      mark.set_consumer_name(kRedriveConsumer);
      mark.set_stream_name(dest.target);
      mark.set_shard_id(entry.shard_id);
      mark.set_sequence_number(entry.id);
      if (auto marked = stub->SetCheckpoint(mark, {.timeout = kTimeout}); !marked.ok()) {
        return ReportRpcError(marked.status(), options.client);
      }
    } else if (absl::Status status =
                   WriteFileAtomically(RedriveMarkPath(dest.target), entry.id + "\n");
               !status.ok()) {
      PrintError(std::string(status.message()));
      return kExitError;
    }
    std::printf("redrove %s: %zu records to %s\n", entry.id.c_str(), record->payload.records.size(),
                target.c_str());
    ++redriven;
    records += record->payload.records.size();
  }
  if (!options.dry_run && options.id.empty()) {
    std::printf("redrove %d failure records (%zu records); %d already redriven before\n", redriven,
                records, skipped);
  }
  return kExitOk;
}

}  // namespace

void AddDlqCommands(CLI::App& app, int* exit_code) {
  CLI::App* dlq = app.add_subcommand(
      "dlq", "Inspect and redrive the failure records of an on_failure destination");
  dlq->require_subcommand(1);
  auto add_common = [](CLI::App* command, DlqOptions* options) {
    command->add_option("DEST", options->destination, "stream:NAME or file:PATH")->required();
    AddBrokerOption(*command, &options->client);
  };

  auto list = std::make_shared<DlqOptions>();
  CLI::App* list_command = dlq->add_subcommand("list", "List the failure records");
  add_common(list_command, list.get());
  AddOutputOption(*list_command, &list->client);
  list_command->callback([list, exit_code] { *exit_code = List(*list); });

  auto show = std::make_shared<DlqOptions>();
  CLI::App* show_command =
      dlq->add_subcommand("show", "Show one failure record, decoded, with its records");
  add_common(show_command, show.get());
  show_command->add_option("ID", show->id, "As `dlq list` shows it")->required();
  AddOutputOption(*show_command, &show->client);
  show_command->callback([show, exit_code] { *exit_code = Show(*show); });

  auto redrive = std::make_shared<DlqOptions>();
  CLI::App* redrive_command = dlq->add_subcommand(
      "redrive",
      "Put the discarded records back, in their original order with their partition keys; "
      "each failure record at most once");
  add_common(redrive_command, redrive.get());
  redrive_command->add_option("--to", redrive->to,
                              "Stream to put them into (default: the stream they came from)");
  redrive_command->add_option("--id", redrive->id,
                              "Only this failure record (its ID as `dlq list` and `dlq show` "
                              "show it); it too is redriven at most once");
  redrive_command->add_flag("--dry-run", redrive->dry_run, "Say what would be redriven");
  redrive_command->callback([redrive, exit_code] { *exit_code = Redrive(*redrive); });
}

}  // namespace runnel::cli
