#include "host/model_registry.h"

#include <algorithm>
#include <set>

#include "host/log.h"

namespace ferry::host {

ModelRegistry::ModelRegistry(std::string repository, ModelControlMode mode, BackendManager* backends,
                             MetricsRegistry* metrics,
                             std::chrono::milliseconds unload_cancel_after)
    : repository_(std::move(repository)),
      mode_(mode),
      backends_(backends),
      metrics_(metrics),
      unload_cancel_after_(unload_cancel_after) {}

ModelRegistry::~ModelRegistry() {
  {
    std::lock_guard<std::mutex> lock(poll_mu_);
    stop_polling_ = true;
  }
  poll_cv_.notify_all();
  if (poll_thread_.joinable()) poll_thread_.join();
  shutdown(std::chrono::milliseconds(0));
}

void ModelRegistry::start(const std::vector<std::string>& models) {
  std::vector<std::string> names = models;
  if (mode_ != ModelControlMode::kExplicit) {
    auto listed = list_models(repository_);
    if (!listed.ok()) {
      FERRY_LOG(Error) << listed.status().message();
    } else {
      names = listed.value();
    }
  }
  {
    std::lock_guard<std::mutex> control(control_mu_);
    for (const auto& name : names) {
      Status s = apply(name, read_model(repository_, name));
      if (!s.ok()) FERRY_LOG(Error) << "model '" << name << "' is unavailable: " << s.message();
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  started_ = true;
}

void ModelRegistry::start_polling(std::chrono::milliseconds interval) {
  poll_thread_ = std::thread([this, interval] { poll_loop(interval); });
}

void ModelRegistry::poll_loop(std::chrono::milliseconds interval) {
  std::unique_lock<std::mutex> lock(poll_mu_);
  while (!poll_cv_.wait_for(lock, interval, [&] { return stop_polling_; })) {
    lock.unlock();
    poll_once();
    lock.lock();
  }
}

void ModelRegistry::poll_once() {
  std::lock_guard<std::mutex> control(control_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return;
  }
  auto listed = list_models(repository_);
  if (!listed.ok()) {
    FERRY_LOG(Warning) << "poll: " << listed.status().message();
    return;
  }
  std::set<std::string> present(listed->begin(), listed->end());
  std::vector<std::string> known;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, entry] : models_) known.push_back(name);
  }
  for (auto it = settling_.begin(); it != settling_.end();) {
    it = present.count(it->first) ? std::next(it) : settling_.erase(it);
  }
  for (const auto& name : known) {
    if (!present.count(name)) {
      FERRY_LOG(Info) << "poll: model '" << name << "' was removed from the repository";
      (void)apply(name, Status::NotFound("removed from the repository"));
    }
  }
  for (const auto& name : present) {
    auto spec = read_model(repository_, name);
    std::string fingerprint = spec.ok() ? spec->fingerprint : "error:" + spec.status().message();
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = models_.find(name);
      if (it != models_.end() &&
          (it->second.fingerprint == fingerprint || it->second.failed_fingerprint == fingerprint)) {
        settling_.erase(name);
        continue;  // unchanged, or the same broken state as last time
      }
    }
    // A folder still being copied in (a weight file half written) must not be loaded: act only
    // once its files looked the same on two polls in a row.
    auto settling = settling_.find(name);
    if (settling == settling_.end() || settling->second != fingerprint) {
      if (settling == settling_.end()) {
        FERRY_LOG(Info) << "poll: model '" << name << "' was added or changed; loading once its files stop changing";
      }
      settling_[name] = fingerprint;
      continue;
    }
    settling_.erase(settling);
    FERRY_LOG(Info) << "poll: model '" << name << "' was added or changed and its files are stable";
    Status s = apply(name, spec);
    if (!s.ok()) FERRY_LOG(Error) << "model '" << name << "': " << s.message();
  }
}

Status ModelRegistry::load(const std::string& name) {
  if (!valid_model_name(name)) return Status::InvalidArgument("invalid model name '" + name + "'");
  std::lock_guard<std::mutex> control(control_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return Status::Unavailable("server is shutting down");
    // An explicit load always re-reads and reloads, even when nothing changed.
    auto it = models_.find(name);
    if (it != models_.end()) it->second.fingerprint.clear(), it->second.failed_fingerprint.clear();
  }
  auto spec = read_model(repository_, name);
  if (!spec.ok() && spec.status().code() == StatusCode::kNotFound) return spec.status();
  Status s = apply(name, spec);
  // The model exists but cannot be served: a bad request about that model, as in Triton.
  if (!s.ok()) return Status::InvalidArgument("failed to load '" + name + "': " + s.message());
  return s;
}

Status ModelRegistry::unload(const std::string& name) {
  if (!valid_model_name(name)) return Status::InvalidArgument("invalid model name '" + name + "'");
  std::lock_guard<std::mutex> control(control_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!models_.count(name)) return Status::NotFound("model '" + name + "' is not loaded");
  }
  (void)apply(name, Status::NotFound("unloaded"));  // NotFound here means "remove it": not an error
  return Status::Ok();
}

Status ModelRegistry::apply(const std::string& name, const Result<ModelSpec>& spec) {
  if (!spec.ok()) {
    std::vector<std::shared_ptr<ModelVersion>> old;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = models_.find(name);
      bool removed = spec.status().code() == StatusCode::kNotFound;
      if (removed) {
        if (it == models_.end()) return spec.status();
        old = std::move(it->second.versions);
        models_.erase(it);
      } else {
        // A config error: a model already serving keeps serving its old versions.
        ModelEntry& entry = models_[name];
        entry.failed_fingerprint = "error:" + spec.status().message();
        bool serving = std::any_of(entry.versions.begin(), entry.versions.end(),
                                   [](auto& v) { return v->state() == ModelState::kReady; });
        if (!serving) {
          entry.error = spec.status().message();
          old = std::move(entry.versions);
          entry.versions.clear();
        }
      }
    }
    unload_in_background(std::move(old));
    return spec.status();
  }

  // Build every version of the new spec; a failure leaves the old versions serving.
  auto lib = backends_->get(spec->backend);
  std::vector<std::shared_ptr<ModelVersion>> fresh;
  Status failure;
  for (const auto& v : spec->versions) {
    auto mv = std::make_shared<ModelVersion>(spec.value(), v, lib.ok() ? lib.value() : nullptr, metrics_);
    if (!lib.ok()) {
      failure = lib.status();
      mv->set_unavailable(failure.message());
    } else {
      FERRY_LOG(Info) << "loading model '" << name << "' version " << v.version << " (backend " << spec->backend << ")";
      {
        // In the index while it loads (with the backend's progress as its reason), not only after.
        std::lock_guard<std::mutex> lock(mu_);
        loading_.push_back(mv);
      }
      Status s = mv->load();
      {
        std::lock_guard<std::mutex> lock(mu_);
        loading_.erase(std::remove(loading_.begin(), loading_.end(), mv), loading_.end());
      }
      if (s.ok()) {
        FERRY_LOG(Info) << "model '" << name << "' version " << v.version << " is READY";
      } else {
        FERRY_LOG(Error) << "model '" << name << "' version " << v.version << " failed to load: " << s.message();
        if (failure.ok()) failure = s;
      }
    }
    fresh.push_back(std::move(mv));
  }

  std::vector<std::shared_ptr<ModelVersion>> retire;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ModelEntry& entry = models_[name];
    bool old_serving = std::any_of(entry.versions.begin(), entry.versions.end(),
                                   [](auto& v) { return v->state() == ModelState::kReady; });
    if (!failure.ok() && old_serving) {
      // Failed reload: keep the old versions, drop the new ones.
      entry.failed_fingerprint = spec->fingerprint;
      retire = std::move(fresh);
      FERRY_LOG(Warning) << "model '" << name << "': reload failed, the previous version keeps serving";
    } else {
      retire = std::move(entry.versions);
      entry.versions = std::move(fresh);
      entry.error.clear();
      if (failure.ok()) {
        entry.fingerprint = spec->fingerprint;
        entry.failed_fingerprint.clear();
      } else {
        entry.fingerprint.clear();
        entry.failed_fingerprint = spec->fingerprint;
      }
    }
  }
  unload_in_background(std::move(retire));
  return failure;
}

void ModelRegistry::unload_in_background(std::vector<std::shared_ptr<ModelVersion>> versions) {
  if (versions.empty()) return;
  for (auto& v : versions) {
    if (v->state() == ModelState::kReady) {
      FERRY_LOG(Info) << "unloading model '" << v->name() << "' version " << v->version();
    }
  }
  {
    // unloading_ keeps them visible in the index (UNLOADING) until they are gone.
    std::lock_guard<std::mutex> lock(mu_);
    unloading_.insert(unloading_.end(), versions.begin(), versions.end());
    ++num_unloaders_;
  }
  std::thread([this, versions, cancel_after = unload_cancel_after_] {
    for (auto& v : versions) v->unload(cancel_after);
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& v : versions) {
      unloading_.erase(std::remove(unloading_.begin(), unloading_.end(), v), unloading_.end());
    }
    --num_unloaders_;
    unloaders_cv_.notify_all();
  }).detach();
}

Result<std::shared_ptr<ModelVersion>> ModelRegistry::find(const std::string& name, const std::string& version) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return Status::Unavailable("server is shutting down");
  auto it = models_.find(name);
  if (it == models_.end()) return Status::NotFound("unknown model '" + name + "'");
  const auto& versions = it->second.versions;
  if (!version.empty()) {
    for (const auto& v : versions) {
      if (std::to_string(v->version()) == version) {
        if (v->state() != ModelState::kReady) {
          return Status::Unavailable("model '" + name + "' version " + version + " is " + model_state_name(v->state()) +
                                     (v->reason().empty() ? "" : ": " + v->reason()));
        }
        return v;
      }
    }
    return Status::NotFound("unknown version '" + version + "' of model '" + name + "'");
  }
  for (auto v = versions.rbegin(); v != versions.rend(); ++v) {
    if ((*v)->state() == ModelState::kReady) return *v;
  }
  std::string why = it->second.error;
  if (why.empty() && !versions.empty()) why = versions.back()->reason();
  return Status::Unavailable("model '" + name + "' is not ready" + (why.empty() ? "" : ": " + why));
}

Result<std::vector<std::shared_ptr<ModelVersion>>> ModelRegistry::versions(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.versions.empty()) return Status::NotFound("unknown model '" + name + "'");
  return it->second.versions;
}

std::vector<IndexEntry> ModelRegistry::index(bool ready_only) const {
  std::vector<IndexEntry> out;
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::pair<std::string, int64_t>> shown, loading;
  for (const auto& v : loading_) loading.insert({v->name(), v->version()});
  for (const auto& [name, entry] : models_) {
    if (entry.versions.empty() && !ready_only) {
      out.push_back({name, "", "UNAVAILABLE", entry.error});
    }
    for (const auto& v : entry.versions) {
      ModelState s = v->state();
      if (ready_only && s != ModelState::kReady) continue;
      // A version that is not serving and is being loaded again is shown by its new load below.
      if (s != ModelState::kReady && loading.count({name, v->version()})) continue;
      out.push_back({name, std::to_string(v->version()), model_state_name(s), v->reason()});
      shown.insert({name, v->version()});
    }
  }
  if (!ready_only) {
    // A version being loaded appears as LOADING with the backend's progress as the reason, unless
    // the same version is serving (a reload: the READY one is what clients get until the swap).
    for (const auto& v : loading_) {
      if (!shown.insert({v->name(), v->version()}).second) continue;
      out.push_back({v->name(), std::to_string(v->version()), model_state_name(v->state()), v->reason()});
    }
    for (const auto& v : unloading_) {
      if (shown.count({v->name(), v->version()})) continue;
      out.push_back({v->name(), std::to_string(v->version()), model_state_name(v->state()), v->reason()});
    }
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return std::tie(a.name, a.version) < std::tie(b.name, b.version); });
  return out;
}

bool ModelRegistry::ready() const {
  std::lock_guard<std::mutex> lock(mu_);
  return started_ && !shutting_down_;
}

void ModelRegistry::shutdown(std::chrono::milliseconds drain) {
  {
    std::lock_guard<std::mutex> lock(poll_mu_);
    stop_polling_ = true;
  }
  poll_cv_.notify_all();
  std::lock_guard<std::mutex> control(control_mu_);
  std::vector<std::shared_ptr<ModelVersion>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    for (auto& [name, entry] : models_) {
      all.insert(all.end(), entry.versions.begin(), entry.versions.end());
    }
    models_.clear();
    draining_ = all;
    if (drain_ended_) {
      for (auto& v : all) v->end_drain();
    }
  }
  // All versions drain at the same time, each bounded by `drain`.
  std::vector<std::thread> threads;
  for (auto& v : all) threads.emplace_back([v, drain] { v->unload(drain); });
  for (auto& t : threads) t.join();
  std::unique_lock<std::mutex> lock(mu_);
  unloaders_cv_.wait(lock, [&] { return num_unloaders_ == 0; });
  draining_.clear();
}

void ModelRegistry::end_drain() {
  std::lock_guard<std::mutex> lock(mu_);
  drain_ended_ = true;
  // Background unloads (removed or replaced versions) drain too; they end as early.
  for (auto& v : draining_) v->end_drain();
  for (auto& v : unloading_) v->end_drain();
}

}  // namespace ferry::host
