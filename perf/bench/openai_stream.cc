#include "perf/bench/openai_stream.h"

namespace ferry::bench {
namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The generated text of a chunk's first choice; false when the chunk has no choice with text.
bool chunk_text(const Json::Value& chunk, std::string* text) {
  const Json::Value& choices = chunk["choices"];
  if (!choices.isArray() || choices.empty()) return false;
  const Json::Value& c = choices[0];
  const Json::Value& t = c.isMember("delta") ? c["delta"]["content"] : c["text"];
  if (!t.isString()) return false;
  *text = t.asString();
  return !text->empty();
}

}  // namespace

void StreamParser::fail(const char* kind, std::string message) {
  if (!out_.error.empty()) return;
  out_.error_kind = kind;
  out_.error = std::move(message);
}

bool StreamParser::on_event(const std::string& data, double t_s) {
  if (data == "[DONE]") {
    done_seen_ = true;
    return true;
  }
  Json::Value chunk;
  std::string err;
  if (!reader_->parse(data.data(), data.data() + data.size(), &chunk, &err) || !chunk.isObject()) {
    fail("bad_chunk", "not a JSON object: " + data.substr(0, 200));
    return false;
  }
  if (chunk.isMember("error")) {
    const Json::Value& e = chunk["error"];
    fail("error_event", e.isObject() && e["message"].isString() ? e["message"].asString() : data.substr(0, 200));
    return false;
  }
  std::string text;
  if (chunk_text(chunk, &text)) {
    if (!first_seen_) {
      first_seen_ = true;
      out_.ttft_s = t_s;
    } else {
      out_.itl_s.push_back(t_s - last_content_s_);
    }
    last_content_s_ = t_s;
    ++num_content_chunks_;
    out_.generated_text += text;
  }
  const Json::Value& usage = chunk["usage"];
  if (usage.isObject() && usage["completion_tokens"].isIntegral()) {
    out_.usage_seen = true;
    out_.output_tokens = usage["completion_tokens"].asInt();
    if (usage["prompt_tokens"].isIntegral()) out_.prompt_tokens = usage["prompt_tokens"].asInt();
  }
  return true;
}

RequestOutcome StreamParser::finish(long status, const std::string& transport_error, double t_s) {
  out_.e2e_s = t_s;
  if (status == 0 || (!transport_error.empty() && out_.error.empty())) {
    fail("transport", transport_error.empty() ? "no HTTP answer" : transport_error);
  } else if (status != 200) {
    fail(("http_" + std::to_string(status)).c_str(), "HTTP status " + std::to_string(status));
  } else if (out_.error.empty() && !done_seen_) {
    fail("no_done", "the stream ended without data: [DONE]");
  } else if (out_.error.empty() && num_content_chunks_ == 0) {
    fail("no_tokens", "no chunk carried generated text");
  }
  if (!out_.usage_seen) out_.output_tokens = num_content_chunks_;
  out_.ok = out_.error.empty();
  return std::move(out_);
}

Result<Json::Value> parse_extra_body(const std::string& text) {
  Json::Value v(Json::objectValue);
  if (text.empty()) return v;
  Json::CharReaderBuilder builder;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  std::string err;
  if (!reader->parse(text.data(), text.data() + text.size(), &v, &err) || !v.isObject()) {
    return Status::InvalidArgument("--extra-body: expected a JSON object, got '" + text + "'");
  }
  return v;
}

std::string make_request_body(const BenchOptions& o, const Json::Value& extra_body, const BenchRequest& r) {
  Json::Value body(Json::objectValue);
  body["model"] = o.model;
  if (o.api == ApiKind::kChatCompletions) {
    Json::Value msg(Json::objectValue);
    msg["role"] = "user";
    msg["content"] = r.prompt;
    body["messages"].append(msg);
  } else {
    body["prompt"] = r.prompt;
  }
  body["max_tokens"] = r.output_len_tokens;
  body["temperature"] = o.temperature;
  body["stream"] = true;
  body["stream_options"]["include_usage"] = true;
  if (o.ignore_eos) body["ignore_eos"] = true;
  for (const auto& key : extra_body.getMemberNames()) body[key] = extra_body[key];
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  return Json::writeString(w, body);
}

RequestOutcome OpenAiStreamer::send(const BenchRequest& request) {
  const std::string body = make_request_body(options_, extra_body_, request);
  StreamParser parser;
  const auto start = Clock::now();
  client::HttpResult res = http_.post_stream(options_.endpoint, body, [&](const std::string& data) {
    return parser.on_event(data, seconds_since(start));
  });
  RequestOutcome out = parser.finish(res.status, res.error, seconds_since(start));
  if (out.prompt_tokens == 0) out.prompt_tokens = request.expected_input_tokens;
  return out;
}

}  // namespace ferry::bench
