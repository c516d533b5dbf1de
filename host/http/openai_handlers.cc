// The OpenAI-compatible HTTP routes (see openai_transport.h for the entry point and
// docs/openai-api.md for the contract): /v1/completions, /v1/chat/completions, /v1/models,
// /tokenize and /detokenize.
//
// A generation request with n choices becomes n ABI requests whose responses meet in one queue,
// tagged with their choice. The civetweb thread waits on that queue: a non-streamed answer is
// written once every choice has ended; a stream starts with the first response, so a request
// refused before it produced anything (bad field, context window, queue full or timed out) gets a
// normal JSON error status, and one that fails later gets an error event and [DONE]. A failed
// write (the client left) cancels every choice.
#include <civetweb.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "common/llm_protocol.h"
#include "host/blocking_queue.h"
#include "host/http/client_watch.h"
#include "host/http/openai_request.h"
#include "host/http/openai_response.h"
#include "host/http/openai_responses.h"
#include "host/http/openai_transport.h"
#include "host/json_util.h"
#include "host/log.h"

namespace ferry::host {
namespace {

int send_oai_error(mg_connection* conn, const Status& status) {
  return send_json(conn, error_http_status(status), error_json(status));
}

namespace proto = llm_protocol;

// Models that speak ferry's LLM protocol (common/llm_protocol.h) say so in their metadata and can
// serve /v1; the echo backend does not.
bool speaks_llm(const ModelVersion& mv) {
  const Json::Value& platform = mv.metadata()[proto::kMetaPlatform];
  return platform.isString() && platform.asString() == proto::kPlatform;
}

// The model a /v1 request names. NotFound for unknown models; InvalidArgument, naming the way to
// reach it, for a model whose backend does not speak the LLM protocol (it would answer /v1 with
// empty text).
Result<std::shared_ptr<ModelVersion>> find_model(ServerContext& ctx, const std::string& name) {
  auto mv = ctx.registry->find(name, "");
  if (!mv.ok() && mv.status().code() == StatusCode::kNotFound) {
    return Status::NotFound("The model `" + name + "` does not exist.");
  }
  if (mv.ok() && !speaks_llm(*mv.value())) {
    const Json::Value& platform = mv.value()->metadata()[proto::kMetaPlatform];
    return Status::InvalidArgument("The model `" + name + "` is not a language model (platform '" +
                                   (platform.isString() ? platform.asString() : std::string("none")) +
                                   "'): the /v1 endpoints serve LLM models only; use /v2/models/" + name + "/infer");
  }
  return mv;
}

// The READY models that speak the LLM protocol, one name per model, in the registry's order.
std::vector<std::string> llm_model_names(ServerContext& ctx) {
  std::vector<std::string> names;
  for (const auto& e : ctx.registry->index(true)) {
    if (!names.empty() && names.back() == e.name) continue;  // one entry per model, whatever its versions
    auto mv = ctx.registry->find(e.name, "");
    if (mv.ok() && speaks_llm(*mv.value())) names.push_back(e.name);
  }
  return names;
}

// A request without a model goes to the only LLM model served; with none or several it is a 400
// that lists them. `*name` receives the model chosen.
Result<std::shared_ptr<ModelVersion>> find_model_or_only(ServerContext& ctx, std::string* name) {
  if (!name->empty()) return find_model(ctx, *name);
  std::vector<std::string> names = llm_model_names(ctx);
  if (names.size() == 1) {
    *name = names[0];
    return find_model(ctx, *name);
  }
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  return Status::InvalidArgument("parameter 'model' is required: " +
                                 (names.empty() ? std::string("no language model is served")
                                                : std::to_string(names.size()) + " language models are served (" +
                                                      list + ")"));
}

// The responses of a request's choices, in arrival order, each tagged with its choice.
struct ChoiceItem {
  int index = 0;
  ResponseData response;
};
class ChoiceQueue : public BlockingQueue<ChoiceItem> {
 public:
  using Item = ChoiceItem;
  void push(int index, ResponseData&& response) { BlockingQueue::push(Item{index, std::move(response)}); }
};

class ChoiceSink : public ResponseSink {
 public:
  ChoiceSink(std::shared_ptr<ChoiceQueue> queue, int index) : queue_(std::move(queue)), index_(index) {}
  void on_response(ResponseData&& response) override { queue_->push(index_, std::move(response)); }

 private:
  const std::shared_ptr<ChoiceQueue> queue_;
  const int index_;
};

// The n ABI requests of one OpenAI request.
class Choices {
 public:
  // Submits every choice; on a refusal cancels the ones already submitted and returns it.
  Status submit(ModelVersion& model, const OaiRequest& request) {
    for (int i = 0; i < request.num_choices(); ++i) {
      auto r = model.submit(make_choice_request(request, i), std::make_shared<ChoiceSink>(queue_, i));
      if (!r.ok()) {
        cancel();
        return r.status();
      }
      requests_.push_back(std::move(r.value()));
    }
    return Status::Ok();
  }
  void cancel() {
    for (auto& r : requests_) r->cancel();
  }
  ChoiceQueue::Item next() { return queue_->pop(); }
  // The next response if one is waiting, without blocking.
  std::optional<ChoiceQueue::Item> try_next() { return queue_->try_pop(); }
  // The next response, or nullopt when the client left first (every choice is then cancelled).
  std::optional<ChoiceQueue::Item> next_while_client_stays(ClientWatch& watch) {
    for (;;) {
      auto item = queue_->pop_for(std::chrono::milliseconds(200));
      if (item) return item;
      if (watch.gone()) {
        cancel();
        return std::nullopt;
      }
    }
  }

 private:
  std::shared_ptr<ChoiceQueue> queue_ = std::make_shared<ChoiceQueue>();
  std::vector<std::shared_ptr<InflightRequest>> requests_;
};

// Submits a backend task (tokenize, detokenize) and waits for its one FINAL response.
Result<ResponseData> run_task(ModelVersion& model, RequestSpec&& spec) {
  auto queue = std::make_shared<ChoiceQueue>();
  auto r = model.submit(std::move(spec), std::make_shared<ChoiceSink>(queue, 0));
  if (!r.ok()) return r.status();
  for (;;) {
    ChoiceQueue::Item item = queue->pop();
    if (!item.response.final) continue;
    if (!item.response.error.ok()) return item.response.error;
    return std::move(item.response);
  }
}

// What one choice has produced so far.
struct ChoiceState {
  std::string text;
  Json::Value logprobs{Json::arrayValue};  // the backend's entries, all responses together
  Json::Value prompt_logprobs;             // the backend's prompt logprobs, once they came
  std::string echo;                        // the echoed prompt that leads `text`
  std::string finish_reason;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  bool started = false;     // a response of this choice was seen
  size_t token_cursor = 0;  // bytes of `text` that logprob tokens were aligned with (align_tokens)
  int64_t char_cursor = 0;  // characters of `text` before token_cursor
  std::optional<ToolCallStream> tool_stream;  // a streamed chat with tools: holds the calls' text
};

// The echoed prompt of a completion choice: the text as sent, or the backend's text of a token prompt.
std::string echo_prefix(const OaiRequest& request, int index, const ChoiceDelta& first) {
  if (!request.echo) return "";
  const OaiPrompt& prompt = request.prompt_of(index);
  if (prompt.text) return *prompt.text;
  return first.prompt_text;
}

Json::Value usage_of(const OaiRequest& request, const std::vector<ChoiceState>& choices) {
  int64_t prompt = 0, completion = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    completion += choices[i].completion_tokens;
    // Each prompt is counted once however many choices were asked for, as OpenAI bills it.
    if (static_cast<int>(i) % request.n == 0) prompt += choices[i].prompt_tokens;
  }
  return usage_json(prompt, completion);
}

// The decoded response of a queue item, or its error (the backend's, or a malformed response).
Result<ChoiceDelta> delta_of(const ChoiceQueue::Item& item) {
  if (!item.response.error.ok()) return item.response.error;
  auto d = decode_response(item.response);
  if (!d.ok()) return Status::Internal(d.status().message());
  return d;
}

// Folds one response into its choice; returns the text it adds (the echoed prompt included).
std::string absorb(const OaiRequest& request, int index, ChoiceState& c, const ChoiceDelta& d, bool final) {
  std::string text;
  if (!c.started) {
    text = echo_prefix(request, index, d);
    c.echo = text;
    c.token_cursor = text.size();
    c.char_cursor = count_chars(text);  // generated tokens' text_offset counts the echo too
    c.started = true;
  }
  text += d.text;
  c.text += text;
  for (const auto& lp : d.logprobs) c.logprobs.append(lp);
  if (!d.prompt_logprobs.isNull()) c.prompt_logprobs = d.prompt_logprobs;
  if (final) {
    c.finish_reason = d.finish_reason;
    if (d.prompt_tokens >= 0) c.prompt_tokens = d.prompt_tokens;
    if (d.completion_tokens >= 0) c.completion_tokens = d.completion_tokens;
  }
  return text;
}

// Completions' echo with logprobs: the prompt's entries (aligned with the echoed text) before the
// generated ones `c.logprobs`, whose offsets `*offsets` are prefixed with the prompt's. Without
// echo, or before the prompt logprobs came, the generated entries alone.
Json::Value with_echo_entries(const OaiRequest& request, const ChoiceState& c, std::vector<int64_t>* offsets) {
  if (!request.echo || c.prompt_logprobs.isNull()) return c.logprobs;
  std::vector<int64_t> prompt_offsets;
  Json::Value entries = echo_prompt_entries(c.prompt_logprobs, request.num_logprobs, c.echo, &prompt_offsets);
  for (const auto& lp : c.logprobs) entries.append(lp);
  prompt_offsets.insert(prompt_offsets.end(), offsets->begin(), offsets->end());
  *offsets = std::move(prompt_offsets);
  return entries;
}

int answer_whole(mg_connection* conn, const OaiRequest& request, const std::string& model, Choices& run) {
  const bool chat = request.endpoint == OaiEndpoint::kChat;
  std::vector<ChoiceState> states(static_cast<size_t>(request.num_choices()));
  ClientWatch watch(conn);
  for (int remaining = request.num_choices(); remaining > 0;) {
    auto next = run.next_while_client_stays(watch);
    if (!next) return 499;  // the client left: the choices are cancelled
    ChoiceQueue::Item item = std::move(*next);
    if (!item.response.error.ok()) {
      run.cancel();
      return send_oai_error(conn, item.response.error);
    }
    auto d = decode_response(item.response);
    if (!d.ok()) {
      run.cancel();
      return send_oai_error(conn, Status::Internal(d.status().message()));
    }
    absorb(request, item.index, states[static_cast<size_t>(item.index)], d.value(), item.response.final);
    if (item.response.final) --remaining;
  }
  OaiHeader h = make_header(chat ? "chatcmpl-" : "cmpl-", model);
  Json::Value choices(Json::arrayValue);
  for (int i = 0; i < request.num_choices(); ++i) {
    ChoiceState& c = states[static_cast<size_t>(i)];
    Json::Value logprobs;
    if (request.num_logprobs >= 0) {
      std::vector<int64_t> offsets = align_tokens(&c.logprobs, c.text, &c.token_cursor, &c.char_cursor);
      logprobs = chat ? chat_logprobs(c.logprobs) : completion_logprobs(with_echo_entries(request, c, &offsets), offsets);
    }
    if (chat && request.tools.active()) {
      // The reply split into content and calls (openai_tools.h); content is null beside calls.
      ParsedReply reply = parse_reply(request.tools, request.tool_format, c.text);
      const bool called = !reply.calls.empty();
      Json::Value choice = chat_choice(i, reply.content, logprobs, called ? "tool_calls" : c.finish_reason);
      if (called) {
        if (reply.content.empty()) choice["message"]["content"] = Json::Value();
        choice["message"]["tool_calls"] = tool_calls_json(reply.calls, false);
      }
      choices.append(choice);
      continue;
    }
    choices.append(chat ? chat_choice(i, c.text, logprobs, c.finish_reason)
                        : completion_choice(i, c.text, logprobs, c.finish_reason));
    // vLLM's prompt_logprobs: per choice in completions, once per response in chat (below).
    if (!chat && request.num_prompt_logprobs >= 0) choices[i]["prompt_logprobs"] = vllm_prompt_logprobs(c.prompt_logprobs);
  }
  Json::Value usage = usage_of(request, states);
  Json::Value answer = chat ? chat_object(h, choices, usage) : completion_object(h, choices, usage);
  if (chat && request.num_prompt_logprobs >= 0) answer["prompt_logprobs"] = vllm_prompt_logprobs(states[0].prompt_logprobs);
  return send_json(conn, 200, answer);
}

// A stream's events: queued by send / begin_event, written by flush() together in one chunk (the
// handler flushes when it has answered every response waiting, before it waits again). A failed
// write (the client left) cancels the request; every call returns false from then on.
class EventWriter {
 public:
  EventWriter(mg_connection* conn, Choices& run) : conn_(conn), run_(run) {}
  bool send(const Json::Value& event) { return send_raw(to_json(event)); }
  bool send_raw(std::string_view data) {
    if (gone_) return false;
    batch_.add(data);
    return true;
  }
  // An event whose data the caller appends to the returned buffer, then end_event().
  std::string& begin_event() { return batch_.begin_event(); }
  void end_event() { batch_.end_event(); }
  // Whether the queued events have waited long enough to be written (EventBatch::due).
  bool due() const { return batch_.due(); }
  // Writes the queued events; `last` also ends the body.
  bool flush(bool last = false) {
    if (gone_) return false;
    if (!batch_.flush(conn_, last)) {
      FERRY_LOG(Verbose) << "client left during an OpenAI stream; cancelling its request";
      run_.cancel();
      gone_ = true;
    }
    return !gone_;
  }

 private:
  mg_connection* conn_;
  Choices& run_;
  EventBatch batch_;
  bool gone_ = false;
};

// A streamed call's first delta: index, id, type and name, with empty arguments (calls are
// numbered from 0 within the choice, in order).
bool send_tool_call_head(EventWriter& out, const OaiHeader& h, int index, size_t call_index, const ToolCall& call,
                         bool usage_null) {
  Json::Value delta;
  delta["tool_calls"] = tool_calls_json({ToolCall{call.id, call.name, ""}}, true);
  delta["tool_calls"][0]["index"] = static_cast<Json::UInt64>(call_index);
  return out.send(chat_chunk(h, index, delta, Json::Value(), "", usage_null));
}

// A piece of the arguments of call `call_index`.
bool send_tool_call_arguments(EventWriter& out, const OaiHeader& h, int index, size_t call_index,
                              const std::string& arguments, bool usage_null) {
  Json::Value delta;
  delta["tool_calls"][0]["index"] = static_cast<Json::UInt64>(call_index);
  delta["tool_calls"][0]["function"]["arguments"] = arguments;
  return out.send(chat_chunk(h, index, delta, Json::Value(), "", usage_null));
}

// The chunks one response of choice `index` adds to a stream.
bool stream_response(EventWriter& out, const OaiRequest& request, const OaiHeader& h,
                     const TextChunkWriter& text_chunks, int index, ChoiceState& c, const ChoiceDelta& d, bool final) {
  const bool chat = request.endpoint == OaiEndpoint::kChat;
  const bool usage_null = request.include_usage;
  std::string text = absorb(request, index, c, d, final);
  const bool prompt_part = !d.prompt_logprobs.isNull();  // the response that carries them (once)
  if (!final && request.num_logprobs < 0 && !c.tool_stream && !prompt_part) {
    // The common chunk, text only: written without a DOM.
    if (!text.empty()) {
      text_chunks.append(out.begin_event(), index, text);
      out.end_event();
    }
    return true;
  }
  const bool has_tokens =
      request.num_logprobs >= 0 && ((d.logprobs.isArray() && !d.logprobs.empty()) || (prompt_part && request.echo));
  Json::Value logprobs;
  if (request.num_logprobs >= 0) {
    ChoiceState part;  // this response's entries; the prompt's when they came with it
    part.logprobs = d.logprobs.isArray() ? d.logprobs : Json::Value(Json::arrayValue);
    part.prompt_logprobs = d.prompt_logprobs;
    part.echo = c.echo;
    std::vector<int64_t> offsets = align_tokens(&part.logprobs, c.text, &c.token_cursor, &c.char_cursor);
    logprobs = chat ? chat_logprobs(part.logprobs) : completion_logprobs(with_echo_entries(request, part, &offsets), offsets);
  }
  if (!chat) {
    if (text.empty() && !has_tokens && !final && !prompt_part) return true;
    Json::Value chunk = completion_chunk(h, index, text, logprobs, final ? c.finish_reason : "", usage_null);
    if (prompt_part && request.num_prompt_logprobs >= 0) {
      chunk["choices"][0]["prompt_logprobs"] = vllm_prompt_logprobs(d.prompt_logprobs);
    }
    return out.send(chunk);
  }
  ToolStreamDelta calls;
  if (c.tool_stream) {
    calls = c.tool_stream->add(text);
    text = calls.content;  // held while it may be a call
  }
  if (!text.empty() || has_tokens || (prompt_part && request.num_prompt_logprobs >= 0)) {
    Json::Value delta;
    delta["content"] = text;
    Json::Value chunk = chat_chunk(h, index, delta, logprobs, "", usage_null);
    if (prompt_part && request.num_prompt_logprobs >= 0) chunk["prompt_logprobs"] = vllm_prompt_logprobs(d.prompt_logprobs);
    if (!out.send(chunk)) return false;
  }
  if (calls.started && !send_tool_call_head(out, h, index, 0, *calls.started, usage_null)) return false;
  if (!calls.arguments.empty() && !send_tool_call_arguments(out, h, index, 0, calls.arguments, usage_null)) {
    return false;
  }
  if (!final) return true;
  std::string finish_reason = c.finish_reason;
  if (c.tool_stream) {
    ParsedReply reply = c.tool_stream->finish();
    if (!reply.content.empty()) {
      Json::Value delta;
      delta["content"] = reply.content;
      if (!out.send(chat_chunk(h, index, delta, Json::Value(), "", usage_null))) return false;
    }
    // Each call held until now as OpenAI streams one: its head, then its arguments (a client
    // joins the arguments deltas of an index).
    for (size_t i = 0; i < reply.calls.size() && !c.tool_stream->arguments_streamed(); ++i) {
      if (!send_tool_call_head(out, h, index, i, reply.calls[i], usage_null) ||
          !send_tool_call_arguments(out, h, index, i, reply.calls[i].arguments, usage_null)) {
        return false;
      }
    }
    if (!reply.calls.empty()) finish_reason = "tool_calls";
  }
  return out.send(chat_chunk(h, index, Json::Value(Json::objectValue), Json::Value(), finish_reason, usage_null));
}

int answer_stream(mg_connection* conn, const OaiRequest& request, const std::string& model, Choices& run) {
  const bool chat = request.endpoint == OaiEndpoint::kChat;
  // Nothing is written before the first response: a request that fails first gets a plain error.
  // Until then a client that leaves is noticed by watching its socket (no write fails yet).
  ClientWatch watch(conn);
  auto first = run.next_while_client_stays(watch);
  if (!first) return 499;
  ChoiceQueue::Item item = std::move(*first);
  if (!item.response.error.ok()) {
    run.cancel();
    return send_oai_error(conn, item.response.error);
  }
  start_event_stream(conn);
  EventWriter out(conn, run);
  OaiHeader h = make_header(chat ? "chatcmpl-" : "cmpl-", model);
  const TextChunkWriter text_chunks(h, chat, request.include_usage);
  std::vector<ChoiceState> states(static_cast<size_t>(request.num_choices()));
  if (chat && request.tools.active()) {
    for (auto& s : states) s.tool_stream.emplace(&request.tools, request.tool_format);
  }
  if (chat) {
    for (int i = 0; i < request.num_choices(); ++i) {
      Json::Value delta;
      delta["role"] = "assistant";
      delta["content"] = "";
      if (!out.send(chat_chunk(h, i, delta, Json::Value(), "", request.include_usage))) return 499;
    }
  }
  for (int remaining = request.num_choices();;) {
    auto d = delta_of(item);
    if (!d.ok()) {
      // After the stream began, an error is an event of its own, then the stream ends as usual.
      run.cancel();
      if (out.send(error_json(d.status())) && out.send_raw("[DONE]")) out.flush(true);
      return 200;
    }
    ChoiceState& c = states[static_cast<size_t>(item.index)];
    if (!stream_response(out, request, h, text_chunks, item.index, c, d.value(), item.response.final)) return 499;
    if (item.response.final && --remaining == 0) break;
    // Every response already waiting goes into the same write (up to EventBatch::kMaxDelay of
    // them); then wait for the next.
    if (!out.due()) {
      if (auto next = run.try_next()) {
        item = std::move(*next);
        continue;
      }
    }
    if (!out.flush()) return 499;
    item = run.next();
  }
  if (request.include_usage &&
      !out.send(usage_chunk(h, chat ? "chat.completion.chunk" : "text_completion", usage_of(request, states)))) {
    return 499;
  }
  if (!out.send_raw("[DONE]") || !out.flush(true)) return 499;
  return 200;
}

// The response.* events that open a Responses stream, up to the empty text part.
bool start_responses_stream(EventWriter& out, const ResponsesState& state, const Json::Value& echo, int64_t* seq) {
  Json::Value created = responses_event("response.created", seq);
  created["response"] = responses_object(state, echo);
  Json::Value progress = responses_event("response.in_progress", seq);
  progress["response"] = created["response"];
  Json::Value added = responses_event("response.output_item.added", seq);
  added["output_index"] = 0;
  added["item"] = responses_message_item(state, false);
  Json::Value part = responses_event("response.content_part.added", seq);
  part["item_id"] = state.item_id;
  part["output_index"] = 0;
  part["content_index"] = 0;
  part["part"] = responses_text_part("");
  for (const Json::Value* e : {&created, &progress, &added, &part}) {
    if (!out.send(*e)) return false;
  }
  return true;
}

// The events that close it: the text, the part and the item done, then the whole response.
bool finish_responses_stream(EventWriter& out, const ResponsesState& state, const Json::Value& echo, int64_t* seq) {
  Json::Value done = responses_event("response.output_text.done", seq);
  done["item_id"] = state.item_id;
  done["output_index"] = 0;
  done["content_index"] = 0;
  done["text"] = state.text;
  done["logprobs"] = Json::Value(Json::arrayValue);
  Json::Value part = responses_event("response.content_part.done", seq);
  part["item_id"] = state.item_id;
  part["output_index"] = 0;
  part["content_index"] = 0;
  part["part"] = responses_text_part(state.text);
  Json::Value item = responses_event("response.output_item.done", seq);
  item["output_index"] = 0;
  item["item"] = responses_message_item(state, true);
  Json::Value completed =
      responses_event(state.finish_reason == "length" ? "response.incomplete" : "response.completed", seq);
  completed["response"] = responses_object(state, echo);
  for (const Json::Value* e : {&done, &part, &item, &completed}) {
    if (!out.send(*e)) return false;
  }
  return true;
}

// POST /v1/responses (openai_responses.h): one chat choice, answered as a response object or as
// the response.* events. The stream opens with the first response, so a request refused before it
// began gets a plain error status.
int answer_responses(mg_connection* conn, const OaiRequest& request, const Json::Value& echo, Choices& run) {
  OaiHeader h = make_header("resp_", request.model);
  ResponsesState state;
  state.id = h.id;
  state.item_id = make_header("msg_", "").id;
  state.created_at = h.created;
  state.model = request.model;
  ChoiceState c;
  ClientWatch watch(conn);
  int64_t seq = 0;
  std::optional<EventWriter> out;
  for (bool final = false; !final;) {
    if (out && !out->flush()) return 499;
    auto next = run.next_while_client_stays(watch);
    if (!next) return 499;
    auto d = delta_of(*next);
    if (!d.ok()) {
      run.cancel();
      if (!out) return send_oai_error(conn, d.status());
      Json::Value e = responses_event("error", &seq);
      e["message"] = d.status().message();
      e["code"] = error_json(d.status())["error"]["code"];
      if (out->send(e)) out->flush(true);
      return 200;
    }
    final = next->response.final;
    const std::string text = absorb(request, 0, c, d.value(), final);
    if (!request.stream) continue;
    if (!out) {
      start_event_stream(conn);
      out.emplace(conn, run);
      if (!start_responses_stream(*out, state, echo, &seq)) return 499;
    }
    if (text.empty()) continue;
    Json::Value delta = responses_event("response.output_text.delta", &seq);
    delta["item_id"] = state.item_id;
    delta["output_index"] = 0;
    delta["content_index"] = 0;
    delta["delta"] = text;
    delta["logprobs"] = Json::Value(Json::arrayValue);
    if (!out->send(delta)) return 499;
  }
  state.text = c.text;
  state.finish_reason = c.finish_reason.empty() ? "stop" : c.finish_reason;
  state.input_tokens = c.prompt_tokens;
  state.output_tokens = c.completion_tokens;
  if (!request.stream) return send_json(conn, 200, responses_object(state, echo));
  if (!finish_responses_stream(*out, state, echo, &seq) || !out->flush(true)) return 499;
  return 200;
}

// kCompletions, kChat, or (responses true) the Responses API.
int handle_generation(ServerContext& ctx, mg_connection* conn, OaiEndpoint endpoint, bool responses = false) {
  std::string text;
  auto body = read_json_body(conn, ctx.max_body_bytes, false, &text);
  if (!body.ok()) return send_oai_error(conn, body.status());
  Json::Value echo;
  auto request = responses ? parse_responses_request(body.value(), &echo)
                 : endpoint == OaiEndpoint::kChat ? parse_chat_request(body.value())
                                                  : parse_completion_request(body.value());
  if (!request.ok()) return send_oai_error(conn, request.status());
  if (!responses) request->body_text = std::move(text);  // /v1/responses names its format otherwise
  auto model = find_model_or_only(ctx, &request->model);
  if (!model.ok()) return send_oai_error(conn, model.status());
  if (request->tools.active()) {
    const Json::Value& format = model.value()->metadata()[proto::kMetaToolCallParser];
    request->tool_format = tool_call_format_from_name(format.isString() ? format.asString() : "");
    if (request->tools.choice == ToolRequest::Choice::kAuto && request->tool_format == ToolCallFormat::kNone) {
      return send_oai_error(conn, Status::InvalidArgument(
                                      "parameter 'tool_choice' \"auto\" needs the model's tool-call format, and `" +
                                      request->model +
                                      "` has none (set \"tool_call_parser\" in its config.json, or use tool_choice "
                                      "\"required\" or a named function)"));
    }
  }
  Choices run;
  Status s = run.submit(*model.value(), request.value());
  if (!s.ok()) return send_oai_error(conn, s);
  if (responses) return answer_responses(conn, request.value(), echo, run);
  return request->stream ? answer_stream(conn, request.value(), request->model, run)
                         : answer_whole(conn, request.value(), request->model, run);
}

Json::Value model_json(const std::shared_ptr<ModelVersion>& mv) {
  Json::Value m;
  m["id"] = mv->name();
  m["object"] = "model";
  m["created"] = static_cast<Json::Int64>(make_header("", "").created);
  m["owned_by"] = "ferry";
  const Json::Value& window = mv->metadata()[proto::kMetaMaxModelLen];
  if (window.isIntegral()) m["max_model_len"] = window;  // vLLM's extra field
  return m;
}

int handle_models(ServerContext& ctx, mg_connection* conn, const std::vector<std::string_view>& parts) {
  if (parts.size() == 3) {
    auto mv = find_model(ctx, std::string(parts[2]));
    // Not in the list, so not found here either, with the reason.
    if (!mv.ok() && mv.status().code() == StatusCode::kInvalidArgument) {
      return send_oai_error(conn, Status::NotFound(mv.status().message()));
    }
    if (!mv.ok()) return send_oai_error(conn, mv.status());
    return send_json(conn, 200, model_json(mv.value()));
  }
  Json::Value list;
  list["object"] = "list";
  list["data"] = Json::Value(Json::arrayValue);
  for (const auto& name : llm_model_names(ctx)) {
    auto mv = ctx.registry->find(name, "");
    if (mv.ok()) list["data"].append(model_json(mv.value()));
  }
  return send_json(conn, 200, list);
}

int handle_tokenizer(ServerContext& ctx, mg_connection* conn, bool tokenize) {
  auto body = read_json_body(conn, ctx.max_body_bytes, false);
  if (!body.ok()) return send_oai_error(conn, body.status());
  std::string name;
  auto spec = tokenize ? parse_tokenize_request(body.value(), &name) : parse_detokenize_request(body.value(), &name);
  if (!spec.ok()) return send_oai_error(conn, spec.status());
  auto model = find_model(ctx, name);
  if (!model.ok()) return send_oai_error(conn, model.status());
  auto r = run_task(*model.value(), std::move(spec.value()));
  if (!r.ok()) return send_oai_error(conn, r.status());
  auto d = decode_response(r.value());
  if (!d.ok()) return send_oai_error(conn, Status::Internal(d.status().message()));
  Json::Value out;
  if (!tokenize) {
    out["prompt"] = d->text;
    return send_json(conn, 200, out);
  }
  auto p = parse_json(r->parameters_json.empty() ? "{}" : r->parameters_json, "tokenize response");
  out["count"] = static_cast<Json::UInt64>(d->ids.size());
  if (p.ok() && (*p)[proto::kMaxModelLen].isIntegral()) out["max_model_len"] = (*p)[proto::kMaxModelLen];
  out["tokens"] = Json::Value(Json::arrayValue);
  for (int32_t id : d->ids) out["tokens"].append(id);
  return send_json(conn, 200, out);
}

int method_not_allowed(mg_connection* conn, const std::string& method) {
  Json::Value body = error_json(Status::InvalidArgument("method " + method + " is not allowed on this endpoint"));
  return send_json(conn, 405, body);
}

}  // namespace

int handle_openai(ServerContext& ctx, mg_connection* conn, const std::string& method,
                  const std::vector<std::string_view>& parts) {
  const bool post = method == "POST";
  const bool get = method == "GET" || method == "HEAD";
  if (parts.size() == 1 && (parts[0] == "tokenize" || parts[0] == "detokenize")) {
    if (!post) return method_not_allowed(conn, method);
    return handle_tokenizer(ctx, conn, parts[0] == "tokenize");
  }
  if (parts.size() == 2 && parts[1] == "completions") {
    if (!post) return method_not_allowed(conn, method);
    return handle_generation(ctx, conn, OaiEndpoint::kCompletions);
  }
  if (parts.size() == 3 && parts[1] == "chat" && parts[2] == "completions") {
    if (!post) return method_not_allowed(conn, method);
    return handle_generation(ctx, conn, OaiEndpoint::kChat);
  }
  if (parts.size() == 2 && parts[1] == "responses") {
    if (!post) return method_not_allowed(conn, method);
    return handle_generation(ctx, conn, OaiEndpoint::kChat, true);
  }
  if ((parts.size() == 2 || parts.size() == 3) && parts[1] == "models") {
    if (!get) return method_not_allowed(conn, method);
    return handle_models(ctx, conn, parts);
  }
  return send_oai_error(conn, Status::NotFound("no such endpoint"));
}

}  // namespace ferry::host
