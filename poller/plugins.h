// Finding and checking the plugins a YAML file's functions name, the same way for `runnel
// validate`, `runnel up`, `runnel poller` and `runnel invoke`: a value with a '/' is a path
// (relative to the YAML's folder); a bare name is looked up on the plugin search path.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "poller/config.h"

namespace runnel::poller {

// Finds a plugin: a value with a '/' is a path, returned as is; a bare name (`order_processor`
// or `order_processor.so`) is looked up in each folder of `search_dirs`, in order. The error
// lists where it looked.
absl::StatusOr<std::string> FindPlugin(const std::string& plugin,
                                       const std::vector<std::string>& search_dirs);

// Where bare plugin names are looked up, in order: `plugin_dirs` (--plugin-dir), then
// $RUNNEL_PLUGIN_PATH (colon-separated), the installed handlers folder
// (`<prefix>/lib/.../runnel/handlers` beside this binary's `<prefix>/bin`),
// `<this binary's folder>/../handlers` (a build tree), and `config_dir` (the YAML file's folder).
std::vector<std::string> PluginSearchPath(const std::vector<std::string>& plugin_dirs,
                                          const std::string& config_dir);

struct PluginCheckOptions {
  std::vector<std::string> plugin_dirs;  // --plugin-dir
  std::string worker_binary;             // the `runnel` binary to check in; empty: this one
};

// Resolves every function's plugin (filling in its plugin_path) and checks each file in a
// short-lived worker process (runtime::CheckPlugin: a loadable shared library with
// runnel_handler_entry, this ABI version, a well-formed table; a crashing constructor is
// reported, not suffered). Returns one "file:line:column: function NAME: what is wrong" line per
// problem, at the function's `plugin:` key; empty when every plugin is fine.
std::vector<std::string> ResolveAndCheckPlugins(Config& config, const PluginCheckOptions& options);

}  // namespace runnel::poller
