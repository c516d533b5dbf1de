// ZeroMQ driver: S DEALER sockets (ZmqClient), one thread each, with C/S requests in flight on each
// (the remainder spread over the first sockets). The protocol multiplexes by request id, so a socket
// does not need to wait for one answer before sending the next request; one thread per in-flight
// request (64 sockets, 64 libzmq I/O threads) would spend the client's share of the CPU on context
// switches instead. Each in-flight request lives in a slot whose index is part of its id, so an
// answer finds its request without a map: "<prefix><slot>-<seq>".
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <memory>
#include <thread>

#include "client/zmq_client.h"
#include "perf/loadgen/driver.h"

namespace ferry::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

struct Slot {
  std::string id;           // id of the request in flight here
  Clock::time_point sent;
  bool busy = false;
  bool failed = false;      // already counted as an error; its FINAL only frees the slot
};

class ZmqDriver : public Driver {
 public:
  explicit ZmqDriver(const LoadOptions& options) : o_(options) {}

  Status connect() override {
    for (int s = 0; s < o_.num_zmq_sockets; ++s) {
      auto c = std::make_unique<client::ZmqClient>();
      Status st = c->connect(o_.endpoint);
      if (!st.ok()) return st;
      clients_.push_back(std::move(c));
    }
    Json::Value parameters(Json::objectValue);
    if (!o_.parameters_json.empty()) {
      Json::CharReaderBuilder b;
      std::string errors;
      std::unique_ptr<Json::CharReader> reader(b.newCharReader());
      const char* text = o_.parameters_json.data();
      if (!reader->parse(text, text + o_.parameters_json.size(), &parameters, &errors) || !parameters.isObject()) {
        return Status::InvalidArgument("--parameters: not a JSON object: " + errors);
      }
    }
    template_ = make_request_template(client::ZmqClient::infer_message("", o_.model, echo_inputs(o_), parameters, o_.stream));
    return Status::Ok();
  }

  int num_threads() const override { return o_.num_zmq_sockets; }

  void run_phase(uint64_t num_requests, std::vector<WorkerTally>& tallies, Progress& progress) override {
    std::atomic<uint64_t> next{0};
    const uint64_t phase = phase_++;
    const int num_sockets = o_.num_zmq_sockets;
    std::vector<std::thread> threads;
    threads.reserve(clients_.size());
    for (int s = 0; s < num_sockets; ++s) {
      int depth = o_.concurrency / num_sockets + (s < o_.concurrency % num_sockets ? 1 : 0);
      std::string prefix =
          "lg" + std::to_string(::getpid()) + "p" + std::to_string(phase) + "s" + std::to_string(s) + "-";
      threads.emplace_back([&, s, depth, prefix] {
        worker(*clients_[s], prefix, depth, num_requests, next, tallies[s], progress);
      });
    }
    for (auto& t : threads) t.join();
  }

 private:
  void worker(client::ZmqClient& client, const std::string& prefix, int depth, uint64_t num_requests,
              std::atomic<uint64_t>& next, WorkerTally& tally, Progress& progress) {
    std::vector<Slot> slots(static_cast<size_t>(depth));
    std::string message;
    message.reserve(template_.head.size() + template_.tail.size() + 64);
    for (auto& s : slots) s.id.reserve(64);
    int num_busy = 0;

    auto finish = [&](bool ok) {
      progress.num_done.fetch_add(1, std::memory_order_relaxed);
      if (!ok) progress.num_errors.fetch_add(1, std::memory_order_relaxed);
    };
    // Sends the next request (if any are left) in slot i; a failed send counts and tries the next.
    auto refill = [&](size_t i) {
      Slot& slot = slots[i];
      slot.busy = false;
      for (;;) {
        const uint64_t k = next.fetch_add(1, std::memory_order_relaxed);
        if (k >= num_requests) return;
        format_id(prefix, i, k, slot.id);
        template_.render(slot.id, message);
        slot.sent = Clock::now();
        Status st = client.send_raw(message);
        if (st.ok()) {
          slot.busy = true;
          slot.failed = false;
          return;
        }
        tally.fail(ErrorKind::kTransport, st.message());
        finish(false);
      }
    };

    for (size_t i = 0; i < slots.size(); ++i) {
      refill(i);
      if (slots[i].busy) ++num_busy;
    }
    const auto timeout = std::chrono::milliseconds(o_.timeout_ms);
    while (num_busy > 0) {
      std::optional<Json::Value> r = client.receive(timeout);
      const auto now = Clock::now();
      if (!r) {
        // The server went silent: every request still out on this socket fails, and the socket stops.
        for (auto& s : slots) {
          if (!s.busy) continue;
          if (!s.failed) {
            tally.fail(ErrorKind::kTimeout, "no answer to '" + s.id + "' within " + std::to_string(o_.timeout_ms) + " ms");
            finish(false);
          }
          s.busy = false;
        }
        return;
      }
      const std::string_view id = string_member(*r, "id");
      size_t i = slots.size();
      if (id.size() > prefix.size() && id.compare(0, prefix.size(), prefix) == 0) {
        std::from_chars(id.data() + prefix.size(), id.data() + id.size(), i);
      }
      if (i >= slots.size() || !slots[i].busy || slots[i].id != id) {
        // Cannot be tied to a request in flight (e.g. an error answer to an unparseable message).
        tally.fail(ErrorKind::kIdMismatch, "response with unexpected id '" + std::string(id) + "'");
        continue;
      }
      Slot& slot = slots[i];
      const Json::Value& j = *r;
      const bool final = j.isMember("final") && j["final"].isBool() && j["final"].asBool();
      const bool error = j.isMember("error") || j.isMember("client_error");
      if (o_.stream && !error) tally.num_output_tokens += static_cast<uint64_t>(count_output_ids(j));
      if (!final && !error && o_.stream) continue;  // one of a stream's responses
      if (!final && !error) {
        // A non-streaming request must get exactly one, FINAL, response; keep waiting for it.
        if (!slot.failed) {
          tally.fail(ErrorKind::kNotFinal, "non-FINAL response to a non-streaming request");
          finish(false);
          slot.failed = true;
        }
        continue;
      }
      if (!slot.failed) {
        bool ok = false;
        if (j.isMember("client_error")) {
          tally.fail(ErrorKind::kBadBody, j["client_error"].asString());
        } else if (j.isMember("error")) {
          const Json::Value& e = j["error"];
          tally.fail(ErrorKind::kErrorResponse, e.isObject() ? std::string(string_member(e, "code")) + ": " +
                                                                   std::string(string_member(e, "message"))
                                                             : "malformed 'error' member");
        } else if (auto problem = check_echo_outputs(j, o_); !problem.empty()) {
          tally.fail(ErrorKind::kBadBody, problem);
        } else {
          ok = true;
          tally.latencies_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - slot.sent).count());
        }
        finish(ok);
      }
      refill(i);
      if (!slots[i].busy) --num_busy;
    }
  }

  const LoadOptions& o_;
  std::vector<std::unique_ptr<client::ZmqClient>> clients_;
  RequestTemplate template_;
  uint64_t phase_ = 0;
};

}  // namespace

std::unique_ptr<Driver> make_zmq_driver(const LoadOptions& options) { return std::make_unique<ZmqDriver>(options); }

}  // namespace ferry::loadgen
