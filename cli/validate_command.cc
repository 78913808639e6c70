// `runnel validate -f FILE`: checks a streams/functions/mappings YAML file without starting
// anything, so that a mistake is found in CI or an editor rather than when `runnel up` refuses
// to start. Each function's plugin is found on the same search path as `runnel up` uses and
// checked in a short-lived worker process (the checks `up` makes before it starts anything). Errors
// are printed as compilers print them (`file:line:column: what is wrong`, one a line, on stderr) so
// that editors and CI annotations can jump to them.
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "poller/config.h"
#include "poller/plugins.h"

namespace runnel::cli {
namespace {

std::string Count(size_t n, const char* singular, const char* plural) {
  return absl::StrCat(n, " ", n == 1 ? singular : plural);
}

struct ValidateOptions {
  std::string file;
  std::vector<std::string> plugin_dirs;
};

int RunValidate(const ValidateOptions& options) {
  const std::string& file = options.file;
  absl::StatusOr<poller::Config> config = poller::LoadConfig(file);
  if (!config.ok()) {
    if (config.status().code() == absl::StatusCode::kInvalidArgument) {
      std::cerr << config.status().message() << std::endl;
    } else {
      PrintError(std::string(config.status().message()));  // unreadable: not a file:line error
    }
    return kExitError;
  }
  std::vector<std::string> problems = poller::ResolveAndCheckPlugins(
      *config, {.plugin_dirs = options.plugin_dirs, .worker_binary = ""});
  for (const std::string& problem : problems) std::cerr << problem << std::endl;
  if (!problems.empty()) return kExitError;
  std::cout << file << ": ok (" << Count(config->streams.size(), "stream", "streams") << ", "
            << Count(config->functions.size(), "function", "functions") << ", "
            << Count(config->mappings.size(), "mapping", "mappings") << ")" << std::endl;
  return kExitOk;
}

}  // namespace

void AddValidateCommand(CLI::App& app, int* exit_code) {
  // Owned by the callback: CLI11 writes into it after this function has returned.
  auto options = std::make_shared<ValidateOptions>();
  CLI::App* validate = app.add_subcommand(
      "validate",
      "Check a YAML file of streams, functions and event_source_mappings without starting "
      "anything: the file itself, then each function's plugin (found as `runnel up` finds it, "
      "and loaded in a short-lived worker process far enough to check that it is a runnel "
      "handler built for this ABI version; Init is not run). Prints FILE: ok (...) and exits 0, "
      "or prints every problem as file:line:column: what is wrong on stderr and exits 1.");
  validate->add_option("-f,--file,file", options->file, "The YAML file")->required();
  validate->add_option("--plugin-dir", options->plugin_dirs,
                       "Folder to look up plugins named by file name, as for `runnel up` "
                       "(repeatable; also RUNNEL_PLUGIN_PATH)");
  validate->callback([options, exit_code] { *exit_code = RunValidate(*options); });
}

}  // namespace runnel::cli
