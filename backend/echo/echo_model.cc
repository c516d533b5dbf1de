#include "backend/echo/echo_model.h"

#include <json/json.h>

#include <memory>

#include "common/json_parse.h"

namespace ferry::echo {
namespace {

std::string to_json(const Json::Value& v) {
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  return Json::writeString(w, v);
}

// Through the shared depth-limited parse (common/json_parse.h): submit runs on the host's
// frontend threads, whose stacks are small. Duplicate keys keep the last, as before.
Result<Json::Value> parse_json(const std::string& text, const char* what) {
  JsonParseOptions options;
  options.reject_dup_keys = false;
  auto v = parse_json_text(text, options);
  if (!v.ok()) return Status::InvalidArgument(std::string(what) + ": " + v.status().message());
  if (!v->isObject()) return Status::InvalidArgument(std::string(what) + " must be a JSON object");
  return v;
}

Result<StatusCode> parse_code(const std::string& name) {
  for (int c = 1; c <= static_cast<int>(StatusCode::kTooLarge); ++c) {
    if (name == status_code_name(static_cast<StatusCode>(c))) return static_cast<StatusCode>(c);
  }
  return Status::InvalidArgument("parameter 'error_code': unknown code '" + name + "'");
}

}  // namespace

Result<EchoConfig> EchoConfig::parse(const std::string& json) {
  auto v = parse_json(json, "echo config");
  if (!v.ok()) return v.status();
  EchoConfig c;
  for (const auto& key : v->getMemberNames()) {
    const Json::Value& item = (*v)[key];
    if (key == "inputs" || key == "outputs") {
      if (!item.isArray()) return Status::InvalidArgument("key '" + key + "' must be a list");
      Json::Value meta(Json::arrayValue);
      for (const auto& t : item) {
        if (!t.isObject() || !t["name"].isString() || !t["datatype"].isString()) {
          return Status::InvalidArgument("key '" + key + "': each entry needs string 'name' and 'datatype'");
        }
        Json::Value m;
        m["name"] = t["name"];
        m["datatype"] = t["datatype"];
        m["shape"] = t.isMember("dims") ? t["dims"] : Json::Value(Json::arrayValue);
        if (!m["shape"].isArray()) return Status::InvalidArgument("key '" + key + "': 'dims' must be a list");
        meta.append(m);
      }
      (key == "inputs" ? c.inputs_json : c.outputs_json) = to_json(meta);
    } else {
      return Status::InvalidArgument("unknown key '" + key + "' for the echo backend");
    }
  }
  return c;
}

EchoModel::EchoModel(const ferry_host_api* host, std::string name, int64_t version, EchoConfig config)
    : host_(host), name_(std::move(name)), version_(version), config_(std::move(config)) {
  std::string version_str = std::to_string(version_);
  ferry_label labels[] = {{"model", name_.c_str()}, {"version", version_str.c_str()}};
  ferry_error err{};
  err.struct_size = sizeof(err);
  requests_metric_ = host_->metric_create(host_->host, FERRY_METRIC_KIND_COUNTER, "ferry_echo_requests_total",
                                          "Requests the echo backend accepted", labels, 2, nullptr, 0, &err);
  if (requests_metric_ == nullptr) {
    host_->log(host_->host, FERRY_LOG_LEVEL_WARNING, __FILE__, __LINE__, err.message);
  }
  worker_ = std::thread([this] { run(); });
}

EchoModel::~EchoModel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
  if (requests_metric_ != nullptr) host_->metric_destroy(host_->host, requests_metric_);
}

Status EchoModel::submit(const ferry_request& request, ferry_responder* responder) {
  auto p = std::make_unique<Pending>();
  p->id = request.id;
  p->responder = responder;
  p->stream = (request.flags & FERRY_REQUEST_FLAG_STREAM) != 0;
  p->submitted = Clock::now();
  for (uint32_t i = 0; i < request.num_inputs; ++i) {
    auto t = abi::copy_tensor(request.inputs[i]);
    if (!t.ok()) return t.status();
    p->inputs.push_back(std::move(t.value()));
  }
  auto params = parse_json(request.parameters_json, "parameters");
  if (!params.ok()) return params.status();
  const Json::Value& pv = params.value();
  if (pv.isMember("responses")) {
    if (!pv["responses"].isInt() || pv["responses"].asInt() < 1 || pv["responses"].asInt() > 100000) {
      return Status::InvalidArgument("parameter 'responses' must be an integer in [1, 100000]");
    }
    p->remaining = pv["responses"].asInt();
  }
  if (pv.isMember("delay_ms")) {
    if (!pv["delay_ms"].isNumeric() || pv["delay_ms"].asDouble() < 0 || pv["delay_ms"].asDouble() > 600000) {
      return Status::InvalidArgument("parameter 'delay_ms' must be a number in [0, 600000]");
    }
    p->delay = std::chrono::milliseconds(static_cast<int64_t>(pv["delay_ms"].asDouble()));
  }
  if (pv.isMember("error")) {
    StatusCode code = StatusCode::kInternal;
    if (pv.isMember("error_code")) {
      auto c = parse_code(pv["error_code"].asString());
      if (!c.ok()) return c.status();
      code = c.value();
    }
    p->forced_error = Status(code, pv["error"].asString());
  }
  if (!p->stream) {
    // One FINAL response after the whole stream's time.
    p->delay *= p->remaining;
    p->remaining = 1;
  }
  auto due = Clock::now() + p->delay;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("model is unloading");
    if (pending_.count(p->id)) return Status::InvalidArgument("request id already in flight");
    due_.emplace(due, p->id);
    pending_.emplace(p->id, std::move(p));
  }
  ++num_submitted_;
  if (requests_metric_ != nullptr) host_->metric_add(requests_metric_, 1);
  cv_.notify_one();
  return Status::Ok();
}

bool EchoModel::cancel(uint64_t request_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(request_id);
    if (it == pending_.end() || it->second->cancelled) return false;
    it->second->cancelled = true;
    due_.emplace(Clock::now(), request_id);  // answer the cancel at once
  }
  cv_.notify_one();
  return true;
}

bool EchoModel::next_is_final(const Pending& p, bool cancel) {
  return cancel || !p.forced_error.ok() || p.remaining <= 1;
}

void EchoModel::send_next(Pending& p, bool cancel) {
  ferry_response r{};
  r.struct_size = sizeof(r);
  r.queue_ns = 0;
  std::vector<ferry_tensor> views;
  std::string params;
  bool final = next_is_final(p, cancel);
  if (cancel) {
    r.error_code = FERRY_ERROR_CODE_CANCELLED;
    r.error_message = "request cancelled";
    ++num_cancelled_;
  } else if (!p.forced_error.ok()) {
    r.error_code = static_cast<ferry_error_code>(p.forced_error.code());
    r.error_message = p.forced_error.message().c_str();
    ++num_failed_;
  } else {
    for (const auto& t : p.inputs) views.push_back(t.view());
    r.outputs = views.data();
    r.num_outputs = static_cast<uint32_t>(views.size());
    params = final ? "{\"finish_reason\":\"stop\"}" : "{}";
    r.parameters_json = params.c_str();
    if (final) ++num_completed_;
  }
  if (final) r.flags |= FERRY_RESPONSE_FLAG_FINAL;
  host_->respond(p.responder, &r);
  --p.remaining;
}

void EchoModel::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stopping_) {
      // Unloading: every request still pending ends with a CANCELLED FINAL.
      for (auto& [id, p] : pending_) send_next(*p, true);
      pending_.clear();
      due_.clear();
      return;
    }
    if (due_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto [when, id] = *due_.begin();
    if (when > Clock::now()) {
      cv_.wait_until(lock, when);
      continue;
    }
    due_.erase(due_.begin());
    auto it = pending_.find(id);
    if (it == pending_.end()) continue;  // a stale entry (cancelled, already answered)
    Pending& p = *it->second;
    const bool cancel = p.cancelled;
    const bool final = next_is_final(p, cancel);
    // A request leaves pending_ before its FINAL goes out, so describe() never counts an answered
    // request as in flight.
    std::unique_ptr<Pending> answered;
    if (final) {
      answered = std::move(it->second);
      pending_.erase(it);
    }
    // respond() runs the host's delivery (copying outputs, waking or encoding for the frontend);
    // outside the lock, submit and cancel on frontend threads do not wait for it. `p` stays valid
    // unlocked because only this thread erases requests, and one request's responses stay in
    // order because this one thread sends them all.
    lock.unlock();
    send_next(p, cancel);
    lock.lock();
    if (!final) due_.emplace(Clock::now() + p.delay, id);
  }
}

std::string EchoModel::describe(ferry_describe_kind kind) const {
  if (kind == FERRY_DESCRIBE_KIND_METADATA) {
    return "{\"platform\":\"ferry_echo\",\"inputs\":" + config_.inputs_json + ",\"outputs\":" + config_.outputs_json +
           "}";
  }
  size_t in_flight = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight = pending_.size();
  }
  return "{\"submitted\":" + std::to_string(num_submitted_.load()) +
         ",\"completed\":" + std::to_string(num_completed_.load()) +
         ",\"cancelled\":" + std::to_string(num_cancelled_.load()) +
         ",\"failed\":" + std::to_string(num_failed_.load()) + ",\"in_flight\":" + std::to_string(in_flight) + "}";
}

}  // namespace ferry::echo
