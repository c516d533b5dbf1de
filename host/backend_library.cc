#include "host/backend_library.h"

#include <dlfcn.h>

#include "host/log.h"

namespace ferry::host {
namespace {

std::string version_text(uint32_t major, uint32_t minor) { return std::to_string(major) + "." + std::to_string(minor); }

}  // namespace

Result<std::unique_ptr<BackendLibrary>> BackendLibrary::load(const std::string& name, const std::string& path,
                                                             const ferry_host_api* host_api) {
  std::unique_ptr<BackendLibrary> lib(new BackendLibrary());
  lib->name_ = name;
  lib->path_ = path;
  lib->handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib->handle_ == nullptr) {
    return Status::NotFound("backend '" + name + "': cannot open " + path + ": " + dlerror());
  }
  const std::string where = "backend '" + name + "' (" + path + ")";
  auto abi_version = reinterpret_cast<decltype(&ferry_backend_abi_version)>(dlsym(lib->handle_, "ferry_backend_abi_version"));
  if (abi_version == nullptr) {
    return Status::InvalidArgument(where + ": missing required symbol 'ferry_backend_abi_version'");
  }
  abi_version(&lib->major_, &lib->minor_);
  const std::string versions = "backend ABI " + version_text(lib->major_, lib->minor_) + ", host ABI " +
                               version_text(FERRY_ABI_VERSION_MAJOR, FERRY_ABI_VERSION_MINOR);
  if (lib->major_ != FERRY_ABI_VERSION_MAJOR) {
    return Status::InvalidArgument(where + ": incompatible major version (" + versions + ")");
  }
  if (lib->minor_ > FERRY_ABI_VERSION_MINOR) {
    return Status::InvalidArgument(where + ": needs a newer host (" + versions + ")");
  }

  struct Entry {
    const char* symbol;
    void** slot;
  };
  void* create = nullptr;
  Entry entries[] = {
      {"ferry_backend_create", &create},
      {"ferry_backend_destroy", reinterpret_cast<void**>(&lib->backend_destroy_)},
      {"ferry_model_create", reinterpret_cast<void**>(&lib->model_create)},
      {"ferry_model_destroy", reinterpret_cast<void**>(&lib->model_destroy)},
      {"ferry_model_submit", reinterpret_cast<void**>(&lib->model_submit)},
      {"ferry_model_cancel", reinterpret_cast<void**>(&lib->model_cancel)},
      {"ferry_model_describe", reinterpret_cast<void**>(&lib->model_describe)},
  };
  for (const Entry& e : entries) {
    *e.slot = dlsym(lib->handle_, e.symbol);
    if (*e.slot == nullptr) {
      return Status::InvalidArgument(where + ": missing required symbol '" + e.symbol + "'");
    }
  }
  // Optional functions, gated by the minor version that introduced them.
  if (lib->minor_ >= 1) {
    lib->model_health = reinterpret_cast<decltype(&ferry_model_health)>(dlsym(lib->handle_, "ferry_model_health"));
  }

  ferry_error err{};
  err.struct_size = sizeof(err);
  auto create_fn = reinterpret_cast<decltype(&ferry_backend_create)>(create);
  ferry_error_code rc = create_fn(host_api, "{}", &lib->backend_, &err);
  if (rc != FERRY_ERROR_CODE_OK) {
    lib->backend_ = nullptr;
    return Status(static_cast<StatusCode>(rc), where + ": ferry_backend_create failed: " + err.message);
  }
  FERRY_LOG(Info) << "loaded " << where << " (" << versions << ")";
  return lib;
}

BackendLibrary::~BackendLibrary() {
  if (backend_ != nullptr && backend_destroy_ != nullptr) backend_destroy_(backend_);
  if (handle_ != nullptr) dlclose(handle_);
}

Result<std::shared_ptr<BackendLibrary>> BackendManager::get(const std::string& name) {
  bool valid = !name.empty();
  for (char c : name) {
    valid = valid && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
  }
  if (!valid) return Status::InvalidArgument("invalid backend name '" + name + "'");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = loaded_.find(name);
  if (it != loaded_.end()) return it->second;
  auto lib = BackendLibrary::load(name, directory_ + "/libferry_" + name + ".so", host_api_);
  if (!lib.ok()) return lib.status();
  std::shared_ptr<BackendLibrary> shared(std::move(lib.value()));
  loaded_[name] = shared;
  return shared;
}

void BackendManager::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  loaded_.clear();
}

}  // namespace ferry::host
