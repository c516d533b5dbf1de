// BackendLibrary: one backend shared object (libferry_<name>.so), opened once and shared by all of
// its models. Loading does the ABI handshake: the major versions must be equal and the backend's
// minor must not exceed the host's; every required symbol must exist; optional symbols are looked
// up only when the backend's minor says they exist. Then ferry_backend_create runs.
//
// BackendManager finds backends by name in the backend directory and caches them.
// Thread-safety: BackendLibrary is immutable after load (its functions may be called from any
// thread, as the ABI allows). BackendManager::get is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "ferry/ferry.h"

namespace ferry::host {

class BackendLibrary {
 public:
  // Opens `path`, checks the handshake and creates the backend with `host_api` (which must outlive
  // the library). Errors name the file, the versions or the missing symbol.
  static Result<std::unique_ptr<BackendLibrary>> load(const std::string& name, const std::string& path,
                                                      const ferry_host_api* host_api);
  ~BackendLibrary();  // ferry_backend_destroy, then dlclose
  BackendLibrary(const BackendLibrary&) = delete;
  BackendLibrary& operator=(const BackendLibrary&) = delete;

  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  uint32_t abi_major() const { return major_; }
  uint32_t abi_minor() const { return minor_; }
  ferry_backend* backend() const { return backend_; }

  // The backend's exports. `health` is null when the backend does not offer it (minor < 1).
  decltype(&ferry_model_create) model_create = nullptr;
  decltype(&ferry_model_destroy) model_destroy = nullptr;
  decltype(&ferry_model_submit) model_submit = nullptr;
  decltype(&ferry_model_cancel) model_cancel = nullptr;
  decltype(&ferry_model_describe) model_describe = nullptr;
  decltype(&ferry_model_health) model_health = nullptr;

 private:
  BackendLibrary() = default;
  std::string name_, path_;
  void* handle_ = nullptr;
  uint32_t major_ = 0, minor_ = 0;
  ferry_backend* backend_ = nullptr;
  decltype(&ferry_backend_destroy) backend_destroy_ = nullptr;
};

class BackendManager {
 public:
  BackendManager(std::string directory, const ferry_host_api* host_api)
      : directory_(std::move(directory)), host_api_(host_api) {}

  // The loaded backend called `name` (libferry_<name>.so in the directory), loading it on first use.
  // A failed load is not cached, so a fixed library can be picked up later.
  Result<std::shared_ptr<BackendLibrary>> get(const std::string& name);
  // Drops the manager's references; libraries close when their last model is gone.
  void clear();

 private:
  std::string directory_;
  const ferry_host_api* host_api_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<BackendLibrary>> loaded_;  // guarded by mu_
};

}  // namespace ferry::host
