// Owns the runners of a poller's event-source mappings and changes them live: the transport-
// neutral core of the EventSourceMappings admin service (proto/runnel/v1/mappings.proto), as
// broker.h is for the broker. Takes and returns proto messages; gRPC lives in admin_service.cc.
//
// States are Lambda's: a mapping is Enabled (a MappingRunner runs) or Disabled (none), and
// Enabling, Disabling or Updating while a change is under way. Changes to one mapping are
// serialized by refusing a second one while the first runs (FAILED_PRECONDITION
// "ResourceInUseException: ... is Updating", as Lambda answers for a mapping in transition), so
// a client never waits behind a long drain without knowing; reads (Get, List) never wait.
//
// Live changes are in-memory overrides of the YAML: the controller starts from the file's specs
// and a poller restart starts from them again. Seeks write durable checkpoints.
//
// Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "poller/config.h"
#include "poller/mapping_runner.h"
#include "runnel/v1/mappings.pb.h"

namespace runnel::client {
class BrokerClient;
}

namespace prometheus {
class Registry;
}

namespace runnel::runtime {
class Function;
}

namespace runnel::poller {

struct MappingControllerOptions {
  std::shared_ptr<client::BrokerClient> broker;
  std::string region = "us-east-1";
  // The YAML's folder: a relative `file:` destination in an update is resolved against it.
  std::string config_directory;
  // Called before a runner starts with a spec that an update changed (e.g. to create a new
  // on-failure stream, as the poller does at start-up). May be empty.
  std::function<absl::Status(const MappingSpec&)> prepare;
  // Where the runners' runnel_poller_* metrics go; null: not exposed.
  std::shared_ptr<prometheus::Registry> metrics;
  // How long batches in flight get to finish when a runner stops for a change.
  absl::Duration stop_grace = absl::Seconds(30);
  // This poller in the fleet (see MappingRunnerOptions): its id (empty: DefaultPollerId()) and
  // lease duration.
  std::string poller_id;
  absl::Duration lease_duration = absl::Seconds(10);
};

class MappingController {
 public:
  explicit MappingController(MappingControllerOptions options);
  // Stops every runner (StopAll with the stop grace) if StopAll was not called.
  ~MappingController();

  // Adds a mapping as the YAML declares it, and starts its runner when it is enabled.
  // `function` is not owned and must outlive the controller.
  absl::Status Add(const MappingSpec& spec, runtime::Function* function);
  // Refuses further changes, waits for the one under way, and stops every runner: all stop
  // reading at once, then each finishes what it read (MappingRunner::Stop).
  void StopAll(absl::Duration grace);
  // Writes the moved checkpoints of every running mapping now; safe while StopAll runs on
  // another thread (MappingRunner::FlushCheckpoints). False if a write failed.
  bool FlushCheckpoints();
  // The specs of the mappings that run now.
  std::vector<MappingSpec> Running() const;

  absl::StatusOr<v1::ListEventSourceMappingsResponse> List(
      const v1::ListEventSourceMappingsRequest& request);
  absl::StatusOr<v1::EventSourceMappingConfiguration> Get(
      const v1::GetEventSourceMappingRequest& request);
  absl::StatusOr<v1::EventSourceMappingConfiguration> Enable(
      const v1::EnableEventSourceMappingRequest& request);
  absl::StatusOr<v1::EventSourceMappingConfiguration> Disable(
      const v1::DisableEventSourceMappingRequest& request);
  absl::StatusOr<v1::EventSourceMappingConfiguration> Update(
      const v1::UpdateEventSourceMappingRequest& request);
  absl::StatusOr<v1::SeekEventSourceMappingResponse> Seek(
      const v1::SeekEventSourceMappingRequest& request);

 private:
  struct Entry {
    MappingSpec file_spec;  // as the YAML declares it
    MappingSpec spec;       // what applies now (the file's, or a live override)
    runtime::Function* function = nullptr;
    std::string state;
    std::string reason;
    absl::Time last_modified;
    bool busy = false;  // a change is under way
    // Shared so that Get can read the status of a runner that a change is stopping.
    std::shared_ptr<MappingRunner> runner;
    // The last status of a stopped runner (its errors stay visible while disabled).
    MappingRunnerStatus last_status;
  };

  // Finds a mapping by id, function name or unique id prefix.
  absl::StatusOr<Entry*> Find(const std::string& uuid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the mapping busy in `state`; fails when another change is under way.
  absl::StatusOr<Entry*> Begin(const std::string& uuid, const std::string& state)
      ABSL_LOCKS_EXCLUDED(mu_);
  void End(Entry* entry, std::string state, std::string reason) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::shared_ptr<MappingRunner>> StartRunner(const MappingSpec& spec,
                                                             runtime::Function* function);
  // Stops the entry's runner (outside the lock) and keeps its last status.
  void StopRunner(Entry* entry, absl::Duration grace) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::EventSourceMappingConfiguration> Describe(Entry* entry, bool with_shards)
      ABSL_LOCKS_EXCLUDED(mu_);

  const MappingControllerOptions options_;
  mutable absl::Mutex mu_;
  // By id; entries are never removed, so pointers stay valid.
  std::map<std::string, std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

// The proto form of a spec's knobs (no state, no shards).
void SpecToConfiguration(const MappingSpec& spec, v1::EventSourceMappingConfiguration* out);

// Applies the fields an update sets to `spec`, checked by ValidateMappingSpec (the YAML's
// limits); INVALID_ARGUMENT naming each field, its limit and the value given. A relative `file:`
// destination is resolved against `directory`.
absl::Status ApplyUpdate(const v1::UpdateEventSourceMappingRequest& request,
                         const std::string& directory, MappingSpec* spec);

// Parses a seek target as `runnel mapping seek --to` writes it: TRIM_HORIZON, LATEST,
// AT_SEQUENCE_NUMBER:<seq>, AFTER_SEQUENCE_NUMBER:<seq>, AT_TIMESTAMP:<RFC 3339 time or epoch
// seconds>. The error names what is accepted.
absl::StatusOr<v1::StartingPosition> ParseSeekPosition(std::string_view text);

}  // namespace runnel::poller
