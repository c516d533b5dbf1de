#include "perf/loadgen/driver.h"

#include <charconv>

#include "common/status.h"

namespace ferry::loadgen {
namespace {

constexpr const char* kIdPlaceholder = "@@FERRY_LOADGEN_ID@@";

}  // namespace

std::string_view string_member(const Json::Value& v, const char* key) {
  const Json::Value* m = v.isObject() ? v.find(key, key + std::char_traits<char>::length(key)) : nullptr;
  const char* begin = nullptr;
  const char* end = nullptr;
  if (m == nullptr || !m->isString() || !m->getString(&begin, &end)) return {};
  return {begin, static_cast<size_t>(end - begin)};
}

void RequestTemplate::render(std::string_view id, std::string& out) const {
  out.clear();
  out.append(head);
  out.append(id);
  out.append(tail);
}

RequestTemplate make_request_template(Json::Value message) {
  message["id"] = kIdPlaceholder;
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  std::string text = Json::writeString(w, message);
  size_t at = text.find(kIdPlaceholder);
  return {text.substr(0, at), text.substr(at + std::char_traits<char>::length(kIdPlaceholder))};
}

Json::Value echo_inputs(const LoadOptions& o) {
  Json::Value t;
  t["name"] = o.input_name;
  t["datatype"] = "BYTES";
  t["shape"].append(1);
  t["data"].append(o.prompt.empty() ? std::string(o.payload_bytes, 'x') : o.prompt);
  Json::Value inputs(Json::arrayValue);
  inputs.append(t);
  return inputs;
}

void format_id(std::string_view prefix, uint64_t a, uint64_t b, std::string& out) {
  char buf[48];
  char* p = std::to_chars(buf, buf + 20, a).ptr;
  *p++ = '-';
  p = std::to_chars(p, buf + sizeof(buf), b).ptr;
  out.assign(prefix);
  out.append(buf, static_cast<size_t>(p - buf));
}

std::string_view check_echo_outputs(const Json::Value& r, const LoadOptions& o) {
  if (!r.isObject()) return "response is not a JSON object";
  if (!o.prompt.empty()) return {};  // an LLM prompt: nothing is echoed
  const Json::Value* outputs = r.find("outputs", "outputs" + 7);
  if (outputs == nullptr || !outputs->isArray()) return "no 'outputs' array";
  for (const auto& t : *outputs) {
    if (string_member(t, "name") != o.input_name) continue;
    const Json::Value* data = t.find("data", "data" + 4);
    if (data == nullptr || !data->isArray() || data->size() != 1 || !(*data)[0].isString()) {
      return "echoed tensor has no one-string 'data'";
    }
    const char* begin = nullptr;
    const char* end = nullptr;
    (*data)[0].getString(&begin, &end);
    if (static_cast<size_t>(end - begin) != o.payload_bytes) return "echoed string has the wrong length";
    return {};
  }
  return "the echoed tensor is missing from 'outputs'";
}

int64_t count_output_ids(const Json::Value& r) {
  const Json::Value* outputs = r.isObject() ? r.find("outputs", "outputs" + 7) : nullptr;
  if (outputs == nullptr || !outputs->isArray()) return 0;
  for (const auto& t : *outputs) {
    if (string_member(t, "name") != "output_ids") continue;
    const Json::Value* data = t.find("data", "data" + 4);
    return data != nullptr && data->isArray() ? static_cast<int64_t>(data->size()) : 0;
  }
  return 0;
}

}  // namespace ferry::loadgen
