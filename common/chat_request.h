// Request fields that the OpenAI frontend (/v1) and the LLM backend (which serves KServe generate,
// infer and ZeroMQ) both read: one validation, so that every endpoint accepts and refuses the same
// chat messages and seeds. Errors are InvalidArgument "parameter '<field>' ...", the form the
// frontends turn into their error bodies (OpenAI's "param" included).
//
// Header-only: the host and the backend link different libraries, and both already use jsoncpp.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace ferry {

// Checks a chat (OpenAI's format) and returns it as [{"role", "content"}] with each content a
// string, which every chat template understands: a list of text parts is joined with "\n", a null
// assistant content is "", "developer" (OpenAI's newer name) becomes "system". Roles other than
// system, developer, user, assistant and tool, non-text parts and tool calls are refused.
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
    if (m.isMember("tool_calls") && !m["tool_calls"].isNull()) {
      return unsupported(at + " has tool_calls: tools are not implemented");
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
    Json::Value e;
    e["role"] = role;
    e["content"] = text;
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
