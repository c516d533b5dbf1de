#include "host/http/openai_response.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <set>

#include "common/abi/abi_util.h"
#include "common/json_writer.h"
#include "common/llm_protocol.h"
#include "host/json_util.h"
#include "host/server_context.h"

namespace ferry::host {
namespace {

namespace proto = llm_protocol;

Json::Value null_or(const std::string& s) { return s.empty() ? Json::Value() : Json::Value(s); }

Json::Value bytes_of(const std::string& s) {
  Json::Value out(Json::arrayValue);
  for (unsigned char c : s) out.append(static_cast<Json::UInt>(c));
  return out;
}

Json::Value object_head(const OaiHeader& h, const char* object) {
  Json::Value j;
  j["id"] = h.id;
  j["object"] = object;
  j["created"] = static_cast<Json::Int64>(h.created);
  j["model"] = h.model;
  return j;
}

}  // namespace

Result<ChoiceDelta> decode_response(const ResponseData& r) {
  ChoiceDelta d;
  for (const auto& t : r.outputs) {
    if (t.name == proto::kOutputText && t.dtype == FERRY_DTYPE_BYTES) {
      auto parts = abi::for_each_bytes(t.data.data(), t.data.size(), [&](std::string_view p) { d.text.append(p); });
      if (!parts.ok()) return parts.status();
    } else if (t.name == proto::kOutputIds && t.dtype == FERRY_DTYPE_INT32) {
      d.ids.resize(t.data.size() / sizeof(int32_t));
      if (!d.ids.empty()) std::memcpy(d.ids.data(), t.data.data(), d.ids.size() * sizeof(int32_t));
    }
  }
  if (r.parameters_json.empty()) return d;
  auto p = parse_json(r.parameters_json, "response parameters");
  if (!p.ok()) return p.status();
  const Json::Value& j = p.value();
  if (!j.isObject()) return d;
  if (j[proto::kLogprobs].isArray()) d.logprobs = j[proto::kLogprobs];
  if (j[proto::kPromptLogprobs].isArray()) d.prompt_logprobs = j[proto::kPromptLogprobs];
  if (j[proto::kPromptText].isString()) d.prompt_text = j[proto::kPromptText].asString();
  if (j[proto::kFinishReason].isString()) d.finish_reason = j[proto::kFinishReason].asString();
  const Json::Value& usage = j[proto::kUsage];
  if (usage.isObject()) {
    d.prompt_tokens = usage[proto::kPromptTokens].asInt64();
    d.completion_tokens = usage[proto::kCompletionTokens].asInt64();
  }
  return d;
}

OaiHeader make_header(const std::string& prefix, const std::string& model) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kHex[] = "0123456789abcdef";
  OaiHeader h;
  h.id = prefix;
  for (int i = 0; i < 24; ++i) h.id += kHex[rng() & 15];
  h.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  h.model = model;
  return h;
}

Json::Value usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  Json::Value u;
  u["prompt_tokens"] = static_cast<Json::Int64>(prompt_tokens);
  u["completion_tokens"] = static_cast<Json::Int64>(completion_tokens);
  u["total_tokens"] = static_cast<Json::Int64>(prompt_tokens + completion_tokens);
  return u;
}

int64_t count_chars(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::vector<int64_t> align_tokens(Json::Value* logprobs, const std::string& text, size_t* cursor, int64_t* chars) {
  std::vector<int64_t> offsets;
  if (!logprobs->isArray()) return offsets;
  *cursor = std::min(*cursor, text.size());
  const std::string_view all(text);
  for (auto& lp : *logprobs) {
    offsets.push_back(*chars);
    const std::string token = lp[proto::kToken].asString();
    if (token.empty() || *cursor >= text.size()) continue;
    // The token starts at the cursor or after whitespace only: try each start in that run, so the
    // work per token is bounded by the whitespace run, not by the rest of the text.
    size_t at = std::string_view::npos;
    for (size_t p = *cursor; p < text.size(); ++p) {
      if (all.compare(p, token.size(), token) == 0) {
        at = p;
        break;
      }
      if (text[p] != ' ' && text[p] != '\n' && text[p] != '\t') break;
    }
    if (at == std::string_view::npos) continue;
    if (at > *cursor) {
      const std::string whole(all.substr(*cursor, at + token.size() - *cursor));
      lp[proto::kToken] = whole;
      for (auto& alt : lp[proto::kTopLogprobs]) {
        if (alt[proto::kTokenId] == lp[proto::kTokenId]) alt[proto::kToken] = whole;
      }
    }
    *chars += count_chars(all.substr(*cursor, at + token.size() - *cursor));
    *cursor = at + token.size();
  }
  return offsets;
}

Json::Value completion_logprobs(const Json::Value& logprobs, const std::vector<int64_t>& offsets) {
  Json::Value out;
  out["tokens"] = Json::Value(Json::arrayValue);
  out["token_logprobs"] = Json::Value(Json::arrayValue);
  out["top_logprobs"] = Json::Value(Json::arrayValue);
  out["text_offset"] = Json::Value(Json::arrayValue);
  Json::ArrayIndex i = 0;
  for (const auto& lp : logprobs) {
    const std::string token = lp[proto::kToken].asString();
    out["tokens"].append(token);
    out["token_logprobs"].append(lp[proto::kLogprob]);
    out["text_offset"].append(static_cast<Json::Int64>(i < offsets.size() ? offsets[i] : 0));
    ++i;
    if (!lp.isMember(proto::kLogprob)) {  // a prompt's first token: nothing precedes it
      out["top_logprobs"].append(Json::Value());
      continue;
    }
    // As vLLM does: the alternatives, plus the chosen token when it is not among them. The legacy
    // format is a dict keyed by text, but two tokens can decode to the same text (each half of a
    // UTF-8 character reads "\ufffd"): such a token is keyed by its id instead, so all N
    // alternatives stay distinct.
    Json::Value top(Json::objectValue);
    std::set<int64_t> ids;
    auto add = [&](const Json::Value& t) {
      const Json::Value& id = t[proto::kTokenId];
      if (id.isIntegral() && !ids.insert(id.asInt64()).second) return;  // the same token again
      std::string key = t[proto::kToken].asString();
      if (id.isIntegral() && (top.isMember(key) || key.find("\xEF\xBF\xBD") != std::string::npos)) {
        key = "token_id:" + std::to_string(id.asInt64());
      }
      if (!top.isMember(key)) top[key] = t[proto::kLogprob];
    };
    for (const auto& t : lp[proto::kTopLogprobs]) add(t);
    add(lp);
    out["top_logprobs"].append(top);
  }
  return out;
}

Json::Value echo_prompt_entries(const Json::Value& prompt_logprobs, int num_top, const std::string& echo,
                                std::vector<int64_t>* offsets) {
  Json::Value entries(Json::arrayValue);
  for (const auto& e : prompt_logprobs) {
    Json::Value x = e;
    if (x[proto::kTopLogprobs].isArray() && static_cast<int>(x[proto::kTopLogprobs].size()) > num_top) {
      Json::Value top(Json::arrayValue);
      for (int i = 0; i < num_top; ++i) top.append(x[proto::kTopLogprobs][i]);
      x[proto::kTopLogprobs] = top;
    }
    entries.append(x);
  }
  size_t cursor = 0;
  int64_t chars = 0;
  *offsets = align_tokens(&entries, echo, &cursor, &chars);
  return entries;
}

Json::Value vllm_prompt_logprobs(const Json::Value& prompt_logprobs) {
  Json::Value out(Json::arrayValue);
  for (const auto& e : prompt_logprobs) {
    if (!e.isMember(proto::kLogprob)) {
      out.append(Json::Value());
      continue;
    }
    Json::Value position(Json::objectValue);
    auto add = [&](const Json::Value& t, const Json::Value& rank) {
      const std::string key = std::to_string(t[proto::kTokenId].asInt64());
      if (position.isMember(key)) return;
      Json::Value v;
      v["logprob"] = t[proto::kLogprob];
      v["rank"] = rank;
      v["decoded_token"] = t[proto::kToken];
      position[key] = v;
    };
    add(e, e[proto::kRank]);  // the prompt token, with its rank in the distribution
    Json::ArrayIndex i = 0;
    for (const auto& t : e[proto::kTopLogprobs]) add(t, static_cast<Json::Int>(++i));
    out.append(position);
  }
  return out;
}

Json::Value chat_logprobs(const Json::Value& logprobs) {
  Json::Value content(Json::arrayValue);
  for (const auto& lp : logprobs) {
    Json::Value e;
    e["token"] = lp[proto::kToken];
    e["logprob"] = lp[proto::kLogprob];
    e["bytes"] = bytes_of(lp[proto::kToken].asString());
    e["top_logprobs"] = Json::Value(Json::arrayValue);
    for (const auto& t : lp[proto::kTopLogprobs]) {
      Json::Value a;
      a["token"] = t[proto::kToken];
      a["logprob"] = t[proto::kLogprob];
      a["bytes"] = bytes_of(t[proto::kToken].asString());
      e["top_logprobs"].append(a);
    }
    content.append(e);
  }
  Json::Value out;
  out["content"] = content;
  return out;
}

Json::Value completion_object(const OaiHeader& h, Json::Value choices, Json::Value usage) {
  Json::Value j = object_head(h, "text_completion");
  j["choices"] = std::move(choices);
  j["usage"] = std::move(usage);
  return j;
}

Json::Value completion_choice(int index, const std::string& text, Json::Value logprobs,
                              const std::string& finish_reason) {
  Json::Value c;
  c["index"] = index;
  c["text"] = text;
  c["logprobs"] = std::move(logprobs);
  c["finish_reason"] = null_or(finish_reason);
  return c;
}

Json::Value completion_chunk(const OaiHeader& h, int index, const std::string& text, Json::Value logprobs,
                             const std::string& finish_reason, bool usage_null) {
  Json::Value j = object_head(h, "text_completion");
  j["choices"].append(completion_choice(index, text, std::move(logprobs), finish_reason));
  if (usage_null) j["usage"] = Json::Value();
  return j;
}

Json::Value chat_object(const OaiHeader& h, Json::Value choices, Json::Value usage) {
  Json::Value j = object_head(h, "chat.completion");
  j["choices"] = std::move(choices);
  j["usage"] = std::move(usage);
  return j;
}

Json::Value chat_choice(int index, const std::string& content, Json::Value logprobs, const std::string& finish_reason) {
  Json::Value c;
  c["index"] = index;
  c["message"]["role"] = "assistant";
  c["message"]["content"] = content;
  c["logprobs"] = std::move(logprobs);
  c["finish_reason"] = null_or(finish_reason);
  return c;
}

Json::Value chat_chunk(const OaiHeader& h, int index, Json::Value delta, Json::Value logprobs,
                       const std::string& finish_reason, bool usage_null) {
  Json::Value j = object_head(h, "chat.completion.chunk");
  Json::Value c;
  c["index"] = index;
  c["delta"] = std::move(delta);
  c["logprobs"] = std::move(logprobs);
  c["finish_reason"] = null_or(finish_reason);
  j["choices"].append(c);
  if (usage_null) j["usage"] = Json::Value();
  return j;
}

TextChunkWriter::TextChunkWriter(const OaiHeader& h, bool chat, bool usage_null) {
  head_ = "{\"id\":";
  append_json_string(head_, h.id);
  head_ += ",\"object\":";
  append_json_string(head_, chat ? "chat.completion.chunk" : "text_completion");
  head_ += ",\"created\":";
  append_json_int(head_, h.created);
  head_ += ",\"model\":";
  append_json_string(head_, h.model);
  head_ += ",\"choices\":[{\"index\":";
  text_key_ = chat ? ",\"delta\":{\"content\":" : ",\"text\":";
  if (chat) {
    tail_ = usage_null ? "},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}"
                       : "},\"logprobs\":null,\"finish_reason\":null}]}";
  } else {
    tail_ = usage_null ? ",\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}"
                       : ",\"logprobs\":null,\"finish_reason\":null}]}";
  }
}

void TextChunkWriter::append(std::string& out, int index, std::string_view text) const {
  out += head_;
  append_json_int(out, index);
  out += text_key_;
  append_json_string(out, text);
  out += tail_;
}

Json::Value usage_chunk(const OaiHeader& h, const char* object, Json::Value usage) {
  Json::Value j = object_head(h, object);
  j["choices"] = Json::Value(Json::arrayValue);
  j["usage"] = std::move(usage);
  return j;
}

int error_http_status(const Status& status) { return http_status_for(status.code()); }

Json::Value error_json(const Status& status) {
  const int http = error_http_status(status);
  const std::string& message = status.message();
  Json::Value e;
  e["message"] = message;
  const char* type = "server_error";
  Json::Value code;
  if (http == 400 || http == 404 || http == 413) type = "invalid_request_error";
  if (http == 404 && message.rfind("The model `", 0) == 0) code = "model_not_found";
  if (http == 413) code = "request_too_large";
  if (http == 400 && message.find("context window") != std::string::npos) code = "context_length_exceeded";
  if (http == 429) {
    type = "rate_limit_error";
    code = "rate_limit_exceeded";
  }
  if (http == 408) {
    type = "timeout_error";
    code = "timeout";
  }
  e["type"] = type;
  // The field the message names: "parameter 'temperature' must be ..." -> "temperature".
  Json::Value param;
  static const char kKey[] = "parameter '";
  size_t at = message.find(kKey);
  if (at != std::string::npos) {
    size_t begin = at + sizeof(kKey) - 1;
    size_t end = message.find('\'', begin);
    if (end != std::string::npos) param = message.substr(begin, end - begin);
  }
  e["param"] = param;
  e["code"] = code;
  Json::Value out;
  out["error"] = e;
  return out;
}

}  // namespace ferry::host
