// libferry_scripted_llm.so: a backend that speaks ferry's LLM protocol (common/llm_protocol.h) with
// a script instead of a model, so that tests of the host's OpenAI layer (tool calls, the Responses
// API, official SDKs) see replies they can predict. It is not a language model and never ships
// with the server (built into <build>/test_backends).
//
// Model config keys: "tool_call_parser" (the metadata's format: "hermes", "llama3_json",
// "mistral"; default none) and "max_model_len" (default 4096).
//
// The reply to a request, by its parameters:
//   guided_json with tools: the JSON the schema asks for: a named function's arguments
//     {"city": <last user text>}, or for a list schema (tool_choice "required")
//     [{"name": <first tool>, "parameters": {"city": <last user text>}}];
//   tools and the last message from the user: a call of the first tool with {"city": <last user
//     text>} in the model's format;
//   the last message from a tool: "The tool said: <its content>";
//   otherwise: "You said: <last user text>" (a text prompt: "You said: <prompt>").
// Streamed requests get the reply in pieces of 4 bytes, one response each, then a FINAL with
// finish_reason "stop" and usage (prompt_tokens: the prompt's bytes / 4 + 1; completion_tokens: the
// number of pieces). max_tokens (pieces) cuts the reply short with finish_reason "length".
#include <json/json.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <string>

#include "common/abi/abi_util.h"
#include "common/llm_protocol.h"
#include "ferry/ferry.h"

namespace {

namespace proto = ferry::llm_protocol;

std::string compact(const Json::Value& v) {
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  return Json::writeString(w, v);
}

Json::Value parse(const char* text) {
  Json::Value v;
  Json::CharReaderBuilder b;
  std::unique_ptr<Json::CharReader> reader(b.newCharReader());
  std::string errors;
  const std::string s = text ? text : "{}";
  if (!reader->parse(s.data(), s.data() + s.size(), &v, &errors)) return Json::Value(Json::objectValue);
  return v;
}

std::string content_text(const Json::Value& content) {
  if (content.isString()) return content.asString();
  std::string out;
  if (content.isArray()) {
    for (const auto& part : content) out += part["text"].asString();
  }
  return out;
}

// The prompt's text: the text input, or the last user message.
std::string prompt_text(const ferry_request& r, const Json::Value& p) {
  for (uint32_t i = 0; i < r.num_inputs; ++i) {
    if (std::string(r.inputs[i].name) != proto::kInputText) continue;
    auto parts = ferry::abi::split_bytes(static_cast<const uint8_t*>(r.inputs[i].data), r.inputs[i].data_bytes);
    if (parts.ok() && !parts->empty()) return std::string(parts.value()[0]);
  }
  const Json::Value& messages = p[proto::kMessages];
  for (Json::ArrayIndex i = messages.size(); i > 0; --i) {
    if (messages[i - 1]["role"].asString() == "user") return content_text(messages[i - 1]["content"]);
  }
  return "";
}

std::string tool_call(const std::string& format, const std::string& name, const Json::Value& args) {
  Json::Value call;
  call["name"] = name;
  if (format == "llama3_json") {
    call["parameters"] = args;
    return compact(call);
  }
  call["arguments"] = args;
  if (format == "mistral") {
    Json::Value list(Json::arrayValue);
    list.append(call);
    return "[TOOL_CALLS]" + compact(list);
  }
  return "<tool_call>\n" + compact(call) + "\n</tool_call>";
}

std::string reply_of(const ferry_request& r, const Json::Value& p, const std::string& format) {
  const std::string user = prompt_text(r, p);
  const Json::Value& tools = p[proto::kTools];
  const Json::Value& messages = p[proto::kMessages];
  Json::Value args;
  args["city"] = user;
  const std::string first_tool = tools.isArray() && !tools.empty() ? tools[0]["function"]["name"].asString() : "";
  if (p.isMember("guided_json") && !first_tool.empty()) {
    if (p["guided_json"]["type"].asString() != "array") return compact(args);
    Json::Value call;
    call["name"] = first_tool;
    call["parameters"] = args;
    Json::Value list(Json::arrayValue);
    list.append(call);
    return compact(list);
  }
  const Json::Value last = messages.isArray() && !messages.empty() ? messages[messages.size() - 1] : Json::Value();
  if (last["role"].asString() == "tool") return "The tool said: " + content_text(last["content"]);
  if (!first_tool.empty() && last["role"].asString() == "user") return tool_call(format, first_tool, args);
  return "You said: " + user;
}

struct Model {
  const ferry_host_api* host;
  std::string format;
  int64_t max_model_len = 4096;
};

void respond(const Model& m, ferry_responder* responder, const std::string& text, const Json::Value& params,
             bool final) {
  ferry::abi::OwnedTensor t;
  t.name = proto::kOutputText;
  t.dtype = FERRY_DTYPE_BYTES;
  t.shape = {1};
  t.data = ferry::abi::join_bytes({text});
  ferry_tensor view = t.view();
  const std::string json = compact(params);
  ferry_response out{};
  out.struct_size = sizeof(out);
  out.flags = final ? FERRY_RESPONSE_FLAG_FINAL : 0;
  out.num_outputs = 1;
  out.outputs = &view;
  out.parameters_json = json.c_str();
  out.queue_ns = final ? 0 : -1;
  m.host->respond(responder, &out);
}

void submit(const Model& m, const ferry_request& r, ferry_responder* responder) {
  const Json::Value p = parse(r.parameters_json);
  const std::string reply = reply_of(r, p, m.format);
  const std::string prompt = prompt_text(r, p);
  const int64_t max_pieces = p[proto::kMaxTokens].isIntegral() ? p[proto::kMaxTokens].asInt64() : 1 << 20;
  std::string finish = "stop";
  int64_t pieces = 0;
  std::string all;
  for (size_t at = 0; at < reply.size(); at += 4) {
    if (pieces == max_pieces) {
      finish = "length";
      break;
    }
    ++pieces;
    all += reply.substr(at, 4);
  }
  const bool stream = (r.flags & FERRY_REQUEST_FLAG_STREAM) != 0;
  if (stream) {
    for (size_t at = 0; at < all.size(); at += 4) respond(m, responder, all.substr(at, 4), Json::Value(Json::objectValue), false);
  }
  Json::Value end;
  end[proto::kFinishReason] = finish;
  end[proto::kUsage][proto::kPromptTokens] = static_cast<Json::Int64>(prompt.size() / 4 + 1);
  end[proto::kUsage][proto::kCompletionTokens] = static_cast<Json::Int64>(pieces);
  respond(m, responder, stream ? "" : all, end, true);
}

}  // namespace

struct ferry_backend {
  const ferry_host_api* host;
};
struct ferry_model {
  Model m;
};

extern "C" {

FERRY_EXPORT void ferry_backend_abi_version(uint32_t* major, uint32_t* minor) {
  *major = FERRY_ABI_VERSION_MAJOR;
  *minor = FERRY_ABI_VERSION_MINOR;
}

FERRY_EXPORT ferry_error_code ferry_backend_create(const ferry_host_api* host_api, const char* /*config_json*/,
                                                   ferry_backend** backend, ferry_error* error) {
  try {
    *backend = new ferry_backend{host_api};
    return FERRY_ERROR_CODE_OK;
  } catch (...) {
    return ferry::abi::error_from_current_exception(error);
  }
}

FERRY_EXPORT void ferry_backend_destroy(ferry_backend* backend) { delete backend; }

FERRY_EXPORT ferry_error_code ferry_model_create(ferry_backend* backend, const ferry_model_desc* desc,
                                                 ferry_model** model, ferry_error* error) {
  try {
    const Json::Value c = parse(desc->config_json);
    auto m = std::make_unique<ferry_model>();
    m->m.host = backend->host;
    m->m.format = c["tool_call_parser"].asString();
    if (c["max_model_len"].isIntegral()) m->m.max_model_len = c["max_model_len"].asInt64();
    *model = m.release();
    return FERRY_ERROR_CODE_OK;
  } catch (...) {
    return ferry::abi::error_from_current_exception(error);
  }
}

FERRY_EXPORT void ferry_model_destroy(ferry_model* model) { delete model; }

FERRY_EXPORT ferry_error_code ferry_model_submit(ferry_model* model, const ferry_request* request,
                                                 ferry_responder* responder, ferry_error* error) {
  try {
    submit(model->m, *request, responder);
    return FERRY_ERROR_CODE_OK;
  } catch (...) {
    return ferry::abi::error_from_current_exception(error);
  }
}

FERRY_EXPORT ferry_error_code ferry_model_cancel(ferry_model* /*model*/, uint64_t /*request_id*/) {
  return FERRY_ERROR_CODE_NOT_FOUND;  // every request has ended by the time submit returns
}

FERRY_EXPORT size_t ferry_model_describe(ferry_model* model, ferry_describe_kind kind, char* buffer,
                                         size_t capacity) {
  Json::Value d(Json::objectValue);
  if (kind == FERRY_DESCRIBE_KIND_METADATA) {
    d[proto::kMetaPlatform] = proto::kPlatform;
    d[proto::kMetaMaxModelLen] = static_cast<Json::Int64>(model->m.max_model_len);
    if (!model->m.format.empty()) d[proto::kMetaToolCallParser] = model->m.format;
  }
  return ferry::abi::write_describe(compact(d), buffer, capacity);
}

}  // extern "C"
