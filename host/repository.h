// The model repository on disk: what models exist, their serving config and which versions to
// serve. Pure reading: no loading, no state. The registry compares what this reports with what is
// loaded.
//
// Layout: <repo>/<model>/config.json (serving config) and numeric version folders <repo>/<model>/<N>/.
// A model folder whose config.json is a HuggingFace model config ("architectures", no "backend")
// is a drop-in snapshot: served as version 1 from the folder itself by the `llm` backend with its
// defaults.
//
// Serving config keys read here (the rest is the backend's, passed through as `backend_config`):
//   "backend"         backend name: libferry_<backend>.so (default "llm")
//   "name"            optional; must equal the folder name
//   "version_policy"  {"latest":{"num_versions":N}} (default N=1) | {"all":{}} | {"specific":{"versions":[..]}}
#pragma once

#include <json/json.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ferry::host {

struct ModelVersionPath {
  int64_t version = 0;
  std::string path;  // absolute folder of the version
};

struct ModelSpec {
  std::string name;
  std::string path;             // absolute <repo>/<name>
  std::string config_path;      // the serving config file, or "" for a snapshot's defaults
  std::string backend;          // e.g. "echo", "llm"
  Json::Value config;           // the whole serving config as read (for GET .../config)
  std::string backend_config;   // JSON object: config minus the host's keys
  std::vector<ModelVersionPath> versions;  // to serve, by the version policy, ascending
  // Equal fingerprints mean nothing to reload: the serving config's text, the versions served and
  // the name, size and mtime of every file in their folders (so a rewritten weight file counts).
  std::string fingerprint;
};

// True for names a client may use to address a model folder: [A-Za-z0-9_.-]+, not starting with
// '.', at most 128 bytes. Guarantees the name never leaves the repository.
bool valid_model_name(const std::string& name);

// The model folder names in `repo` (valid names only, sorted).
Result<std::vector<std::string>> list_models(const std::string& repo);

// Reads one model's spec. NotFound when the folder does not exist; InvalidArgument naming the key
// and file for a config error.
Result<ModelSpec> read_model(const std::string& repo, const std::string& name);

}  // namespace ferry::host
