#include "host/json_util.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <vector>

#include "common/json_parse.h"
#include "common/json_writer.h"
#include "common/llm_protocol.h"

namespace ferry::host {
namespace {

// jsoncpp keeps a builder's settings in a Json::Value and reads them back each time it makes a
// writer; making one per call cost more than writing a whole small request. Writers are not
// thread-safe, so each thread makes its own once and reuses it.

Json::StreamWriter& compact_writer() {
  thread_local const std::unique_ptr<Json::StreamWriter> writer = [] {
    Json::StreamWriterBuilder builder;
    builder["indentation"] = "";
    builder["emitUTF8"] = true;
    return std::unique_ptr<Json::StreamWriter>(builder.newStreamWriter());
  }();
  return *writer;
}

}  // namespace

Result<Json::Value> parse_json(std::string_view text, const std::string& what) {
  auto value = parse_json_text(text);
  if (!value.ok()) return Status::InvalidArgument(what + ": malformed JSON: " + value.status().message());
  return value;
}

std::string to_json(const Json::Value& value) {
  std::ostringstream out;
  compact_writer().write(value, &out);
  return std::move(out).str();
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void append_json_ordered(std::string& out, const Json::Value& value, std::optional<std::string_view> guide) {
  if (value.isObject()) {
    struct Key {
      size_t at;  // where the key's value starts in the guide; SIZE_MAX: not in it
      std::string name;
      std::optional<std::string_view> sub;
    };
    std::vector<Key> keys;
    for (const std::string& name : value.getMemberNames()) {  // sorted
      std::optional<std::string_view> sub = guide ? raw_json_member(*guide, {name}) : std::nullopt;
      keys.push_back({sub ? static_cast<size_t>(sub->data() - guide->data()) : SIZE_MAX, name, sub});
    }
    std::stable_sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) { return a.at < b.at; });
    out.push_back('{');
    for (size_t i = 0; i < keys.size(); ++i) {
      if (i > 0) out.push_back(',');
      append_json_key(out, keys[i].name);
      append_json_ordered(out, value[keys[i].name], keys[i].sub);
    }
    out.push_back('}');
  } else if (value.isArray()) {
    std::optional<std::vector<std::string_view>> elements = guide ? raw_json_elements(*guide) : std::nullopt;
    out.push_back('[');
    for (Json::ArrayIndex i = 0; i < value.size(); ++i) {
      if (i > 0) out.push_back(',');
      std::optional<std::string_view> sub;
      if (elements && i < elements->size()) sub = (*elements)[i];
      append_json_ordered(out, value[i], sub);
    }
    out.push_back(']');
  } else {
    out += to_json(value);
  }
}

void keep_output_format_text(std::string_view source, std::initializer_list<std::string_view> source_path,
                             const Json::Value& parsed, std::string* params_json) {
  // Only a request with a schema pays for the scans of its text (a long prompt is a long body).
  const bool any = parsed.isObject() && std::any_of(std::begin(llm_protocol::kSchemaFormatKeys),
                                                    std::end(llm_protocol::kSchemaFormatKeys),
                                                    [&](const char* key) { return parsed.isMember(key); });
  if (!any) return;
  auto object = raw_json_member(source, source_path);
  if (!object) return;
  for (std::string_view key : llm_protocol::kSchemaFormatKeys) {
    auto from = raw_json_member(*object, {key});
    if (!from) continue;
    auto to = raw_json_member(*params_json, {key});
    if (!to) continue;
    const size_t at = static_cast<size_t>(to->data() - params_json->data());
    params_json->replace(at, to->size(), from->data(), from->size());
  }
}

}  // namespace ferry::host
