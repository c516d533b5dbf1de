// The OpenAI-compatible endpoints against a real ferry-server: /v1/completions and
// /v1/chat/completions (streamed and not), /v1/models, /tokenize and /detokenize. The trained
// stories260K checkpoint (a drop-in HF folder) serves completions; the project's tiny-llama demo
// model, which has a chat template, serves chat. Checks the objects' shapes, each sampling field
// (accepted, and refused naming the field), stop strings, usage, n, logprobs, echo, priority,
// the same greedy text over every frontend, cancellation by disconnect, and clear 4xx errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <thread>

#include "client/http_client.h"
#include "client/zmq_client.h"
#include "tests/integration/openai_fixture.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using client::HttpResult;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST_F(OpenAiApi, CompletionObjectHasOpenAisShapeAndUsage) {
  NEED_STORIES();
  auto j = post_json("/v1/completions", completion());
  EXPECT_EQ(j["id"].asString().rfind("cmpl-", 0), 0u) << dump(j);
  EXPECT_EQ(j["object"].asString(), "text_completion");
  EXPECT_GT(j["created"].asInt64(), 1600000000);
  EXPECT_EQ(j["model"].asString(), "stories");
  ASSERT_EQ(j["choices"].size(), 1u);
  const Json::Value& c = j["choices"][0];
  EXPECT_EQ(c["index"].asInt(), 0);
  EXPECT_FALSE(c["text"].asString().empty());
  EXPECT_TRUE(c.isMember("logprobs") && c["logprobs"].isNull());
  EXPECT_EQ(c["finish_reason"].asString(), "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"].asInt(), 5) << "BOS + 4 prompt tokens";
  EXPECT_EQ(j["usage"]["completion_tokens"].asInt(), 20);
  EXPECT_EQ(j["usage"]["total_tokens"].asInt(), 25);

  // OpenAI's default max_tokens for completions is 16.
  auto d = post_json("/v1/completions", R"({"model":"stories","prompt":"Once","ignore_eos":true})");
  EXPECT_EQ(d["usage"]["completion_tokens"].asInt(), 16);
}

TEST_F(OpenAiApi, SameGreedyTextOverCompletionsGenerateInferAndZeroMq) {
  NEED_STORIES();
  const std::string text = post_json("/v1/completions", completion())["choices"][0]["text"].asString();
  ASSERT_FALSE(text.empty());

  auto gen = post_json("/v2/models/stories/generate",
                       R"({"text_input":"Once upon a time","max_tokens":20,"temperature":0,"ignore_eos":true})");
  EXPECT_EQ(gen["text_output"].asString(), text);

  Json::Value p = parse(R"({"max_tokens":20,"temperature":0,"ignore_eos":true})");
  auto infer = post_json("/v2/models/stories/infer", infer_body(kPrompt, p));
  std::string infer_text;
  for (const auto& o : infer["outputs"]) {
    if (o["name"] == "text_output") infer_text = o["data"][0].asString();
  }
  EXPECT_EQ(infer_text, text);

  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once upon a time"]}])");
  ASSERT_TRUE(zmq.send(client::ZmqClient::infer_message("z", "stories", in, p, false)).ok());
  Json::Value last;
  auto zmq_text = zmq.receive_text(10000ms, &last);
  ASSERT_TRUE(zmq_text.has_value()) << dump(last);
  EXPECT_EQ(*zmq_text, text);
}

TEST_F(OpenAiApi, PromptMayBeTextTokensOrALists) {
  NEED_STORIES();
  auto tok = post_json("/tokenize", R"({"model":"stories","prompt":"Once upon a time"})");
  ASSERT_EQ(tok["count"].asInt(), 5);
  const std::string ids = dump(tok["tokens"]);
  const std::string text = post_json("/v1/completions", completion())["choices"][0]["text"].asString();
  for (const std::string& prompt : {std::string(R"(["Once upon a time"])"), ids, "[" + ids + "]"}) {
    auto j =
        post_json("/v1/completions",
                  R"({"model":"stories","max_tokens":20,"temperature":0,"ignore_eos":true,"prompt":)" + prompt + "}");
    EXPECT_EQ(j["choices"][0]["text"].asString(), text) << prompt;
    EXPECT_EQ(j["usage"]["prompt_tokens"].asInt(), 5) << prompt;
  }
  // A list of prompts: n choices each, numbered prompt by prompt; every prompt counts in usage.
  const std::string other = post_json("/v1/completions", completion(R"("prompt":"The dog")"))["choices"][0]["text"].asString();
  auto batch = post_json("/v1/completions", completion(R"("prompt":["Once upon a time",)" + ids + R"(,"The dog"],"n":2)"));
  ASSERT_EQ(batch["choices"].size(), 6u) << dump(batch);
  for (Json::ArrayIndex i = 0; i < 6; ++i) {
    const Json::Value& c = batch["choices"][i];
    EXPECT_EQ(c["index"].asUInt(), i);
    EXPECT_EQ(c["text"].asString(), i < 4 ? text : other) << "choice " << i;
  }
  auto one = post_json("/v1/completions", completion(R"("prompt":"The dog")"));
  EXPECT_EQ(batch["usage"]["prompt_tokens"].asInt(), 5 + 5 + one["usage"]["prompt_tokens"].asInt());
  EXPECT_EQ(batch["usage"]["completion_tokens"].asInt(), 6 * 20);
  auto bad = post("/v1/completions", R"({"model":"stories","prompt":["a",[]]})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(parse(bad.body)["error"]["param"].asString(), "prompt") << bad.body;
}

TEST_F(OpenAiApi, LogitBiasMinTokensAndMaxCompletionTokens) {
  NEED_STORIES();
  // The greedy first token, then the same request with that token banned.
  auto first = post_json("/v1/completions", completion(R"("max_tokens":1,"logprobs":0)"));
  auto gen = post_json("/v2/models/stories/generate",
                       R"({"text_input":"Once upon a time","temperature":0,"max_tokens":1})");
  const Json::Value id = gen["output_ids"].isArray() ? gen["output_ids"][0] : gen["output_ids"];
  ASSERT_TRUE(id.isIntegral()) << dump(gen);
  const std::string banned = dump(id);
  auto biased = post_json("/v1/completions", completion(R"("max_tokens":1,"logit_bias":{")" + banned + R"(":-100})"));
  EXPECT_NE(biased["choices"][0]["text"].asString(), first["choices"][0]["text"].asString()) << dump(biased);
  auto out_of_range = post("/v1/completions", completion(R"("logit_bias":{"99999999":1})"));
  EXPECT_EQ(out_of_range.status, 400) << out_of_range.body;

  // min_tokens: a stop token the greedy text would hit at once cannot end it before min_tokens.
  auto stop_first = post_json("/v1/completions", completion(R"("max_tokens":10,"ignore_eos":false,"stop_token_ids":[)" +
                                                             banned + "]"));
  EXPECT_EQ(stop_first["usage"]["completion_tokens"].asInt(), 1) << dump(stop_first);
  EXPECT_EQ(stop_first["choices"][0]["finish_reason"].asString(), "stop");
  auto min4 = post_json("/v1/completions", completion(R"("max_tokens":10,"ignore_eos":false,"min_tokens":4,"stop_token_ids":[)" +
                                                       banned + "]"));
  EXPECT_GE(min4["usage"]["completion_tokens"].asInt(), 4) << dump(min4);
  auto too_many = post("/v1/completions", completion(R"("max_tokens":3,"min_tokens":4)"));
  EXPECT_EQ(too_many.status, 400);
  EXPECT_EQ(parse(too_many.body)["error"]["param"].asString(), "min_tokens") << too_many.body;

  // max_completion_tokens is max_tokens on completions too.
  auto mct = post_json("/v1/completions", R"({"model":"stories","prompt":"Once","max_completion_tokens":3,"ignore_eos":true})");
  EXPECT_EQ(mct["usage"]["completion_tokens"].asInt(), 3);
}

TEST_F(OpenAiApi, StreamedCompletionAddsUpAndEndsWithUsageAndDone) {
  NEED_STORIES();
  const std::string whole = post_json("/v1/completions", completion())["choices"][0]["text"].asString();
  auto ev = events("/v1/completions", completion(R"("stream":true,"stream_options":{"include_usage":true})"));
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.back(), "[DONE]");
  std::string text, finish;
  std::set<std::string> ids;
  for (size_t i = 0; i + 2 < ev.size(); ++i) {
    auto c = parse(ev[i]);
    EXPECT_EQ(c["object"].asString(), "text_completion") << ev[i];
    EXPECT_TRUE(c.isMember("usage") && c["usage"].isNull()) << "chunks carry usage: null before the usage chunk";
    ids.insert(c["id"].asString());
    ASSERT_EQ(c["choices"].size(), 1u);
    text += c["choices"][0]["text"].asString();
    if (!c["choices"][0]["finish_reason"].isNull()) finish = c["choices"][0]["finish_reason"].asString();
  }
  EXPECT_EQ(text, whole);
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(ids.size(), 1u) << "one id for the whole stream";
  auto usage = parse(ev[ev.size() - 2]);
  EXPECT_EQ(usage["choices"].size(), 0u);
  EXPECT_EQ(usage["usage"]["completion_tokens"].asInt(), 20);
  EXPECT_EQ(usage["usage"]["prompt_tokens"].asInt(), 5);

  // Without stream_options there is no usage chunk and no usage key.
  auto plain = events("/v1/completions", completion(R"("stream":true)"));
  ASSERT_GE(plain.size(), 2u);
  EXPECT_EQ(plain.back(), "[DONE]");
  EXPECT_FALSE(parse(plain[plain.size() - 2]).isMember("usage"));
  EXPECT_FALSE(parse(plain[plain.size() - 2])["choices"][0]["finish_reason"].isNull());
}

TEST_F(OpenAiApi, StopStringsEndTheTextWithFinishReasonStop) {
  NEED_STORIES();
  const std::string text =
      post_json("/v1/completions", completion(R"("max_tokens":40)"))["choices"][0]["text"].asString();
  ASSERT_NE(text.find("Lily"), std::string::npos) << text;
  for (const char* stop : {R"("stop":"Lily")", R"("stop":["zzz","Lily"])"}) {
    auto j = post_json("/v1/completions", completion(std::string(R"("max_tokens":40,)") + stop));
    EXPECT_EQ(j["choices"][0]["finish_reason"].asString(), "stop") << stop;
    EXPECT_EQ(j["choices"][0]["text"].asString(), text.substr(0, text.find("Lily"))) << stop;
  }
  auto ev = events("/v1/completions", completion(R"("max_tokens":40,"stop":"Lily","stream":true)"));
  std::string streamed;
  for (const auto& e : ev) {
    if (e != "[DONE]") streamed += parse(e)["choices"][0]["text"].asString();
  }
  EXPECT_EQ(streamed, text.substr(0, text.find("Lily")));
}

TEST_F(OpenAiApi, SeedsAndNChoices) {
  NEED_STORIES();
  const std::string sampled =
      R"({"model":"stories","prompt":"Once","max_tokens":24,"temperature":1.0,"ignore_eos":true,"seed":7)";
  auto a = post_json("/v1/completions", sampled + "}");
  auto b = post_json("/v1/completions", sampled + "}");
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]) << "same seed, same text";

  auto n = post_json("/v1/completions", sampled + R"(,"n":3})");
  ASSERT_EQ(n["choices"].size(), 3u) << dump(n);
  std::set<std::string> texts;
  int64_t completion = 0;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(n["choices"][i]["index"].asInt(), i);
    texts.insert(n["choices"][i]["text"].asString());
  }
  completion = n["usage"]["completion_tokens"].asInt64();
  EXPECT_EQ(n["choices"][0]["text"], a["choices"][0]["text"]) << "choice i samples with seed + i";
  EXPECT_GE(texts.size(), 2u) << "choices use distinct seeds";
  EXPECT_EQ(completion, 3 * 24) << "usage sums the choices";
  EXPECT_EQ(n["usage"]["prompt_tokens"], a["usage"]["prompt_tokens"]) << "the prompt counts once";

  auto ev = events("/v1/completions", sampled + R"(,"n":2,"stream":true})");
  std::string streamed[2];
  int finished = 0;
  for (const auto& e : ev) {
    if (e == "[DONE]") continue;
    auto c = parse(e)["choices"][0];
    streamed[c["index"].asInt()] += c["text"].asString();
    finished += !c["finish_reason"].isNull();
  }
  EXPECT_EQ(finished, 2);
  EXPECT_EQ(streamed[0], n["choices"][0]["text"].asString());
  EXPECT_EQ(streamed[1], n["choices"][1]["text"].asString());

  auto too_many = post("/v1/completions", sampled + R"(,"n":17})");
  EXPECT_EQ(too_many.status, 400);
  EXPECT_EQ(parse(too_many.body)["error"]["param"].asString(), "n");
}

TEST_F(OpenAiApi, CompletionLogprobsInTheLegacyFormat) {
  NEED_STORIES();
  auto j = post_json("/v1/completions", completion(R"("max_tokens":8,"logprobs":2)"));
  const Json::Value& lp = j["choices"][0]["logprobs"];
  ASSERT_TRUE(lp.isObject()) << dump(j);
  ASSERT_EQ(lp["tokens"].size(), 8u);
  ASSERT_EQ(lp["token_logprobs"].size(), 8u);
  ASSERT_EQ(lp["top_logprobs"].size(), 8u);
  ASSERT_EQ(lp["text_offset"].size(), 8u);
  std::string joined;
  for (Json::ArrayIndex i = 0; i < 8; ++i) {
    EXPECT_LE(lp["token_logprobs"][i].asDouble(), 0.0);
    ASSERT_TRUE(lp["top_logprobs"][i].isObject());
    EXPECT_EQ(lp["top_logprobs"][i].size(), 2u) << "greedy: the chosen token is among the top 2: " << dump(lp);
    EXPECT_TRUE(lp["top_logprobs"][i].isMember(lp["tokens"][i].asString()));
    EXPECT_EQ(lp["text_offset"][i].asUInt(), joined.size()) << "where the token starts in the text";
    joined += lp["tokens"][i].asString();
  }
  EXPECT_EQ(joined, j["choices"][0]["text"].asString());

  auto ev = events("/v1/completions", completion(R"("max_tokens":8,"logprobs":1,"stream":true)"));
  size_t tokens = 0;
  for (const auto& e : ev) {
    if (e != "[DONE]") tokens += parse(e)["choices"][0]["logprobs"]["tokens"].size();
  }
  EXPECT_EQ(tokens, 8u);
}

TEST_F(OpenAiApi, EchoPutsThePromptFirst) {
  NEED_STORIES();
  const std::string text = post_json("/v1/completions", completion())["choices"][0]["text"].asString();
  auto j = post_json("/v1/completions", completion(R"("echo":true)"));
  EXPECT_EQ(j["choices"][0]["text"].asString(), std::string(kPrompt) + text);
  auto ids =
      post_json("/v1/completions",
                R"({"model":"stories","prompt":[1,403,407,261,378],"max_tokens":4,"echo":true,"temperature":0})");
  auto detok = post_json("/detokenize", R"({"model":"stories","tokens":[1,403,407,261,378]})");
  EXPECT_EQ(ids["choices"][0]["text"].asString().rfind(detok["prompt"].asString(), 0), 0u) << dump(ids);
  auto ev = events("/v1/completions", completion(R"("echo":true,"stream":true)"));
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(parse(ev[0])["choices"][0]["text"].asString().rfind(kPrompt, 0), 0u) << ev[0];
  // Echo with logprobs: openai_prompt_logprobs_test.cc.
}

TEST_F(OpenAiApi, EverySamplingFieldIsAcceptedAndCheckedByName) {
  NEED_STORIES();
  struct Field {
    const char* name;
    const char* good;
    const char* bad;
  } fields[] = {
      {"max_tokens", "5", "-1"},
      {"temperature", "0.7", "\"hot\""},
      {"top_p", "0.9", "0"},
      {"top_k", "20", "1.5"},
      {"min_p", "0.05", "2"},
      {"seed", "3", "\"x\""},
      {"stop", "[\"zz\"]", "[1]"},
      {"presence_penalty", "0.5", "3"},
      {"frequency_penalty", "0.5", "-3"},
      {"repetition_penalty", "1.1", "0"},
      {"logprobs", "1", "21"},
      {"echo", "false", "1"},
      {"n", "2", "0"},
      {"stream", "false", "\"yes\""},
      {"ignore_eos", "true", "\"no\""},
      {"stop_token_ids", "[2]", "\"2\""},
      {"skip_special_tokens", "false", "3"},
      {"priority", "1", "-1"},
      {"timeout", "60000000", "\"soon\""},
      {"user", "\"someone\"", "5"},
      {"min_tokens", "2", "-1"},
      {"logit_bias", "{\"5\":10}", "{\"x\":1}"},
      {"max_completion_tokens", "3", "-1"},
  };
  for (const auto& f : fields) {
    std::string base = R"({"model":"stories","prompt":"Once","max_tokens":3,")" + std::string(f.name) + "\":";
    if (std::string(f.name) == "max_tokens") base = R"({"model":"stories","prompt":"Once","max_tokens":)";
    auto good = post("/v1/completions", base + f.good + "}");
    EXPECT_EQ(good.status, 200) << f.name << " = " << f.good << " -> " << good.body;
    auto bad = post("/v1/completions", base + f.bad + "}");
    EXPECT_EQ(bad.status, 400) << f.name << " = " << f.bad << " -> " << bad.body;
    auto e = parse(bad.body)["error"];
    EXPECT_EQ(e["type"].asString(), "invalid_request_error") << bad.body;
    EXPECT_EQ(e["param"].asString(), f.name) << bad.body;
    EXPECT_NE(e["message"].asString().find(std::string("'") + f.name + "'"), std::string::npos) << bad.body;
  }
  // Fields ferry does not implement are refused, not ignored.
  for (const char* extra : {R"("suffix":"end")", R"("best_of":3)"}) {
    auto r = post("/v1/completions", completion(extra));
    EXPECT_EQ(r.status, 400) << extra << " -> " << r.body;
    EXPECT_NE(parse(r.body)["error"]["message"].asString().find("not supported"), std::string::npos) << r.body;
  }
}

TEST_F(OpenAiApi, ChatCompletionObjectAndStream) {
  auto j = post_json("/v1/chat/completions", chat());
  EXPECT_EQ(j["id"].asString().rfind("chatcmpl-", 0), 0u) << dump(j);
  EXPECT_EQ(j["object"].asString(), "chat.completion");
  EXPECT_EQ(j["model"].asString(), "tiny-llama");
  ASSERT_EQ(j["choices"].size(), 1u);
  const Json::Value& c = j["choices"][0];
  EXPECT_EQ(c["message"]["role"].asString(), "assistant");
  EXPECT_TRUE(c["message"]["content"].isString());
  EXPECT_TRUE(c["finish_reason"].asString() == "length" || c["finish_reason"].asString() == "stop");
  const int completion = j["usage"]["completion_tokens"].asInt();
  EXPECT_GE(completion, 1);
  EXPECT_LE(completion, 6);
  auto tok = post_json("/tokenize", R"({"model":"tiny-llama","messages":[{"role":"system","content":"Be brief."},
      {"role":"user","content":"Hello!"}]})");
  EXPECT_EQ(j["usage"]["prompt_tokens"].asInt(), tok["count"].asInt()) << "the chat template's tokens";
  EXPECT_EQ(j["usage"]["total_tokens"].asInt(), tok["count"].asInt() + completion);

  // Content as a list of text parts is the same chat.
  auto parts =
      post_json("/v1/chat/completions", R"({"model":"tiny-llama","messages":[{"role":"system","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"Hello!"}]}],"max_tokens":6,"temperature":0})");
  EXPECT_EQ(parts["choices"][0]["message"]["content"], c["message"]["content"]);

  auto ev = events("/v1/chat/completions", chat(R"("stream":true,"stream_options":{"include_usage":true})"));
  ASSERT_GE(ev.size(), 4u);
  EXPECT_EQ(ev.back(), "[DONE]");
  auto first = parse(ev[0]);
  EXPECT_EQ(first["object"].asString(), "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"].asString(), "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"].asString(), "");
  std::string content, finish;
  for (size_t i = 1; i + 2 < ev.size(); ++i) {
    auto k = parse(ev[i]);
    EXPECT_EQ(k["id"], first["id"]);
    content += k["choices"][0]["delta"]["content"].asString();
    if (!k["choices"][0]["finish_reason"].isNull()) finish = k["choices"][0]["finish_reason"].asString();
  }
  EXPECT_EQ(content, c["message"]["content"].asString());
  EXPECT_EQ(finish, c["finish_reason"].asString());
  auto usage = parse(ev[ev.size() - 2]);
  EXPECT_EQ(usage["choices"].size(), 0u);
  EXPECT_EQ(usage["usage"]["completion_tokens"].asInt(), completion);
}

TEST_F(OpenAiApi, ChatLogprobsAndDefaultMaxTokens) {
  auto j = post_json("/v1/chat/completions", chat(R"("logprobs":true,"top_logprobs":2)"));
  const Json::Value& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_TRUE(content.isArray()) << dump(j);
  EXPECT_EQ(static_cast<int>(content.size()), j["usage"]["completion_tokens"].asInt());
  for (const auto& t : content) {
    EXPECT_TRUE(t["token"].isString());
    EXPECT_LE(t["logprob"].asDouble(), 0.0);
    EXPECT_EQ(t["bytes"].size(), t["token"].asString().size());
    EXPECT_EQ(t["top_logprobs"].size(), 2u);
    EXPECT_TRUE(t["top_logprobs"][0].isMember("bytes"));
  }
  auto no_flag = post("/v1/chat/completions", chat(R"("top_logprobs":2)"));
  EXPECT_EQ(no_flag.status, 400);
  EXPECT_EQ(parse(no_flag.body)["error"]["param"].asString(), "top_logprobs");

  // max_completion_tokens is the newer name of max_tokens.
  auto mct = post_json("/v1/chat/completions", R"({"model":"tiny-llama","messages":[{"role":"user","content":"Hi"}],
      "temperature":0,"ignore_eos":true,"max_completion_tokens":3})");
  EXPECT_EQ(mct["usage"]["completion_tokens"].asInt(), 3);

  // Without either, a chat may use the rest of the context window; here its first greedy token is
  // a stop token, so it ends at once.
  auto first = post_json("/v2/models/tiny-llama/generate",
                         R"({"messages":[{"role":"user","content":"Hi"}],"temperature":0,"max_tokens":1})");
  const Json::Value id = first["output_ids"].isArray() ? first["output_ids"][0] : first["output_ids"];
  ASSERT_TRUE(id.isIntegral()) << dump(first);
  auto unbounded =
      post_json("/v1/chat/completions", R"({"model":"tiny-llama","messages":[{"role":"user","content":"Hi"}],
      "temperature":0,"stop_token_ids":[)" + dump(id) +
                                            "]}");
  EXPECT_EQ(unbounded["choices"][0]["finish_reason"].asString(), "stop") << dump(unbounded);
  EXPECT_EQ(unbounded["usage"]["completion_tokens"].asInt(), 1);
}

// tool_choice "required" or a named function: the backend's constrained decoding (guided_json)
// keeps even tiny-llama's random-weight output to the call's schema, so the arguments always parse.
TEST_F(OpenAiApi, ToolChoiceConstrainsTheCallToItsSchema) {
  const std::string tools = R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":{
      "type":"object","properties":{"city":{"type":"string","enum":["Paris","Oslo"]}},"required":["city"],
      "additionalProperties":false}}}],"max_tokens":400)";  // room for the whitespace JSON allows (random weights love it)
  for (const char* choice : {R"("tool_choice":{"type":"function","function":{"name":"get_weather"}})",
                             // One call at most (maxItems 1), or random weights keep adding calls.
                             R"("tool_choice":"required","parallel_tool_calls":false)"}) {
    for (bool stream : {false, true}) {
      const std::string body = chat(tools + "," + choice + (stream ? R"(,"stream":true)" : ""));
      std::string arguments, name, finish;
      if (!stream) {
        auto j = post_json("/v1/chat/completions", body);
        const Json::Value& c = j["choices"][0];
        ASSERT_EQ(c["message"]["tool_calls"].size(), 1u) << choice << " -> " << dump(j);
        name = c["message"]["tool_calls"][0]["function"]["name"].asString();
        arguments = c["message"]["tool_calls"][0]["function"]["arguments"].asString();
        finish = c["finish_reason"].asString();
      } else {
        for (const auto& e : events("/v1/chat/completions", body)) {
          if (e == "[DONE]") break;
          const Json::Value c = parse(e)["choices"][0];
          for (const auto& t : c["delta"]["tool_calls"]) {
            if (t["function"].isMember("name")) name = t["function"]["name"].asString();
            arguments += t["function"]["arguments"].asString();
          }
          if (c["finish_reason"].isString()) finish = c["finish_reason"].asString();
        }
      }
      SCOPED_TRACE(std::string(choice) + (stream ? " streamed" : ""));
      EXPECT_EQ(name, "get_weather");
      const Json::Value args = parse(arguments);
      ASSERT_TRUE(args.isObject()) << arguments;
      const std::string city = args["city"].asString();
      EXPECT_TRUE(city == "Paris" || city == "Oslo") << arguments;
      EXPECT_EQ(args.size(), 1u) << arguments;
      EXPECT_EQ(finish, "tool_calls");
    }
  }
}

TEST_F(OpenAiApi, ChatChecksMessagesAndRefusesWhatItDoesNotImplement) {
  struct Case {
    std::string body;
    const char* param;
  } cases[] = {
      {R"({"model":"tiny-llama","messages":[]})", "messages"},
      {R"({"model":"tiny-llama","messages":[{"role":"wizard","content":"hi"}]})", "messages"},
      {R"({"model":"tiny-llama","messages":[{"role":"user"}]})", "messages"},
      {R"({"model":"tiny-llama","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]})",
       "messages"},
      {R"({"model":"tiny-llama"})", "messages"},
      {chat(R"("tools":[{"type":"function","function":{"name":"f"}}])"), "tool_choice"},
      {chat(R"("tools":[{"type":"search"}])"), "tools"},
      {chat(R"("logprobs":2)"), "logprobs"},
      {chat(R"("temperature":-1)"), "temperature"},
      {chat(R"("stream_options":{"include_usage":true})"), "stream_options"},
      {R"({"messages":[{"role":"user","content":"hi"}]})", "model"},
  };
  for (const auto& c : cases) {
    auto r = post("/v1/chat/completions", c.body);
    EXPECT_EQ(r.status, 400) << c.body << " -> " << r.body;
    EXPECT_EQ(parse(r.body)["error"]["param"].asString(), c.param) << c.body << " -> " << r.body;
  }
  // A model without a chat template says so.
  if (stories()) {
    auto r = post("/v1/chat/completions",
                  R"({"model":"stories","messages":[{"role":"user","content":"hi"}],"max_tokens":3})");
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(parse(r.body)["error"]["message"].asString().find("chat template"), std::string::npos) << r.body;
  }
}

TEST_F(OpenAiApi, ModelsListsTheReadyModels) {
  auto j = post_json("/tokenize", R"({"model":"tiny-llama","prompt":"x"})");
  auto list = parse(http_->get("/v1/models").body);
  EXPECT_EQ(list["object"].asString(), "list");
  std::set<std::string> ids;
  for (const auto& m : list["data"]) {
    ids.insert(m["id"].asString());
    EXPECT_EQ(m["object"].asString(), "model");
    EXPECT_TRUE(m["created"].isIntegral());
    EXPECT_EQ(m["owned_by"].asString(), "ferry");
  }
  EXPECT_TRUE(ids.count("tiny-llama"));
  if (stories()) {
    EXPECT_TRUE(ids.count("stories"));
  }
  auto one = http_->get("/v1/models/tiny-llama");
  EXPECT_EQ(one.status, 200);
  EXPECT_EQ(parse(one.body)["id"].asString(), "tiny-llama");
  EXPECT_EQ(parse(one.body)["max_model_len"], j["max_model_len"]);
  auto none = http_->get("/v1/models/nope");
  EXPECT_EQ(none.status, 404);
  EXPECT_EQ(parse(none.body)["error"]["code"].asString(), "model_not_found");
}

TEST_F(OpenAiApi, TokenizeAndDetokenize) {
  NEED_STORIES();
  auto t = post_json("/tokenize", R"({"model":"stories","prompt":"Once upon a time"})");
  EXPECT_EQ(t["count"].asInt(), 5);
  EXPECT_EQ(t["tokens"].size(), 5u);
  EXPECT_EQ(t["tokens"][0].asInt(), 1) << "BOS";
  EXPECT_EQ(t["max_model_len"].asInt(), 512);
  auto plain = post_json("/tokenize", R"({"model":"stories","prompt":"Once upon a time","add_special_tokens":false})");
  EXPECT_EQ(plain["count"].asInt(), 4);
  auto d = post_json("/detokenize", R"({"model":"stories","tokens":)" + dump(plain["tokens"]) + "}");
  EXPECT_EQ(d["prompt"].asString(), kPrompt);

  EXPECT_EQ(post("/tokenize", R"({"model":"stories"})").status, 400);
  EXPECT_EQ(post("/tokenize", R"({"model":"stories","prompt":5})").status, 400);
  EXPECT_EQ(post("/detokenize", R"({"model":"stories","tokens":["a"]})").status, 400);
  EXPECT_EQ(post("/detokenize", R"({"model":"stories","tokens":[99999]})").status, 400);
  EXPECT_EQ(post("/tokenize", R"({"model":"nope","prompt":"x"})").status, 404);
  EXPECT_EQ(http_->get("/tokenize").status, 405);
}

TEST_F(OpenAiApi, BadRequestsGetClearErrorsAndTheServerKeepsServing) {
  NEED_STORIES();
  struct Case {
    std::string path, body;
    long status;
    const char* needle;
  } cases[] = {
      {"/v1/completions", "{not json", 400, "request body"},
      {"/v1/completions", "[1,2]", 400, "JSON object"},
      {"/v1/completions", "", 400, "empty"},
      {"/v1/completions", R"({"model":5,"prompt":"x"})", 400, "'model'"},
      {"/v1/completions", R"({"model":"stories"})", 400, "'prompt'"},
      {"/v1/completions", R"({"model":"stories","prompt":{"a":1}})", 400, "'prompt'"},
      {"/v1/completions", R"({"model":"stories","prompt":[1,-2]})", 400, "'prompt'"},
      {"/v1/completions", R"({"model":"stories","prompt":[1,99999]})", 400, "outside the vocabulary"},
      {"/v1/completions", R"({"model":"nope","prompt":"x"})", 404, "does not exist"},
      {"/v1/completions", R"({"model":"stories","prompt":"Once","max_tokens":600})", 400, "context window of 512"},
      {"/v1/completions", R"({"model":"stories","prompt":"Once","max_tokens":600,"stream":true})", 400,
       "context window of 512"},
      {"/v1/completions", R"({"model":"stories","prompt":")" + std::string(70000, 'a') + R"("})", 413, "limit"},
      {"/v1/nothing", "{}", 404, "no such endpoint"},
  };
  for (const auto& c : cases) {
    auto r = post(c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.body.substr(0, 100) << " -> " << r.body;
    EXPECT_EQ(r.content_type, "application/json") << "a streamed request refused at once gets a JSON error";
    auto e = parse(r.body)["error"];
    ASSERT_TRUE(e.isObject()) << r.body;
    EXPECT_TRUE(e.isMember("message") && e.isMember("type") && e.isMember("param") && e.isMember("code")) << r.body;
    EXPECT_NE(e["message"].asString().find(c.needle), std::string::npos) << c.body.substr(0, 100) << " -> " << r.body;
  }
  auto too_long = parse(post("/v1/completions", R"({"model":"stories","prompt":"Once","max_tokens":600})").body);
  EXPECT_NE(too_long["error"]["message"].asString().find("max_tokens is 600"), std::string::npos);
  EXPECT_EQ(too_long["error"]["code"].asString(), "context_length_exceeded");
  EXPECT_EQ(http_->get("/v1/completions").status, 405);
  EXPECT_EQ(backend_stats("stories")["kv_blocks_used"].asInt(), 0);
  auto ok = post_json("/v1/completions", completion());
  EXPECT_EQ(ok["usage"]["completion_tokens"].asInt(), 20) << "the server keeps serving";
}

// That they reach the scheduler is FullQueuesAnswer429AndExpiredRequests408InOpenAisErrorShape's job.
TEST_F(OpenAiApi, PriorityAndTimeoutAreAcceptedAndTypeChecked) {
  NEED_STORIES();
  auto j = post_json("/v1/completions", completion(R"("priority":0,"timeout":30000000)"));
  EXPECT_EQ(j["choices"][0]["finish_reason"].asString(), "length");
  auto r = post("/v1/completions", completion(R"("priority":"high")"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(parse(r.body)["error"]["param"].asString(), "priority");
}

TEST_F(OpenAiApi, FullQueuesAnswer429AndExpiredRequests408InOpenAisErrorShape) {
  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once"]}])");
  // Two long requests at the highest level keep the only slot busy.
  for (const char* id : {"blocker", "blocker2"}) {
    Json::Value blocker = client::ZmqClient::infer_message(
        id, "one_at_a_time", in, parse(R"({"max_tokens":3000,"temperature":0,"ignore_eos":true})"), true);
    blocker["priority"] = 1;
    ASSERT_TRUE(zmq.send(blocker).ok());
  }
  ASSERT_TRUE(zmq.receive(10000ms).has_value());  // running: later requests queue

  // Level 2 holds at most 2 waiting requests; the third is refused at once.
  HttpClient h1(server_->http_url()), h2(server_->http_url());
  const std::string queued = R"({"model":"one_at_a_time","prompt":"Once","max_tokens":2,"priority":2})";
  std::thread t1([&] { h1.post("/v1/completions", queued); });
  std::thread t2([&] { h2.post("/v1/completions", queued); });
  EXPECT_TRUE(eventually([&] { return backend_stats("one_at_a_time")["waiting"].asInt() == 3; }, 5000ms));
  auto full = post("/v1/completions", queued);
  EXPECT_EQ(full.status, 429) << full.body;
  EXPECT_EQ(parse(full.body)["error"]["type"].asString(), "rate_limit_error") << full.body;
  EXPECT_EQ(parse(full.body)["error"]["code"].asString(), "rate_limit_exceeded") << full.body;

  // A streamed request whose timeout passes while it waits gets a plain 408, not a stream.
  auto expired = post("/v1/chat/completions", R"({"model":"one_at_a_time","messages":[{"role":"user","content":"Hi"}],
      "max_tokens":2,"priority":1,"timeout":1000,"stream":true})");
  EXPECT_EQ(expired.status, 408) << expired.body;
  EXPECT_EQ(expired.content_type, "application/json");
  EXPECT_EQ(parse(expired.body)["error"]["type"].asString(), "timeout_error") << expired.body;

  ASSERT_TRUE(zmq.send(client::ZmqClient::cancel_message("blocker")).ok());
  ASSERT_TRUE(zmq.send(client::ZmqClient::cancel_message("blocker2")).ok());
  t1.join();
  t2.join();
  EXPECT_TRUE(eventually([&] { return backend_stats("one_at_a_time")["kv_blocks_used"].asInt() == 0; }, 5000ms));
}

TEST_F(OpenAiApi, DisconnectDuringAStreamCancelsAndFreesTheKvBlocks) {
  for (const char* model : {"stories", "tiny-llama"}) {
    if (std::string(model) == "stories" && !stories()) continue;
    int seen = 0;
    std::string path = std::string(model) == "stories" ? "/v1/completions" : "/v1/chat/completions";
    std::string body = std::string(model) == "stories"
                           ? R"({"model":"stories","prompt":"Once","max_tokens":400,"ignore_eos":true,"stream":true})"
                           : R"({"model":"tiny-llama","messages":[{"role":"user","content":"Hi"}],"max_tokens":2000,
                               "ignore_eos":true,"stream":true})";
    http_->post_stream(path, body, [&](const std::string&) { return ++seen < 3; });
    EXPECT_EQ(seen, 3) << model;
    EXPECT_TRUE(eventually(
        [&] {
          auto s = backend_stats(model);
          return s["kv_blocks_used"].asInt() == 0 && s["running"].asInt() == 0;
        },
        5000ms))
        << model << " " << dump(backend_stats(model));
    EXPECT_GE(backend_stats(model)["cancelled"].asInt(), 1) << model;
  }
}

}  // namespace
}  // namespace ferry::testing

namespace ferry::testing {
namespace {

TEST_F(OpenAiApi, DisconnectBeforeANonStreamedAnswerCancelsAndFreesTheKvBlocks) {
  int64_t cancelled_before = backend_stats("tiny-llama")["cancelled"].asInt64();
  HttpClient impatient(server_->http_url());
  impatient.set_timeout_ms(300);  // ~2000 tokens take seconds; the client leaves after 0.3 s
  auto r = impatient.post("/v1/chat/completions",
                          R"({"model":"tiny-llama","messages":[{"role":"user","content":"Hi"}],"max_tokens":2000,
                              "ignore_eos":true})");
  EXPECT_NE(r.error, "");
  EXPECT_TRUE(eventually(
      [&] {
        auto s = backend_stats("tiny-llama");
        return s["cancelled"].asInt64() == cancelled_before + 1 && s["kv_blocks_used"].asInt() == 0 &&
               s["running"].asInt() == 0;
      },
      5000ms))
      << dump(backend_stats("tiny-llama"));
}

}  // namespace
}  // namespace ferry::testing
