// The `runnel` command line: each subsystem's commands live in their own file and register
// themselves on the CLI11 app here, so no file has to know every command.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace runnel::cli {

// Options every client command shares.
struct ClientOptions {
  // Where the broker listens: --broker, else $RUNNEL_BROKER, else 127.0.0.1:4567.
  std::string broker = "127.0.0.1:4567";
  // "table" (readable) or "json".
  std::string output = "table";
};

// Logging options of the long-running commands (broker, poller, up).
struct LogOptions {
  // "text" (readable) or "json" (one object per line): --log-format, else $RUNNEL_LOG_FORMAT.
  std::string format = "text";
  // spdlog level name: --log-level, else $RUNNEL_LOG_LEVEL.
  std::string level = "info";
};

// Exit codes: 0 success, 1 an error (one line on stderr), 2 a usage error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Each adds its subcommands to `app`. A command's callback stores its exit code in *exit_code.
void AddBrokerCommand(CLI::App& app, int* exit_code);
void AddStreamCommands(CLI::App& app, int* exit_code);
void AddRecordCommands(CLI::App& app, int* exit_code);   // put, get
void AddRuntimeCommands(CLI::App& app, int* exit_code);  // invoke, worker
void AddValidateCommand(CLI::App& app, int* exit_code);
void AddPollerCommands(CLI::App& app, int* exit_code);  // poller, up
void AddDlqCommands(CLI::App& app, int* exit_code);     // dlq list, show, redrive
// mapping list, describe, enable, disable, update, seek
void AddMappingCommands(CLI::App& app, int* exit_code);

// Adds --broker (with $RUNNEL_BROKER as its default) to a client command.
void AddBrokerOption(CLI::App& command, ClientOptions* options);
// Adds --output table|json.
void AddOutputOption(CLI::App& command, ClientOptions* options);

// Adds --log-format and --log-level (defaults from $RUNNEL_LOG_FORMAT / $RUNNEL_LOG_LEVEL).
void AddLogOptions(CLI::App& command, LogOptions* options);
// Applies them, tagging lines with `component` unless a thread says otherwise; false (after
// printing the error) when a value is invalid.
bool ApplyLogOptions(const LogOptions& options, const char* component);

// Prints "runnel: <message>" to stderr.
void PrintError(const std::string& message);

}  // namespace runnel::cli
