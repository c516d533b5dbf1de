// Shared bits of the integration tests: repositories on disk and JSON helpers.
#pragma once

#include <json/json.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "client/zmq_client.h"

#include "tests/host/test_util.h"

namespace ferry::testing {

inline const char* kEchoConfig = R"({"backend":"echo",
  "inputs":[{"name":"text_input","datatype":"BYTES","dims":[-1]}],
  "outputs":[{"name":"text_input","datatype":"BYTES","dims":[-1]}]})";

// Writes an echo model called `name` with versions `versions` into `repo`.
inline void add_echo_model(const std::string& repo, const std::string& name, std::initializer_list<int> versions = {1},
                           const std::string& config = kEchoConfig) {
  write_file(repo + "/" + name + "/config.json", config);
  for (int v : versions) write_file(repo + "/" + name + "/" + std::to_string(v) + "/.keep", "");
}

inline Json::Value parse(const std::string& text) {
  Json::CharReaderBuilder b;
  std::unique_ptr<Json::CharReader> r(b.newCharReader());
  Json::Value v;
  std::string errs;
  if (!r->parse(text.data(), text.data() + text.size(), &v, &errs)) return Json::Value("unparseable: " + text);
  return v;
}

inline std::string dump(const Json::Value& v) {
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  return Json::writeString(w, v);
}

// A JSON file's value (a string value naming the file when it cannot be read or parsed).
inline Json::Value read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return Json::Value("unreadable: " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str());
}

// The case called `name` of llama2.c's golden outputs (testdata llama2c-stories260K), or a null value.
inline const Json::Value& golden_case(const Json::Value& golden, const std::string& name) {
  for (const auto& c : golden["cases"]) {
    if (c["name"].asString() == name) return c;
  }
  static const Json::Value none;
  return none;
}

// Streams a long greedy generation of `model` over ZeroMQ (request id `id`), cancels it after its
// first response and returns the final message (empty when none came within 10 s).
inline Json::Value zmq_cancel_after_first_response(const std::string& endpoint, const std::string& model,
                                                   const std::string& id) {
  using namespace std::chrono_literals;
  client::ZmqClient zmq;
  if (!zmq.connect(endpoint).ok()) return Json::Value();
  Json::Value in = parse(R"([{"name":"input_ids","datatype":"INT32","shape":[1],"data":[1]}])");
  Json::Value p = parse(R"({"max_tokens":400,"temperature":0,"ignore_eos":true})");
  if (!zmq.send(client::ZmqClient::infer_message(id, model, in, p, true)).ok()) return Json::Value();
  if (!zmq.receive(10000ms).has_value()) return Json::Value();
  if (!zmq.send(client::ZmqClient::cancel_message(id)).ok()) return Json::Value();
  Json::Value last;
  while (auto r = zmq.receive(10000ms)) {
    last = *r;
    if (last["final"].asBool()) break;
  }
  return last;
}

// A KServe infer body with one BYTES input "text_input" holding `text`.
inline std::string infer_body(const std::string& text, const Json::Value& parameters = Json::Value()) {
  Json::Value b;
  Json::Value in;
  in["name"] = "text_input";
  in["datatype"] = "BYTES";
  in["shape"].append(1);
  in["data"].append(text);
  b["inputs"].append(in);
  if (!parameters.isNull()) b["parameters"] = parameters;
  return dump(b);
}

// Polls `pred` every 20 ms until it holds or `timeout` passes.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// Whether every LLM instance in a model's backend stats ("instances") had its idle KV consistency
// check after its last step, so that its "consistent" covers everything it ran.
inline bool consistency_checked_after_last_step(const Json::Value& backend_stats) {
  for (const auto& i : backend_stats["instances"])
    if (i["consistency_checked_at_step"].asInt64() != i["steps"].asInt64()) return false;
  return true;
}

}  // namespace ferry::testing
