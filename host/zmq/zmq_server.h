// The ZeroMQ frontend: one ROUTER socket, one JSON request per message, streamed JSON responses
// with a final flag, and cancel messages; docs/zmq-protocol.md is the protocol. With an API key in
// the context every message must carry it ("api_key"); optionally CURVE-encrypted
// (docs/security.md).
//
// One thread owns the socket. Responses come from backend threads as encoded messages through a
// mutex-protected outbox and an eventfd that wakes the socket thread, so no backend thread ever
// touches the socket. The socket thread only reads, checks and routes messages: an infer message
// is handed to a few submit threads, because a backend's submit may take long (a long prompt's chat
// template and tokenization) and must not stall other clients or their cancels.
// Thread-safety: start/stop from one thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "host/model_version.h"
#include "host/server_context.h"

namespace ferry::host {

class InflightRequest;

class ZmqServer {
 public:
  explicit ZmqServer(ServerContext* ctx) : ctx_(ctx) {}
  ~ZmqServer() { stop(); }

  // Binds `endpoint` (tcp port 0 or * picks a free port) and starts the socket thread. With a
  // `curve_secret_key_file` (Z85), the socket is a CURVE server: traffic is encrypted and clients
  // must know the server's public key (logged). NotFound / InvalidArgument for a bad key file,
  // Unimplemented when libzmq lacks CURVE, Unavailable when the bind fails.
  Status start(const std::string& endpoint, const std::string& curve_secret_key_file = "");
  // The endpoint actually bound, e.g. tcp://127.0.0.1:40123.
  const std::string& endpoint() const { return bound_endpoint_; }
  // Sends what is queued, then stops and closes the socket.
  void stop();

  // A message to send: routing frames then the payload. Called from any thread.
  void post(std::vector<std::string> frames);
  // Forgets a finished request (called when its FINAL has been queued).
  void forget(const std::string& key);

 private:
  void run();
  void handle_message(std::vector<std::string>&& frames);
  void reply_error(const std::vector<std::string>& route, const std::string& id, const Status& status);
  void reply_refusal(const std::vector<std::string>& route, const std::string& id, const char* code, int http_status,
                     const std::string& message);
  void flush_outbox();
  // Runs `task` on submit thread `lane % kNumSubmitThreads`, after the tasks queued there before it.
  // The socket thread uses the client's routing id as the lane, so one client's requests are
  // submitted in the order they arrived (FCFS within a priority holds per client) while different
  // clients' submits run in parallel.
  void enqueue_submit(size_t lane, std::function<void()> task);
  void submit_loop(size_t lane);
  // The submit-thread half of an infer message: finds the model and submits. `key` is reserved in
  // inflight_.
  void submit_request(std::vector<std::string> route, std::string id, std::string key, std::string model,
                      std::string version, RequestSpec spec);

  ServerContext* ctx_;
  void* zmq_ctx_ = nullptr;
  void* socket_ = nullptr;
  int wake_fd_ = -1;
  std::string bound_endpoint_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  std::mutex out_mu_;
  std::deque<std::vector<std::string>> outbox_;  // guarded by out_mu_

  // Submit threads: enough that one long prompt does not hold back the next client's request; the
  // backend bounds the real concurrency of prompt processing.
  static constexpr size_t kNumSubmitThreads = 4;
  std::vector<std::thread> submitters_;
  std::mutex submit_mu_;
  std::condition_variable submit_cv_[kNumSubmitThreads];
  std::deque<std::function<void()>> submit_queue_[kNumSubmitThreads];  // guarded by submit_mu_
  bool submit_stop_ = false;                                           // guarded by submit_mu_

  struct Inflight {
    std::shared_ptr<InflightRequest> request;  // null while its submit is queued or running
    bool cancel_requested = false;             // a cancel came before the submit returned
  };
  std::mutex inflight_mu_;
  // Requests in flight by "<routing id>\n<client request id>", for cancel and duplicate checks.
  std::map<std::string, Inflight> inflight_;  // guarded by inflight_mu_
};

}  // namespace ferry::host
