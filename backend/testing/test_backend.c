/* A deliberately minimal backend in plain C11, built several times with different ABI versions and
 * symbol sets to prove that the host's handshake refuses what it must and gates optional functions
 * by minor version. Requests end at once with one FINAL response that echoes nothing.
 *
 * Compile-time knobs:
 *   TEST_ABI_MAJOR / TEST_ABI_MINOR  the version the backend claims
 *   TEST_OMIT_SUBMIT                 leave out the required ferry_model_submit
 *   TEST_HEALTH_FAILS                export ferry_model_health that always reports UNAVAILABLE
 * A backend that claims minor >= 2 reports loading progress from ferry_model_create (half the
 * tensors, then all of them), through the host table's load_progress.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/ferry.h"

struct ferry_backend {
  const ferry_host_api* host;
};
struct ferry_model {
  const ferry_host_api* host;
};

FERRY_EXPORT void ferry_backend_abi_version(uint32_t* major, uint32_t* minor) {
  *major = TEST_ABI_MAJOR;
  *minor = TEST_ABI_MINOR;
}

FERRY_EXPORT ferry_error_code ferry_backend_create(const ferry_host_api* host_api, const char* config_json,
                                                   ferry_backend** backend, ferry_error* error) {
  (void)config_json;
  (void)error;
  *backend = malloc(sizeof(ferry_backend));
  (*backend)->host = host_api;
  return FERRY_ERROR_CODE_OK;
}

FERRY_EXPORT void ferry_backend_destroy(ferry_backend* backend) { free(backend); }

FERRY_EXPORT ferry_error_code ferry_model_create(ferry_backend* backend, const ferry_model_desc* desc,
                                                 ferry_model** model, ferry_error* error) {
  (void)desc;
  (void)error;
#if TEST_ABI_MAJOR == 1 && TEST_ABI_MINOR >= 2 && FERRY_ABI_VERSION_MINOR >= 2
  if (desc->struct_size >= offsetof(ferry_model_desc, load_reporter) + sizeof(desc->load_reporter) &&
      backend->host->struct_size >= offsetof(ferry_host_api, load_progress) + sizeof(backend->host->load_progress)) {
    ferry_load_progress p;
    memset(&p, 0, sizeof(p));
    p.struct_size = sizeof(p);
    p.stage = "test backend loading";
    p.tensors_total = 2;
    for (p.tensors_done = 1; p.tensors_done <= 2; ++p.tensors_done) backend->host->load_progress(desc->load_reporter, &p);
  }
#endif
  *model = malloc(sizeof(ferry_model));
  (*model)->host = backend->host;
  return FERRY_ERROR_CODE_OK;
}

FERRY_EXPORT void ferry_model_destroy(ferry_model* model) { free(model); }

#ifndef TEST_OMIT_SUBMIT
FERRY_EXPORT ferry_error_code ferry_model_submit(ferry_model* model, const ferry_request* request,
                                                 ferry_responder* responder, ferry_error* error) {
  (void)request;
  (void)error;
  ferry_response r;
  memset(&r, 0, sizeof(r));
  r.struct_size = sizeof(r);
  r.flags = FERRY_RESPONSE_FLAG_FINAL;
  r.queue_ns = -1;
  model->host->respond(responder, &r);
  return FERRY_ERROR_CODE_OK;
}
#endif

FERRY_EXPORT ferry_error_code ferry_model_cancel(ferry_model* model, uint64_t request_id) {
  (void)model;
  (void)request_id;
  return FERRY_ERROR_CODE_NOT_FOUND;
}

FERRY_EXPORT size_t ferry_model_describe(ferry_model* model, ferry_describe_kind kind, char* buffer,
                                         size_t capacity) {
  (void)model;
  (void)kind;
  return (size_t)snprintf(buffer, capacity, "{}");
}

#ifdef TEST_HEALTH_FAILS
FERRY_EXPORT ferry_error_code ferry_model_health(ferry_model* model, ferry_error* error) {
  (void)model;
  error->code = FERRY_ERROR_CODE_UNAVAILABLE;
  snprintf(error->message, sizeof(error->message), "test backend reports itself unhealthy");
  return FERRY_ERROR_CODE_UNAVAILABLE;
}
#endif
