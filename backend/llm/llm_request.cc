#include "backend/llm/llm_request.h"

#include <json/json.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backend/llm/engine/prompt_logprobs.h"
#include "backend/llm/guided_decoding.h"
#include "backend/llm/json_text.h"
#include "common/abi/abi_util.h"
#include "common/chat_request.h"
#include "common/json_parse.h"
#include "common/json_writer.h"
#include "common/llm_protocol.h"

namespace ferry::llm {
namespace {

namespace proto = llm_protocol;

Status bad(const std::string& key, const std::string& what) {
  return Status::InvalidArgument("parameter '" + key + "' " + what);
}

Status read_float(const Json::Value& p, const char* key, float lo, float hi, float* out) {
  if (!p.isMember(key)) return Status::Ok();
  const Json::Value& v = p[key];
  if (!v.isNumeric() || v.isBool() || v.asDouble() < lo || v.asDouble() > hi) {
    return bad(key, "must be a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  *out = v.asFloat();
  return Status::Ok();
}

Status read_int(const Json::Value& p, const char* key, int64_t lo, int64_t hi, int32_t* out) {
  if (!p.isMember(key)) return Status::Ok();
  const Json::Value& v = p[key];
  if (!v.isInt64() || v.asInt64() < lo || v.asInt64() > hi) {
    return bad(key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  *out = static_cast<int32_t>(v.asInt64());
  return Status::Ok();
}

Status read_bool(const Json::Value& p, const char* key, bool* out) {
  if (!p.isMember(key)) return Status::Ok();
  if (!p[key].isBool()) return bad(key, "must be true or false");
  *out = p[key].asBool();
  return Status::Ok();
}

// OpenAI's logit_bias: {"<token id>": bias in [-100, 100]}; the ids are checked against the
// vocabulary by SamplingParams::validate.
Status parse_logit_bias(const Json::Value& p, SamplingParams* s) {
  if (!p.isMember("logit_bias") || p["logit_bias"].isNull()) return Status::Ok();
  const Json::Value& v = p["logit_bias"];
  if (!v.isObject()) return bad("logit_bias", "must be an object mapping token ids to numbers");
  for (const auto& key : v.getMemberNames()) {
    char* end = nullptr;
    errno = 0;
    const long id = std::strtol(key.c_str(), &end, 10);
    if (key.empty() || *end != '\0' || errno != 0 || id < 0 || id > INT32_MAX) {
      return bad("logit_bias", "has key '" + key + "', which is not a token id");
    }
    const Json::Value& b = v[key];
    if (!b.isNumeric() || b.isBool() || b.asDouble() < -100.0 || b.asDouble() > 100.0) {
      return bad("logit_bias", "values must be numbers in [-100, 100]");
    }
    s->logit_bias.emplace_back(static_cast<int32_t>(id), b.asFloat());
  }
  return Status::Ok();
}

Status parse_sampling(const Json::Value& p, SamplingParams* s) {
  // 0 is a request for the prompt alone (its echo or logprobs); parse_llm_request turns it into
  // prompt_only.
  FERRY_RETURN_IF_ERROR(read_int(p, proto::kMaxTokens, 0, 1 << 24, &s->max_tokens));
  // TensorRT-LLM backend names (Triton's generate endpoint) beside the vLLM/OpenAI ones.
  FERRY_RETURN_IF_ERROR(read_int(p, "runtime_top_k", -1, 1 << 30, &s->top_k));
  FERRY_RETURN_IF_ERROR(read_float(p, "runtime_top_p", 0.0f, 1.0f, &s->top_p));
  if (p.isMember("runtime_top_p") && s->top_p <= 0.0f) return bad("runtime_top_p", "must be in (0, 1]");
  if (p.isMember("end_id") && !p["end_id"].isNull()) {
    if (!p["end_id"].isInt()) return bad("end_id", "must be a token id");
    s->stop_token_ids.push_back(p["end_id"].asInt());
  }
  if (p.isMember("stop_words") && !p["stop_words"].isNull()) {
    const Json::Value& v = p["stop_words"];
    if (!v.isArray()) return bad("stop_words", "must be a list of strings");
    for (const auto& x : v) {
      if (!x.isString() || x.asString().empty()) return bad("stop_words", "must be a list of non-empty strings");
      s->stop.push_back(x.asString());
    }
  }
  FERRY_RETURN_IF_ERROR(read_float(p, "temperature", 0.0f, 100.0f, &s->temperature));
  FERRY_RETURN_IF_ERROR(read_float(p, "top_p", 0.0f, 1.0f, &s->top_p));
  if (p.isMember("top_p") && s->top_p <= 0.0f) return bad("top_p", "must be in (0, 1]");
  FERRY_RETURN_IF_ERROR(read_int(p, "top_k", -1, 1 << 30, &s->top_k));
  FERRY_RETURN_IF_ERROR(read_float(p, "min_p", 0.0f, 1.0f, &s->min_p));
  FERRY_RETURN_IF_ERROR(read_float(p, "repetition_penalty", 1e-6f, 100.0f, &s->repetition_penalty));
  FERRY_RETURN_IF_ERROR(read_float(p, "presence_penalty", -2.0f, 2.0f, &s->presence_penalty));
  FERRY_RETURN_IF_ERROR(read_float(p, "frequency_penalty", -2.0f, 2.0f, &s->frequency_penalty));
  for (const char* key : {"seed", "random_seed"}) {
    auto seed = parse_seed(p, key);  // the same rule as /v1's
    if (!seed.ok()) return seed.status();
    if (seed.value()) s->seed = *seed.value();
  }
  if (p.isMember("stop") && !p["stop"].isNull()) {
    const Json::Value& v = p["stop"];
    if (v.isString()) {
      s->stop.push_back(v.asString());
    } else if (v.isArray()) {
      for (const auto& x : v) {
        if (!x.isString() || x.asString().empty()) return bad("stop", "must be a string or a list of non-empty strings");
        s->stop.push_back(x.asString());
      }
    } else {
      return bad("stop", "must be a string or a list of strings");
    }
  }
  if (p.isMember("stop_token_ids") && !p["stop_token_ids"].isNull()) {
    if (!p["stop_token_ids"].isArray()) return bad("stop_token_ids", "must be a list of token ids");
    for (const auto& x : p["stop_token_ids"]) {
      if (!x.isInt()) return bad("stop_token_ids", "must be a list of token ids");
      s->stop_token_ids.push_back(x.asInt());
    }
  }
  FERRY_RETURN_IF_ERROR(read_int(p, "min_tokens", 0, 1 << 24, &s->min_tokens));
  FERRY_RETURN_IF_ERROR(parse_logit_bias(p, s));
  FERRY_RETURN_IF_ERROR(read_bool(p, "ignore_eos", &s->ignore_eos));
  FERRY_RETURN_IF_ERROR(read_bool(p, "include_stop_str_in_output", &s->include_stop_str_in_output));
  if (p.isMember(proto::kLogprobs) && !p[proto::kLogprobs].isNull()) {
    const Json::Value& v = p[proto::kLogprobs];
    if (v.isBool()) s->num_logprobs = v.asBool() ? 0 : -1;
    else FERRY_RETURN_IF_ERROR(read_int(p, proto::kLogprobs, 0, 20, &s->num_logprobs));
  }
  if (p.isMember(proto::kPromptLogprobs) && !p[proto::kPromptLogprobs].isNull()) {
    FERRY_RETURN_IF_ERROR(read_int(p, proto::kPromptLogprobs, 0, kMaxPromptLogprobs, &s->num_prompt_logprobs));
  }
  return Status::Ok();
}

Result<std::vector<int32_t>> ids_from_tensor(const ferry_tensor& t) {
  std::vector<int32_t> ids;
  if (t.dtype == FERRY_DTYPE_INT32) {
    ids.resize(t.data_bytes / 4);
    if (!ids.empty()) std::memcpy(ids.data(), t.data, ids.size() * 4);
  } else if (t.dtype == FERRY_DTYPE_INT64) {
    const auto* p = static_cast<const int64_t*>(t.data);
    for (uint64_t i = 0; i < t.data_bytes / 8; ++i) {
      if (p[i] < INT32_MIN || p[i] > INT32_MAX) return Status::InvalidArgument("input 'input_ids' holds an id out of range");
      ids.push_back(static_cast<int32_t>(p[i]));
    }
  } else {
    return Status::InvalidArgument(std::string("input '") + proto::kInputIds + "' must be INT32 or INT64");
  }
  return ids;
}

// The tools as a chat template sees them: the normalized entries in HF's and vLLM's key order (type,
// then function: name, description, parameters), each function's parameters schema as the request
// wrote it (`params_text`: the request's parameters). Json::Value sorts keys, and templates print
// the tools (Llama 3.1's `tool | tojson`): the model should read them as the client wrote them.
std::string tools_text(const Json::Value& tools, std::string_view params_text) {
  std::optional<std::vector<std::string_view>> raw;
  if (auto t = raw_json_member(params_text, {proto::kTools})) raw = raw_json_elements(*t);
  if (raw && raw->size() != tools.size()) raw.reset();
  std::string out = "[";
  for (Json::ArrayIndex i = 0; i < tools.size(); ++i) {
    const Json::Value& f = tools[i]["function"];
    if (i > 0) out += ',';
    out += "{\"type\":\"function\",\"function\":{\"name\":";
    append_json_string(out, f["name"].asString());
    if (f["description"].isString()) {
      out += ",\"description\":";
      append_json_string(out, f["description"].asString());
    }
    out += ",\"parameters\":";
    std::optional<std::string_view> schema;
    if (raw) schema = raw_json_member((*raw)[i], {"function", "parameters"});
    if (schema && schema->front() == '{') out += *schema;
    else out += compact_json(f["parameters"]);
    out += "}}";
  }
  out += ']';
  return out;
}

}  // namespace

Result<LlmRequest> parse_llm_request(const ferry_request& request, const Tokenizer& tokenizer,
                                     const ChatTemplate* chat_template, int32_t vocab_size,
                                     int64_t max_model_len) {
  LlmRequest out;
  const char* text = request.parameters_json ? request.parameters_json : "{}";
  auto parsed = parse_json_text(text, kJsonFileOptions);
  if (!parsed.ok() || !parsed->isObject()) {
    return Status::InvalidArgument("parameters must be a JSON object");
  }
  const Json::Value& p = parsed.value();
  if (p.isMember(proto::kTask)) {
    const std::string task = p[proto::kTask].isString() ? p[proto::kTask].asString() : "";
    if (task == proto::kTaskGenerate) out.task = LlmTask::kGenerate;
    else if (task == proto::kTaskTokenize) out.task = LlmTask::kTokenize;
    else if (task == proto::kTaskDetokenize) out.task = LlmTask::kDetokenize;
    else return bad(proto::kTask, "must be \"generate\", \"tokenize\" or \"detokenize\"");
  }
  FERRY_RETURN_IF_ERROR(read_bool(p, proto::kEcho, &out.echo));
  bool to_window = false;
  FERRY_RETURN_IF_ERROR(read_bool(p, proto::kMaxTokensToWindow, &to_window));
  // max_tokens to the end of the window is known once the prompt is: until then it is 1, the least
  // a prompt must leave room for.
  const bool fill_max_tokens = to_window && !(p.isMember(proto::kMaxTokens) && !p[proto::kMaxTokens].isNull());
  if (fill_max_tokens) out.sampling.max_tokens = 1;
  FERRY_RETURN_IF_ERROR(read_bool(p, "speculative", &out.speculative));
  FERRY_RETURN_IF_ERROR(parse_sampling(p, &out.sampling));
  if (out.sampling.max_tokens == 0) {
    // Scheduled with one token, which is dropped: the prompt's last position is computed anyway.
    out.prompt_only = true;
    out.sampling.max_tokens = 1;
  }
  FERRY_RETURN_IF_ERROR(read_bool(p, "skip_special_tokens", &out.skip_special_tokens));
  bool add_special_tokens = true;
  FERRY_RETURN_IF_ERROR(read_bool(p, "add_special_tokens", &add_special_tokens));

  // Only a prompt of a generate request has to fit the window; tokenize answers the exact count.
  const bool bounded = max_model_len > 0 && out.task == LlmTask::kGenerate;
  const size_t max_prompt_tokens =
      bounded ? static_cast<size_t>(std::max<int64_t>(0, max_model_len - out.sampling.max_tokens)) : SIZE_MAX;
  auto check_prompt_bytes = [&](std::string_view prompt, const char* what) {
    if (!bounded || static_cast<int64_t>(prompt.size()) <= max_model_len * kMaxPromptBytesPerToken) return Status::Ok();
    return Status::InvalidArgument(std::string(what) + " has " + std::to_string(prompt.size()) +
                                   " bytes, more than any prompt that fits the context window of " +
                                   std::to_string(max_model_len) + " tokens (at most " +
                                   std::to_string(max_model_len * kMaxPromptBytesPerToken) + " bytes, " +
                                   std::to_string(kMaxPromptBytesPerToken) + " per token)");
  };

  const ferry_tensor* text_input = nullptr;
  const ferry_tensor* input_ids = nullptr;
  for (uint32_t i = 0; i < request.num_inputs; ++i) {
    std::string name = request.inputs[i].name ? request.inputs[i].name : "";
    if (name == proto::kInputText) text_input = &request.inputs[i];
    else if (name == proto::kInputIds) input_ids = &request.inputs[i];
    else return Status::InvalidArgument("unknown input '" + name + "' (expected text_input or input_ids)");
  }
  const bool has_messages = p.isMember(proto::kMessages) && !p[proto::kMessages].isNull();
  if ((text_input != nullptr) + (input_ids != nullptr) + has_messages != 1) {
    return Status::InvalidArgument("give exactly one of the inputs text_input or input_ids, or the parameter messages");
  }
  if (has_messages) {
    // The same checks and flattening as /v1/chat/completions, for generate, infer and ZeroMQ.
    auto chat = normalize_chat_messages(p[proto::kMessages]);
    if (!chat.ok()) return chat.status();
    if (chat_template == nullptr) return bad(proto::kMessages, "cannot be used: the model has no chat template");
    Json::StreamWriterBuilder w;
    w["indentation"] = "";
    auto messages = value_from_json(Json::writeString(w, chat.value()));
    if (!messages.ok()) return messages.status().with_prefix("parameter 'messages'");
    ChatTemplateInputs in;
    in.messages = messages.value();
    if (p.isMember(proto::kTools) && !p[proto::kTools].isNull()) {
      auto tools = normalize_chat_tools(p[proto::kTools]);
      if (!tools.ok()) return tools.status();
      if (!tools->empty()) {  // no tools: `tools` stays undefined, as HF leaves it
        auto value = value_from_json(tools_text(tools.value(), text));
        if (!value.ok()) return value.status().with_prefix("parameter 'tools'");
        in.tools = value.value();
      }
    }
    in.add_generation_prompt = true;
    if (!tokenizer.bos_token().empty()) in.bos_token = tokenizer.bos_token();
    if (!tokenizer.eos_token().empty()) in.eos_token = tokenizer.eos_token();
    auto rendered = chat_template->render(in);
    if (!rendered.ok()) return rendered.status().with_prefix("chat template");
    FERRY_RETURN_IF_ERROR(check_prompt_bytes(rendered.value(), "the rendered chat"));
    // The template writes BOS itself where the model wants it.
    auto ids = tokenizer.encode(rendered.value(), false, max_prompt_tokens);
    if (!ids.ok()) return ids.status();
    out.prompt_ids = std::move(ids.value());
  } else if (text_input != nullptr) {
    if (text_input->dtype != FERRY_DTYPE_BYTES) return Status::InvalidArgument("input 'text_input' must be BYTES");
    auto parts = abi::split_bytes(static_cast<const uint8_t*>(text_input->data), text_input->data_bytes);
    if (!parts.ok()) return parts.status();
    if (parts->size() != 1) return Status::InvalidArgument("input 'text_input' must hold exactly one string");
    FERRY_RETURN_IF_ERROR(check_prompt_bytes(parts.value()[0], "the prompt"));
    auto ids = tokenizer.encode(parts.value()[0], add_special_tokens, max_prompt_tokens);
    if (!ids.ok()) return ids.status().with_prefix("input 'text_input'");
    out.prompt_ids = std::move(ids.value());
  } else {
    auto ids = ids_from_tensor(*input_ids);
    if (!ids.ok()) return ids.status();
    out.prompt_ids = std::move(ids.value());
    for (int32_t id : out.prompt_ids) {
      if (id < 0 || id >= vocab_size) {
        return Status::InvalidArgument("input 'input_ids' holds token id " + std::to_string(id) +
                                       ", outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
      }
    }
  }
  if (out.task == LlmTask::kDetokenize && input_ids == nullptr) {
    return Status::InvalidArgument("task 'detokenize' needs the input input_ids");
  }
  if (out.task != LlmTask::kGenerate) return out;  // sampling limits do not apply
  if (out.prompt_ids.empty()) return Status::InvalidArgument("the prompt is empty");
  if (fill_max_tokens && max_model_len > 0) {
    const int64_t left = max_model_len - static_cast<int64_t>(out.prompt_ids.size());
    if (left < 1) {
      // Tokenization stopped past the window, so the count is a lower bound.
      return Status::InvalidArgument("the prompt has at least " + std::to_string(out.prompt_ids.size()) +
                                     " tokens, which leaves no room to generate in the context window of " +
                                     std::to_string(max_model_len));
    }
    out.sampling.max_tokens = static_cast<int32_t>(std::min<int64_t>(left, 1 << 24));
  }
  if (out.sampling.min_tokens > out.sampling.max_tokens) return bad("min_tokens", "must not exceed max_tokens");
  FERRY_RETURN_IF_ERROR(out.sampling.validate(vocab_size));
  auto gbnf = guided_gbnf(p, text);
  if (!gbnf.ok()) return gbnf.status();
  out.guided_gbnf = std::move(gbnf.value());
  return out;
}

}  // namespace ferry::llm
