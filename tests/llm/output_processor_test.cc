// OutputProcessor: events in, responses out, through a fake host that records every respond call.
// A hand-written byte-level BPE tokenizer gives tokens whose texts are known, including the two
// halves of a UTF-8 character.
#include <gtest/gtest.h>
#include <json/json.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <thread>
#include <mutex>
#include <string>
#include <vector>

#include "backend/llm/output_processor.h"

namespace ferry::llm {
namespace {

using namespace std::chrono_literals;

// Token ids of the test vocabulary and their texts.
enum : int32_t { kHe = 0, kLlo, kSpaceSt, kOp, kSpaceWorld, kE1, kE2, kBang, kEos };
// kE1 + kE2 are the two bytes of "é" (0xC3 0xA9), in byte-level form "Ã" and "©".

std::unique_ptr<Tokenizer> make_tokenizer() {
  Json::Value tj(Json::objectValue);
  tj["model"]["type"] = "BPE";
  tj["model"]["ignore_merges"] = true;
  tj["model"]["merges"] = Json::Value(Json::arrayValue);
  const char* pieces[] = {"He", "llo", "\xC4\xA0ST", "OP", "\xC4\xA0world", "\xC3\x83", "\xC2\xA9", "!", "</s>"};
  for (int i = 0; i < 9; ++i) tj["model"]["vocab"][pieces[i]] = i;
  tj["decoder"]["type"] = "ByteLevel";
  Json::Value eos(Json::objectValue);
  eos["id"] = kEos;
  eos["content"] = "</s>";
  eos["special"] = true;
  eos["lstrip"] = eos["rstrip"] = eos["single_word"] = eos["normalized"] = false;
  tj["added_tokens"].append(eos);
  auto tok = Tokenizer::from_json(Json::writeString(Json::StreamWriterBuilder(), tj));
  EXPECT_TRUE(tok.ok()) << tok.status().to_string();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

struct Response {
  uint32_t flags = 0;
  ferry_error_code error = FERRY_ERROR_CODE_OK;
  std::string text;
  std::vector<int32_t> ids;
  Json::Value params;
  bool final() const { return (flags & FERRY_RESPONSE_FLAG_FINAL) != 0; }
};

// Where one request's responses go; passed to the processor as its ferry_responder.
struct Client {
  std::mutex mu;
  std::vector<Response> responses;
  // When set, respond blocks until `release` (to make the processor fall behind).
  bool block = false;
  std::condition_variable cv;
  bool released = false;
  std::atomic<bool> blocked_now{false};

  ferry_responder* responder() { return reinterpret_cast<ferry_responder*>(this); }
  std::vector<Response> snapshot() {
    std::lock_guard<std::mutex> lock(mu);
    return responses;
  }
  std::string all_text() {
    std::string t;
    for (const Response& r : snapshot()) t += r.text;
    return t;
  }
  int num_finals() {
    int n = 0;
    for (const Response& r : snapshot()) n += r.final() ? 1 : 0;
    return n;
  }
  void release_now() {
    std::lock_guard<std::mutex> lock(mu);
    released = true;
    cv.notify_all();
  }
};

// BYTES payload of one element: a 4-byte little-endian length, then the bytes.
std::string bytes_element(const ferry_tensor& t) {
  uint32_t len = 0;
  std::memcpy(&len, t.data, 4);
  return std::string(reinterpret_cast<const char*>(t.data) + 4, len);
}

ferry_error_code fake_respond(ferry_responder* responder, const ferry_response* resp) {
  auto* c = reinterpret_cast<Client*>(responder);
  Response r;
  r.flags = resp->flags;
  r.error = resp->error_code;
  for (uint32_t i = 0; i < resp->num_outputs; ++i) {
    const ferry_tensor& t = resp->outputs[i];
    if (std::strcmp(t.name, "text_output") == 0) r.text = bytes_element(t);
    if (std::strcmp(t.name, "output_ids") == 0) {
      r.ids.resize(t.data_bytes / sizeof(int32_t));
      std::memcpy(r.ids.data(), t.data, t.data_bytes);
    }
  }
  if (resp->parameters_json != nullptr) {
    Json::CharReaderBuilder b;
    std::string errs;
    std::unique_ptr<Json::CharReader> reader(b.newCharReader());
    const char* p = resp->parameters_json;
    EXPECT_TRUE(reader->parse(p, p + std::strlen(p), &r.params, &errs)) << errs;
  }
  std::unique_lock<std::mutex> lock(c->mu);
  c->responses.push_back(std::move(r));
  if (c->block) {
    c->blocked_now = true;
    c->cv.wait(lock, [&] { return c->released; });
    c->blocked_now = false;
  }
  return FERRY_ERROR_CODE_OK;
}

void fake_log(ferry_host*, ferry_log_level, const char*, int, const char*) {}
void fake_metric(ferry_metric*, double) {}

ferry_host_api make_host() {
  ferry_host_api h{};
  h.struct_size = sizeof(h);
  h.log = fake_log;
  h.metric_add = fake_metric;
  h.metric_set = fake_metric;
  h.metric_observe = fake_metric;
  h.respond = fake_respond;
  return h;
}

class OutputProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokenizer_ = make_tokenizer();
    ASSERT_NE(tokenizer_, nullptr);
    // The vocabulary decodes as intended (else every test below would test nothing).
    ASSERT_EQ(tokenizer_->decode(std::vector<TokenId>{kHe, kLlo, kSpaceSt, kOp, kE1, kE2}, true), "Hello STOPé");
    host_ = make_host();
    start(OutputProcessorConfig{}.coalesce_after_steps);
  }
  void start(size_t coalesce_after_steps, int32_t stream_interval = 1) {
    processor_.reset();
    OutputProcessorConfig c;
    c.coalesce_after_steps = coalesce_after_steps;
    c.stream_interval = stream_interval;
    c.host = &host_;
    c.tokenizer = tokenizer_.get();
    c.model_name = "test";
    c.request_stop = [this](uint64_t id) {
      std::lock_guard<std::mutex> lock(mu_);
      stops_.push_back(id);
    };
    processor_ = std::make_unique<OutputProcessor>(std::move(c));
  }

  std::unique_ptr<OutputRequest> request(uint64_t id, Client& client, bool stream, const SamplingParams& params,
                                         std::vector<int32_t> echo = {}) {
    const int32_t eos[] = {kEos};
    return std::make_unique<OutputRequest>(id, client.responder(), stream, *tokenizer_, true, params, eos, 7,
                                           std::move(echo));
  }
  void token(uint64_t id, int32_t t, std::unique_ptr<OutputRequest>* start = nullptr) {
    SampleResult s;
    s.token = t;
    batch_.add_token(id, s, false, OutputClock::now(), start);
  }
  void final(uint64_t id, RequestFinishReason reason, Status status = Status::Ok()) {
    batch_.add_final(id, reason, std::move(status), OutputClock::now(), nullptr);
  }
  void push_and_drain() {
    processor_->push(batch_);
    ASSERT_TRUE(processor_->wait_drained(5s));
  }
  std::vector<uint64_t> stops() {
    std::lock_guard<std::mutex> lock(mu_);
    return stops_;
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  ferry_host_api host_{};
  std::mutex mu_;
  std::vector<uint64_t> stops_;
  OutputBatch batch_;
  std::unique_ptr<OutputProcessor> processor_;
};

TEST_F(OutputProcessorTest, StopStringAcrossTokensEndsWithStopAndNothingAfterIt) {
  Client c;
  SamplingParams p;
  p.max_tokens = 100;
  p.stop = {"STOP"};
  auto r = request(1, c, true, p);
  token(1, kHe, &r);
  token(1, kLlo);
  push_and_drain();
  token(1, kSpaceSt);  // " ST": "ST" may start "STOP", so only " " is safe
  push_and_drain();
  EXPECT_EQ(c.all_text(), "Hello ");
  token(1, kOp);  // completes "STOP" across the token boundary
  push_and_drain();
  EXPECT_EQ(stops(), std::vector<uint64_t>{1});  // the instance is asked to end it
  // The engine ran ahead before the cancel took effect: those tokens are never sent.
  token(1, kSpaceWorld);
  token(1, kBang);
  final(1, RequestFinishReason::kCancelled, Status::Cancelled("request cancelled"));
  push_and_drain();
  auto rs = c.snapshot();
  ASSERT_FALSE(rs.empty());
  EXPECT_EQ(c.num_finals(), 1);
  EXPECT_TRUE(rs.back().final());
  EXPECT_EQ(rs.back().error, FERRY_ERROR_CODE_OK);
  EXPECT_EQ(rs.back().params["finish_reason"].asString(), "stop");
  EXPECT_EQ(rs.back().params["usage"]["completion_tokens"].asInt(), 4);  // up to the stop
  EXPECT_EQ(rs.back().params["usage"]["prompt_tokens"].asInt(), 7);
  EXPECT_EQ(c.all_text(), "Hello ");
  std::vector<int32_t> ids;
  for (const Response& x : rs) ids.insert(ids.end(), x.ids.begin(), x.ids.end());
  EXPECT_EQ(ids, (std::vector<int32_t>{kHe, kLlo, kSpaceSt, kOp}));
}

TEST_F(OutputProcessorTest, IncludeStopStrKeepsTheStopStringOnly) {
  Client c;
  SamplingParams p;
  p.stop = {"STOP"};
  p.include_stop_str_in_output = true;
  auto r = request(1, c, false, p);
  token(1, kHe, &r);
  token(1, kSpaceSt);
  token(1, kOp);
  token(1, kBang);
  final(1, RequestFinishReason::kLength);  // whatever ended it on the loop, the text ended at the stop
  push_and_drain();
  auto rs = c.snapshot();
  ASSERT_EQ(rs.size(), 1u);  // not streamed: the FINAL only
  EXPECT_EQ(rs[0].text, "He STOP");
  EXPECT_EQ(rs[0].params["finish_reason"].asString(), "stop");
}

TEST_F(OutputProcessorTest, Utf8CharacterSplitAcrossTokensIsNeverSentHalf) {
  Client c;
  SamplingParams p;
  p.max_tokens = 3;
  auto r = request(1, c, true, p);
  token(1, kE1, &r);  // first byte of "é" only
  push_and_drain();
  for (const Response& x : c.snapshot()) EXPECT_EQ(x.text.find('\xC3'), std::string::npos) << "half a character sent";
  token(1, kE2);
  push_and_drain();
  token(1, kBang);  // the third token: length
  final(1, RequestFinishReason::kLength);
  push_and_drain();
  auto rs = c.snapshot();
  for (const Response& x : rs) {
    // Every response's text is whole characters: a lead byte never ends it.
    ASSERT_TRUE(x.text.empty() || static_cast<unsigned char>(x.text.back()) < 0xC0) << x.text;
  }
  EXPECT_EQ(c.all_text(), "\xC3\xA9!");
  EXPECT_EQ(c.num_finals(), 1);
  EXPECT_EQ(rs.back().params["finish_reason"].asString(), "length");
}

TEST_F(OutputProcessorTest, ExactlyOneFinalAfterAllTextForEveryWayARequestEnds) {
  Client streamed, plain, cancelled, eos, failed;
  SamplingParams p;
  p.max_tokens = 3;
  auto a = request(1, streamed, true, p);
  auto b = request(2, plain, false, p);
  auto d = request(3, cancelled, true, p);
  auto e = request(4, eos, true, p);
  auto f = request(5, failed, false, p);
  token(1, kHe, &a);
  token(2, kHe, &b);
  token(3, kHe, &d);
  token(4, kHe, &e);
  token(5, kHe, &f);
  push_and_drain();
  token(1, kLlo);
  token(2, kLlo);
  token(4, kEos);  // a stop token: finish "stop", its own text not sent
  final(4, RequestFinishReason::kStop);
  final(3, RequestFinishReason::kCancelled, Status::Cancelled("request cancelled"));
  final(5, RequestFinishReason::kError, Status::Internal("forward pass failed"));
  push_and_drain();
  token(1, kBang);
  token(2, kBang);
  final(1, RequestFinishReason::kLength);
  final(2, RequestFinishReason::kLength);
  push_and_drain();

  for (Client* c : {&streamed, &plain, &cancelled, &eos, &failed}) {
    auto rs = c->snapshot();
    ASSERT_FALSE(rs.empty());
    EXPECT_EQ(c->num_finals(), 1);
    EXPECT_TRUE(rs.back().final());
  }
  EXPECT_EQ(streamed.all_text(), "Hello!");
  EXPECT_EQ(streamed.snapshot().size(), 3u);  // one per step
  ASSERT_EQ(plain.snapshot().size(), 1u);
  EXPECT_EQ(plain.snapshot()[0].text, "Hello!");
  EXPECT_EQ(plain.snapshot()[0].ids, (std::vector<int32_t>{kHe, kLlo, kBang}));
  EXPECT_EQ(plain.snapshot()[0].params["usage"]["completion_tokens"].asInt(), 3);
  EXPECT_EQ(cancelled.snapshot().back().error, FERRY_ERROR_CODE_CANCELLED);
  EXPECT_EQ(eos.all_text(), "He");
  EXPECT_EQ(eos.snapshot().back().params["finish_reason"].asString(), "stop");
  EXPECT_EQ(failed.snapshot().back().error, FERRY_ERROR_CODE_INTERNAL);
}

TEST_F(OutputProcessorTest, RequestLeftWithoutFinalGetsCancelledFinalAtShutdown) {
  Client c;
  auto r = request(1, c, true, SamplingParams{});
  token(1, kHe, &r);
  push_and_drain();
  processor_.reset();
  auto rs = c.snapshot();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_FALSE(rs[0].final());
  EXPECT_TRUE(rs[1].final());
  EXPECT_EQ(rs[1].error, FERRY_ERROR_CODE_CANCELLED);
}

// Pushes `steps` one-token steps of request 2 while the processor is stuck answering request 1.
// Returns request 2's responses once everything is processed.
std::vector<Response> run_behind(OutputProcessor& processor, OutputBatch& batch,
                                 const std::function<std::unique_ptr<OutputRequest>(uint64_t, Client&)>& make,
                                 const std::vector<int32_t>& steps) {
  Client slow, fast;
  slow.block = true;
  auto s = make(1, slow);
  auto f = make(2, fast);
  SampleResult t;
  t.token = kHe;
  batch.add_token(1, t, false, OutputClock::now(), &s);
  processor.push(batch);
  for (int i = 0; i < 500 && !slow.blocked_now; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(slow.blocked_now);
  for (int32_t tok : steps) {
    t.token = tok;
    batch.add_token(2, t, false, OutputClock::now(), &f);
    processor.push(batch);
  }
  EXPECT_TRUE(fast.snapshot().empty());
  slow.release_now();
  EXPECT_TRUE(processor.wait_drained(5s));
  for (uint64_t id : {1, 2}) batch.add_final(id, RequestFinishReason::kCancelled, Status::Cancelled("x"), {}, nullptr);
  processor.push(batch);
  EXPECT_TRUE(processor.wait_drained(5s));
  EXPECT_EQ(fast.num_finals(), 1);
  EXPECT_EQ(slow.num_finals(), 1);
  auto rs = fast.snapshot();
  rs.pop_back();  // the FINAL
  return rs;
}

TEST_F(OutputProcessorTest, BehindButUnderTheLimitStillAnswersOncePerStep) {
  SamplingParams p;
  p.max_tokens = 100;
  auto make = [&](uint64_t id, Client& c) { return request(id, c, true, p); };
  auto rs = run_behind(*processor_, batch_, make, {kHe, kLlo, kBang});
  ASSERT_EQ(rs.size(), 3u);  // three steps taken in one go, still three events
  EXPECT_EQ(rs[0].text, "He");
  EXPECT_EQ(rs[1].text, "llo");
  EXPECT_EQ(rs[2].text, "!");
}

TEST_F(OutputProcessorTest, StreamingCoalescesStepsWhenFarBehindAndKeepsOrder) {
  start(2);  // more than 2 steps waiting: coalesce
  SamplingParams p;
  p.max_tokens = 100;
  auto make = [&](uint64_t id, Client& c) { return request(id, c, true, p); };
  auto rs = run_behind(*processor_, batch_, make, {kHe, kLlo, kBang});
  ASSERT_EQ(rs.size(), 1u);  // the three steps went out as one response, in order
  EXPECT_EQ(rs[0].text, "Hello!");
  EXPECT_EQ(rs[0].ids, (std::vector<int32_t>{kHe, kLlo, kBang}));
}

// stream_interval 3: the first token goes out at once, then one response per 3 tokens, the rest
// with the FINAL; one step per push, so only the interval (not coalescing) groups them.
TEST_F(OutputProcessorTest, StreamIntervalSendsTheFirstTokenThenEveryNth) {
  start(OutputProcessorConfig{}.coalesce_after_steps, 3);
  Client c;
  SamplingParams p;
  p.max_tokens = 100;
  auto r = request(1, c, true, p);
  const int32_t toks[] = {kHe, kLlo, kBang, kSpaceWorld, kBang, kBang, kSpaceSt};
  token(1, toks[0], &r);
  push_and_drain();
  for (size_t i = 1; i < std::size(toks); ++i) {
    token(1, toks[i]);
    push_and_drain();
  }
  final(1, RequestFinishReason::kLength);
  push_and_drain();
  auto rs = c.snapshot();
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_EQ(rs[0].ids, (std::vector<int32_t>{kHe}));
  EXPECT_EQ(rs[1].ids, (std::vector<int32_t>{kLlo, kBang, kSpaceWorld}));
  EXPECT_EQ(rs[2].ids, (std::vector<int32_t>{kBang, kBang, kSpaceSt}));
  EXPECT_TRUE(rs[3].final());
  std::string text;
  for (const auto& x : rs) text += x.text;
  EXPECT_EQ(text, tokenizer_->decode(std::vector<TokenId>(std::begin(toks), std::end(toks)), true));
}

TEST_F(OutputProcessorTest, LogprobsAreCarriedWithTokenTexts) {
  Client c;
  SamplingParams p;
  p.max_tokens = 2;
  p.num_logprobs = 1;
  auto r = request(1, c, false, p);
  SampleResult s1;
  s1.token = kHe;
  s1.logprob = -0.5f;
  s1.rank = 1;
  s1.top_logprobs = {{kHe, -0.5f}};
  SampleResult s2;
  s2.token = kSpaceWorld;
  s2.logprob = -2.25f;
  s2.rank = 2;
  s2.top_logprobs = {{kBang, -1.0f}};
  batch_.add_token(1, s1, true, OutputClock::now(), &r);
  push_and_drain();
  batch_.add_token(1, s2, true, OutputClock::now(), nullptr);
  final(1, RequestFinishReason::kLength);
  push_and_drain();
  auto rs = c.snapshot();
  ASSERT_EQ(rs.size(), 1u);
  const Json::Value& lp = rs[0].params["logprobs"];
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_EQ(lp[0]["token_id"].asInt(), kHe);
  EXPECT_EQ(lp[0]["token"].asString(), "He");
  EXPECT_FLOAT_EQ(lp[0]["logprob"].asFloat(), -0.5f);
  EXPECT_EQ(lp[0]["rank"].asInt(), 1);
  EXPECT_EQ(lp[1]["token_id"].asInt(), kSpaceWorld);
  EXPECT_EQ(lp[1]["token"].asString(), " world");
  EXPECT_FLOAT_EQ(lp[1]["logprob"].asFloat(), -2.25f);
  EXPECT_EQ(lp[1]["rank"].asInt(), 2);
  ASSERT_EQ(lp[1]["top_logprobs"].size(), 1u);
  EXPECT_EQ(lp[1]["top_logprobs"][0]["token_id"].asInt(), kBang);
  EXPECT_EQ(lp[1]["top_logprobs"][0]["token"].asString(), "!");
  EXPECT_EQ(rs[0].text, "He world");
}

TEST_F(OutputProcessorTest, EchoedPromptComesWithTheFirstResponseOnly) {
  Client c;
  SamplingParams p;
  p.max_tokens = 2;
  auto r = request(1, c, true, p, {kHe, kLlo});
  token(1, kBang, &r);
  push_and_drain();
  token(1, kBang);
  final(1, RequestFinishReason::kLength);
  push_and_drain();
  auto rs = c.snapshot();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].params["prompt_text"].asString(), "Hello");
  EXPECT_EQ(rs[0].params["prompt_ids"].size(), 2u);
  EXPECT_FALSE(rs[1].params.isMember("prompt_text"));
}

TEST_F(OutputProcessorTest, PromptLogprobsGoOutOnceWithTheirTextsInThePrompt) {
  Client c;
  SamplingParams p;
  p.max_tokens = 2;
  p.num_prompt_logprobs = 1;
  const int32_t eos[] = {kEos};
  auto r = std::make_unique<OutputRequest>(1, c.responder(), true, *tokenizer_, true, p, eos, 4, std::vector<int32_t>{});
  r->prompt_ids = {kHe, kLlo, kSpaceWorld, kBang};
  auto scored = [](int32_t token, float logprob, int32_t alt) {
    SampleResult s;
    s.token = token;
    s.logprob = logprob;
    s.rank = 2;
    s.top_logprobs = {{alt, -0.1f}};
    return s;
  };
  // Two prefill chunks: prompt tokens 1-2, then 3 with the first generated token.
  const std::vector<SampleResult> first = {scored(kLlo, -1.0f, kOp), scored(kSpaceWorld, -2.0f, kSpaceWorld)};
  batch_.add_prompt_logprobs(1, first, &r);
  push_and_drain();
  EXPECT_TRUE(c.snapshot().empty()) << "a stream answers once it has text";
  const std::vector<SampleResult> second = {scored(kBang, -3.0f, kHe)};
  batch_.add_prompt_logprobs(1, second, nullptr);
  token(1, kOp);
  push_and_drain();
  token(1, kBang);
  final(1, RequestFinishReason::kLength);
  push_and_drain();
  auto rs = c.snapshot();
  ASSERT_EQ(rs.size(), 2u);
  const Json::Value& plp = rs[0].params["prompt_logprobs"];
  ASSERT_EQ(plp.size(), 4u) << rs[0].params.toStyledString();
  EXPECT_EQ(plp[0]["token_id"].asInt(), kHe);
  EXPECT_EQ(plp[0]["token"].asString(), "He");
  EXPECT_FALSE(plp[0].isMember("logprob"));
  const char* texts[] = {"He", "llo", " world", "!"};
  const float logprobs[] = {0.0f, -1.0f, -2.0f, -3.0f};
  for (Json::ArrayIndex i = 1; i < 4; ++i) {
    EXPECT_EQ(plp[i]["token"].asString(), texts[i]);
    EXPECT_FLOAT_EQ(plp[i]["logprob"].asFloat(), logprobs[i]);
    EXPECT_EQ(plp[i]["rank"].asInt(), 2);
    ASSERT_EQ(plp[i]["top_logprobs"].size(), 1u);
  }
  EXPECT_EQ(plp[1]["top_logprobs"][0]["token"].asString(), "OP");
  EXPECT_EQ(plp[2]["top_logprobs"][0]["token"].asString(), " world") << "the prompt token's own text";
  EXPECT_EQ(rs[0].text, "OP");
  EXPECT_FALSE(rs[1].params.isMember("prompt_logprobs")) << "sent once";
}

TEST_F(OutputProcessorTest, PromptOnlyRequestDropsItsTokenAndEndsWithLength) {
  Client c;
  SamplingParams p;
  p.max_tokens = 1;
  auto r = request(1, c, false, p, {kHe, kLlo});
  r->prompt_only = true;
  token(1, kEos, &r);  // even a stop token: it was only the scheduling token
  final(1, RequestFinishReason::kStop);
  push_and_drain();
  auto rs = c.snapshot();
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_TRUE(rs[0].final());
  EXPECT_EQ(rs[0].text, "");
  EXPECT_TRUE(rs[0].ids.empty());
  EXPECT_EQ(rs[0].params["finish_reason"].asString(), "length");
  EXPECT_EQ(rs[0].params["usage"]["completion_tokens"].asInt(), 0);
  EXPECT_EQ(rs[0].params["prompt_text"].asString(), "Hello");
}

TEST(OutputBatch, AppendKeepsOrderAndRebasesLogprobs) {
  OutputBatch a, b;
  SampleResult s;
  s.token = 3;
  s.logprob = -1.0f;
  a.add_token(1, s, true, {}, nullptr);
  s.token = 4;
  s.logprob = -2.0f;
  b.add_token(2, s, true, {}, nullptr);
  b.add_final(2, RequestFinishReason::kLength, Status::Ok(), {}, nullptr);
  a.append(b);
  EXPECT_TRUE(b.empty());
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a.event(0).token, 3);
  EXPECT_EQ(a.event(1).token, 4);
  EXPECT_FLOAT_EQ(a.logprobs(a.event(1).logprobs_index).logprob, -2.0f);
  EXPECT_TRUE(a.event(2).final);
  // Each side's events were one step: the step ends survive the append.
  ASSERT_EQ(a.num_steps(), 2u);
  EXPECT_EQ(a.step_end(0), 1u);
  EXPECT_EQ(a.step_end(1), 3u);
}

}  // namespace
}  // namespace ferry::llm
