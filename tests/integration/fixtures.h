// Shared bits of the integration tests: repositories on disk and JSON helpers.
#pragma once

#include <json/json.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

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

}  // namespace ferry::testing
