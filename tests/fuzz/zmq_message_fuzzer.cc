// Fuzzes ZeroMQ request messages through a real ZmqServer: the input is one message's payload,
// sent from a DEALER socket to the server's ROUTER over ipc://, so it takes the server's own path
// (ZmqServer::handle_message: size limit, parse_json, id/type/model/version/stream/priority checks,
// infer_request_from_parts) on the server's socket thread. The registry has no models, so a valid
// request ends in a NotFound reply instead of a backend: the parsing is what is fuzzed here.
//
// Each input is followed by a sentinel message that the server always refuses; receiving the
// sentinel's reply means the input was handled (replies keep message order), so every input is
// processed before the next one and a crash is blamed on the right input. The first input byte
// picks the framing: bit 0 adds the empty delimiter frame a REQ-style client sends.
//
// The same bytes also go through parse_json + infer_request_from_parts in this thread, so the
// parsing functions' coverage is attributed to the input even when the server thread is slow.
#include <zmq.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "host/host_api.h"
#include "host/http/kserve_json.h"
#include "host/json_util.h"
#include "host/log.h"
#include "host/metrics.h"
#include "host/model_registry.h"
#include "host/zmq/zmq_server.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace ferry::host;


// The server and a connected client, made once per process.
struct Harness {
  MetricsRegistry metrics;
  HostApi host_api{&metrics};
  BackendManager backends{(ferry::fuzz::scratch_dir() / "backends").string(), host_api.get()};
  std::unique_ptr<ModelRegistry> registry;
  ServerContext ctx;
  std::unique_ptr<ZmqServer> server;
  void* client_ctx = nullptr;
  void* client = nullptr;

  Harness() {
    set_log_level(LogLevel::kError);
    auto repo = ferry::fuzz::scratch_dir() / "repository";
    std::filesystem::create_directories(repo);
    registry = std::make_unique<ModelRegistry>(repo.string(), ModelControlMode::kExplicit, &backends, &metrics,
                                               std::chrono::milliseconds(100));
    registry->start({});
    ctx.registry = registry.get();
    ctx.metrics = &metrics;
    ctx.max_body_bytes = 1 << 16;  // small, so that the size limit is reachable too
    server = std::make_unique<ZmqServer>(&ctx);
    std::string endpoint = "ipc://" + (ferry::fuzz::scratch_dir() / "zmq.sock").string();
    ferry::Status s = server->start(endpoint);
    FUZZ_CHECK(s.ok(), "ZmqServer::start: %s", s.message().c_str());
    client_ctx = zmq_ctx_new();
    client = zmq_socket(client_ctx, ZMQ_DEALER);
    int timeout_ms = 10000;
    zmq_setsockopt(client, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    FUZZ_CHECK(zmq_connect(client, server->endpoint().c_str()) == 0, "connect %s", server->endpoint().c_str());
  }
  ~Harness() {
    zmq_close(client);
    zmq_ctx_term(client_ctx);
    server->stop();
    registry->shutdown(std::chrono::milliseconds(100));
  }

  void send(std::string_view payload, bool delimiter) {
    if (delimiter) send_frame("", ZMQ_SNDMORE);
    send_frame(payload, 0);
  }
  void send_frame(std::string_view frame, int flags) {
    int rc;
    while ((rc = zmq_send(client, frame.data(), frame.size(), flags)) < 0 && zmq_errno() == EINTR) {
    }
    FUZZ_CHECK(rc == static_cast<int>(frame.size()), "zmq_send: %s", zmq_strerror(zmq_errno()));
  }

  // Reads replies until the one to sentinel `id`; false on a timeout (the server thread hung or died).
  bool drain_until_sentinel(const std::string& id) {
    for (;;) {
      std::string last;
      for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        int rc;
        // libFuzzer's -timeout alarm (SIGALRM) interrupts the wait; that is not a timeout of ours.
        while ((rc = zmq_msg_recv(&msg, client, 0)) < 0 && zmq_errno() == EINTR) {
        }
        if (rc < 0) {
          zmq_msg_close(&msg);
          return false;
        }
        last.assign(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
        bool more = zmq_msg_more(&msg);
        zmq_msg_close(&msg);
        if (!more) break;
      }
      // Every reply the server sends is one JSON object with "final".
      auto reply = parse_json(last, "reply");
      FUZZ_CHECK(reply.ok() && reply->isObject() && (*reply)["final"].isBool(), "bad reply: %s", last.c_str());
      if ((*reply)["id"] == id) return true;
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness* harness = new Harness();  // leaked on purpose: the server runs until exit
  if (size == 0) return 0;
  bool delimiter = data[0] & 1;
  std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);

  auto m = parse_json(payload, "message");
  if (m.ok() && m->isObject()) {
    const Json::Value& v = m.value();
    (void)infer_request_from_parts(v["inputs"], v.isMember("parameters") ? &v["parameters"] : nullptr);
  }

  harness->send(payload, delimiter);
  // Refused by the server ('model' must be a string); a counter keeps it apart from any fuzzed id.
  static uint64_t count = 0;
  std::string sentinel_id = "fuzz-sentinel-" + std::to_string(++count);
  harness->send(R"({"id":")" + sentinel_id + R"(","model":7})", false);
  FUZZ_CHECK(harness->drain_until_sentinel(sentinel_id), "no reply from the ZeroMQ server within 10 s");
  return 0;
}
