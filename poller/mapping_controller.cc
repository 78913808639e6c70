#include "poller/mapping_controller.h"

#include <cmath>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/broker_client.h"
#include "common/strings.h"
#include "google/protobuf/util/time_util.h"
#include "spdlog/spdlog.h"

namespace runnel::poller {
namespace {

using google::protobuf::util::TimeUtil;

constexpr char kEnabled[] = "Enabled";
constexpr char kDisabled[] = "Disabled";
constexpr char kEnabling[] = "Enabling";
constexpr char kDisabling[] = "Disabling";
constexpr char kUpdating[] = "Updating";
constexpr char kUserAction[] = "User action";  // what AWS reports for Kinesis mappings
constexpr char kConfigurationFile[] = "Configuration file";
// `status` (a failed ListAllShards) with the context this file's errors name.
absl::Status ShardsOf(const std::string& stream, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat("shards of ", stream, ": ", status.message()));
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out.set_seconds(nanos / 1'000'000'000);
  out.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  return out;
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

}  // namespace

void SpecToConfiguration(const MappingSpec& spec, v1::EventSourceMappingConfiguration* out) {
  out->set_uuid(spec.Id());
  out->set_function_name(spec.function);
  out->set_stream_name(spec.stream);
  out->set_batch_size(spec.batch_size);
  *out->mutable_maximum_batching_window() = ToProto(spec.maximum_batching_window);
  out->set_starting_position(StartingPositionName(spec.starting_position));
  if (spec.starting_position == StartingPosition::kAtTimestamp) {
    *out->mutable_starting_position_timestamp() = ToProto(spec.starting_position_timestamp);
  }
  out->set_parallelization_factor(spec.parallelization_factor);
  out->set_bisect_batch_on_function_error(spec.bisect_batch_on_error);
  out->set_maximum_retry_attempts(spec.retry_attempts);
  *out->mutable_maximum_record_age() = spec.max_record_age == absl::InfiniteDuration()
                                           ? ToProto(absl::Seconds(-1))
                                           : ToProto(spec.max_record_age);
  out->mutable_destination_config()->mutable_on_failure()->set_destination(
      OnFailureDestinationText(spec.on_failure));
  out->clear_function_response_types();
  if (spec.report_batch_item_failures) out->add_function_response_types("ReportBatchItemFailures");
  out->mutable_filter_criteria()->clear_filters();
  for (const FilterSpec& filter : spec.filters) {
    out->mutable_filter_criteria()->add_filters()->set_pattern(filter.pattern_json);
  }
  out->set_consumer(spec.consumer == ConsumerType::kFanOut ? "fan_out" : "polling");
}

absl::Status ApplyUpdate(const v1::UpdateEventSourceMappingRequest& request,
                         const std::string& directory, MappingSpec* spec) {
  MappingSpec updated = *spec;
  // The value each field was given, as the messages quote it.
  std::map<std::string, std::string> given;
  std::vector<std::string> errors;
  if (request.has_batch_size()) {
    updated.batch_size = request.batch_size();
    given["batch_size"] = absl::StrCat(request.batch_size());
  }
  if (request.has_maximum_batching_window()) {
    updated.maximum_batching_window = FromProto(request.maximum_batching_window());
    given["maximum_batching_window"] = FormatSeconds(updated.maximum_batching_window);
  }
  if (request.has_parallelization_factor()) {
    updated.parallelization_factor = request.parallelization_factor();
    given["parallelization_factor"] = absl::StrCat(request.parallelization_factor());
  }
  if (request.has_maximum_retry_attempts()) {
    updated.retry_attempts = request.maximum_retry_attempts();
    given["retry_attempts"] = absl::StrCat(request.maximum_retry_attempts());
  }
  if (request.has_maximum_record_age()) {
    const absl::Duration age = FromProto(request.maximum_record_age());
    // -1 (Lambda's "no limit") arrives as -1s.
    updated.max_record_age = age == absl::Seconds(-1) ? absl::InfiniteDuration() : age;
    given["max_record_age"] = FormatSeconds(age);
  }
  if (request.has_bisect_batch_on_function_error()) {
    updated.bisect_batch_on_error = request.bisect_batch_on_function_error();
  }
  if (request.has_destination_config()) {
    const std::string& text = request.destination_config().on_failure().destination();
    absl::StatusOr<OnFailureDestination> destination = ParseOnFailureDestination(text, directory);
    if (destination.ok()) {
      updated.on_failure = std::move(*destination);
      given["on_failure"] = text;
    } else {
      errors.push_back(absl::StrCat("on_failure", destination.status().message()));
    }
  }
  if (request.has_report_batch_item_failures()) {
    updated.report_batch_item_failures = request.report_batch_item_failures();
  }
  for (const MappingSpecError& error : ValidateMappingSpec(updated)) {
    auto it = given.find(error.field);
    if (it == given.end()) continue;  // a value the file gave, valid there
    errors.push_back(absl::StrCat(error.field, error.problem,
                                  error.limit ? absl::StrCat(", got ", it->second) : ""));
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("InvalidParameterValueException: ", absl::StrJoin(errors, "; ")));
  }
  *spec = std::move(updated);
  return absl::OkStatus();
}

MappingController::MappingController(MappingControllerOptions options)
    : options_([&] {
        // One id for every runner of this poller, also across a disable and enable.
        if (options.poller_id.empty()) options.poller_id = DefaultPollerId();
        return std::move(options);
      }()) {}

MappingController::~MappingController() { StopAll(options_.stop_grace); }

absl::Status MappingController::Add(const MappingSpec& spec, runtime::Function* function) {
  auto entry = std::make_unique<Entry>();
  entry->file_spec = spec;
  entry->spec = spec;
  entry->function = function;
  entry->reason = kConfigurationFile;
  entry->last_modified = absl::Now();
  entry->state = kDisabled;
  if (spec.enabled) {
    auto runner = StartRunner(spec, function);
    if (!runner.ok()) return runner.status();
    entry->runner = std::move(*runner);
    entry->state = kEnabled;
  } else {
    spdlog::info("mapping {} is disabled", spec.Id());
  }
  absl::MutexLock lock(&mu_);
  entries_[spec.Id()] = std::move(entry);
  return absl::OkStatus();
}

void MappingController::StopAll(absl::Duration grace) {
  std::vector<Entry*> entries;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopping_ = true;
    // Let a change under way finish (it may be starting a runner), then stop everything.
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& [id, entry] : entries_) {
        if (entry->busy) return false;
      }
      return true;
    };
    mu_.Await(absl::Condition(&idle));
    stopped_ = true;
    for (auto& [id, entry] : entries_) entries.push_back(entry.get());
  }
  // Every mapping stops reading at once; then each finishes what it read.
  for (Entry* entry : entries) {
    std::shared_ptr<MappingRunner> runner;
    {
      absl::MutexLock lock(&mu_);
      runner = entry->runner;
    }
    if (runner != nullptr) runner->RequestStop();
  }
  for (Entry* entry : entries) StopRunner(entry, grace);
}

bool MappingController::FlushCheckpoints() {
  std::vector<std::shared_ptr<MappingRunner>> runners;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : entries_) {
      if (entry->runner != nullptr) runners.push_back(entry->runner);
    }
  }
  bool ok = true;
  for (const auto& runner : runners) ok &= runner->FlushCheckpoints();
  return ok;
}

std::vector<MappingSpec> MappingController::Running() const {
  absl::MutexLock lock(&mu_);
  std::vector<MappingSpec> specs;
  for (const auto& [id, entry] : entries_) {
    if (entry->runner != nullptr) specs.push_back(entry->spec);
  }
  return specs;
}

absl::StatusOr<std::shared_ptr<MappingRunner>> MappingController::StartRunner(
    const MappingSpec& spec, runtime::Function* function) {
  MappingRunnerOptions runner_options;
  runner_options.spec = spec;
  runner_options.function = function;
  runner_options.broker = options_.broker;
  runner_options.region = options_.region;
  runner_options.metrics = options_.metrics;
  runner_options.poller_id = options_.poller_id;
  runner_options.lease_duration = options_.lease_duration;
  auto runner = MappingRunner::Start(std::move(runner_options));
  if (!runner.ok()) return runner.status();
  return std::shared_ptr<MappingRunner>(std::move(*runner));
}

void MappingController::StopRunner(Entry* entry, absl::Duration grace) {
  std::shared_ptr<MappingRunner> runner;
  {
    absl::MutexLock lock(&mu_);
    runner = entry->runner;
  }
  if (runner == nullptr) return;
  runner->Stop(grace);  // Get may read its status meanwhile
  MappingRunnerStatus status = runner->Status();
  absl::MutexLock lock(&mu_);
  if (status.last_processing_result == "No records processed") {
    status.last_processing_result = entry->last_status.last_processing_result;
  }
  entry->last_status = std::move(status);
  entry->runner.reset();
}

absl::StatusOr<MappingController::Entry*> MappingController::Find(const std::string& uuid) {
  std::vector<std::string> ids;
  for (const auto& [id, entry] : entries_) ids.push_back(id);
  const std::string known = ids.empty() ? "this poller runs no mappings"
                                        : absl::StrCat("known: ", absl::StrJoin(ids, ", "));
  if (uuid.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "InvalidParameterValueException: name a mapping by its id stream/function (", known, ")"));
  }
  if (auto it = entries_.find(uuid); it != entries_.end()) return it->second.get();
  std::vector<Entry*> matches;
  for (const auto& [id, entry] : entries_) {
    if (entry->spec.function == uuid || absl::StartsWith(id, uuid)) matches.push_back(entry.get());
  }
  if (matches.size() == 1) return matches[0];
  if (matches.size() > 1) {
    std::vector<std::string> names;
    for (Entry* entry : matches) names.push_back(entry->spec.Id());
    return absl::InvalidArgumentError(
        absl::StrCat("InvalidParameterValueException: '", uuid, "' names several mappings (",
                     absl::StrJoin(names, ", "), "); give the full id stream/function"));
  }
  return absl::NotFoundError(absl::StrCat("ResourceNotFoundException: no event source mapping '",
                                          uuid, "' (", known, ")"));
}

absl::StatusOr<MappingController::Entry*> MappingController::Begin(const std::string& uuid,
                                                                   const std::string& state) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the poller is stopping");
  auto found = Find(uuid);
  if (!found.ok()) return found.status();
  Entry* entry = *found;
  if (entry->busy) {
    return absl::FailedPreconditionError(
        absl::StrCat("ResourceInUseException: mapping ", entry->spec.Id(), " is ", entry->state,
                     "; another change is under way, retry once it is Enabled or Disabled"));
  }
  entry->busy = true;
  if (!state.empty()) entry->state = state;
  return entry;
}

void MappingController::End(Entry* entry, std::string state, std::string reason) {
  absl::MutexLock lock(&mu_);
  entry->busy = false;
  entry->state = std::move(state);
  entry->reason = std::move(reason);
  entry->last_modified = absl::Now();
}

absl::StatusOr<v1::EventSourceMappingConfiguration> MappingController::Describe(Entry* entry,
                                                                                bool with_shards) {
  v1::EventSourceMappingConfiguration config;
  std::shared_ptr<MappingRunner> runner;
  MappingRunnerStatus last_status;
  MappingSpec spec;
  {
    absl::MutexLock lock(&mu_);
    spec = entry->spec;
    SpecToConfiguration(entry->spec, &config);
    config.set_state(entry->state);
    config.set_state_transition_reason(entry->reason);
    *config.mutable_last_modified() = ToProto(entry->last_modified);
    const bool enabled_now = entry->runner != nullptr;
    config.set_overrides_configuration_file(enabled_now != entry->file_spec.enabled || [&] {
      v1::EventSourceMappingConfiguration a, b;
      SpecToConfiguration(entry->spec, &a);
      SpecToConfiguration(entry->file_spec, &b);
      return a.SerializeAsString() != b.SerializeAsString();
    }());
    runner = entry->runner;
    last_status = entry->last_status;
  }
  config.set_function_arn(
      absl::StrCat("arn:aws:lambda:", options_.region, ":000000000000:function:", spec.function));
  config.set_event_source_mapping_arn(absl::StrCat(
      "arn:aws:lambda:", options_.region, ":000000000000:event-source-mapping:", spec.Id()));
  MappingRunnerStatus status = runner != nullptr ? runner->Status() : last_status;
  // A runner restarted by a change has processed nothing yet; the mapping has.
  std::string result = status.last_processing_result;
  if (result.empty() ||
      (result == "No records processed" && !last_status.last_processing_result.empty())) {
    result = last_status.last_processing_result;
  }
  config.set_last_processing_result(result.empty() ? "No records processed" : result);
  client::BrokerClient& broker = *options_.broker;
  if (auto summary = broker.DescribeStreamSummary(spec.stream); summary.ok()) {
    config.set_event_source_arn(summary->stream_arn());
  }
  // The lease table: per shard its checkpoint and owner, and the fleet's heartbeats (host, pid).
  v1::ListLeasesRequest leases_request;
  leases_request.set_consumer_name(spec.Id());
  leases_request.set_stream_name(spec.stream);
  auto leases = broker.ListLeases(leases_request);
  if (!leases.ok() && !with_shards) return config;  // List still lists
  if (!leases.ok()) {
    return client::WithContext(leases.status(), absl::StrCat("leases of ", spec.Id()));
  }
  std::map<std::string, v1::Checkpoint> checkpoints;
  for (const auto& checkpoint : leases->leases()) checkpoints[checkpoint.shard_id()] = checkpoint;
  std::map<std::string, v1::PollerMember> members;
  for (const auto& member : leases->members()) members[member.poller_id()] = member;
  std::map<std::string, const ShardRunStatus*> running;
  for (const ShardRunStatus& shard : status.shards) running[shard.shard_id] = &shard;
  auto shards = broker.ListAllShards(spec.stream);
  if (!shards.ok() && !with_shards) return config;
  if (!shards.ok()) return ShardsOf(spec.stream, shards.status());
  for (const v1::Shard& shard : *shards) {
    v1::ShardStatus* out = config.add_shards();
    out->set_shard_id(shard.shard_id());
    out->set_iterator_age_millis(-1);
    if (auto it = checkpoints.find(shard.shard_id()); it != checkpoints.end()) {
      const v1::Checkpoint& checkpoint = it->second;
      out->set_checkpoint_sequence_number(checkpoint.sequence_number());
      *out->mutable_checkpoint_update_time() = checkpoint.update_time();
      out->set_lease_epoch(checkpoint.lease_epoch());
      if (!checkpoint.lease_owner().empty()) {
        out->set_lease_owner(checkpoint.lease_owner());
        *out->mutable_lease_expiry() = checkpoint.lease_expiry();
        if (auto m = members.find(checkpoint.lease_owner()); m != members.end()) {
          out->set_lease_owner_host(m->second.host());
          out->set_lease_owner_pid(m->second.pid());
        }
      }
    }
    if (!with_shards) continue;  // List: the leases only
    auto it = running.find(shard.shard_id());
    if (it == running.end()) continue;
    const ShardRunStatus& run = *it->second;
    if (runner != nullptr) {
      out->set_iterator_age_millis(run.millis_behind_latest);
      out->set_buffered_records(run.buffered_records);
      for (const InFlightBatchStatus& batch : run.in_flight) {
        v1::InFlightBatch* b = out->add_in_flight_batches();
        b->set_first_sequence_number(batch.first_sequence_number);
        b->set_last_sequence_number(batch.last_sequence_number);
        b->set_record_count(batch.records);
        b->set_attempt(batch.attempt);
        *b->mutable_start_time() = ToProto(batch.started);
      }
    }
    if (!run.last_error.empty()) {
      out->set_last_error(run.last_error);
      *out->mutable_last_error_time() = ToProto(run.last_error_time);
    }
  }
  return config;
}

absl::StatusOr<v1::ListEventSourceMappingsResponse> MappingController::List(
    const v1::ListEventSourceMappingsRequest& request) {
  std::vector<Entry*> entries;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : entries_) {
      if (!request.function_name().empty() && entry->spec.function != request.function_name()) {
        continue;
      }
      if (!request.stream_name().empty() && entry->spec.stream != request.stream_name()) continue;
      entries.push_back(entry.get());
    }
  }
  v1::ListEventSourceMappingsResponse response;
  for (Entry* entry : entries) {
    auto config = Describe(entry, /*with_shards=*/false);
    if (!config.ok()) return config.status();
    *response.add_event_source_mappings() = std::move(*config);
  }
  return response;
}

absl::StatusOr<v1::EventSourceMappingConfiguration> MappingController::Get(
    const v1::GetEventSourceMappingRequest& request) {
  Entry* entry;
  {
    absl::MutexLock lock(&mu_);
    auto found = Find(request.uuid());
    if (!found.ok()) return found.status();
    entry = *found;
  }
  return Describe(entry, /*with_shards=*/true);
}

absl::StatusOr<v1::EventSourceMappingConfiguration> MappingController::Enable(
    const v1::EnableEventSourceMappingRequest& request) {
  auto begun = Begin(request.uuid(), "");
  if (!begun.ok()) return begun.status();
  Entry* entry = *begun;
  std::string state, reason;
  {
    absl::MutexLock lock(&mu_);
    state = entry->state;
    reason = entry->reason;
    if (entry->runner == nullptr) entry->state = kEnabling;
  }
  if (state == kEnabled) {  // nothing to do
    End(entry, state, reason);
    return Describe(entry, true);
  }
  auto runner = StartRunner(entry->spec, entry->function);
  if (!runner.ok()) {
    End(entry, kDisabled, absl::StrCat("PROBLEM: ", runner.status().message()));
    return runner.status();
  }
  {
    absl::MutexLock lock(&mu_);
    entry->runner = std::move(*runner);
  }
  spdlog::info("mapping {}: enabled ({})", entry->spec.Id(), kUserAction);
  End(entry, kEnabled, kUserAction);
  return Describe(entry, true);
}

absl::StatusOr<v1::EventSourceMappingConfiguration> MappingController::Disable(
    const v1::DisableEventSourceMappingRequest& request) {
  auto begun = Begin(request.uuid(), "");
  if (!begun.ok()) return begun.status();
  Entry* entry = *begun;
  std::string state, reason;
  {
    absl::MutexLock lock(&mu_);
    state = entry->state;
    reason = entry->reason;
    if (entry->runner != nullptr) entry->state = kDisabling;
  }
  if (state == kDisabled) {
    End(entry, state, reason);
    return Describe(entry, true);
  }
  StopRunner(entry, options_.stop_grace);
  spdlog::info("mapping {}: disabled ({})", entry->spec.Id(), kUserAction);
  End(entry, kDisabled, kUserAction);
  return Describe(entry, true);
}

absl::StatusOr<v1::EventSourceMappingConfiguration> MappingController::Update(
    const v1::UpdateEventSourceMappingRequest& request) {
  auto begun = Begin(request.uuid(), "");
  if (!begun.ok()) return begun.status();
  Entry* entry = *begun;
  MappingSpec updated = entry->spec;
  std::string state, reason;
  {
    absl::MutexLock lock(&mu_);
    state = entry->state;
    reason = entry->reason;
  }
  if (absl::Status status = ApplyUpdate(request, options_.config_directory, &updated);
      !status.ok()) {
    End(entry, state, reason);
    return status;
  }
  if (options_.prepare) {
    if (absl::Status status = options_.prepare(updated); !status.ok()) {
      End(entry, state, reason);
      return status;
    }
  }
  if (state != kEnabled) {  // a disabled mapping only takes the settings
    {
      absl::MutexLock lock(&mu_);
      entry->spec = std::move(updated);
    }
    End(entry, state, kUserAction);
    return Describe(entry, true);
  }
  {
    absl::MutexLock lock(&mu_);
    entry->state = kUpdating;
  }
  // Batches in flight finish and the checkpoints are written; the new runner resumes after them.
  StopRunner(entry, options_.stop_grace);
  const MappingSpec previous = entry->spec;
  auto runner = StartRunner(updated, entry->function);
  absl::Status failure;
  if (!runner.ok()) {
    failure = runner.status();
    spdlog::error("mapping {}: the update failed ({}); restarting with the previous settings",
                  previous.Id(), failure.ToString());
    updated = previous;
    runner = StartRunner(previous, entry->function);
  }
  if (!runner.ok()) {
    End(entry, kDisabled, absl::StrCat("PROBLEM: ", runner.status().message()));
    return failure;
  }
  {
    absl::MutexLock lock(&mu_);
    entry->spec = std::move(updated);
    entry->runner = std::move(*runner);
  }
  End(entry, kEnabled, kUserAction);
  if (!failure.ok()) {
    return absl::Status(failure.code(), absl::StrCat(failure.message(),
                                                     " (the mapping runs with its previous "
                                                     "settings)"));
  }
  spdlog::info("mapping {}: updated ({})", entry->spec.Id(), kUserAction);
  return Describe(entry, true);
}

absl::StatusOr<v1::SeekEventSourceMappingResponse> MappingController::Seek(
    const v1::SeekEventSourceMappingRequest& request) {
  const v1::StartingPosition& position = request.position();
  const bool by_sequence =
      position.type() == v1::AT_SEQUENCE_NUMBER || position.type() == v1::AFTER_SEQUENCE_NUMBER;
  if (request.all_shards() == !request.shard_id().empty()) {
    return absl::InvalidArgumentError(
        "InvalidParameterValueException: give either shard_id or all_shards");
  }
  if (position.type() == v1::SHARD_ITERATOR_TYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "InvalidParameterValueException: position.type must be TRIM_HORIZON, LATEST, "
        "AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER or AT_TIMESTAMP");
  }
  if (by_sequence && request.all_shards()) {
    return absl::InvalidArgumentError(
        "InvalidParameterValueException: a sequence number belongs to one shard: seek "
        "AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER with a shard_id, not all_shards");
  }
  auto begun = Begin(request.uuid(), "");
  if (!begun.ok()) return begun.status();
  Entry* entry = *begun;
  std::string state, reason;
  {
    absl::MutexLock lock(&mu_);
    state = entry->state;
    reason = entry->reason;
    if (entry->runner != nullptr) entry->state = kUpdating;
  }
  const MappingSpec spec = entry->spec;
  // Stop first: the runner's final checkpoints must not land after the ones written here.
  const bool was_running = state == kEnabled;
  if (was_running) StopRunner(entry, options_.stop_grace);

  client::BrokerClient& broker = *options_.broker;
  std::vector<std::string> shards;
  absl::Status failure;
  if (request.all_shards()) {
    auto all = broker.ListAllShards(spec.stream);
    if (all.ok()) {
      for (const v1::Shard& shard : *all) shards.push_back(shard.shard_id());
    } else {
      failure = ShardsOf(spec.stream, all.status());
    }
  } else {
    shards.push_back(request.shard_id());
  }
  v1::SeekEventSourceMappingResponse response;
  for (const std::string& shard : shards) {
    if (!failure.ok()) break;
    v1::SetCheckpointRequest set;
    set.set_consumer_name(spec.Id());
    set.set_stream_name(spec.stream);
    set.set_shard_id(shard);
    *set.mutable_position() = position;
    auto set_response = broker.SetCheckpoint(set);
    if (!set_response.ok()) {
      failure =
          client::WithContext(set_response.status(), absl::StrCat("seek ", spec.Id(), " ", shard));
      if (response.checkpoints_size() > 0) {
        failure = absl::Status(failure.code(),
                               absl::StrCat(failure.message(), " (", response.checkpoints_size(),
                                            " shards were moved before this one)"));
      }
      break;
    }
    *response.add_checkpoints() = set_response->checkpoint();
    spdlog::info("mapping {} {}: checkpoint moved to {} ({})", spec.Id(), shard,
                 set_response->checkpoint().sequence_number(),
                 v1::ShardIteratorType_Name(position.type()));
  }
  if (was_running) {
    auto runner = StartRunner(spec, entry->function);
    if (!runner.ok()) {
      End(entry, kDisabled, absl::StrCat("PROBLEM: ", runner.status().message()));
      return failure.ok() ? runner.status() : failure;
    }
    absl::MutexLock lock(&mu_);
    entry->runner = std::move(*runner);
  }
  End(entry, was_running ? kEnabled : state, was_running ? kUserAction : reason);
  if (!failure.ok()) return failure;
  auto config = Describe(entry, true);
  if (!config.ok()) return config.status();
  *response.mutable_configuration() = std::move(*config);
  return response;
}

absl::StatusOr<v1::StartingPosition> ParseSeekPosition(std::string_view text) {
  const std::string usage =
      "expected TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER:<seq>, AFTER_SEQUENCE_NUMBER:<seq> or "
      "AT_TIMESTAMP:<RFC 3339 time or epoch seconds>";
  v1::StartingPosition position;
  const size_t colon = text.find(':');
  const std::string kind(text.substr(0, colon));
  const std::string value(colon == std::string_view::npos ? "" : text.substr(colon + 1));
  const bool has_value = colon != std::string_view::npos;
  if (kind == "TRIM_HORIZON" || kind == "LATEST") {
    if (has_value) {
      return absl::InvalidArgumentError(absl::StrCat(kind, " takes no value; ", usage));
    }
    position.set_type(kind == "LATEST" ? v1::LATEST : v1::TRIM_HORIZON);
    return position;
  }
  if (kind == "AT_SEQUENCE_NUMBER" || kind == "AFTER_SEQUENCE_NUMBER") {
    if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(kind, " needs a sequence number (digits) after ':', got '", value, "'"));
    }
    position.set_type(kind == "AT_SEQUENCE_NUMBER" ? v1::AT_SEQUENCE_NUMBER
                                                   : v1::AFTER_SEQUENCE_NUMBER);
    position.set_sequence_number(value);
    return position;
  }
  if (kind == "AT_TIMESTAMP") {
    absl::Time time;
    std::string ignored;
    double seconds;
    if (absl::ParseTime(absl::RFC3339_full, value, &time, &ignored)) {
    } else if (!value.empty() && value.find_first_not_of("0123456789.") == std::string::npos &&
               absl::SimpleAtod(value, &seconds)) {
      time = absl::UnixEpoch() + absl::Milliseconds(std::llround(seconds * 1e3));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "AT_TIMESTAMP needs an RFC 3339 time (2024-06-10T12:00:00Z) or epoch seconds "
          "(1718020800.5) after ':', got '",
          value, "'"));
    }
    if (time <= absl::UnixEpoch()) {
      return absl::InvalidArgumentError("AT_TIMESTAMP must be after 1970-01-01T00:00:00Z");
    }
    position.set_type(v1::AT_TIMESTAMP);
    *position.mutable_timestamp() = ToProto(time);
    return position;
  }
  return absl::InvalidArgumentError(absl::StrCat("'", Sv(text), "': ", usage));
}

}  // namespace runnel::poller
