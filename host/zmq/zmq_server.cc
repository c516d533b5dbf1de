#include "host/zmq/zmq_server.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/json_writer.h"
#include "host/http/kserve_json.h"
#include "host/json_util.h"
#include "host/log.h"
#include "host/model_version.h"

namespace ferry::host {
namespace {

// Encodes one response message and hands it to the server's outbox.
class ZmqSink : public ResponseSink {
 public:
  ZmqSink(ZmqServer* server, std::vector<std::string> route, std::string id, std::string key)
      : server_(server), route_(std::move(route)), id_(std::move(id)), key_(std::move(key)) {}
  void set_model(std::string model, int64_t version) {
    model_ = std::move(model);
    version_ = version;
  }

  // The response as compact JSON text, written without a DOM: this runs once per streamed token on
  // the backend's thread. The backend's parameters are parsed (and written back) only when it sent
  // some: text that is not a JSON object is left out, as before.
  void on_response(ResponseData&& r) override {
    std::string text;
    text.reserve(128);
    text.append("{\"id\":");
    append_json_string(text, id_);
    text.append(",\"model\":");
    append_json_string(text, model_);
    text.append(",\"version\":\"");
    append_json_int(text, version_);
    text.append(r.final ? "\",\"final\":true" : "\",\"final\":false");
    if (!r.error.ok()) {
      text.append(",\"error\":{\"code\":");
      append_json_string(text, status_code_name(r.error.code()));
      text.append(",\"status\":");
      append_json_int(text, http_status_for(r.error.code()));
      text.append(",\"message\":");
      append_json_string(text, r.error.message());
      text.push_back('}');
    } else {
      text.append(",\"outputs\":[");
      for (size_t i = 0; i < r.outputs.size(); ++i) {
        if (i > 0) text.push_back(',');
        append_tensor_json(text, r.outputs[i]);
      }
      text.push_back(']');
      if (!r.parameters_json.empty()) {
        auto p = parse_json(r.parameters_json, "response parameters");
        if (p.ok() && p->isObject()) {
          text.append(",\"parameters\":");
          text.append(to_json(p.value()));
        }
      }
    }
    text.push_back('}');
    if (r.final) server_->forget(key_);
    std::vector<std::string> frames;
    frames.reserve(route_.size() + 1);
    frames.insert(frames.end(), route_.begin(), route_.end());
    frames.push_back(std::move(text));
    server_->post(std::move(frames));
  }

 private:
  ZmqServer* server_;
  std::vector<std::string> route_;
  std::string id_, key_, model_;
  int64_t version_ = 0;
};

// tcp://host:0 -> tcp://host:* (libzmq's spelling for "pick a port").
std::string normalize_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("tcp://", 0) == 0 && endpoint.size() > 2 && endpoint.compare(endpoint.size() - 2, 2, ":0") == 0) {
    return endpoint.substr(0, endpoint.size() - 1) + "*";
  }
  return endpoint;
}

// Reads a CURVE secret key file: the 40-character Z85 text zmq_curve_keypair writes (surrounding
// whitespace ignored). Returns the key and its public key, also Z85.
Result<std::pair<std::string, std::string>> read_curve_secret_key(const std::string& path) {
  if (!zmq_has("curve")) {
    return Status::Unimplemented("--zmq-curve-secret-key: this libzmq was built without CURVE support");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("--zmq-curve-secret-key: cannot read '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  std::string key = text.str();
  size_t begin = key.find_first_not_of(" \t\r\n");
  size_t end = key.find_last_not_of(" \t\r\n");
  key = begin == std::string::npos ? "" : key.substr(begin, end - begin + 1);
  char public_key[41];
  if (key.size() != 40 || zmq_curve_public(public_key, key.c_str()) != 0) {
    return Status::InvalidArgument("--zmq-curve-secret-key: '" + path +
                                   "' must hold a Z85 secret key of 40 characters (as zmq_curve_keypair writes)");
  }
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    FERRY_LOG(Warning) << "--zmq-curve-secret-key: '" << path << "' is readable by other users (chmod 600 it)";
  }
  return std::make_pair(key, std::string(public_key));
}

}  // namespace

Status ZmqServer::start(const std::string& endpoint, const std::string& curve_secret_key_file) {
  std::string curve_secret, curve_public;
  if (!curve_secret_key_file.empty()) {
    auto keys = read_curve_secret_key(curve_secret_key_file);
    if (!keys.ok()) return keys.status();
    curve_secret = keys->first;
    curve_public = keys->second;
  }
  zmq_ctx_ = zmq_ctx_new();
  socket_ = zmq_socket(zmq_ctx_, ZMQ_ROUTER);
  int zero = 0, linger = 1000;
  // Never drop a response because a peer is slow: answers are what clients wait for.
  zmq_setsockopt(socket_, ZMQ_SNDHWM, &zero, sizeof(zero));
  zmq_setsockopt(socket_, ZMQ_RCVHWM, &zero, sizeof(zero));
  zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof(linger));
  // Messages up to twice the limit are read and refused with a TooLarge answer (handle_message);
  // a larger frame makes libzmq drop the connection before buffering it, so no peer can make the
  // server hold more than that per frame.
  int64_t max_message_bytes = static_cast<int64_t>(2 * ctx_->max_body_bytes);
  zmq_setsockopt(socket_, ZMQ_MAXMSGSIZE, &max_message_bytes, sizeof(max_message_bytes));
  if (!curve_secret.empty()) {
    int one = 1;
    zmq_setsockopt(socket_, ZMQ_CURVE_SERVER, &one, sizeof(one));
    zmq_setsockopt(socket_, ZMQ_CURVE_SECRETKEY, curve_secret.c_str(), curve_secret.size());
  }
  std::string ep = normalize_endpoint(endpoint);
  if (zmq_bind(socket_, ep.c_str()) != 0) {
    std::string err = zmq_strerror(zmq_errno());
    zmq_close(socket_);
    zmq_ctx_term(zmq_ctx_);
    socket_ = zmq_ctx_ = nullptr;
    return Status::Unavailable("cannot bind ZeroMQ endpoint " + endpoint + ": " + err);
  }
  if (!curve_public.empty()) {
    FERRY_LOG(Info) << "ZeroMQ CURVE on: clients need the server public key " << curve_public;
  }
  char last[256];
  size_t len = sizeof(last);
  zmq_getsockopt(socket_, ZMQ_LAST_ENDPOINT, last, &len);
  bound_endpoint_ = last;
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  for (size_t i = 0; i < kNumSubmitThreads; ++i) submitters_.emplace_back([this, i] { submit_loop(i); });
  thread_ = std::thread([this] { run(); });
  return Status::Ok();
}

void ZmqServer::stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  // Submits still queued run to the end (the registry refuses them quickly once it is shutting
  // down) and post their answers before the socket thread's last flush.
  {
    std::lock_guard<std::mutex> lock(submit_mu_);
    submit_stop_ = true;
  }
  for (auto& cv : submit_cv_) cv.notify_all();
  for (auto& t : submitters_) t.join();
  submitters_.clear();
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  zmq_close(socket_);
  zmq_ctx_term(zmq_ctx_);
  ::close(wake_fd_);
  socket_ = zmq_ctx_ = nullptr;
  wake_fd_ = -1;
}

void ZmqServer::post(std::vector<std::string> frames) {
  bool was_empty;
  {
    std::lock_guard<std::mutex> lock(out_mu_);
    was_empty = outbox_.empty();
    outbox_.push_back(std::move(frames));
  }
  // One wake-up per batch: a non-empty outbox was posted with a wake-up the socket thread has not
  // flushed yet (it empties the outbox after reading the eventfd).
  if (!was_empty) return;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void ZmqServer::enqueue_submit(size_t lane, std::function<void()> task) {
  lane %= kNumSubmitThreads;
  {
    std::lock_guard<std::mutex> lock(submit_mu_);
    submit_queue_[lane].push_back(std::move(task));
  }
  submit_cv_[lane].notify_one();
}

void ZmqServer::submit_loop(size_t lane) {
  pthread_setname_np(pthread_self(), "zmq-submit");
  std::deque<std::function<void()>>& queue = submit_queue_[lane];
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(submit_mu_);
      submit_cv_[lane].wait(lock, [&] { return submit_stop_ || !queue.empty(); });
      if (queue.empty()) return;  // stopping, and nothing left
      task = std::move(queue.front());
      queue.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      FERRY_LOG(Error) << "ZeroMQ submit failed: " << e.what();
    }
  }
}

void ZmqServer::forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(inflight_mu_);
  inflight_.erase(key);
}

void ZmqServer::flush_outbox() {
  std::deque<std::vector<std::string>> batch;
  {
    std::lock_guard<std::mutex> lock(out_mu_);
    batch.swap(outbox_);
  }
  for (const auto& frames : batch) {
    for (size_t i = 0; i < frames.size(); ++i) {
      int flags = i + 1 < frames.size() ? ZMQ_SNDMORE : 0;
      if (zmq_send(socket_, frames[i].data(), frames[i].size(), flags) < 0) {
        FERRY_LOG(Warning) << "ZeroMQ send failed: " << zmq_strerror(zmq_errno());
        break;
      }
    }
  }
}

void ZmqServer::run() {
  pthread_setname_np(pthread_self(), "zmq-server");
  zmq_pollitem_t items[2] = {{socket_, 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
  for (;;) {
    int rc = zmq_poll(items, 2, 200);
    if (rc < 0 && zmq_errno() != EINTR) {
      FERRY_LOG(Error) << "ZeroMQ poll failed: " << zmq_strerror(zmq_errno());
      break;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      uint64_t n;
      (void)!::read(wake_fd_, &n, sizeof(n));
    }
    flush_outbox();
    if (stopping_) break;
    // Read every message waiting, without blocking.
    for (;;) {
      std::vector<std::string> frames;
      bool got = false;
      for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, socket_, ZMQ_DONTWAIT) < 0) {
          zmq_msg_close(&msg);
          break;
        }
        got = true;
        frames.emplace_back(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
        bool more = zmq_msg_more(&msg);
        zmq_msg_close(&msg);
        if (!more) break;
      }
      if (!got) break;
      try {
        handle_message(std::move(frames));
      } catch (const std::exception& e) {
        // A bug, not bad input (that is validated), but one message must never stop the frontend.
        FERRY_LOG(Error) << "ZeroMQ message handling failed: " << e.what();
      }
    }
    flush_outbox();
  }
  flush_outbox();
}

void ZmqServer::reply_error(const std::vector<std::string>& route, const std::string& id, const Status& status) {
  reply_refusal(route, id, status_code_name(status.code()), http_status_for(status.code()), status.message());
}

void ZmqServer::reply_refusal(const std::vector<std::string>& route, const std::string& id, const char* code,
                              int http_status, const std::string& message) {
  Json::Value j;
  j["id"] = id;
  j["final"] = true;
  // This message was not accepted; a request already in flight under the same id is unaffected.
  j["refused"] = true;
  j["error"]["code"] = code;
  j["error"]["status"] = http_status;
  j["error"]["message"] = message;
  std::vector<std::string> frames = route;
  frames.push_back(to_json(j));
  post(std::move(frames));
}

void ZmqServer::handle_message(std::vector<std::string>&& frames) {
  // ROUTER framing: [routing id, (empty delimiter if the client is REQ-like), payload].
  if (frames.size() < 2) return;
  std::vector<std::string> route(frames.begin(), frames.end() - 1);
  const std::string& payload = frames.back();
  if (payload.size() > ctx_->max_body_bytes) {
    return reply_error(route, "", Status::TooLarge("message of " + std::to_string(payload.size()) +
                                                   " bytes is over the limit of " + std::to_string(ctx_->max_body_bytes)));
  }
  auto parsed = parse_json(payload, "message");
  if (!parsed.ok()) return reply_error(route, "", parsed.status());
  const Json::Value& m = parsed.value();
  if (!m.isObject()) return reply_error(route, "", Status::InvalidArgument("message must be a JSON object"));
  if (!ctx_->api_key.empty()) {
    const Json::Value& key = m["api_key"];
    if (!key.isString() || !api_key_matches(key.asString(), ctx_->api_key)) {
      std::string id = m["id"].isString() ? m["id"].asString() : "";
      return reply_refusal(route, id, "UNAUTHENTICATED", 401,
                           key.isNull() ? "missing API key: the message needs \"api_key\"" : "invalid API key");
    }
  }
  if (!m["id"].isString() || m["id"].asString().empty()) {
    return reply_error(route, "", Status::InvalidArgument("'id' must be a non-empty string"));
  }
  const std::string id = m["id"].asString();
  const std::string key = frames.front() + "\n" + id;
  if (m.isMember("type") && !m["type"].isString()) {
    return reply_error(route, id, Status::InvalidArgument("'type' must be a string"));
  }
  std::string type = m.isMember("type") ? m["type"].asString() : "infer";

  if (type == "cancel") {
    std::shared_ptr<InflightRequest> request;
    bool pending = false;
    {
      std::lock_guard<std::mutex> lock(inflight_mu_);
      auto it = inflight_.find(key);
      if (it != inflight_.end()) {
        request = it->second.request;
        // Still being submitted: the submit thread cancels it as soon as it has a request.
        if (!request) it->second.cancel_requested = pending = true;
      }
    }
    if (request) request->cancel();  // its FINAL (CANCELLED) answers the cancel
    else if (!pending) FERRY_LOG(Verbose) << "ZeroMQ cancel for unknown or finished request '" << id << "'";
    return;
  }
  if (type != "infer") return reply_error(route, id, Status::InvalidArgument("unknown message type '" + type + "'"));
  if (!m["model"].isString()) return reply_error(route, id, Status::InvalidArgument("'model' must be a string"));
  std::string version;
  if (m.isMember("version")) {
    if (m["version"].isString()) version = m["version"].asString();
    else if (m["version"].isInt64()) version = std::to_string(m["version"].asInt64());
    else return reply_error(route, id, Status::InvalidArgument("'version' must be a string or an integer"));
  }
  auto spec = infer_request_from_parts(m["inputs"], m.isMember("parameters") ? &m["parameters"] : nullptr);
  if (!spec.ok()) return reply_error(route, id, spec.status());
  keep_output_format_text(payload, {"parameters"}, m["parameters"], &spec->parameters_json);
  spec->client_id = id;
  if (m.isMember("stream")) {
    if (!m["stream"].isBool()) return reply_error(route, id, Status::InvalidArgument("'stream' must be a boolean"));
    spec->stream = m["stream"].asBool();
  }
  if (m.isMember("priority")) {
    if (!m["priority"].isUInt()) return reply_error(route, id, Status::InvalidArgument("'priority' must be an integer >= 0"));
    spec->priority = m["priority"].asUInt();
  }
  if (m.isMember("timeout_us")) {
    if (!m["timeout_us"].isUInt64()) return reply_error(route, id, Status::InvalidArgument("'timeout_us' must be an integer >= 0"));
    spec->timeout_us = m["timeout_us"].asUInt64();
  }
  {
    std::lock_guard<std::mutex> lock(inflight_mu_);
    if (inflight_.count(key)) return reply_error(route, id, Status::InvalidArgument("request id '" + id + "' is already in flight"));
    inflight_[key] = Inflight{};  // reserve the id; a FINAL during submit erases it
  }
  const size_t lane = route.empty() ? 0 : std::hash<std::string>{}(route.front());
  enqueue_submit(lane, [this, route = std::move(route), id, key, model = m["model"].asString(), version = std::move(version),
                  spec = std::make_shared<RequestSpec>(std::move(spec.value()))]() mutable {
    submit_request(std::move(route), std::move(id), std::move(key), std::move(model), std::move(version),
                   std::move(*spec));
  });
}

void ZmqServer::submit_request(std::vector<std::string> route, std::string id, std::string key, std::string model,
                               std::string version, RequestSpec spec) {
  auto mv = ctx_->registry->find(model, version);
  if (!mv.ok()) {
    forget(key);
    return reply_error(route, id, mv.status());
  }
  auto sink = std::make_shared<ZmqSink>(this, route, id, key);
  sink->set_model(mv.value()->name(), mv.value()->version());
  auto request = mv.value()->submit(std::move(spec), sink);
  std::unique_lock<std::mutex> lock(inflight_mu_);
  if (!request.ok()) {
    inflight_.erase(key);
    lock.unlock();
    reply_error(route, id, request.status());
    return;
  }
  auto it = inflight_.find(key);
  if (it == inflight_.end()) return;  // already finished (its FINAL erased the entry)
  if (request.value()->finished()) {
    inflight_.erase(it);
    return;
  }
  it->second.request = request.value();
  const bool cancel = it->second.cancel_requested;
  lock.unlock();
  if (cancel) request.value()->cancel();
}

}  // namespace ferry::host
