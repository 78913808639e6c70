// `runnel`: one binary for the broker, the poller, the handler worker and every client command.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "common/logging.h"

namespace runnel::cli {

void AddBrokerOption(CLI::App& command, ClientOptions* options) {
  if (const char* env = std::getenv("RUNNEL_BROKER"); env != nullptr && *env != '\0') {
    options->broker = env;
  }
  command.add_option("--broker", options->broker, "Broker address HOST:PORT (env RUNNEL_BROKER)")
      ->capture_default_str();
}

void AddOutputOption(CLI::App& command, ClientOptions* options) {
  command.add_option("-o,--output", options->output, "Output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
}

void AddLogOptions(CLI::App& command, LogOptions* options) {
  if (const char* env = std::getenv("RUNNEL_LOG_FORMAT"); env != nullptr && *env != '\0') {
    options->format = env;
  }
  if (const char* env = std::getenv("RUNNEL_LOG_LEVEL"); env != nullptr && *env != '\0') {
    options->level = env;
  }
  command
      .add_option("--log-format", options->format,
                  "text (readable) or json (one object per line with time, level, component, "
                  "stream, shard, mapping, function, request_id, message); env RUNNEL_LOG_FORMAT")
      ->capture_default_str();
  command
      .add_option("--log-level", options->level,
                  "trace, debug, info, warn, error, critical or off; env RUNNEL_LOG_LEVEL")
      ->capture_default_str();
}

bool ApplyLogOptions(const LogOptions& options, const char* component) {
  if (absl::Status status = InitLogging(options.format, options.level, component); !status.ok()) {
    PrintError(std::string(status.message()));
    return false;
  }
  return true;
}

void PrintError(const std::string& message) { std::cerr << "runnel: " << message << std::endl; }

}  // namespace runnel::cli

int main(int argc, char** argv) {
  using namespace runnel::cli;
  CLI::App app{
      "runnel: a Kinesis-style stream broker and a Lambda-style event-source-mapping runtime.\n"
      "Run `runnel COMMAND --help` for the options of a command."};
  app.name("runnel");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("runnel ") + RUNNEL_VERSION);

  // Every command logs through runnel's formatter; the long-running ones apply their
  // --log-format / --log-level again when they start.
  app.parse_complete_callback([&app] {
    const char* component = "runnel";
    if (!app.get_subcommands().empty()) component = app.get_subcommands()[0]->get_name().c_str();
    (void)runnel::InitLogging("text", "info", component);
  });

  int exit_code = kExitOk;
  AddBrokerCommand(app, &exit_code);
  AddStreamCommands(app, &exit_code);
  AddRecordCommands(app, &exit_code);
  AddRuntimeCommands(app, &exit_code);
  AddValidateCommand(app, &exit_code);
  AddPollerCommands(app, &exit_code);
  AddDlqCommands(app, &exit_code);
  AddMappingCommands(app, &exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return exit_code;
}
