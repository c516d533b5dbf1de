// The C entry points of libferry_llm.so: the only extern "C" file of the backend. It wraps the
// opaque handles once and turns every C++ failure, exceptions included, into ferry_error.
#include <exception>
#include <memory>

#include "backend/llm/llm_model.h"
#include "common/abi/abi_util.h"
#include "ferry/ferry.h"

struct ferry_backend {
  const ferry_host_api* host;
};

struct ferry_model {
  std::unique_ptr<ferry::llm::LlmModel> impl;
};

extern "C" {

FERRY_EXPORT void ferry_backend_abi_version(uint32_t* major, uint32_t* minor) {
  *major = FERRY_ABI_VERSION_MAJOR;
  *minor = FERRY_ABI_VERSION_MINOR;
}

FERRY_EXPORT ferry_error_code ferry_backend_create(const ferry_host_api* host_api, const char* /*config_json*/,
                                                   ferry_backend** backend, ferry_error* error) {
  try {
    *backend = new ferry_backend{host_api};
    return FERRY_ERROR_CODE_OK;
  } catch (...) {
    return ferry::abi::error_from_current_exception(error);
  }
}

FERRY_EXPORT void ferry_backend_destroy(ferry_backend* backend) { delete backend; }

FERRY_EXPORT ferry_error_code ferry_model_create(ferry_backend* backend, const ferry_model_desc* desc,
                                                 ferry_model** model, ferry_error* error) {
  try {
    auto impl = ferry::llm::LlmModel::create(backend->host, *desc);
    if (!impl.ok()) return ferry::abi::to_error(impl.status(), error);
    *model = new ferry_model{std::move(impl.value())};
    return FERRY_ERROR_CODE_OK;
  } catch (...) {
    return ferry::abi::error_from_current_exception(error);
  }
}

FERRY_EXPORT void ferry_model_destroy(ferry_model* model) { delete model; }

FERRY_EXPORT ferry_error_code ferry_model_submit(ferry_model* model, const ferry_request* request,
                                                 ferry_responder* responder, ferry_error* error) {
  try {
    return ferry::abi::to_error(model->impl->submit(*request, responder), error);
  } catch (...) {
    return ferry::abi::error_from_current_exception(error);
  }
}

FERRY_EXPORT ferry_error_code ferry_model_cancel(ferry_model* model, uint64_t request_id) {
  try {
    return model->impl->cancel(request_id) ? FERRY_ERROR_CODE_OK : FERRY_ERROR_CODE_NOT_FOUND;
  } catch (...) {
    return FERRY_ERROR_CODE_INTERNAL;
  }
}

FERRY_EXPORT size_t ferry_model_describe(ferry_model* model, ferry_describe_kind kind, char* buffer,
                                         size_t capacity) {
  try {
    return ferry::abi::write_describe(model->impl->describe(kind), buffer, capacity);
  } catch (...) {
    return ferry::abi::write_describe("{}", buffer, capacity);
  }
}

}  // extern "C"
