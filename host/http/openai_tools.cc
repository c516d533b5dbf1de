#include "host/http/openai_tools.h"

#include <algorithm>

#include "common/chat_request.h"
#include "common/json_parse.h"
#include "host/http/openai_response.h"
#include "host/json_util.h"

namespace ferry::host {
namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kMistralMarker = "[TOOL_CALLS]";
constexpr std::string_view kPythonTag = "<|python_tag|>";

Status bad(const std::string& field, const std::string& what) {
  return Status::InvalidArgument("parameter '" + field + "' " + what);
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

size_t skip_space(std::string_view s, size_t i) {
  while (i < s.size() && is_space(s[i])) ++i;
  return i;
}

// The end (one past) of the JSON object or list that starts at s[begin], or npos when it does not
// close within s. Strings and their escapes are skipped, so brackets inside them do not count.
size_t json_end(std::string_view s, size_t begin) {
  if (begin >= s.size() || (s[begin] != '{' && s[begin] != '[')) return std::string_view::npos;
  int depth = 0;
  bool in_string = false;
  for (size_t i = begin; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

std::optional<Json::Value> parse_value(std::string_view text) {
  auto v = parse_json(std::string(text), "tool call");
  if (!v.ok()) return std::nullopt;
  return std::move(v).value();
}

std::string new_call_id() { return make_header("call_", "").id; }

// {"name", "arguments" | "parameters"} -> a call; nullopt when it is not one.
std::optional<ToolCall> call_of(const Json::Value& v) {
  if (!v.isObject() || !v["name"].isString()) return std::nullopt;
  const Json::Value& args = v.isMember("arguments") ? v["arguments"] : v["parameters"];
  ToolCall c;
  c.id = new_call_id();
  c.name = v["name"].asString();
  if (args.isString()) c.arguments = args.asString();
  else if (args.isObject()) c.arguments = to_json(args);
  else if (args.isNull()) c.arguments = "{}";
  else return std::nullopt;
  return c;
}

// Appends the calls of one JSON value (a call, or a list of calls); false when it holds none.
bool append_calls(const Json::Value& v, std::vector<ToolCall>* calls) {
  if (v.isArray()) {
    if (v.empty()) return false;
    for (const auto& e : v) {
      auto c = call_of(e);
      if (!c) return false;
      calls->push_back(std::move(*c));
    }
    return true;
  }
  auto c = call_of(v);
  if (!c) return false;
  calls->push_back(std::move(*c));
  return true;
}

// <tool_call>{...}</tool_call> ... (the last closing tag may be missing when generation stopped).
bool parse_hermes(std::string_view text, ParsedReply* out) {
  size_t at = text.find(kHermesOpen);
  if (at == std::string_view::npos) return false;
  out->content = std::string(text.substr(0, at));
  while (at != std::string_view::npos) {
    size_t begin = skip_space(text, at + kHermesOpen.size());
    size_t end = json_end(text, begin);
    if (end == std::string_view::npos) return false;
    auto v = parse_value(text.substr(begin, end - begin));
    if (!v || !append_calls(*v, &out->calls)) return false;
    size_t next = skip_space(text, end);
    if (text.substr(next, kHermesClose.size()) == kHermesClose) next = skip_space(text, next + kHermesClose.size());
    at = text.find(kHermesOpen, next);
  }
  return true;
}

// [TOOL_CALLS][{...}, ...]
bool parse_mistral(std::string_view text, ParsedReply* out) {
  size_t at = text.find(kMistralMarker);
  if (at == std::string_view::npos) return false;
  out->content = std::string(text.substr(0, at));
  size_t begin = skip_space(text, at + kMistralMarker.size());
  size_t end = json_end(text, begin);
  if (end == std::string_view::npos) return false;
  auto v = parse_value(text.substr(begin, end - begin));
  return v && append_calls(*v, &out->calls);
}

// [<|python_tag|>]{"name", "parameters"}[; {...}]*: the whole reply, nothing else.
bool parse_llama3(std::string_view text, ParsedReply* out) {
  size_t i = skip_space(text, 0);
  if (text.substr(i, kPythonTag.size()) == kPythonTag) i = skip_space(text, i + kPythonTag.size());
  if (i >= text.size() || text[i] != '{') return false;
  while (i < text.size()) {
    size_t end = json_end(text, i);
    if (end == std::string_view::npos) return false;
    auto v = parse_value(text.substr(i, end - i));
    if (!v || !append_calls(*v, &out->calls)) return false;
    i = skip_space(text, end);
    if (i < text.size() && text[i] == ';') i = skip_space(text, i + 1);
  }
  return true;
}

// How much of `text`'s end may be the start of `marker` (so is held back while streaming).
size_t marker_prefix_at_end(std::string_view text, std::string_view marker) {
  for (size_t len = std::min(text.size(), marker.size() - 1); len > 0; --len) {
    if (text.substr(text.size() - len) == marker.substr(0, len)) return len;
  }
  return 0;
}

}  // namespace

ToolCallFormat tool_call_format_from_name(std::string_view name) {
  if (name == "llama3_json") return ToolCallFormat::kLlama3Json;
  if (name == "hermes") return ToolCallFormat::kHermes;
  if (name == "mistral") return ToolCallFormat::kMistral;
  return ToolCallFormat::kNone;
}

Result<ToolRequest> parse_tool_request(const Json::Value& body) {
  ToolRequest r;
  auto given = [&](const char* key) { return body.isMember(key) && !body[key].isNull(); };
  if (given("functions") || given("function_call")) {
    return bad(given("functions") ? "functions" : "function_call",
               "is not supported by ferry: it is OpenAI's deprecated form; use 'tools' and 'tool_choice'");
  }
  if (given("tools")) {
    auto tools = normalize_chat_tools(body["tools"]);
    if (!tools.ok()) return tools.status();
    r.tools = std::move(tools.value());
  }
  if (given("parallel_tool_calls")) {
    if (!body["parallel_tool_calls"].isBool()) return bad("parallel_tool_calls", "must be true or false");
    r.parallel_tool_calls = body["parallel_tool_calls"].asBool();
  }
  if (!given("tool_choice")) {
    r.choice = r.tools.empty() ? ToolRequest::Choice::kNone : ToolRequest::Choice::kAuto;
    return r;
  }
  const Json::Value& c = body["tool_choice"];
  if (c.isString()) {
    const std::string s = c.asString();
    if (s == "none") r.choice = ToolRequest::Choice::kNone;
    else if (s == "auto") r.choice = ToolRequest::Choice::kAuto;
    else if (s == "required") r.choice = ToolRequest::Choice::kRequired;
    else return bad("tool_choice", "must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", ...}");
  } else if (c.isObject() && c["type"].isString() && c["type"].asString() == "function" && c["function"].isObject() &&
             c["function"]["name"].isString()) {
    r.choice = ToolRequest::Choice::kFunction;
    r.function = c["function"]["name"].asString();
    const bool known = std::any_of(r.tools.begin(), r.tools.end(), [&](const Json::Value& t) {
      return t["function"]["name"].asString() == r.function;
    });
    if (!known) return bad("tool_choice", "names function '" + r.function + "', which is not in 'tools'");
  } else {
    return bad("tool_choice", "must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
  }
  if (r.choice != ToolRequest::Choice::kNone && r.choice != ToolRequest::Choice::kAuto && r.tools.empty()) {
    return bad("tool_choice", "needs 'tools'");
  }
  return r;
}

namespace {

// A copy of the schema `s` for use at JSON pointer `at` inside a larger schema: its local
// references ("#", "#/$defs/x") are rewritten to point where it now is, so a tool's parameters
// with $defs (as pydantic and zod write them) still resolve inside the "required" schema. Only
// schema positions are walked: const, enum, default and examples values are data.
Json::Value rebase_refs(const Json::Value& s, const std::string& at) {
  if (!s.isObject()) return s;
  static const char* const kSchemaMaps[] = {"properties", "$defs", "definitions", "patternProperties",
                                            "dependentSchemas"};
  static const char* const kSchemaLists[] = {"anyOf", "oneOf", "allOf", "prefixItems"};
  static const char* const kSchemas[] = {"items", "additionalProperties", "not", "propertyNames", "contains",
                                         "if", "then", "else", "additionalItems", "unevaluatedItems",
                                         "unevaluatedProperties"};
  auto is = [](const auto& list, const std::string& key) {
    return std::find(std::begin(list), std::end(list), key) != std::end(list);
  };
  Json::Value out = s;
  for (const std::string& key : s.getMemberNames()) {
    const Json::Value& v = s[key];
    if (key == "$ref" && v.isString() && v.asString().rfind('#', 0) == 0) {
      out[key] = "#" + at + v.asString().substr(1);
    } else if (is(kSchemaMaps, key) && v.isObject()) {
      for (const std::string& name : v.getMemberNames()) out[key][name] = rebase_refs(v[name], at);
    } else if ((is(kSchemaLists, key) || is(kSchemas, key)) && v.isArray()) {  // draft-07 items: a list
      for (Json::ArrayIndex i = 0; i < v.size(); ++i) out[key][i] = rebase_refs(v[i], at);
    } else if (is(kSchemas, key)) {
      out[key] = rebase_refs(v, at);
    }
  }
  return out;
}

}  // namespace

Json::Value tool_call_schema(const ToolRequest& request) {
  if (request.choice == ToolRequest::Choice::kFunction) {
    for (const auto& t : request.tools) {
      if (t["function"]["name"].asString() == request.function) return t["function"]["parameters"];
    }
    return Json::Value();
  }
  if (request.choice != ToolRequest::Choice::kRequired) return Json::Value();
  // [{"name": <one of the tools>, "parameters": <that tool's schema>}, ...], at least one.
  Json::Value any(Json::arrayValue);
  for (const auto& t : request.tools) {
    Json::Value one;
    one["type"] = "object";
    one["properties"]["name"]["type"] = "string";
    one["properties"]["name"]["enum"].append(t["function"]["name"]);
    const std::string at = "/items/anyOf/" + std::to_string(any.size()) + "/properties/parameters";
    one["properties"]["parameters"] = rebase_refs(t["function"]["parameters"], at);
    one["required"].append("name");
    one["required"].append("parameters");
    any.append(one);
  }
  Json::Value schema;
  schema["type"] = "array";
  schema["minItems"] = 1;
  if (!request.parallel_tool_calls) schema["maxItems"] = 1;
  schema["items"]["anyOf"] = any;
  return schema;
}

std::string tool_call_schema_text(const ToolRequest& request, const Json::Value& schema, std::string_view tools_text) {
  std::optional<std::vector<std::string_view>> raw = raw_json_elements(tools_text);
  if (raw && raw->size() != request.tools.size()) raw.reset();
  auto parameters_text = [&](Json::ArrayIndex i) -> std::optional<std::string_view> {
    if (!raw) return std::nullopt;
    return raw_json_member((*raw)[i], {"function", "parameters"});
  };
  std::string out;
  if (request.choice == ToolRequest::Choice::kFunction) {
    std::optional<std::string_view> guide;
    for (Json::ArrayIndex i = 0; i < request.tools.size(); ++i) {
      if (request.tools[i]["function"]["name"].asString() == request.function) guide = parameters_text(i);
    }
    append_json_ordered(out, schema, guide);
    return out;
  }
  // "required": the guide names only where each tool's parameters sit in the schema.
  std::string guide = "{\"items\":{\"anyOf\":[";
  for (Json::ArrayIndex i = 0; i < request.tools.size(); ++i) {
    if (i > 0) guide += ',';
    guide += "{\"properties\":{\"parameters\":";
    guide += parameters_text(i).value_or("{}");
    guide += "}}";
  }
  guide += "]}}";
  append_json_ordered(out, schema, guide);
  return out;
}

ParsedReply parse_reply(const ToolRequest& request, ToolCallFormat format, std::string_view text) {
  ParsedReply out;
  bool ok = false;
  if (request.choice == ToolRequest::Choice::kFunction) {
    ToolCall c;
    c.id = new_call_id();
    c.name = request.function;
    auto v = parse_value(text);
    c.arguments = v && v->isObject() ? to_json(*v) : std::string(text);
    out.calls.push_back(std::move(c));
    return out;
  }
  if (request.choice == ToolRequest::Choice::kRequired) {
    auto v = parse_value(text);
    ok = v && v->isArray() && append_calls(*v, &out.calls);
  } else if (request.active()) {
    switch (format) {
      case ToolCallFormat::kHermes: ok = parse_hermes(text, &out); break;
      case ToolCallFormat::kMistral: ok = parse_mistral(text, &out); break;
      case ToolCallFormat::kLlama3Json: ok = parse_llama3(text, &out); break;
      case ToolCallFormat::kNone: break;
    }
  }
  if (!ok) return ParsedReply{std::string(text), {}};
  if (!request.parallel_tool_calls && out.calls.size() > 1) out.calls.resize(1);
  return out;
}

Json::Value tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  Json::Value list(Json::arrayValue);
  for (size_t i = 0; i < calls.size(); ++i) {
    Json::Value c;
    if (with_index) c["index"] = static_cast<Json::UInt64>(i);
    c["id"] = calls[i].id;
    c["type"] = "function";
    c["function"]["name"] = calls[i].name;
    c["function"]["arguments"] = calls[i].arguments;
    list.append(c);
  }
  return list;
}

ToolStreamDelta ToolCallStream::add(std::string_view text) {
  seen_.append(text);
  ToolStreamDelta d;
  if (request_->choice == ToolRequest::Choice::kFunction) {
    if (call_id_.empty()) {
      call_id_ = new_call_id();
      d.started = ToolCall{call_id_, request_->function, ""};
    }
    d.arguments = std::string(text);
    sent_ = seen_.size();
    return d;
  }
  d.content = add_content();
  return d;
}

std::string ToolCallStream::add_content() {
  if (holding_) return "";
  std::string_view marker;
  if (request_->choice == ToolRequest::Choice::kRequired) {
    holding_ = true;
  } else if (!request_->active()) {
    // plain content
  } else if (format_ == ToolCallFormat::kLlama3Json) {
    // A call is the whole reply: decided by its first non-space character.
    const size_t i = skip_space(seen_, sent_);
    if (i == seen_.size()) return "";  // only spaces so far
    const std::string_view rest = std::string_view(seen_).substr(i);
    const bool may_be_tag = kPythonTag.substr(0, std::min(rest.size(), kPythonTag.size())) ==
                            rest.substr(0, std::min(rest.size(), kPythonTag.size()));
    if (sent_ == 0 && (rest[0] == '{' || may_be_tag)) holding_ = true;
  } else if (format_ == ToolCallFormat::kHermes || format_ == ToolCallFormat::kMistral) {
    marker = format_ == ToolCallFormat::kHermes ? kHermesOpen : kMistralMarker;
    const size_t at = seen_.find(marker, sent_);
    if (at != std::string::npos) {
      std::string out = seen_.substr(sent_, at - sent_);
      sent_ = at;
      holding_ = true;
      return out;
    }
  }
  if (holding_) return "";
  const size_t keep = marker.empty() ? 0 : marker_prefix_at_end(std::string_view(seen_).substr(sent_), marker);
  const size_t end = seen_.size() - keep;
  std::string out = seen_.substr(sent_, end - sent_);
  sent_ = end;
  return out;
}

ParsedReply ToolCallStream::finish() {
  if (arguments_streamed()) return ParsedReply{"", {ToolCall{call_id_, request_->function, seen_}}};
  std::string_view rest = std::string_view(seen_).substr(sent_);
  sent_ = seen_.size();
  if (!holding_) return ParsedReply{std::string(rest), {}};
  return parse_reply(*request_, format_, rest);
}

}  // namespace ferry::host
