// HTTP driver: one thread and one keep-alive HttpClient (libcurl) per unit of concurrency, each in a
// closed loop: send, wait for the whole answer, check it, send the next. Requests are handed out by a
// shared counter, so a slow connection simply takes fewer of them.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "client/http_client.h"
#include "perf/loadgen/driver.h"

namespace ferry::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

class HttpDriver : public Driver {
 public:
  explicit HttpDriver(const LoadOptions& options) : o_(options) {}

  Status connect() override {
    // libcurl connects on the first request; the warm-up phase is what opens the connections.
    for (int i = 0; i < o_.concurrency; ++i) clients_.push_back(std::make_unique<client::HttpClient>(o_.url));
    if (o_.path.empty()) {
      path_ = "/v2/models/" + o_.model + "/infer";
      Json::Value body;
      body["inputs"] = echo_inputs(o_);
      body["parameters"] = Json::Value(Json::objectValue);
      template_ = make_request_template(body);
    } else {
      path_ = o_.path;
    }
    id_prefix_ = "lg" + std::to_string(::getpid()) + "-";
    return Status::Ok();
  }

  int num_threads() const override { return o_.concurrency; }

  void run_phase(uint64_t num_requests, std::vector<WorkerTally>& tallies, Progress& progress) override {
    std::atomic<uint64_t> next{0};
    const uint64_t phase = phase_++;
    std::vector<std::thread> threads;
    threads.reserve(clients_.size());
    for (size_t i = 0; i < clients_.size(); ++i) {
      threads.emplace_back([&, i] { worker(*clients_[i], phase, num_requests, next, tallies[i], progress); });
    }
    for (auto& t : threads) t.join();
  }

 private:
  void worker(client::HttpClient& client, uint64_t phase, uint64_t num_requests, std::atomic<uint64_t>& next,
              WorkerTally& tally, Progress& progress) {
    Json::CharReaderBuilder builder;
    std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
    Json::Value response;
    std::string id, body, errors;
    id.reserve(64);
    body.reserve(template_.head.size() + template_.tail.size() + 64);
    for (;;) {
      const uint64_t k = next.fetch_add(1, std::memory_order_relaxed);
      if (k >= num_requests) break;
      bool ok = false;
      Clock::time_point start;
      client::HttpResult r;
      if (o_.path.empty()) {
        format_id(id_prefix_, phase, k, id);
        template_.render(id, body);
        start = Clock::now();
        r = client.post(path_, body);
      } else {
        start = Clock::now();
        r = client.get(path_);
      }
      const auto elapsed = Clock::now() - start;
      if (!r.error.empty() || r.status == 0) {
        tally.fail(ErrorKind::kTransport, r.error);
      } else if (r.status != 200) {
        tally.fail(ErrorKind::kHttpStatus, "HTTP " + std::to_string(r.status) + ": " + r.body);
      } else if (!reader->parse(r.body.data(), r.body.data() + r.body.size(), &response, &errors)) {
        tally.fail(ErrorKind::kBadBody, "unparseable JSON: " + errors);
      } else if (o_.path.empty() && string_member(response, "id") != id) {
        tally.fail(ErrorKind::kIdMismatch, "sent id '" + id + "', got '" + std::string(string_member(response, "id")) + "'");
      } else if (auto problem = o_.path.empty() ? check_echo_outputs(response, o_) : std::string_view();
                 !problem.empty()) {
        tally.fail(ErrorKind::kBadBody, problem);
      } else {
        ok = true;
        tally.latencies_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
      }
      progress.num_done.fetch_add(1, std::memory_order_relaxed);
      if (!ok) progress.num_errors.fetch_add(1, std::memory_order_relaxed);
    }
  }

  const LoadOptions& o_;
  std::vector<std::unique_ptr<client::HttpClient>> clients_;
  std::string path_;
  RequestTemplate template_;
  std::string id_prefix_;
  uint64_t phase_ = 0;
};

}  // namespace

std::unique_ptr<Driver> make_http_driver(const LoadOptions& options) { return std::make_unique<HttpDriver>(options); }

}  // namespace ferry::loadgen
