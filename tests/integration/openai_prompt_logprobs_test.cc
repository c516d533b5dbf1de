// Prompt logprobs against a real ferry-server: completions' echo with logprobs (the legacy logprobs
// object starts with the prompt's tokens, streamed and not), max_tokens 0 (the prompt alone: the
// scoring request of lm-eval-harness), vLLM's prompt_logprobs on completions and chat, the same
// parameter over KServe generate and ZeroMQ, and the 400s. The prompt's logprobs are checked against the
// logprobs of the same tokens when the server generated them (the sampler's path), and the KV
// blocks go back to zero.
#include <gtest/gtest.h>

#include <cmath>

#include "client/zmq_client.h"
#include "tests/host/exposition_parser.h"
#include "tests/integration/openai_fixture.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;

// The OpenAI fixture's server; after each test every model's KV blocks are back in the pool.
class PromptLogprobs : public OpenAiApi {
 protected:
  void TearDown() override {
    for (const char* model : {"stories", "tiny-llama"}) {
      if (std::string(model) == "stories" && !stories()) continue;
      EXPECT_TRUE(eventually([&] { return backend_stats(model)["kv_blocks_used"].asInt() == 0; }, 5000ms))
          << model << " " << dump(backend_stats(model));
    }
  }
  // A stream's events, parsed ([DONE] left out).
  std::vector<Json::Value> chunks(const std::string& path, const std::string& body) {
    std::vector<Json::Value> out;
    for (const auto& e : events(path, body)) {
      if (e != "[DONE]") out.push_back(parse(e));
    }
    return out;
  }
  // A request that must be refused with a 400 naming `param`.
  void expect_400(const std::string& path, const std::string& body, const std::string& param) {
    auto r = post(path, body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_EQ(parse(r.body)["error"]["param"].asString(), param) << body << " -> " << r.body;
  }
};

std::string ids_json(const std::vector<int>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

// The legacy object of an echo: its tokens after the first join to the text, and each offset is
// where its token starts.
void expect_tokens_tile_the_text(const Json::Value& lp, const std::string& text) {
  std::string joined;
  for (Json::ArrayIndex i = 1; i < lp["tokens"].size(); ++i) {
    EXPECT_EQ(lp["text_offset"][i].asUInt64(), joined.size()) << "token " << i << " " << dump(lp);
    joined += lp["tokens"][i].asString();
  }
  EXPECT_EQ(joined, text);
}

TEST_F(PromptLogprobs, EchoWithLogprobsScoresThePromptLikeTheGeneratedTokens) {
  NEED_STORIES();
  // Greedy tokens g1..g4 after the prompt, with the sampler's logprobs.
  auto gen = post_json("/v1/completions", R"({"model":"stories","prompt":[1,403,407,261,378],"max_tokens":4,
      "temperature":0,"ignore_eos":true,"logprobs":2})");
  auto gen_ids = post_json("/v2/models/stories/generate", R"({"input_ids":[1,403,407,261,378],"max_tokens":4,
      "temperature":0,"ignore_eos":true})")["output_ids"];
  ASSERT_EQ(gen_ids.size(), 4u) << dump(gen_ids);
  std::vector<int> prompt = {1, 403, 407, 261, 378};
  for (const auto& id : gen_ids) prompt.push_back(id.asInt());
  // The prompt plus those tokens, scored without generating (max_tokens 0, lm-eval's request).
  auto j = post_json("/v1/completions", R"({"model":"stories","prompt":)" + ids_json(prompt) +
                                            R"(,"max_tokens":0,"echo":true,"logprobs":2})");
  const Json::Value& c = j["choices"][0];
  const Json::Value& lp = c["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 9u) << dump(j);
  EXPECT_TRUE(lp["token_logprobs"][0].isNull());
  EXPECT_TRUE(lp["top_logprobs"][0].isNull());
  for (Json::ArrayIndex i = 1; i < 9; ++i) {
    EXPECT_LE(lp["token_logprobs"][i].asDouble(), 0.0);
    EXPECT_GE(lp["top_logprobs"][i].size(), 2u);
    EXPECT_LE(lp["top_logprobs"][i].size(), 3u) << "the top 2, plus the prompt token when not among them";
    EXPECT_TRUE(lp["top_logprobs"][i].isMember(lp["tokens"][i].asString())) << dump(lp["top_logprobs"][i]);
  }
  for (Json::ArrayIndex g = 0; g < 4; ++g) {
    EXPECT_NEAR(lp["token_logprobs"][5 + g].asDouble(), gen["choices"][0]["logprobs"]["token_logprobs"][g].asDouble(),
                1e-4)
        << "generated token " << g << " scored as a prompt token";
  }
  EXPECT_EQ(c["finish_reason"].asString(), "length");
  EXPECT_EQ(j["usage"]["completion_tokens"].asInt(), 0);
  EXPECT_EQ(j["usage"]["prompt_tokens"].asInt(), 9);
  expect_tokens_tile_the_text(lp, c["text"].asString());
  EXPECT_EQ(c["text"].asString(), "Once upon a time" + gen["choices"][0]["text"].asString());
}

TEST_F(PromptLogprobs, EchoWithLogprobsThenGeneratedTokensStreamedAndNot) {
  NEED_STORIES();
  const std::string body = R"({"model":"stories","prompt":"Once upon a time","max_tokens":4,"temperature":0,
      "ignore_eos":true,"echo":true,"logprobs":1)";
  auto j = post_json("/v1/completions", body + "}");
  const Json::Value& lp = j["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 9u) << "5 prompt tokens (BOS first), 4 generated: " << dump(j);
  EXPECT_EQ(lp["tokens"][1].asString(), "Once");
  EXPECT_EQ(lp["text_offset"][0].asInt(), 0);
  expect_tokens_tile_the_text(lp, j["choices"][0]["text"].asString());

  auto ev = chunks("/v1/completions", body + R"(,"stream":true})");
  ASSERT_FALSE(ev.empty());
  Json::Value tokens(Json::arrayValue), logprobs(Json::arrayValue), offsets(Json::arrayValue);
  std::string text;
  for (const auto& e : ev) {
    const Json::Value& ch = e["choices"][0];
    text += ch["text"].asString();
    for (Json::ArrayIndex i = 0; i < ch["logprobs"]["tokens"].size(); ++i) {
      tokens.append(ch["logprobs"]["tokens"][i]);
      logprobs.append(ch["logprobs"]["token_logprobs"][i]);
      offsets.append(ch["logprobs"]["text_offset"][i]);
    }
  }
  EXPECT_EQ(ev[0]["choices"][0]["logprobs"]["tokens"].size(), 6u) << "the prompt's 5 and the first token";
  EXPECT_EQ(text, j["choices"][0]["text"].asString());
  EXPECT_EQ(tokens, lp["tokens"]);
  EXPECT_EQ(offsets, lp["text_offset"]);
  EXPECT_TRUE(logprobs[0].isNull());
  for (Json::ArrayIndex i = 1; i < 9; ++i) {
    EXPECT_NEAR(logprobs[i].asDouble(), lp["token_logprobs"][i].asDouble(), 1e-6);
  }
}

TEST_F(PromptLogprobs, MaxTokensZeroReturnsThePromptAlone) {
  NEED_STORIES();
  auto generated = [&] {
    Exposition e;
    std::string err;
    EXPECT_TRUE(parse_exposition(http_->get("/metrics").body, &e, &err)) << err;
    return e.value("ferry_llm_generation_tokens_total", {{"model", "stories"}});
  };
  const double generated_before = generated();
  auto echo = post_json("/v1/completions", R"({"model":"stories","prompt":"Once upon a time","max_tokens":0,"echo":true})");
  EXPECT_EQ(echo["choices"][0]["text"].asString(), "Once upon a time");
  EXPECT_EQ(echo["choices"][0]["finish_reason"].asString(), "length");
  EXPECT_EQ(echo["usage"]["completion_tokens"].asInt(), 0);
  auto plain = post_json("/v1/completions", R"({"model":"stories","prompt":"Once upon a time","max_tokens":0})");
  EXPECT_EQ(plain["choices"][0]["text"].asString(), "");
  EXPECT_EQ(generated(), generated_before) << "the scheduling token is not counted as generated";
  auto ev = chunks("/v1/completions", R"({"model":"stories","prompt":"Once upon a time","max_tokens":0,"echo":true,
      "logprobs":0,"stream":true})");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["choices"][0]["text"].asString(), "Once upon a time");
  EXPECT_EQ(ev[0]["choices"][0]["logprobs"]["tokens"].size(), 5u);
  EXPECT_EQ(ev[0]["choices"][0]["finish_reason"].asString(), "length");
}

// vLLM's shape: [null, {"<id>": {logprob, rank, decoded_token}}, ...], the prompt token always in.
void expect_vllm_shape(const Json::Value& plp, const std::vector<int>& prompt, size_t k) {
  ASSERT_EQ(plp.size(), prompt.size()) << dump(plp);
  EXPECT_TRUE(plp[0].isNull());
  for (Json::ArrayIndex i = 1; i < plp.size(); ++i) {
    const Json::Value& pos = plp[i];
    ASSERT_TRUE(pos.isObject());
    EXPECT_GE(pos.size(), k);
    EXPECT_LE(pos.size(), k + 1);
    const std::string key = std::to_string(prompt[i]);
    ASSERT_TRUE(pos.isMember(key)) << i << " " << dump(pos);
    EXPECT_GE(pos[key]["rank"].asInt(), 1);
    EXPECT_TRUE(pos[key]["decoded_token"].isString());
    for (const auto& name : pos.getMemberNames()) {
      EXPECT_LE(pos[name]["logprob"].asDouble(), 0.0);
      if (name != key) {
        EXPECT_LE(pos[name]["rank"].asUInt(), k);
      }
    }
  }
}

TEST_F(PromptLogprobs, VllmPromptLogprobsOnCompletionsAndChat) {
  NEED_STORIES();
  const std::vector<int> prompt = {1, 403, 407, 261, 378};
  auto j = post_json("/v1/completions", R"({"model":"stories","prompt":[1,403,407,261,378],"max_tokens":2,
      "temperature":0,"prompt_logprobs":3})");
  expect_vllm_shape(j["choices"][0]["prompt_logprobs"], prompt, 3);
  EXPECT_TRUE(j["choices"][0]["logprobs"].isNull()) << "prompt_logprobs alone adds no legacy logprobs";
  // The same numbers as echo's legacy object.
  auto echo = post_json("/v1/completions", R"({"model":"stories","prompt":[1,403,407,261,378],"max_tokens":0,
      "echo":true,"logprobs":0})");
  for (Json::ArrayIndex i = 1; i < 5; ++i) {
    EXPECT_NEAR(j["choices"][0]["prompt_logprobs"][i][std::to_string(prompt[i])]["logprob"].asDouble(),
                echo["choices"][0]["logprobs"]["token_logprobs"][i].asDouble(), 1e-6);
  }
  // Streamed: the first chunk carries them.
  auto ev = chunks("/v1/completions", R"({"model":"stories","prompt":[1,403,407,261,378],"max_tokens":2,
      "temperature":0,"prompt_logprobs":1,"stream":true})");
  ASSERT_FALSE(ev.empty());
  expect_vllm_shape(ev[0]["choices"][0]["prompt_logprobs"], prompt, 1);
  for (size_t i = 1; i < ev.size(); ++i) EXPECT_FALSE(ev[i]["choices"][0].isMember("prompt_logprobs"));

  // Chat: once per response, at its top level (all choices share the prompt).
  auto chat = post_json("/v1/chat/completions", R"({"model":"tiny-llama","messages":[{"role":"user","content":"Hi"}],
      "max_tokens":2,"temperature":0,"prompt_logprobs":2,"n":2})");
  const Json::Value& plp = chat["prompt_logprobs"];
  ASSERT_EQ(plp.size(), chat["usage"]["prompt_tokens"].asUInt()) << dump(chat);
  EXPECT_TRUE(plp[0].isNull());
  for (Json::ArrayIndex i = 1; i < plp.size(); ++i) EXPECT_GE(plp[i].size(), 2u);
  for (const auto& c : chat["choices"]) EXPECT_FALSE(c.isMember("prompt_logprobs"));
}

TEST_F(PromptLogprobs, ZeroMqScoresAPromptWithMaxTokensZero) {
  NEED_STORIES();
  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"input_ids","datatype":"INT32","shape":[5],"data":[1,403,407,261,378]}])");
  Json::Value p = parse(R"({"max_tokens":0,"prompt_logprobs":1})");
  ASSERT_TRUE(zmq.send(client::ZmqClient::infer_message("z", "stories", in, p, false)).ok());
  Json::Value last;
  auto text = zmq.receive_text(10000ms, &last);
  ASSERT_TRUE(text.has_value()) << dump(last);
  EXPECT_EQ(*text, "") << "nothing generated";
  const Json::Value& plp = last["parameters"]["prompt_logprobs"];
  ASSERT_EQ(plp.size(), 5u) << dump(last);
  EXPECT_FALSE(plp[0].isMember("logprob"));
  for (Json::ArrayIndex i = 1; i < 5; ++i) EXPECT_EQ(plp[i]["top_logprobs"].size(), 1u);
  EXPECT_EQ(last["parameters"]["finish_reason"].asString(), "length");
  EXPECT_EQ(last["parameters"]["usage"]["completion_tokens"].asInt(), 0);
}

TEST_F(PromptLogprobs, KserveGenerateCarriesTheBackendList) {
  NEED_STORIES();
  auto j = post_json("/v2/models/stories/generate",
                     R"({"input_ids":[1,403,407,261,378],"max_tokens":1,"prompt_logprobs":2})");
  const Json::Value& plp = j["prompt_logprobs"];
  ASSERT_EQ(plp.size(), 5u) << dump(j);
  EXPECT_FALSE(plp[0].isMember("logprob"));
  EXPECT_EQ(plp[0]["token_id"].asInt(), 1);
  for (Json::ArrayIndex i = 1; i < 5; ++i) {
    EXPECT_EQ(plp[i]["top_logprobs"].size(), 2u);
    EXPECT_GE(plp[i]["rank"].asInt(), 1);
  }
  auto bad = post("/v2/models/stories/generate", R"({"input_ids":[1,403],"prompt_logprobs":21})");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("'prompt_logprobs'"), std::string::npos) << bad.body;
}

TEST_F(PromptLogprobs, BadValuesAreRefusedNamingTheField) {
  NEED_STORIES();
  for (const char* v : {"21", "-1", "\"2\"", "true", "1.5"}) {
    expect_400("/v1/completions", std::string(R"({"model":"stories","prompt":"Once","prompt_logprobs":)") + v + "}",
               "prompt_logprobs");
    expect_400("/v1/chat/completions",
               std::string(R"({"model":"tiny-llama","messages":[{"role":"user","content":"Hi"}],"prompt_logprobs":)") + v +
                   "}",
               "prompt_logprobs");
  }
  expect_400("/v1/completions", R"({"model":"stories","prompt":"Once","max_tokens":-1})", "max_tokens");
  expect_400("/v1/completions", R"({"model":"stories","prompt":"Once","echo":true,"logprobs":21})", "logprobs");
  // The server keeps serving.
  EXPECT_EQ(post_json("/v1/completions", R"({"model":"stories","prompt":"Once","max_tokens":1})")["choices"].size(), 1u);
}

}  // namespace
}  // namespace ferry::testing
