/* ferry.h: the C ABI between ferry-server (the host) and its backends (shared-object plugins).
 *
 * This header is the contract. It is C11, has no C++ types, and is the only thing a backend needs
 * from the host. docs/abi.md explains it with a worked example.
 *
 * Conventions
 * - Names: functions ferry_<object>_<verb>, types ferry_<name>, enum values FERRY_<ENUM>_<VALUE>.
 * - Handles are opaque. Structs passed across start with `struct_size` (sizeof as the sender was
 *   compiled): a receiver reads a field only if it lies inside struct_size, so structs can grow at
 *   their end in a minor version.
 * - Versions: FERRY_ABI_VERSION_MAJOR changes on any incompatible change; MINOR on additions. The
 *   host loads a backend only if the majors are equal and the backend's minor <= the host's minor.
 *   A function marked "since 1.N" is optional: the host looks it up with dlsym only when the
 *   backend declares minor >= N, and works without it.
 * - Ownership: what the host allocates the host frees, and likewise for the backend. Pointers handed
 *   across a call are valid only for the duration of that call unless the declaration says more.
 * - Errors cross as a ferry_error_code plus a message written into a caller-owned ferry_error. No
 *   exception and no allocation that the other side must free ever crosses the ABI.
 * - Strings are NUL-terminated UTF-8. JSON strings are complete JSON texts.
 */
#ifndef FERRY_FERRY_H_
#define FERRY_FERRY_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_ABI_VERSION_MAJOR 1
#define FERRY_ABI_VERSION_MINOR 2

#if defined(__GNUC__)
#define FERRY_EXPORT __attribute__((visibility("default")))
#else
#define FERRY_EXPORT
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Errors                                                                                          */

/* Error codes. The host maps them to HTTP statuses (in parentheses) and to ZeroMQ error codes. */
typedef enum ferry_error_code {
  FERRY_ERROR_CODE_OK = 0,
  FERRY_ERROR_CODE_INVALID_ARGUMENT = 1,   /* the request is wrong: bad parameter, prompt too long (400) */
  FERRY_ERROR_CODE_NOT_FOUND = 2,          /* unknown model, version or request id (404) */
  FERRY_ERROR_CODE_UNAVAILABLE = 3,        /* not ready, unloading, shutting down (503) */
  FERRY_ERROR_CODE_RESOURCE_EXHAUSTED = 4, /* queue full (429) */
  FERRY_ERROR_CODE_DEADLINE_EXCEEDED = 5,  /* the request's timeout expired while queued (408) */
  FERRY_ERROR_CODE_CANCELLED = 6,          /* cancelled by the client or the host (499) */
  FERRY_ERROR_CODE_INTERNAL = 7,           /* a bug or unexpected failure in the backend (500) */
  FERRY_ERROR_CODE_UNIMPLEMENTED = 8,      /* the backend or model does not support this (501) */
  FERRY_ERROR_CODE_TOO_LARGE = 9           /* an input is over a configured limit (413) */
} ferry_error_code;

#define FERRY_ERROR_MESSAGE_CAPACITY 1024

/* A caller-owned error slot. The callee writes `code` and a NUL-terminated `message` (truncated to
 * fit) when it fails, and leaves the slot untouched when it succeeds. */
typedef struct ferry_error {
  uint32_t struct_size;
  ferry_error_code code;
  char message[FERRY_ERROR_MESSAGE_CAPACITY];
} ferry_error;

/* ---------------------------------------------------------------------------------------------- */
/* Tensors                                                                                         */

typedef enum ferry_dtype {
  FERRY_DTYPE_INVALID = 0,
  FERRY_DTYPE_BOOL = 1,  /* 1 byte per element, 0 or 1 */
  FERRY_DTYPE_INT32 = 2,
  FERRY_DTYPE_INT64 = 3,
  FERRY_DTYPE_FP16 = 4,  /* IEEE half, little-endian */
  FERRY_DTYPE_BF16 = 5,  /* bfloat16, little-endian */
  FERRY_DTYPE_FP32 = 6,
  FERRY_DTYPE_BYTES = 7  /* each element: uint32 little-endian length, then that many bytes (as Triton) */
} ferry_dtype;

/* A named tensor, always dense and row-major. Memory is owned by whoever built the struct and is
 * valid only for the duration of the call it is passed to; copy what you keep. */
typedef struct ferry_tensor {
  uint32_t struct_size;
  const char* name;      /* e.g. "text_input" */
  ferry_dtype dtype;
  uint32_t num_dims;
  const int64_t* shape;  /* [num_dims]; every dim >= 0 */
  const void* data;      /* data_bytes bytes; for BYTES, the length-prefixed elements back to back */
  uint64_t data_bytes;
} ferry_tensor;

/* ---------------------------------------------------------------------------------------------- */
/* Requests and responses                                                                          */

/* Request flags. */
#define FERRY_REQUEST_FLAG_STREAM 1u /* the client reads responses as they come (SSE, ZeroMQ stream).
                                      * Without it the host answers with the FINAL response only, so
                                      * the backend should put the whole answer in the FINAL response. */

/* An inference request handed to ferry_model_submit. The struct and everything it points to are
 * owned by the host and valid only during that call: the backend copies what it keeps. */
typedef struct ferry_request {
  uint32_t struct_size;
  uint64_t id;                 /* unique among the host's requests in flight; used by cancel */
  const char* client_id;       /* the client's own request id, for logs; may be "" */
  uint32_t num_inputs;
  const ferry_tensor* inputs;  /* [num_inputs], names unique */
  const char* parameters_json; /* a JSON object, "{}" when none; never NULL */
  uint32_t flags;              /* FERRY_REQUEST_FLAG_* */
  uint32_t priority;           /* 0: the model's default; 1 is the highest, larger is lower */
  uint64_t timeout_us;         /* 0: none; else the longest the request may wait before it runs */
} ferry_request;

/* Response flags. */
#define FERRY_RESPONSE_FLAG_FINAL 1u /* the last response of a request */

/* One response. Owned by the backend and valid only during the respond call: the host copies. */
typedef struct ferry_response {
  uint32_t struct_size;
  uint32_t flags;               /* FERRY_RESPONSE_FLAG_* */
  uint32_t num_outputs;
  const ferry_tensor* outputs;  /* [num_outputs]; may be 0 (e.g. a FINAL response that only ends) */
  const char* parameters_json;  /* a JSON object or NULL (e.g. {"finish_reason":"stop"}) */
  ferry_error_code error_code;  /* FERRY_ERROR_CODE_OK, or the request failed: then FINAL must be set */
  const char* error_message;    /* NULL when error_code is OK */
  int64_t queue_ns;             /* on the FINAL response: time the request waited in the backend
                                 * before it started running, in ns; -1 when unknown */
} ferry_response;

/* ---------------------------------------------------------------------------------------------- */
/* What the host gives a backend                                                                   */

typedef struct ferry_host ferry_host;           /* opaque: the host's context */
typedef struct ferry_responder ferry_responder; /* opaque: where one request's responses go */
typedef struct ferry_metric ferry_metric;       /* opaque: one labelled metric series */
typedef struct ferry_load_reporter ferry_load_reporter; /* opaque: where one model load's progress goes */

typedef enum ferry_log_level {
  FERRY_LOG_LEVEL_ERROR = 0,
  FERRY_LOG_LEVEL_WARNING = 1,
  FERRY_LOG_LEVEL_INFO = 2,
  FERRY_LOG_LEVEL_VERBOSE = 3
} ferry_log_level;

typedef enum ferry_metric_kind {
  FERRY_METRIC_KIND_COUNTER = 0,   /* monotonic; use metric_add with v >= 0 */
  FERRY_METRIC_KIND_GAUGE = 1,     /* use metric_set or metric_add */
  FERRY_METRIC_KIND_HISTOGRAM = 2  /* use metric_observe */
} ferry_metric_kind;

typedef struct ferry_label {
  const char* key;   /* Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]* */
  const char* value;
} ferry_label;

/* Since 1.2. How far a ferry_model_create has got, for the host's log and for the version's state
 * reason in the repository index ("loading weights: 27 % (1.2 of 4.4 GB, 850 MB/s)"). Owned by the
 * backend and valid only during the load_progress call: the host copies. */
typedef struct ferry_load_progress {
  uint32_t struct_size;
  const char* stage;        /* what is being done now, e.g. "loading weights" or "loading weights,
                             * converting to int8"; short, no trailing punctuation; never NULL */
  uint64_t bytes_done;      /* bytes of the stage's input done so far, <= bytes_total */
  uint64_t bytes_total;     /* 0 when unknown */
  uint64_t tensors_done;    /* tensors done so far, <= tensors_total */
  uint64_t tensors_total;   /* 0 when unknown */
  double bytes_per_second;  /* bytes_done over the stage's time so far; 0 when unknown */
} ferry_load_progress;

/* The host's function table, handed to ferry_backend_create. The table and the host context stay
 * valid until ferry_backend_destroy returns. Every function is safe to call from any thread. */
typedef struct ferry_host_api {
  uint32_t struct_size;
  uint32_t abi_major; /* the host's ABI version */
  uint32_t abi_minor;
  ferry_host* host;   /* pass back as the first argument of the functions below */

  /* Writes one log line. `file` may be NULL. The host filters by its --log-level. */
  void (*log)(ferry_host* host, ferry_log_level level, const char* file, int line, const char* message);

  /* Registers one metric series; it appears in the host's /metrics until metric_destroy.
   * `name` must match [a-zA-Z_:][a-zA-Z0-9_:]* and should start with "ferry_"; series of one name
   * must share kind and help. `buckets` (upper bounds, increasing) only for histograms; NULL with
   * num_buckets 0 picks default latency buckets in seconds. Creating a series that exists (same name
   * and labels) returns the same series, shared: each create needs its own metric_destroy. Returns
   * NULL and fills `error` on a bad name or a kind/help/bucket clash. The handle stays owned by
   * the host. */
  ferry_metric* (*metric_create)(ferry_host* host, ferry_metric_kind kind, const char* name, const char* help,
                                 const ferry_label* labels, uint32_t num_labels, const double* buckets,
                                 uint32_t num_buckets, ferry_error* error);
  /* Releases the series (the last release removes it); the handle is invalid afterwards. */
  void (*metric_destroy)(ferry_host* host, ferry_metric* metric);
  /* Counters and gauges: adds v. Gauges: set to v. Histograms: records one observation. Lock-free
   * where the platform allows; cheap enough for every decode step. */
  void (*metric_add)(ferry_metric* metric, double v);
  void (*metric_set)(ferry_metric* metric, double v);
  void (*metric_observe)(ferry_metric* metric, double v);

  /* Delivers one response of the request that `responder` belongs to. Call any number of times,
   * from any thread but never concurrently for the same responder; the last call has
   * FERRY_RESPONSE_FLAG_FINAL set, and after it the responder is invalid. The host copies the
   * response before returning. Returns OK, or INVALID_ARGUMENT on a malformed response (which is then
   * dropped; the backend must still send a FINAL). Never blocks on the network. */
  ferry_error_code (*respond)(ferry_responder* responder, const ferry_response* response);

  /* Since 1.2 (present when struct_size covers it; always, in a host that loaded a 1.2 backend).
   * Reports the progress of the ferry_model_create call whose desc->load_reporter is `reporter`:
   * the host logs it and shows it as the version's LOADING reason until the call returns (then
   * the version is READY without a reason, or UNAVAILABLE with the error). Call it only while
   * that ferry_model_create runs, from any thread, never concurrently for one reporter; about once
   * a second at most, and once more when the stage completes. Ignores a NULL reporter or
   * progress. Never blocks on anything but the host's log. */
  void (*load_progress)(ferry_load_reporter* reporter, const ferry_load_progress* progress);
} ferry_host_api;

/* ---------------------------------------------------------------------------------------------- */
/* What a backend exports (libferry_<name>.so)                                                     */

typedef struct ferry_backend ferry_backend; /* opaque: a backend's global state */
typedef struct ferry_model ferry_model;     /* opaque: one loaded model version */

/* Describes the model version to load. Valid only during ferry_model_create. */
typedef struct ferry_model_desc {
  uint32_t struct_size;
  const char* name;        /* the model name, as clients address it */
  int64_t version;         /* the version number (>= 1) */
  const char* model_path;  /* absolute path of the model folder <repo>/<name> */
  const char* version_path;/* absolute path of the version folder <repo>/<name>/<version> */
  const char* config_json; /* the backend's part of <repo>/<name>/config.json, a JSON object */
  const char* config_path; /* the file it came from, for error messages; "" for defaults */
  ferry_load_reporter* load_reporter; /* since 1.2: for host_api->load_progress during this create;
                                       * read only when struct_size covers it */
} ferry_model_desc;

/* What ferry_model_describe reports. */
typedef enum ferry_describe_kind {
  FERRY_DESCRIBE_KIND_METADATA = 0,  /* {"platform":"...","inputs":[{"name","datatype","shape"}],"outputs":[...]}
                                      * as KServe v2 model metadata; shape -1 for variable dims.
                                      * Read once after ferry_model_create: it must not change
                                      * while the model is loaded */
  FERRY_DESCRIBE_KIND_STATISTICS = 1 /* a JSON object of the backend's own counters, free form */
} ferry_describe_kind;

/* REQUIRED. Writes the ABI version the backend was built against. Called first, before anything
 * else; must not fail or allocate. */
FERRY_EXPORT void ferry_backend_abi_version(uint32_t* major, uint32_t* minor);

/* REQUIRED. Creates the backend's global state. `host_api` stays valid until ferry_backend_destroy
 * returns. `config_json` is a JSON object (the host passes "{}" today). Called once per process,
 * before any model is created. Returns OK and sets *backend, or fills `error` and returns its code. */
FERRY_EXPORT ferry_error_code ferry_backend_create(const ferry_host_api* host_api, const char* config_json,
                                                   ferry_backend** backend, ferry_error* error);

/* REQUIRED. Destroys the backend. The host has destroyed all its models first. */
FERRY_EXPORT void ferry_backend_destroy(ferry_backend* backend);

/* REQUIRED. Loads one model version; may take long (weights). Called from a host loader thread;
 * several models of one backend may be created concurrently. On failure the backend fills `error`
 * naming the key, file or tensor at fault, returns its code, and leaves nothing behind. */
FERRY_EXPORT ferry_error_code ferry_model_create(ferry_backend* backend, const ferry_model_desc* desc,
                                                 ferry_model** model, ferry_error* error);

/* REQUIRED. Unloads the model. The host calls it only after every submitted request has received
 * its FINAL response (it drains first, and cancels what is left after its shutdown timeout). */
FERRY_EXPORT void ferry_model_destroy(ferry_model* model);

/* REQUIRED. Submits a request; returns at once and never blocks on inference. Thread-safe.
 * On OK the backend owns `responder` and must deliver exactly one FINAL response through
 * host_api->respond (possibly before ferry_model_submit returns, possibly from another thread).
 * On any other code the request was refused: no response will come, `error` says why, and the
 * host answers the client itself (e.g. RESOURCE_EXHAUSTED -> 429). */
FERRY_EXPORT ferry_error_code ferry_model_submit(ferry_model* model, const ferry_request* request,
                                                 ferry_responder* responder, ferry_error* error);

/* REQUIRED. Asks the backend to stop request `request_id` (the ferry_request.id). Thread-safe, never
 * blocks. The request still ends with a FINAL response, normally with error code CANCELLED; a
 * response already on its way may still arrive. Returns OK if the request was known and not yet
 * finished, NOT_FOUND otherwise (both are harmless). */
FERRY_EXPORT ferry_error_code ferry_model_cancel(ferry_model* model, uint64_t request_id);

/* REQUIRED. Writes a JSON text (see ferry_describe_kind) into `buffer` of `capacity` bytes with a
 * NUL at the end, and returns the length it needs without the NUL, as snprintf does: when the
 * result is >= capacity, call again with a larger buffer. Thread-safe. */
FERRY_EXPORT size_t ferry_model_describe(ferry_model* model, ferry_describe_kind kind, char* buffer,
                                         size_t capacity);

/* OPTIONAL, since 1.1. Reports whether the model can serve now. Returns OK when it can, otherwise
 * the reason in `error` (e.g. UNAVAILABLE "device lost"); the host then reports the model not
 * ready. Without it the host treats a loaded model as ready. Thread-safe, cheap. */
FERRY_EXPORT ferry_error_code ferry_model_health(ferry_model* model, ferry_error* error);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FERRY_FERRY_H_ */
