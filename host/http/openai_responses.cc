#include "host/http/openai_responses.h"

#include "host/http/openai_response.h"

namespace ferry::host {
namespace {

Status bad(const std::string& field, const std::string& what) {
  return Status::InvalidArgument("parameter '" + field + "' " + what);
}

bool given(const Json::Value& body, const char* key) { return body.isMember(key) && !body[key].isNull(); }

// One input item ({"type": "message"} or a bare {role, content}) as a chat message.
Result<Json::Value> message_of(const Json::Value& item, Json::ArrayIndex i) {
  const std::string at = "entry " + std::to_string(i);
  if (!item.isObject()) return bad("input", at + " must be an object");
  if (given(item, "type") && item["type"].asString() != "message") {
    return bad("input", "is not supported by ferry: " + at + " is of type '" + item["type"].asString() +
                            "' (only messages with text are served)");
  }
  Json::Value m;
  m["role"] = item["role"];
  const Json::Value& content = item["content"];
  if (content.isString()) {
    m["content"] = content;
    return m;
  }
  if (!content.isArray()) return bad("input", at + " needs 'content': a string or a list of text parts");
  std::string text;
  for (const auto& part : content) {
    const std::string type = part["type"].asString();
    if (type != "input_text" && type != "output_text") {
      return bad("input", "is not supported by ferry: " + at + " has a content part of type '" + type +
                              "' (only input_text and output_text are served)");
    }
    if (!part["text"].isString()) return bad("input", at + ": a text part needs a string 'text'");
    if (!text.empty()) text += "\n";
    text += part["text"].asString();
  }
  m["content"] = text;
  return m;
}

}  // namespace

Result<OaiRequest> parse_responses_request(const Json::Value& body, Json::Value* echo) {
  if (!body.isObject()) return Status::InvalidArgument("the body must be a JSON object");
  for (const char* key : {"previous_response_id", "conversation"}) {
    if (given(body, key)) return bad(key, "is not supported by ferry: responses are not stored");
  }
  if (given(body, "background") && body["background"] != Json::Value(false)) {
    return bad("background", "is not supported by ferry: responses are not stored");
  }
  if (given(body, "tools") && !(body["tools"].isArray() && body["tools"].empty())) {
    return bad("tools", "is not supported by ferry on /v1/responses (use /v1/chat/completions for tool calls)");
  }
  Json::Value chat(Json::objectValue);
  for (const char* key : {"model", "stream", "temperature", "top_p", "user", "seed"}) {
    if (given(body, key)) chat[key] = body[key];
  }
  if (given(body, "max_output_tokens")) {
    // The Responses API has no prompt-only request (chat's max_tokens 0).
    const Json::Value& v = body["max_output_tokens"];
    if (!v.isInt64() || v.isBool() || v.asInt64() < 1) return bad("max_output_tokens", "must be an integer >= 1");
    chat["max_tokens"] = v;
  }
  Json::Value messages(Json::arrayValue);
  if (given(body, "instructions")) {
    if (!body["instructions"].isString()) return bad("instructions", "must be a string");
    Json::Value system;
    system["role"] = "system";
    system["content"] = body["instructions"];
    messages.append(system);
  }
  if (!given(body, "input")) return bad("input", "is required");
  const Json::Value& input = body["input"];
  if (input.isString()) {
    Json::Value user;
    user["role"] = "user";
    user["content"] = input;
    messages.append(user);
  } else if (input.isArray() && !input.empty()) {
    for (Json::ArrayIndex i = 0; i < input.size(); ++i) {
      auto m = message_of(input[i], i);
      if (!m.ok()) return m.status();
      messages.append(m.value());
    }
  } else {
    return bad("input", "must be a string or a non-empty list of messages");
  }
  chat["messages"] = messages;
  // text.format is the Responses API's response_format: {"type": "text" | "json_object" |
  // "json_schema", name, schema, strict}.
  const Json::Value& format = body["text"]["format"];
  if (body["text"].isObject() && format.isObject() && format["type"].isString() && format["type"].asString() != "text") {
    Json::Value rf;
    rf["type"] = format["type"];
    if (format["type"].asString() == "json_schema") {
      for (const char* key : {"name", "schema", "strict", "description"}) {
        if (format.isMember(key)) rf["json_schema"][key] = format[key];
      }
    }
    chat["response_format"] = rf;
  }
  auto r = parse_chat_request(chat);
  if (!r.ok()) {
    if (r.status().message().find("'max_tokens'") != std::string::npos) return bad("max_output_tokens", "must be an integer >= 1");
    return r.status();
  }
  Json::Value e(Json::objectValue);
  e["instructions"] = given(body, "instructions") ? body["instructions"] : Json::Value();
  e["max_output_tokens"] = given(body, "max_output_tokens") ? body["max_output_tokens"] : Json::Value();
  e["temperature"] = given(body, "temperature") ? body["temperature"] : Json::Value(1.0);
  e["top_p"] = given(body, "top_p") ? body["top_p"] : Json::Value(1.0);
  e["metadata"] = given(body, "metadata") ? body["metadata"] : Json::Value(Json::objectValue);
  e["user"] = given(body, "user") ? body["user"] : Json::Value();
  e["text"]["format"] = body["text"].isObject() && format.isObject() ? format : Json::Value();
  if (e["text"]["format"].isNull()) e["text"]["format"]["type"] = "text";
  *echo = e;
  return r;
}

Json::Value responses_text_part(const std::string& text) {
  Json::Value p;
  p["type"] = "output_text";
  p["text"] = text;
  p["annotations"] = Json::Value(Json::arrayValue);
  return p;
}

Json::Value responses_message_item(const ResponsesState& s, bool done) {
  Json::Value item;
  item["id"] = s.item_id;
  item["type"] = "message";
  item["role"] = "assistant";
  item["status"] = !done ? "in_progress" : s.finish_reason == "length" ? "incomplete" : "completed";
  item["content"] = Json::Value(Json::arrayValue);
  if (done) item["content"].append(responses_text_part(s.text));
  return item;
}

Json::Value responses_object(const ResponsesState& s, const Json::Value& echo) {
  Json::Value r = echo;
  r["id"] = s.id;
  r["object"] = "response";
  r["created_at"] = static_cast<Json::Int64>(s.created_at);
  r["model"] = s.model;
  r["error"] = Json::Value();
  r["incomplete_details"] = Json::Value();
  r["output"] = Json::Value(Json::arrayValue);
  r["parallel_tool_calls"] = true;
  r["tool_choice"] = "auto";
  r["tools"] = Json::Value(Json::arrayValue);
  if (s.finish_reason.empty()) {
    r["status"] = "in_progress";
    r["usage"] = Json::Value();
    return r;
  }
  r["status"] = s.finish_reason == "length" ? "incomplete" : "completed";
  if (s.finish_reason == "length") r["incomplete_details"]["reason"] = "max_output_tokens";
  r["output"].append(responses_message_item(s, true));
  Json::Value u;
  u["input_tokens"] = static_cast<Json::Int64>(s.input_tokens);
  u["output_tokens"] = static_cast<Json::Int64>(s.output_tokens);
  u["total_tokens"] = static_cast<Json::Int64>(s.input_tokens + s.output_tokens);
  u["input_tokens_details"]["cached_tokens"] = 0;
  u["output_tokens_details"]["reasoning_tokens"] = 0;
  r["usage"] = u;
  return r;
}

Json::Value responses_event(const char* type, int64_t* seq) {
  Json::Value e;
  e["type"] = type;
  e["sequence_number"] = static_cast<Json::Int64>((*seq)++);
  return e;
}

}  // namespace ferry::host
