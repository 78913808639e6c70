#include "poller/plugins.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runnel/runtime/function.h"

namespace runnel::poller {
namespace {

namespace fs = std::filesystem;

std::string SelfDirectory() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "" : self.parent_path().string();
}

}  // namespace

std::vector<std::string> PluginSearchPath(const std::vector<std::string>& plugin_dirs,
                                          const std::string& config_dir) {
  std::vector<std::string> dirs = plugin_dirs;
  if (const char* env = std::getenv("RUNNEL_PLUGIN_PATH"); env != nullptr) {
    for (absl::string_view dir : absl::StrSplit(env, ':', absl::SkipEmpty())) {
      dirs.emplace_back(dir);
    }
  }
  if (std::string self = SelfDirectory(); !self.empty()) {
    const fs::path prefix = fs::path(self).parent_path();
    dirs.push_back((prefix / RUNNEL_INSTALL_LIBDIR / "runnel" / "handlers").string());  // installed
    dirs.push_back((prefix / "handlers").string());  // a build tree: build/<preset>/handlers
  }
  dirs.push_back(config_dir.empty() ? "." : config_dir);
  return dirs;
}

absl::StatusOr<std::string> FindPlugin(const std::string& plugin,
                                       const std::vector<std::string>& search_dirs) {
  if (plugin.find('/') != std::string::npos) return plugin;
  std::vector<std::string> names = {plugin};
  if (!plugin.ends_with(".so")) names.push_back(plugin + ".so");
  for (const std::string& dir : search_dirs) {
    for (const std::string& name : names) {
      fs::path candidate = fs::path(dir) / name;
      std::error_code ec;
      if (fs::is_regular_file(candidate, ec)) return candidate.string();
    }
  }
  return absl::NotFoundError(absl::StrCat("plugin '", plugin, "' not found in ",
                                          absl::StrJoin(search_dirs, ", "),
                                          " (name a path, or add --plugin-dir)"));
}

std::vector<std::string> ResolveAndCheckPlugins(Config& config, const PluginCheckOptions& options) {
  std::vector<std::string> problems;
  const std::vector<std::string> search = PluginSearchPath(options.plugin_dirs, config.directory);
  for (FunctionSpec& spec : config.functions) {
    runtime::FunctionConfig& function = spec.config;
    auto problem = [&](absl::string_view what) {
      problems.push_back(
          absl::StrCat(spec.plugin_where.ToString(), ": function ", function.name, ": ", what));
    };
    if (function.plugin_path.empty()) {
      absl::StatusOr<std::string> found = FindPlugin(function.plugin, search);
      if (!found.ok()) {
        problem(found.status().message());
        continue;
      }
      function.plugin_path = *found;
    }
    std::string worker_binary =
        function.worker_binary.empty() ? options.worker_binary : function.worker_binary;
    if (absl::Status checked = runtime::CheckPlugin(function.plugin_path, worker_binary);
        !checked.ok()) {
      problem(checked.message());
    }
  }
  return problems;
}

}  // namespace runnel::poller
