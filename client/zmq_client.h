// A small C++ client for ferry's ZeroMQ protocol (docs/zmq-protocol.md), used by the tests and by
// perf/. One DEALER socket; many requests may be in flight, their responses interleave and carry
// the request id. Not thread-safe: use one ZmqClient per thread.
#pragma once

#include <json/json.h>

#include <chrono>
#include <optional>
#include <string>

#include "common/status.h"

namespace ferry::client {

class ZmqClient {
 public:
  ZmqClient();
  ~ZmqClient();
  ZmqClient(const ZmqClient&) = delete;
  ZmqClient& operator=(const ZmqClient&) = delete;

  // Before connect: encrypt with CURVE to a server whose public key (Z85, 40 characters) is
  // `server_public_key`; the client uses a fresh key pair of its own. InvalidArgument for a bad
  // key, Unimplemented when libzmq lacks CURVE.
  Status use_curve(const std::string& server_public_key);
  // Adds "api_key": `key` to every message send() sends (not to send_raw).
  void set_api_key(std::string key) { api_key_ = std::move(key); }
  Status connect(const std::string& endpoint);
  // Sends one message (a JSON object, or raw bytes for tests of malformed input).
  Status send(const Json::Value& message);
  Status send_raw(const std::string& payload);
  // Waits up to `timeout` for the next response; nullopt on timeout.
  std::optional<Json::Value> receive(std::chrono::milliseconds timeout);
  // Receives one request's responses up to its FINAL and joins the strings of their text_output
  // tensors (an LLM's streamed or whole text). nullopt when a response takes longer than `timeout`
  // or is an error; *last then holds the last response received (null on a timeout before any).
  std::optional<std::string> receive_text(std::chrono::milliseconds timeout, Json::Value* last = nullptr);

  // Builds an infer message: {"type":"infer","id","model","inputs","parameters","stream"}.
  static Json::Value infer_message(const std::string& id, const std::string& model, const Json::Value& inputs,
                                   const Json::Value& parameters, bool stream);
  static Json::Value cancel_message(const std::string& id);

 private:
  void* ctx_ = nullptr;
  void* socket_ = nullptr;
  std::string api_key_;
};

}  // namespace ferry::client
