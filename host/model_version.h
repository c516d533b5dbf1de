// ModelVersion: one version of one model as the host holds it (its backend handle, state, in-flight
// requests, metrics), and InflightRequest: one request submitted to it, which is what the backend's
// ferry_responder points at.
//
// Lifetimes: a ModelVersion is shared (registry, requests). Its backend model is destroyed only by
// unload(), after every in-flight request has ended, never by a destructor on a backend thread.
// An InflightRequest lives until its FINAL response has been handled and nobody holds it.
// Thread-safety: all public functions are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/abi/abi_util.h"
#include "common/status.h"
#include "ferry/ferry.h"
#include "host/backend_library.h"
#include "host/load_progress.h"
#include "host/metrics.h"
#include "host/repository.h"

namespace ferry::host {

enum class ModelState { kLoading, kReady, kUnloading, kUnavailable };
const char* model_state_name(ModelState state);  // "LOADING", "READY", ...

// What a frontend asks for.
struct RequestSpec {
  std::string client_id;
  std::vector<abi::OwnedTensor> inputs;
  std::string parameters_json = "{}";
  bool stream = false;
  uint32_t priority = 0;
  uint64_t timeout_us = 0;
};

// One response, copied out of the backend's ferry_response.
struct ResponseData {
  bool final = false;
  Status error;  // OK, or the request failed (then final is true)
  std::vector<abi::OwnedTensor> outputs;
  std::string parameters_json;  // "" when the backend sent none
};

class ModelVersion;

// Receives a request's responses, in order, from backend threads; never concurrently for one
// request. Must not block for long (no network waits): hand the data to the frontend's thread.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void on_response(ResponseData&& response) = 0;
};

class InflightRequest {
 public:
  InflightRequest(uint64_t id, std::shared_ptr<ModelVersion> model, std::shared_ptr<ResponseSink> sink, bool stream);
  uint64_t id() const { return id_; }
  ModelVersion& model() { return *model_; }
  // Asks the backend to stop; harmless after the end. The FINAL response still comes.
  void cancel();
  bool finished() const;

  // Called by the host's respond function (backend threads).
  ferry_error_code deliver(const ferry_response& response);

 private:
  const uint64_t id_;
  const std::shared_ptr<ModelVersion> model_;
  const std::shared_ptr<ResponseSink> sink_;
  const bool stream_;
  const std::chrono::steady_clock::time_point start_;
  mutable std::mutex mu_;
  bool finished_ = false;  // guarded by mu_
};

class ModelVersion : public std::enable_shared_from_this<ModelVersion> {
 public:
  ModelVersion(ModelSpec spec, ModelVersionPath version, std::shared_ptr<BackendLibrary> lib, MetricsRegistry* metrics);
  ~ModelVersion();

  const std::string& name() const { return spec_.name; }
  int64_t version() const { return version_.version; }
  const ModelSpec& spec() const { return spec_; }
  BackendLibrary& library() { return *lib_; }

  // Calls ferry_model_create; READY on success, UNAVAILABLE with the reason otherwise. While it
  // runs, the backend's progress reports (ABI 1.2) become the LOADING reason and log lines.
  Status load();
  // A progress report of the load in progress: the reason while LOADING ("loading weights: 27 %
  // (...)"), ignored in any other state; logged at once, then at most every kProgressLogInterval and
  // when complete, so a long load does not flood the log.
  void report_load_progress(const LoadProgress& progress);
  static constexpr std::chrono::seconds kProgressLogInterval{5};
  // Stops taking requests (UNLOADING), waits for in-flight requests to end (cancelling what is left
  // after `cancel_after`), then destroys the backend model. Blocks; call from a control thread.
  void unload(std::chrono::milliseconds cancel_after);
  // Ends the wait of an unload() in progress (or the next one) at once: what is still in flight is
  // cancelled now instead of after `cancel_after` (a second SIGTERM while the server drains).
  void end_drain();
  // Marks the version UNAVAILABLE with a reason (no backend model).
  void set_unavailable(const std::string& reason);

  ModelState state() const;
  std::string reason() const;
  // READY and, when the backend offers ferry_model_health, healthy; otherwise the reason.
  Status readiness() const;

  // Submits a request. On success the returned request is in flight and its FINAL will reach the
  // sink. Failures (not ready, refused by the backend) are returned and counted; nothing reaches the sink.
  Result<std::shared_ptr<InflightRequest>> submit(RequestSpec&& spec, std::shared_ptr<ResponseSink> sink);
  size_t num_inflight() const;

  std::string describe(ferry_describe_kind kind) const;
  // The backend's KServe metadata object (platform, inputs, outputs), read once at load; an empty
  // object when the backend gave none. Constant while READY.
  const Json::Value& metadata() const { return metadata_; }
  Json::Value statistics() const;  // Triton's model_stats entry

  // Used by InflightRequest. A request that ends gets record_end, then, once its FINAL is with the
  // frontend, remove_inflight.
  // Counts the end in statistics and metrics (the in-flight gauge included); `duration` is empty
  // for requests the backend refused (they never ran).
  void record_end(const Status& status, std::optional<std::chrono::nanoseconds> duration, int64_t queue_ns);
  // Takes the request out of the in-flight set that unload() waits to see empty.
  void remove_inflight(uint64_t id);
  void cancel_request(uint64_t id);

 private:
  void create_metrics();
  void destroy_metrics();

  const ModelSpec spec_;
  const ModelVersionPath version_;
  const std::shared_ptr<BackendLibrary> lib_;
  MetricsRegistry* const metrics_;
  // Held shared by calls into the backend model outside submit/respond (cancel, describe, health)
  // and exclusively while it is destroyed.
  mutable std::shared_mutex backend_mu_;
  ferry_model* model_ = nullptr;  // set once by load(), cleared under backend_mu_ by unload()
  Json::Value metadata_{Json::objectValue};  // set by load() before READY, then constant

  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  ModelState state_ = ModelState::kLoading;                                 // guarded by mu_
  std::string reason_;                                                      // guarded by mu_
  bool drain_ended_ = false;                                                // guarded by mu_
  std::optional<std::chrono::steady_clock::time_point> last_progress_log_;  // guarded by mu_
  std::unordered_map<uint64_t, std::weak_ptr<InflightRequest>> inflight_;   // guarded by mu_

  // Statistics (ns totals and counts), as Triton's statistics extension reports them.
  std::atomic<uint64_t> success_count_{0}, success_ns_{0}, fail_count_{0}, fail_ns_{0}, queue_count_{0},
      queue_ns_{0}, last_inference_ms_{0};

  MetricSeries* m_success_ = nullptr;
  std::vector<MetricSeries*> m_failure_;  // by StatusCode value
  MetricSeries* m_duration_ = nullptr;
  MetricSeries* m_queue_ = nullptr;
  MetricSeries* m_inflight_ = nullptr;
};

}  // namespace ferry::host
