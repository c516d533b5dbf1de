#include "host/model_version.h"

#include <cctype>

#include "host/json_util.h"
#include "host/log.h"

// The backend's handle for one request: keeps the request alive until its FINAL response.
struct ferry_responder {
  std::shared_ptr<ferry::host::InflightRequest> request;
};

// The backend's handle for reporting the progress of one ferry_model_create (on load()'s stack).
struct ferry_load_reporter {
  ferry::host::ModelVersion* version;
};

namespace ferry::host {
namespace {

std::atomic<uint64_t> g_next_request_id{1};

std::string lower(const char* s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

constexpr int kNumCodes = static_cast<int>(StatusCode::kTooLarge) + 1;

}  // namespace

const char* model_state_name(ModelState state) {
  switch (state) {
    case ModelState::kLoading: return "LOADING";
    case ModelState::kReady: return "READY";
    case ModelState::kUnloading: return "UNLOADING";
    case ModelState::kUnavailable: return "UNAVAILABLE";
  }
  return "UNKNOWN";
}

// ---- InflightRequest ------------------------------------------------------------------------------

InflightRequest::InflightRequest(uint64_t id, std::shared_ptr<ModelVersion> model, std::shared_ptr<ResponseSink> sink,
                                 bool stream)
    : id_(id), model_(std::move(model)), sink_(std::move(sink)), stream_(stream), start_(std::chrono::steady_clock::now()) {}

void InflightRequest::cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
  }
  // Not under mu_: backends may call respond (which takes mu_) while holding their own locks.
  model_->cancel_request(id_);
}

bool InflightRequest::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

ferry_error_code InflightRequest::deliver(const ferry_response& r) {
  ResponseData data;
  data.final = (r.flags & FERRY_RESPONSE_FLAG_FINAL) != 0;
  if (r.error_code != FERRY_ERROR_CODE_OK) {
    data.error = Status(static_cast<StatusCode>(r.error_code), r.error_message ? r.error_message : "backend error");
    if (!data.final) {
      // An error ends the request; a backend that forgot the flag still ends it here.
      data.final = true;
    }
  } else if (!data.final && !stream_) {
    return FERRY_ERROR_CODE_OK;  // not streaming: only the FINAL response matters
  } else {
    data.outputs.reserve(r.num_outputs);
    for (uint32_t i = 0; i < r.num_outputs; ++i) {
      auto t = abi::copy_tensor(r.outputs[i]);
      if (!t.ok()) {
        FERRY_LOG(Error) << "model " << model_->name() << " sent a malformed output: " << t.status().message();
        if (!data.final) return FERRY_ERROR_CODE_INVALID_ARGUMENT;
        data.error = Status::Internal("backend sent a malformed output: " + t.status().message());
        data.outputs.clear();
        break;
      }
      data.outputs.push_back(std::move(t.value()));
    }
    if (r.parameters_json != nullptr) data.parameters_json = r.parameters_json;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return FERRY_ERROR_CODE_INVALID_ARGUMENT;  // a response after the FINAL
    if (data.final) finished_ = true;
  }
  const bool final = data.final;
  if (final) {
    auto duration = std::chrono::steady_clock::now() - start_;
    int64_t queue_ns = r.struct_size >= offsetof(ferry_response, queue_ns) + sizeof(int64_t) ? r.queue_ns : -1;
    // Counted before the frontend gets the FINAL: a client holding its answer finds the request in
    // the statistics and metrics.
    model_->record_end(data.error, std::chrono::duration_cast<std::chrono::nanoseconds>(duration), queue_ns);
  }
  sink_->on_response(std::move(data));
  // Out of the in-flight set only once the frontend has the FINAL: unload, and with it the
  // server's drain, waits on that set and must not end before the answer is on its way.
  if (final) model_->remove_inflight(id_);
  return FERRY_ERROR_CODE_OK;
}

// ---- ModelVersion ---------------------------------------------------------------------------------

ModelVersion::ModelVersion(ModelSpec spec, ModelVersionPath version, std::shared_ptr<BackendLibrary> lib,
                           MetricsRegistry* metrics)
    : spec_(std::move(spec)), version_(std::move(version)), lib_(std::move(lib)), metrics_(metrics) {}

ModelVersion::~ModelVersion() {
  // unload() must have run if the model was created; a leak is better than destroying the backend
  // model from whichever thread dropped the last reference.
  FERRY_CHECK(model_ == nullptr);
  destroy_metrics();
}

Status ModelVersion::load() {
  ferry_model_desc desc{};
  desc.struct_size = sizeof(desc);
  desc.name = spec_.name.c_str();
  desc.version = version_.version;
  desc.model_path = spec_.path.c_str();
  desc.version_path = version_.path.c_str();
  desc.config_json = spec_.backend_config.c_str();
  desc.config_path = spec_.config_path.c_str();
  ferry_load_reporter reporter{this};  // valid for the create call only, as the ABI says
  desc.load_reporter = &reporter;
  ferry_error err{};
  err.struct_size = sizeof(err);
  ferry_model* model = nullptr;
  ferry_error_code rc = lib_->model_create(lib_->backend(), &desc, &model, &err);
  if (rc != FERRY_ERROR_CODE_OK || model == nullptr) {
    std::string where = spec_.config_path.empty() ? version_.path : spec_.config_path;
    Status s(rc == FERRY_ERROR_CODE_OK ? StatusCode::kInternal : static_cast<StatusCode>(rc),
             where + ": " + (err.message[0] ? err.message : "backend returned no model"));
    set_unavailable(s.message());
    return s;
  }
  create_metrics();
  {
    std::unique_lock<std::shared_mutex> backend_lock(backend_mu_);
    model_ = model;
  }
  // Metadata is constant while the model is loaded (ABI): parsed once, read without locks.
  auto meta = parse_json(describe(FERRY_DESCRIBE_KIND_METADATA), "model metadata");
  if (meta.ok() && meta->isObject()) metadata_ = std::move(meta.value());
  std::lock_guard<std::mutex> lock(mu_);
  state_ = ModelState::kReady;
  reason_.clear();
  return Status::Ok();
}

void ModelVersion::report_load_progress(const LoadProgress& progress) {
  bool log_now = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != ModelState::kLoading) return;
    reason_ = load_progress_reason(progress);
    const auto now = std::chrono::steady_clock::now();
    log_now = !last_progress_log_ || progress.complete() || now - *last_progress_log_ >= kProgressLogInterval;
    if (log_now) last_progress_log_ = now;
  }
  if (log_now) FERRY_LOG(Info) << load_progress_log(name(), version(), progress);
}

void ModelVersion::set_unavailable(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  state_ = ModelState::kUnavailable;
  reason_ = reason;
}

void ModelVersion::unload(std::chrono::milliseconds cancel_after) {
  std::unique_lock<std::mutex> lock(mu_);
  if (model_ == nullptr) {
    state_ = ModelState::kUnavailable;
    if (reason_.empty()) reason_ = "unloaded";
    return;
  }
  state_ = ModelState::kUnloading;
  if (!idle_cv_.wait_for(lock, cancel_after, [&] { return inflight_.empty() || drain_ended_; }) || !inflight_.empty()) {
    std::vector<std::shared_ptr<InflightRequest>> left;
    for (auto& [id, weak] : inflight_) {
      if (auto r = weak.lock()) left.push_back(std::move(r));
    }
    FERRY_LOG(Warning) << "model " << name() << " version " << version() << ": cancelling " << left.size()
                       << " request(s) still running "
                       << (drain_ended_ ? std::string("(drain ended early)")
                                        : "after " + std::to_string(cancel_after.count()) + " ms");
    lock.unlock();
    for (auto& r : left) r->cancel();
    left.clear();
    lock.lock();
    idle_cv_.wait(lock, [&] { return inflight_.empty(); });
  }
  ferry_model* model = model_;
  lock.unlock();
  {
    std::unique_lock<std::shared_mutex> backend_lock(backend_mu_);  // no cancel call is running
    lib_->model_destroy(model);
    model_ = nullptr;
  }
  destroy_metrics();
  lock.lock();
  state_ = ModelState::kUnavailable;
  reason_ = "unloaded";
}

void ModelVersion::end_drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    drain_ended_ = true;
  }
  idle_cv_.notify_all();
}

void ModelVersion::cancel_request(uint64_t id) {
  std::shared_lock<std::shared_mutex> backend_lock(backend_mu_);
  if (model_ != nullptr) lib_->model_cancel(model_, id);
}

ModelState ModelVersion::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

std::string ModelVersion::reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reason_;
}

Status ModelVersion::readiness() const {
  std::shared_lock<std::shared_mutex> backend_lock(backend_mu_);
  ferry_model* model = model_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != ModelState::kReady) {
      return Status::Unavailable("model '" + name() + "' version " + std::to_string(version()) + " is " +
                                 model_state_name(state_) + (reason_.empty() ? "" : ": " + reason_));
    }
  }
  if (lib_->model_health != nullptr) {
    ferry_error err{};
    err.struct_size = sizeof(err);
    if (lib_->model_health(model, &err) != FERRY_ERROR_CODE_OK) {
      return Status::Unavailable("model '" + name() + "' is not healthy: " + err.message);
    }
  }
  return Status::Ok();
}

Result<std::shared_ptr<InflightRequest>> ModelVersion::submit(RequestSpec&& spec, std::shared_ptr<ResponseSink> sink) {
  uint64_t id = g_next_request_id.fetch_add(1);
  auto request = std::make_shared<InflightRequest>(id, shared_from_this(), std::move(sink), spec.stream);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != ModelState::kReady) {
      return Status::Unavailable("model '" + name() + "' version " + std::to_string(version()) + " is " +
                                 model_state_name(state_));
    }
    inflight_.emplace(id, request);
  }
  if (m_inflight_) m_inflight_->add(1);

  std::vector<ferry_tensor> inputs;
  inputs.reserve(spec.inputs.size());
  for (const auto& t : spec.inputs) inputs.push_back(t.view());
  ferry_request r{};
  r.struct_size = sizeof(r);
  r.id = id;
  r.client_id = spec.client_id.c_str();
  r.num_inputs = static_cast<uint32_t>(inputs.size());
  r.inputs = inputs.data();
  r.parameters_json = spec.parameters_json.c_str();
  r.flags = spec.stream ? FERRY_REQUEST_FLAG_STREAM : 0;
  r.priority = spec.priority;
  r.timeout_us = spec.timeout_us;

  auto* responder = new ferry_responder{request};
  ferry_error err{};
  err.struct_size = sizeof(err);
  ferry_error_code rc = lib_->model_submit(model_, &r, responder, &err);
  if (rc != FERRY_ERROR_CODE_OK) {
    delete responder;
    Status s(static_cast<StatusCode>(rc), err.message[0] ? err.message : "request refused by the backend");
    record_end(s, std::nullopt, -1);  // refused: it never ran, so no duration
    remove_inflight(id);
    return s;
  }
  return request;
}

size_t ModelVersion::num_inflight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return inflight_.size();
}

void ModelVersion::record_end(const Status& status, std::optional<std::chrono::nanoseconds> duration,
                              int64_t queue_ns) {
  uint64_t ns = duration ? static_cast<uint64_t>(duration->count()) : 0;
  if (status.ok()) {
    success_count_.fetch_add(1, std::memory_order_relaxed);
    success_ns_.fetch_add(ns, std::memory_order_relaxed);
    if (m_success_) m_success_->add(1);
  } else {
    fail_count_.fetch_add(1, std::memory_order_relaxed);
    fail_ns_.fetch_add(ns, std::memory_order_relaxed);
    int code = static_cast<int>(status.code());
    if (code > 0 && code < kNumCodes && m_failure_.size() == kNumCodes) m_failure_[code]->add(1);
  }
  if (m_duration_ && duration) m_duration_->observe(static_cast<double>(ns) * 1e-9);
  if (queue_ns >= 0) {
    queue_count_.fetch_add(1, std::memory_order_relaxed);
    queue_ns_.fetch_add(static_cast<uint64_t>(queue_ns), std::memory_order_relaxed);
    if (m_queue_) m_queue_->observe(static_cast<double>(queue_ns) * 1e-9);
  }
  last_inference_ms_.store(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                     std::chrono::system_clock::now().time_since_epoch())
                                                     .count()),
                           std::memory_order_relaxed);
  if (m_inflight_) m_inflight_->add(-1);
}

void ModelVersion::remove_inflight(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  inflight_.erase(id);
  if (inflight_.empty()) idle_cv_.notify_all();
}

std::string ModelVersion::describe(ferry_describe_kind kind) const {
  std::shared_lock<std::shared_mutex> backend_lock(backend_mu_);
  ferry_model* model = model_;
  if (model == nullptr) return "{}";
  std::string buf(4096, '\0');
  size_t n = lib_->model_describe(model, kind, buf.data(), buf.size());
  if (n >= buf.size()) {
    buf.assign(n + 1, '\0');
    n = lib_->model_describe(model, kind, buf.data(), buf.size());
  }
  buf.resize(std::min(n, buf.size() - 1));
  return buf;
}

Json::Value ModelVersion::statistics() const {
  Json::Value s;
  s["name"] = name();
  s["version"] = std::to_string(version());
  s["last_inference"] = Json::UInt64(last_inference_ms_.load());
  uint64_t ok = success_count_.load(), fail = fail_count_.load();
  s["inference_count"] = Json::UInt64(ok);
  s["execution_count"] = Json::UInt64(ok);
  auto pair = [](uint64_t count, uint64_t ns) {
    Json::Value v;
    v["count"] = Json::UInt64(count);
    v["ns"] = Json::UInt64(ns);
    return v;
  };
  s["inference_stats"]["success"] = pair(ok, success_ns_.load());
  s["inference_stats"]["fail"] = pair(fail, fail_ns_.load());
  s["inference_stats"]["queue"] = pair(queue_count_.load(), queue_ns_.load());
  s["inflight"] = Json::UInt64(num_inflight());
  auto backend = parse_json(describe(FERRY_DESCRIBE_KIND_STATISTICS), "backend statistics");
  s["backend"] = backend.ok() ? backend.value() : Json::Value(Json::objectValue);
  return s;
}

void ModelVersion::create_metrics() {
  if (metrics_ == nullptr) return;
  Labels labels = {{"model", name()}, {"version", std::to_string(version())}};
  auto make = [&](MetricKind kind, const char* metric, const char* help, const Labels& l) -> MetricSeries* {
    auto s = metrics_->create_series(kind, metric, help, l);
    if (!s.ok()) {
      FERRY_LOG(Warning) << s.status().message();
      return nullptr;
    }
    return s.value();
  };
  m_success_ = make(MetricKind::kCounter, "ferry_request_success_total", "Requests that ended successfully", labels);
  m_failure_.assign(kNumCodes, nullptr);
  for (int c = 1; c < kNumCodes; ++c) {
    Labels l = labels;
    l.emplace_back("reason", lower(status_code_name(static_cast<StatusCode>(c))));
    m_failure_[c] = make(MetricKind::kCounter, "ferry_request_failure_total", "Requests that failed, by reason", l);
  }
  bool all = std::all_of(m_failure_.begin() + 1, m_failure_.end(), [](auto* p) { return p != nullptr; });
  if (!all) m_failure_.clear();
  m_duration_ = make(MetricKind::kHistogram, "ferry_request_duration_seconds",
                     "Time from submission to the final response", labels);
  m_queue_ = make(MetricKind::kHistogram, "ferry_queue_duration_seconds",
                  "Time requests waited in the backend's queue before running", labels);
  m_inflight_ = make(MetricKind::kGauge, "ferry_inflight_requests", "Requests submitted and not yet finished", labels);
}

void ModelVersion::destroy_metrics() {
  if (metrics_ == nullptr) return;
  for (MetricSeries* s : {m_success_, m_duration_, m_queue_, m_inflight_}) {
    if (s) metrics_->destroy_series(s);
  }
  for (MetricSeries* s : m_failure_) {
    if (s) metrics_->destroy_series(s);
  }
  m_success_ = m_duration_ = m_queue_ = m_inflight_ = nullptr;
  m_failure_.clear();
}

// The host's load_progress function (ferry_host_api::load_progress, since 1.2).
void host_load_progress(ferry_load_reporter* reporter, const ferry_load_progress* progress) {
  if (reporter == nullptr || progress == nullptr) return;
  if (auto copy = copy_load_progress(*progress)) reporter->version->report_load_progress(*copy);
}

// The host's respond function (ferry_host_api::respond).
ferry_error_code host_respond(ferry_responder* responder, const ferry_response* response) {
  if (responder == nullptr || response == nullptr) return FERRY_ERROR_CODE_INVALID_ARGUMENT;
  bool final = (response->flags & FERRY_RESPONSE_FLAG_FINAL) != 0 || response->error_code != FERRY_ERROR_CODE_OK;
  ferry_error_code rc = responder->request->deliver(*response);
  if (final) delete responder;
  return rc;
}

}  // namespace ferry::host
