// EchoModel: the model of libferry_echo.so. It answers every request with its own inputs as
// outputs, which proves the ABI end to end and lets tests drive the host through parameters:
//   "responses": N   number of responses to stream (default 1; the last one is FINAL)
//   "delay_ms": D    delay before each response (default 0)
//   "error": "msg"   fail the request with this message (code "error_code", default INTERNAL)
//   "error_code": "INVALID_ARGUMENT" | "UNAVAILABLE" | ... (see ferry_error_code names)
// Without the STREAM flag the whole answer comes as one FINAL response after N * D ms.
//
// Thread-safety: submit, cancel, describe are safe from any thread. One worker thread per model
// delivers the responses in due-time order, calling the host's respond without holding the
// model's lock.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/abi/abi_util.h"
#include "common/status.h"
#include "ferry/ferry.h"

namespace ferry::echo {

struct EchoConfig {
  // KServe metadata reported by describe(); from the config's "inputs"/"outputs" lists.
  std::string inputs_json = "[]";
  std::string outputs_json = "[]";
  static Result<EchoConfig> parse(const std::string& json);
};

class EchoModel {
 public:
  EchoModel(const ferry_host_api* host, std::string name, int64_t version, EchoConfig config);
  ~EchoModel();  // cancels what is left, delivers every FINAL, joins the worker
  EchoModel(const EchoModel&) = delete;
  EchoModel& operator=(const EchoModel&) = delete;

  Status submit(const ferry_request& request, ferry_responder* responder);
  bool cancel(uint64_t request_id);
  std::string describe(ferry_describe_kind kind) const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    uint64_t id = 0;
    ferry_responder* responder = nullptr;
    std::vector<abi::OwnedTensor> inputs;
    int remaining = 1;  // responses still to send
    bool stream = false;
    std::chrono::milliseconds delay{0};
    Status forced_error;
    bool cancelled = false;
    Clock::time_point submitted;
  };

  void run();
  // Whether the next response of `p` is its FINAL (`cancel`: it answers a cancel).
  static bool next_is_final(const Pending& p, bool cancel);
  // Sends the next response of `p`: CANCELLED when `cancel`, else its error or its echo.
  void send_next(Pending& p, bool cancel);

  const ferry_host_api* host_;
  std::string name_;
  int64_t version_;
  EchoConfig config_;
  ferry_metric* requests_metric_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                                       // guarded by mu_
  std::map<uint64_t, std::unique_ptr<Pending>> pending_;        // guarded by mu_; by request id
  std::multimap<Clock::time_point, uint64_t> due_;              // guarded by mu_; next response times
  std::atomic<uint64_t> num_submitted_{0}, num_completed_{0}, num_cancelled_{0}, num_failed_{0};
  std::thread worker_;
};

}  // namespace ferry::echo
