// ModelRegistry: which model versions exist, in what state, and the repository actions that
// change that (load, unload, poll). Frontends look models up here and submit to them.
//
// Control actions (load/unload/poll/shutdown) are serialized by one control mutex; lookups take a
// short data mutex and never wait for a control action, so a slow load never blocks serving.
// A model that fails to load is recorded UNAVAILABLE with its reason and affects nothing else. A
// reload (changed config in poll mode, or load of a loaded model) builds the new versions first and
// swaps them in only if all load; otherwise the old versions keep serving.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "host/backend_library.h"
#include "host/model_version.h"
#include "host/repository.h"

namespace ferry::host {

enum class ModelControlMode { kNone, kPoll, kExplicit };

struct IndexEntry {
  std::string name;
  std::string version;  // "" when the model has no version to show (e.g. a config error)
  std::string state;
  std::string reason;
};

class ModelRegistry {
 public:
  ModelRegistry(std::string repository, ModelControlMode mode, BackendManager* backends, MetricsRegistry* metrics,
                std::chrono::milliseconds unload_cancel_after);
  ~ModelRegistry();  // stops polling; call shutdown() first to unload

  // Startup: mode none/poll loads every model in the repository; explicit loads `models`.
  void start(const std::vector<std::string>& models);
  // Starts the poll thread (poll mode), rescanning every `interval`.
  void start_polling(std::chrono::milliseconds interval);
  // One rescan: unloads removed models; loads added ones and reloads changed ones (any file of a
  // served version, or the serving config) once their files are the same as at the previous rescan,
  // so a folder still being copied is not loaded half written. A model that failed to load is
  // retried when any of its files change.
  void poll_once();

  // Repository API. load: (re)reads the model's folder and loads it; NotFound when there is no such
  // folder, InvalidArgument with the reason when it cannot be served. unload: stops new requests at once and unloads after in-flight
  // requests finish (in the background).
  Status load(const std::string& name);
  Status unload(const std::string& name);

  // The READY version `version` of `name`, or the newest READY version when version is empty.
  // NotFound for an unknown model or version, Unavailable when it exists but cannot serve.
  Result<std::shared_ptr<ModelVersion>> find(const std::string& name, const std::string& version) const;
  // All versions of a model that exist (any state), ascending; NotFound when none.
  Result<std::vector<std::shared_ptr<ModelVersion>>> versions(const std::string& name) const;
  std::vector<IndexEntry> index(bool ready_only) const;
  // True once start() finished and until shutdown() begins.
  bool ready() const;
  ModelControlMode mode() const { return mode_; }

  // Refuses new requests, waits up to `drain` for in-flight requests, cancels the rest, unloads
  // everything. Idempotent.
  void shutdown(std::chrono::milliseconds drain);
  // Cuts a shutdown()'s drain (running or still to come) short: in-flight requests are cancelled
  // now. Thread-safe; meant for a second SIGTERM.
  void end_drain();

 private:
  struct ModelEntry {
    std::string fingerprint;     // of the spec the serving versions came from
    std::string failed_fingerprint;  // last spec that failed to load: not retried until it changes
    std::string error;           // model-level error (config), shown when there are no versions
    std::vector<std::shared_ptr<ModelVersion>> versions;  // serving or failed, ascending
  };

  // Applies the repository's current state of `name` (spec or error); control_mu_ must be held.
  Status apply(const std::string& name, const Result<ModelSpec>& spec);
  void unload_in_background(std::vector<std::shared_ptr<ModelVersion>> versions);
  void poll_loop(std::chrono::milliseconds interval);

  const std::string repository_;
  const ModelControlMode mode_;
  BackendManager* const backends_;
  MetricsRegistry* const metrics_;
  const std::chrono::milliseconds unload_cancel_after_;

  std::mutex control_mu_;  // serializes load/unload/poll/shutdown
  // Poll mode: the fingerprint each added or changed model had at the last poll, while it waits for
  // its files to stop changing. Guarded by control_mu_.
  std::map<std::string, std::string> settling_;
  mutable std::mutex mu_;  // guards the fields below
  std::map<std::string, ModelEntry> models_;
  bool started_ = false;
  bool shutting_down_ = false;
  std::vector<std::shared_ptr<ModelVersion>> loading_;  // in ferry_model_create now: shown LOADING
  std::vector<std::shared_ptr<ModelVersion>> unloading_;
  std::vector<std::shared_ptr<ModelVersion>> draining_;  // what shutdown() is unloading
  bool drain_ended_ = false;
  int num_unloaders_ = 0;  // detached background unload threads still running
  std::condition_variable unloaders_cv_;

  std::mutex poll_mu_;
  std::condition_variable poll_cv_;
  bool stop_polling_ = false;  // guarded by poll_mu_
  std::thread poll_thread_;
};

}  // namespace ferry::host
