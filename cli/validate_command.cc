// `runnel validate -f FILE`: checks a streams/functions/mappings YAML file without starting
// anything, so that a mistake is found in CI or an editor rather than when `runnel up` refuses
// to start. Errors are printed as compilers print them (`file:line:column: what is wrong`, one a
// line, on stderr) so that editors and CI annotations can jump to them.
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "poller/config.h"

namespace runnel::cli {
namespace {

std::string Count(size_t n, const char* singular, const char* plural) {
  return absl::StrCat(n, " ", n == 1 ? singular : plural);
}

int RunValidate(const std::string& file) {
  absl::StatusOr<poller::Config> config = poller::LoadConfig(file);
  if (!config.ok()) {
    if (config.status().code() == absl::StatusCode::kInvalidArgument) {
      std::cerr << config.status().message() << std::endl;
    } else {
      PrintError(std::string(config.status().message()));  // unreadable: not a file:line error
    }
    return kExitError;
  }
  std::cout << file << ": ok (" << Count(config->streams.size(), "stream", "streams") << ", "
            << Count(config->functions.size(), "function", "functions") << ", "
            << Count(config->mappings.size(), "mapping", "mappings") << ")" << std::endl;
  return kExitOk;
}

}  // namespace

void AddValidateCommand(CLI::App& app, int* exit_code) {
  // Owned by the callback: CLI11 writes into it after this function has returned.
  auto file = std::make_shared<std::string>();
  CLI::App* validate = app.add_subcommand(
      "validate",
      "Check a YAML file of streams, functions and event_source_mappings without starting "
      "anything. Prints FILE: ok (...) and exits 0, or prints every problem as "
      "file:line:column: what is wrong on stderr and exits 1.");
  validate->add_option("-f,--file,file", *file, "The YAML file")->required();
  validate->callback([file, exit_code] { *exit_code = RunValidate(*file); });
}

}  // namespace runnel::cli
