#include "host/http/openai_request.h"

#include <cstring>
#include <string_view>

#include "common/abi/abi_util.h"
#include "common/chat_request.h"
#include "common/json_parse.h"
#include "common/llm_protocol.h"
#include "host/http/kserve_json.h"
#include "host/json_util.h"

namespace ferry::host {
namespace {

namespace proto = llm_protocol;

Status bad(const std::string& field, const std::string& what) {
  return Status::InvalidArgument("parameter '" + field + "' " + what);
}

Status unsupported(const std::string& field, const std::string& why) {
  return Status::InvalidArgument("parameter '" + field + "' is not supported by ferry: " + why);
}

// OpenAI's fields are nullable: null means "not given".
bool given(const Json::Value& body, const char* key) { return body.isMember(key) && !body[key].isNull(); }

Status read_bool(const Json::Value& body, const char* key, bool* out) {
  if (!given(body, key)) return Status::Ok();
  if (!body[key].isBool()) return bad(key, "must be true or false");
  *out = body[key].asBool();
  return Status::Ok();
}

Status read_int(const Json::Value& body, const char* key, int64_t lo, int64_t hi, int64_t* out) {
  if (!given(body, key)) return Status::Ok();
  const Json::Value& v = body[key];
  if (!v.isInt64() || v.isBool() || v.asInt64() < lo || v.asInt64() > hi) {
    return bad(key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  *out = v.asInt64();
  return Status::Ok();
}

// Sampling and stopping fields the backend reads under the same names; it checks their values.
constexpr const char* kPassThrough[] = {
    "max_tokens",          "temperature",       "top_p", "top_k",          "min_p",      "repetition_penalty",
    "presence_penalty",    "frequency_penalty", "stop",  "stop_token_ids", "ignore_eos", "include_stop_str_in_output",
    "skip_special_tokens", "min_tokens",        "logit_bias",
};

// The fields both endpoints share: model, n (best_of only equal to it), stream, seed, sampling and
// output formats (passed to the backend), priority / timeout.
Status parse_common(const Json::Value& body, OaiRequest* r) {
  // Without a model the handler picks the only LLM model served (clients of single-model servers
  // omit it).
  if (given(body, "model")) {
    if (!body["model"].isString() || body["model"].asString().empty()) return bad("model", "must be a non-empty string");
    r->model = body["model"].asString();
  }

  int64_t n = 1;
  FERRY_RETURN_IF_ERROR(read_int(body, "n", 1, kOaiMaxChoices, &n));
  r->n = static_cast<int>(n);
  if (given(body, "best_of")) {
    int64_t best_of = n;
    FERRY_RETURN_IF_ERROR(read_int(body, "best_of", 1, kOaiMaxChoices, &best_of));
    if (best_of != n) return unsupported("best_of", "only best_of equal to n (or absent) is served");
  }
  FERRY_RETURN_IF_ERROR(read_bool(body, "stream", &r->stream));
  if (given(body, "stream_options")) {
    const Json::Value& o = body["stream_options"];
    if (!o.isObject()) return bad("stream_options", "must be an object");
    if (!r->stream) return bad("stream_options", "is only allowed when 'stream' is true");
    FERRY_RETURN_IF_ERROR(read_bool(o, "include_usage", &r->include_usage));
  }
  auto seed = parse_seed(body, "seed");  // as the backend reads it for every other endpoint
  if (!seed.ok()) return seed.status();
  r->seed = seed.value();
  if (given(body, "user") && !body["user"].isString()) return bad("user", "must be a string");

  for (const char* key : kPassThrough) {
    if (given(body, key)) r->parameters[key] = body[key];
  }
  // max_completion_tokens is the newer name of max_tokens; either may be given.
  if (given(body, "max_completion_tokens")) {
    int64_t unused = 0;
    FERRY_RETURN_IF_ERROR(read_int(body, "max_completion_tokens", 0, int64_t{1} << 24, &unused));
    if (given(body, "max_tokens") && body["max_tokens"] != body["max_completion_tokens"]) {
      return bad("max_completion_tokens", "and 'max_tokens' disagree; give one of them");
    }
    r->parameters["max_tokens"] = body["max_completion_tokens"];
  }
  // Constrained decoding: passed unchanged, under the same names; the backend checks them.
  // Output formats go to the backend as they are; it parses and checks them (guided_decoding.h).
  for (const char* key : proto::kOutputFormatKeys) {
    if (given(body, key)) r->parameters[key] = body[key];
  }
  if (given(body, proto::kGuidedDecodingBackend)) {
    r->parameters[proto::kGuidedDecodingBackend] = body[proto::kGuidedDecodingBackend];
  }
  r->has_max_tokens = given(body, "max_tokens") || given(body, "max_completion_tokens");
  if (given(body, "prompt_logprobs")) {
    const Json::Value& v = body["prompt_logprobs"];
    if (!v.isInt64() || v.isBool() || v.asInt64() < 0 || v.asInt64() > 20) {
      return bad("prompt_logprobs", "must be an integer in [0, 20] (-1, the whole vocabulary, is not served)");
    }
    r->num_prompt_logprobs = v.asInt();
  }

  // ferry's extras: the ABI request's priority and timeout (microseconds), as on every frontend.
  RequestSpec controls;
  Json::Value c(Json::objectValue);
  for (const char* key : {"priority", "timeout"}) {
    if (given(body, key)) c[key] = body[key];
  }
  FERRY_RETURN_IF_ERROR(apply_request_controls(c, &controls));
  r->priority = controls.priority;
  r->timeout_us = controls.timeout_us;
  return Status::Ok();
}

abi::OwnedTensor ids_tensor(const std::vector<int32_t>& ids) {
  abi::OwnedTensor t;
  t.name = proto::kInputIds;
  t.dtype = FERRY_DTYPE_INT32;
  t.shape = {static_cast<int64_t>(ids.size())};
  const auto* bytes = reinterpret_cast<const uint8_t*>(ids.data());
  t.data.assign(bytes, bytes + ids.size() * sizeof(int32_t));
  return t;
}

Result<std::vector<int32_t>> token_list(const Json::Value& v, const char* field) {
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (const auto& x : v) {
    if (!x.isInt() || x.isBool() || x.asInt() < 0) return bad(field, "must hold token ids (integers >= 0)");
    ids.push_back(x.asInt());
  }
  return ids;
}

// prompt: "text", [ids...], or a list of prompts: ["text", ...] or [[ids...], ...] (vLLM and
// OpenAI accept a mix of both). Each prompt is answered by n choices.
Status parse_prompt(const Json::Value& body, OaiRequest* r) {
  if (!given(body, "prompt")) return bad("prompt", "is required");
  const Json::Value& p = body["prompt"];
  if (p.isString()) {
    r->prompts.push_back(OaiPrompt{p.asString(), {}});
    return Status::Ok();
  }
  if (!p.isArray() || p.empty()) {
    return bad("prompt", "must be a string, a list of token ids, or a list of strings or of lists of token ids");
  }
  if (!p[0].isString() && !p[0].isArray()) {  // one prompt of token ids
    auto list = token_list(p, "prompt");
    if (!list.ok()) return list.status();
    r->prompts.push_back(OaiPrompt{std::nullopt, std::move(list.value())});
    return Status::Ok();
  }
  if (static_cast<int64_t>(p.size()) * r->n > kOaiMaxPromptChoices) {
    return bad("prompt", "holds " + std::to_string(p.size()) + " prompts: with n = " + std::to_string(r->n) +
                             " that is more than " + std::to_string(kOaiMaxPromptChoices) + " choices");
  }
  for (const auto& one : p) {
    if (one.isString()) {
      r->prompts.push_back(OaiPrompt{one.asString(), {}});
      continue;
    }
    if (!one.isArray() || one.empty()) return bad("prompt", "entries must be strings or non-empty lists of token ids");
    auto list = token_list(one, "prompt");
    if (!list.ok()) return list.status();
    r->prompts.push_back(OaiPrompt{std::nullopt, std::move(list.value())});
  }
  return Status::Ok();
}

}  // namespace

Result<OaiRequest> parse_completion_request(const Json::Value& body) {
  OaiRequest r;
  r.endpoint = OaiEndpoint::kCompletions;
  FERRY_RETURN_IF_ERROR(parse_common(body, &r));
  FERRY_RETURN_IF_ERROR(parse_prompt(body, &r));
  if (given(body, "suffix")) return unsupported("suffix", "insertion (fill in the middle) is not implemented");
  FERRY_RETURN_IF_ERROR(read_bool(body, "echo", &r.echo));
  if (given(body, "logprobs")) {
    int64_t n = 0;
    FERRY_RETURN_IF_ERROR(read_int(body, "logprobs", 0, 20, &n));
    r.num_logprobs = static_cast<int>(n);
    r.parameters["logprobs"] = static_cast<Json::Int>(n);
  }
  // With echo, logprobs covers the prompt's tokens too: the backend computes them as prompt logprobs.
  const int prompt_k = std::max(r.num_prompt_logprobs, r.echo ? r.num_logprobs : -1);
  if (prompt_k >= 0) r.parameters[proto::kPromptLogprobs] = prompt_k;
  if (given(body, "add_special_tokens")) r.parameters["add_special_tokens"] = body["add_special_tokens"];
  if (!r.has_max_tokens) r.parameters["max_tokens"] = 16;  // OpenAI's default for completions
  return r;
}

Result<OaiRequest> parse_chat_request(const Json::Value& body) {
  OaiRequest r;
  r.endpoint = OaiEndpoint::kChat;
  const Json::Value& b = body;
  FERRY_RETURN_IF_ERROR(parse_common(b, &r));
  // The backend checks the messages (common/chat_request.h) as it does for every frontend.
  if (!given(b, "messages")) return bad("messages", "is required");
  r.messages = b["messages"];

  bool logprobs = false;
  FERRY_RETURN_IF_ERROR(read_bool(b, "logprobs", &logprobs));
  int64_t top = 0;
  FERRY_RETURN_IF_ERROR(read_int(b, "top_logprobs", 0, 20, &top));
  if (given(b, "top_logprobs") && !logprobs) return bad("top_logprobs", "needs 'logprobs': true");
  if (logprobs) {
    r.num_logprobs = static_cast<int>(top);
    r.parameters["logprobs"] = static_cast<Json::Int>(top);
  }
  if (r.num_prompt_logprobs >= 0) r.parameters[proto::kPromptLogprobs] = r.num_prompt_logprobs;

  auto tools = parse_tool_request(b);
  if (!tools.ok()) return tools.status();
  r.tools = std::move(tools.value());
  // The template sees the tools (even with tool_choice "none", as vLLM renders them).
  if (!r.tools.tools.empty()) r.parameters[proto::kTools] = r.tools.tools;
  Json::Value schema = tool_call_schema(r.tools);
  if (!schema.isNull()) {
    for (const char* key : proto::kOutputFormatKeys) {
      if (given(b, key)) return bad(key, "cannot be combined with a tool_choice that names or requires a call");
    }
    r.parameters["guided_json"] = schema;  // the reply then always parses (openai_tools.h)
  }
  bool echo = false, continue_final = false, add_generation_prompt = true;
  FERRY_RETURN_IF_ERROR(read_bool(b, "echo", &echo));
  FERRY_RETURN_IF_ERROR(read_bool(b, "continue_final_message", &continue_final));
  FERRY_RETURN_IF_ERROR(read_bool(b, "add_generation_prompt", &add_generation_prompt));
  if (echo) return unsupported("echo", "chat requests do not echo");
  if (continue_final) return unsupported("continue_final_message", "the template always opens a new reply");
  if (!add_generation_prompt) return unsupported("add_generation_prompt", "the template always adds it");
  return r;
}

RequestSpec make_choice_request(const OaiRequest& request, int index) {
  RequestSpec spec;
  Json::Value params = request.parameters;
  // Choice j of every prompt samples with seed + j.
  if (request.seed) params["seed"] = static_cast<Json::UInt64>(*request.seed + static_cast<uint64_t>(index % request.n));
  if (request.endpoint == OaiEndpoint::kChat) {
    params[proto::kMessages] = request.messages;
    // Without max_tokens a chat may use the rest of the context window (the backend knows it).
    if (!request.has_max_tokens) params[proto::kMaxTokensToWindow] = true;
  } else if (const OaiPrompt& prompt = request.prompt_of(index); prompt.text) {
    abi::OwnedTensor t;
    t.name = proto::kInputText;
    t.dtype = FERRY_DTYPE_BYTES;
    t.shape = {1};
    t.data = abi::join_bytes({*prompt.text});
    spec.inputs.push_back(std::move(t));
  } else {
    spec.inputs.push_back(ids_tensor(prompt.ids));
    // The text of a token prompt comes from the backend (a text prompt is echoed as sent).
    if (request.echo) params[proto::kEcho] = true;
  }
  spec.parameters_json = to_json(params);
  // The output formats in request.parameters came from the body's top level.
  if (!request.body_text.empty()) {
    keep_output_format_text(request.body_text, {}, request.parameters, &spec.parameters_json);
    // A tool_choice's schema, built here, in the key order of the request's tools.
    const Json::Value& schema = request.parameters["guided_json"];
    auto tools_text = raw_json_member(request.body_text, {proto::kTools});
    auto at = raw_json_member(spec.parameters_json, {"guided_json"});
    const bool constrained = request.tools.choice == ToolRequest::Choice::kFunction ||
                             request.tools.choice == ToolRequest::Choice::kRequired;
    if (constrained && !schema.isNull() && tools_text && at) {
      const size_t from = static_cast<size_t>(at->data() - spec.parameters_json.data());
      spec.parameters_json.replace(from, at->size(), tool_call_schema_text(request.tools, schema, *tools_text));
    }
  }
  spec.stream = request.stream;
  spec.priority = request.priority;
  spec.timeout_us = request.timeout_us;
  return spec;
}

Result<RequestSpec> parse_tokenize_request(const Json::Value& body, std::string* model) {
  if (!given(body, "model") || !body["model"].isString()) return bad("model", "is required (a string)");
  *model = body["model"].asString();
  RequestSpec spec;
  Json::Value params;
  params[proto::kTask] = proto::kTaskTokenize;
  const bool has_prompt = given(body, "prompt"), has_messages = given(body, "messages");
  if (has_prompt == has_messages) return bad("prompt", "or 'messages': give exactly one of them");
  if (has_prompt) {
    if (!body["prompt"].isString()) return bad("prompt", "must be a string");
    abi::OwnedTensor t;
    t.name = proto::kInputText;
    t.dtype = FERRY_DTYPE_BYTES;
    t.shape = {1};
    t.data = abi::join_bytes({body["prompt"].asString()});
    spec.inputs.push_back(std::move(t));
    if (given(body, "add_special_tokens")) {
      if (!body["add_special_tokens"].isBool()) return bad("add_special_tokens", "must be true or false");
      params["add_special_tokens"] = body["add_special_tokens"];
    }
  } else {
    params[proto::kMessages] = body["messages"];  // checked by the backend
    bool add_generation_prompt = true;
    FERRY_RETURN_IF_ERROR(read_bool(body, "add_generation_prompt", &add_generation_prompt));
    if (!add_generation_prompt) return unsupported("add_generation_prompt", "the template always adds it");
  }
  spec.parameters_json = to_json(params);
  return spec;
}

Result<RequestSpec> parse_detokenize_request(const Json::Value& body, std::string* model) {
  if (!given(body, "model") || !body["model"].isString()) return bad("model", "is required (a string)");
  *model = body["model"].asString();
  if (!given(body, "tokens") || !body["tokens"].isArray()) return bad("tokens", "is required (a list of token ids)");
  auto ids = token_list(body["tokens"], "tokens");
  if (!ids.ok()) return ids.status();
  RequestSpec spec;
  spec.inputs.push_back(ids_tensor(ids.value()));
  Json::Value params;
  params[proto::kTask] = proto::kTaskDetokenize;
  spec.parameters_json = to_json(params);
  return spec;
}

}  // namespace ferry::host
