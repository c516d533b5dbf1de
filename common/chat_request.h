// Request fields that the OpenAI frontend (/v1) and the LLM backend (which serves KServe generate,
// infer and ZeroMQ) both read: one validation, so that every endpoint accepts and refuses the same
// chat messages and seeds. Errors are InvalidArgument "parameter '<field>' ...", the form the
// frontends turn into their error bodies (OpenAI's "param" included).
//
// Header-only: the host and the backend link different libraries, and both already use jsoncpp.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"

namespace ferry {

// An assistant message's tool_calls, [{id, type: "function", function: {name, arguments}}], as chat
// templates take them: `arguments` (OpenAI sends a JSON text) becomes the object it encodes, as
// vLLM passes it, so that templates can write it with tojson; arguments that are not a JSON object
// stay the text they are.
inline Result<Json::Value> normalize_tool_calls(const Json::Value& calls, const std::string& at) {
  auto bad = [&](const std::string& what) {
    return Status::InvalidArgument("parameter 'messages' " + at + ": tool_calls " + what);
  };
  if (!calls.isArray()) return bad("must be a list");
  Json::Value out(Json::arrayValue);
  for (const auto& c : calls) {
    if (!c.isObject() || !c["function"].isObject() || !c["function"]["name"].isString()) {
      return bad("entries need a 'function' with a string 'name'");
    }
    if (c.isMember("type") && !(c["type"].isString() && c["type"].asString() == "function")) {
      return bad("entries must have type 'function'");
    }
    Json::Value e;
    if (c["id"].isString()) e["id"] = c["id"];
    e["type"] = "function";
    e["function"]["name"] = c["function"]["name"];
    const Json::Value& args = c["function"]["arguments"];
    if (args.isString()) {
      Json::CharReaderBuilder b;
      std::unique_ptr<Json::CharReader> reader(b.newCharReader());
      const std::string& text = args.asString();
      Json::Value parsed;
      std::string errors;
      const bool ok = reader->parse(text.data(), text.data() + text.size(), &parsed, &errors);
      e["function"]["arguments"] = ok && parsed.isObject() ? parsed : args;
    } else if (args.isObject()) {
      e["function"]["arguments"] = args;
    } else if (args.isNull()) {
      e["function"]["arguments"] = Json::Value(Json::objectValue);
    } else {
      return bad("entries need 'arguments' as a JSON text or an object");
    }
    out.append(e);
  }
  return out;
}

// Checks a chat (OpenAI's format) and returns it as [{"role", "content"}] with each content a
// string, which every chat template understands: a list of text parts is joined with "\n", a null
// assistant content is "", "developer" (OpenAI's newer name) becomes "system". An assistant's
// tool_calls are kept (normalize_tool_calls), and a tool message's tool_call_id and name. Roles
// other than system, developer, user, assistant and tool, and non-text parts are refused.
inline Result<Json::Value> normalize_chat_messages(const Json::Value& messages) {
  auto bad = [](const std::string& what) { return Status::InvalidArgument("parameter 'messages' " + what); };
  auto unsupported = [](const std::string& what) {
    return Status::InvalidArgument("parameter 'messages' is not supported by ferry: " + what);
  };
  if (!messages.isArray() || messages.empty()) return bad("must be a non-empty list");
  Json::Value out(Json::arrayValue);
  for (Json::ArrayIndex i = 0; i < messages.size(); ++i) {
    const Json::Value& m = messages[i];
    const std::string at = "entry " + std::to_string(i);
    if (!m.isObject()) return bad(at + " must be an object");
    if (!m["role"].isString()) return bad(at + " needs a string 'role'");
    std::string role = m["role"].asString();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      return bad(at + " has role '" + role + "' (expected system, developer, user, assistant or tool)");
    }
    Json::Value e;
    if (m.isMember("tool_calls") && !m["tool_calls"].isNull()) {
      if (role != "assistant") return bad(at + " has tool_calls, which only assistant messages may have");
      auto calls = normalize_tool_calls(m["tool_calls"], at);
      if (!calls.ok()) return calls.status();
      if (!calls->empty()) e["tool_calls"] = std::move(calls.value());
    }
    if (role == "tool") {
      for (const char* key : {"tool_call_id", "name"}) {
        if (m.isMember(key) && !m[key].isNull()) {
          if (!m[key].isString()) return bad(at + ": '" + key + "' must be a string");
          e[key] = m[key];
        }
      }
    }
    const Json::Value& content = m["content"];
    std::string text;
    if (content.isString()) {
      text = content.asString();
    } else if (content.isArray()) {
      for (const auto& part : content) {
        if (!part.isObject() || !part["type"].isString()) return bad(at + ": content parts need a 'type'");
        if (part["type"].asString() != "text") {
          return unsupported(at + " has a content part of type '" + part["type"].asString() +
                             "': only text parts are served");
        }
        if (!part["text"].isString()) return bad(at + ": a text part needs a string 'text'");
        if (!text.empty()) text += "\n";
        text += part["text"].asString();
      }
    } else if (content.isNull() && role == "assistant") {
      text = "";
    } else {
      return bad(at + " needs 'content': a string or a list of text parts");
    }
    e["role"] = role;
    e["content"] = text;
    out.append(e);
  }
  return out;
}

// Checks OpenAI's tools, [{type: "function", function: {name, description?, parameters?}}], and
// returns them as chat templates take them (HF's apply_chat_template passes the same list).
inline Result<Json::Value> normalize_chat_tools(const Json::Value& tools) {
  auto bad = [](const std::string& what) { return Status::InvalidArgument("parameter 'tools' " + what); };
  if (!tools.isArray()) return bad("must be a list");
  Json::Value out(Json::arrayValue);
  for (Json::ArrayIndex i = 0; i < tools.size(); ++i) {
    const Json::Value& t = tools[i];
    const std::string at = "entry " + std::to_string(i);
    if (!t.isObject() || !t["type"].isString() || t["type"].asString() != "function") {
      return bad(at + " must be an object with type 'function'");
    }
    const Json::Value& f = t["function"];
    if (!f.isObject() || !f["name"].isString() || f["name"].asString().empty()) {
      return bad(at + " needs a 'function' with a non-empty string 'name'");
    }
    if (f.isMember("parameters") && !f["parameters"].isNull() && !f["parameters"].isObject()) {
      return bad(at + ": 'parameters' must be a JSON schema object");
    }
    if (f.isMember("description") && !f["description"].isNull() && !f["description"].isString()) {
      return bad(at + ": 'description' must be a string");
    }
    Json::Value e;
    e["type"] = "function";
    e["function"]["name"] = f["name"];
    if (f["description"].isString()) e["function"]["description"] = f["description"];
    e["function"]["parameters"] = f["parameters"].isObject() ? f["parameters"] : Json::Value(Json::objectValue);
    out.append(e);
  }
  return out;
}

// A sampling seed: absent or null -> nullopt; an integer in [-2^63, 2^64) -> its 64 bits (a
// negative seed is as good a seed as any, and OpenAI and vLLM accept them); anything else
// (a fraction, a string, a boolean) is refused naming `key`.
inline Result<std::optional<uint64_t>> parse_seed(const Json::Value& parent, const char* key) {
  if (!parent.isMember(key) || parent[key].isNull()) return std::optional<uint64_t>();
  const Json::Value& v = parent[key];
  // jsoncpp takes 5.0 as an integer (as pydantic does for vLLM); 5.5 and "5" are refused.
  if (v.isBool() || !(v.isInt64() || v.isUInt64())) {
    return Status::InvalidArgument("parameter '" + std::string(key) + "' must be an integer");
  }
  return std::optional<uint64_t>(v.isUInt64() ? v.asUInt64() : static_cast<uint64_t>(v.asInt64()));
}

}  // namespace ferry
