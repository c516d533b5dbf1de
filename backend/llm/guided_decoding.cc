#include "backend/llm/guided_decoding.h"

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>

#include "common/json_parse.h"
#include "common/llm_protocol.h"

namespace ferry::llm {
namespace {

Status bad(const std::string& field, const std::string& what) {
  return Status::InvalidArgument("parameter '" + field + "' " + what);
}

// A JSON Schema given as an object, or as a string that holds one (vLLM accepts both). `raw`: the
// object's text as the request wrote it, when known, so that properties keep their order (a
// parsed Json::Value sorts them; OpenAI generates them in the schema's order, and a "reasoning"
// property written before "answer" should come first).
Result<std::string> schema_gbnf(const std::string& field, const Json::Value& v, std::optional<std::string_view> raw) {
  std::string text;
  if (v.isString()) {
    text = v.asString();
    auto parsed = parse_json_text(text);
    if (!parsed.ok()) return bad(field, "is not valid JSON: " + parsed.status().message());
    if (!parsed->isObject() && !parsed->isBool()) return bad(field, "must be a JSON Schema (an object)");
  } else if (!v.isObject() && !v.isBool()) {
    return bad(field, "must be a JSON Schema (an object)");
  }
  auto gbnf = !text.empty() ? grammar::json_schema_text_to_gbnf(text)
              : raw          ? grammar::json_schema_text_to_gbnf(*raw)
                             : grammar::json_schema_to_gbnf(v);
  if (!gbnf.ok()) return gbnf.status().with_prefix("parameter '" + field + "'");
  return gbnf;
}

Result<std::string> string_field(const std::string& field, const Json::Value& v) {
  if (!v.isString() || v.asString().empty()) return bad(field, "must be a non-empty string");
  return v.asString();
}

Result<std::string> regex_gbnf(const std::string& field, const Json::Value& v) {
  auto re = string_field(field, v);
  if (!re.ok()) return re.status();
  auto gbnf = grammar::regex_to_gbnf(re.value());
  if (!gbnf.ok()) return gbnf.status().with_prefix("parameter '" + field + "'");
  return gbnf;
}

Result<std::string> choice_gbnf(const std::string& field, const Json::Value& v) {
  if (!v.isArray() || v.empty()) return bad(field, "must be a non-empty list of strings");
  std::vector<std::string> choices;
  for (const Json::Value& c : v) {
    if (!c.isString()) return bad(field, "must be a non-empty list of strings");
    choices.push_back(c.asString());
  }
  auto gbnf = grammar::choice_to_gbnf(choices);
  if (!gbnf.ok()) return gbnf.status().with_prefix("parameter '" + field + "'");
  return gbnf;
}

Result<std::string> response_format_gbnf(const Json::Value& f, std::string_view text) {
  const std::string field = "response_format";
  if (!f.isObject() || !f["type"].isString()) return bad(field, "must be an object with a 'type'");
  const std::string type = f["type"].asString();
  if (type == "text") return std::string();
  if (type == "json_object") return grammar::json_object_gbnf();
  if (type != "json_schema") return bad(field, "has type '" + type + "': expected text, json_object or json_schema");
  const Json::Value& js = f["json_schema"];
  if (!js.isObject()) return bad(field, "of type json_schema needs a 'json_schema' object");
  if (js.isMember("strict") && !js["strict"].isNull() && !js["strict"].isBool()) {
    return bad(field + ".json_schema.strict", "must be true or false");
  }
  // OpenAI names the schema "schema"; a few clients send "json_schema" inside it again.
  const char* key = js.isMember("schema") ? "schema" : "json_schema";
  const Json::Value& schema = js[key];
  if (schema.isNull()) return grammar::json_object_gbnf();
  return schema_gbnf(field + ".json_schema.schema", schema, raw_json_member(text, {field, "json_schema", key}));
}

Result<std::string> structured_outputs_gbnf(const Json::Value& s, std::string_view text) {
  const std::string field = "structured_outputs";
  if (!s.isObject()) return bad(field, "must be an object");
  std::vector<std::string> keys;
  for (const char* k : {"json", "regex", "choice", "grammar", "json_object"}) {
    if (s.isMember(k) && !s[k].isNull()) keys.push_back(k);
  }
  if (keys.size() > 1) return bad(field, "must hold exactly one of json, regex, choice, grammar, json_object");
  if (keys.empty()) return std::string();
  const std::string& k = keys[0];
  const std::string name = field + "." + k;
  if (k == "json") return schema_gbnf(name, s[k], raw_json_member(text, {field, "json"}));
  if (k == "regex") return regex_gbnf(name, s[k]);
  if (k == "choice") return choice_gbnf(name, s[k]);
  if (k == "grammar") return string_field(name, s[k]);
  if (!s[k].isBool()) return bad(name, "must be true or false");
  return s[k].asBool() ? grammar::json_object_gbnf() : std::string();
}

}  // namespace

Result<std::string> guided_gbnf(const Json::Value& p, std::string_view text) {
  if (!p.isObject()) return std::string();
  const char* given = nullptr;
  for (const char* f : llm_protocol::kOutputFormatKeys) {
    if (!p.isMember(f) || p[f].isNull()) continue;
    // response_format {"type": "text"} asks for nothing and may come with another field.
    if (std::string_view(f) == "response_format" && p[f].isObject() && p[f]["type"].isString() &&
        p[f]["type"].asString() == "text") {
      continue;
    }
    if (given != nullptr) {
      return Status::InvalidArgument(std::string("parameters '") + given + "' and '" + f +
                                     "' both ask for an output format: give at most one");
    }
    given = f;
  }
  const char* engine = llm_protocol::kGuidedDecodingBackend;
  if (p.isMember(engine) && !p[engine].isNull() && !p[engine].isString()) return bad(engine, "must be a string");
  if (given == nullptr) return std::string();
  const std::string f = given;
  const Json::Value& v = p[f];
  if (f == "response_format") return response_format_gbnf(v, text);
  if (f == "guided_json" || f == "json_schema") return schema_gbnf(f, v, raw_json_member(text, {f}));
  if (f == "guided_regex") return regex_gbnf(f, v);
  if (f == "guided_choice") return choice_gbnf(f, v);
  if (f == "structured_outputs") return structured_outputs_gbnf(v, text);
  return string_field(f, v);  // guided_grammar, grammar: GBNF
}

GuidedDecoding::GuidedDecoding(const Tokenizer& tokenizer, int32_t vocab_size, std::vector<int32_t> end_ids,
                               size_t cache_capacity)
    : tokenizer_(tokenizer), vocab_size_(vocab_size), end_ids_(std::move(end_ids)), capacity_(std::max<size_t>(1, cache_capacity)) {}

std::shared_ptr<const grammar::TokenVocabulary> GuidedDecoding::vocabulary() {
  std::lock_guard<std::mutex> lock(mu_);
  if (vocab_ == nullptr) {
    std::vector<std::string> bytes = tokenizer_.token_bytes_table();
    bytes.resize(static_cast<size_t>(std::max<int32_t>(vocab_size_, 0)));  // logits past the tokenizer: no bytes
    std::vector<int32_t> ends;
    for (int32_t id : end_ids_) {
      if (id >= 0 && id < vocab_size_) ends.push_back(id);
    }
    vocab_ = grammar::TokenVocabulary::build(std::move(bytes), std::move(ends));
  }
  return vocab_;
}

Result<std::shared_ptr<const grammar::Grammar>> GuidedDecoding::compile(const std::string& gbnf) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(gbnf);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  // Compiled outside the lock: another request's compile of another grammar need not wait.
  auto compiled = grammar::compile_gbnf(gbnf);
  if (!compiled.ok()) return compiled.status();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(gbnf);
  if (it != index_.end()) return it->second->second;  // raced: keep the first
  lru_.emplace_front(gbnf, compiled.value());
  index_.emplace(lru_.front().first, lru_.begin());
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return compiled.value();
}

std::unique_ptr<grammar::Matcher> GuidedDecoding::matcher(std::shared_ptr<const grammar::Grammar> g) {
  return std::make_unique<grammar::Matcher>(std::move(g), vocabulary());
}

}  // namespace ferry::llm
