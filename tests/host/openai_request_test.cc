// The OpenAI request parsers (host/http/openai_request.h) without a server: which fields reach the
// backend's parameters under which names, which are refused (naming the field), and the ABI
// request each choice becomes.
#include "host/http/openai_request.h"

#include <gtest/gtest.h>

#include "host/json_util.h"

namespace ferry::host {
namespace {

Json::Value J(const std::string& text) { return parse_json(text, "test").value(); }

Json::Value params_of(const RequestSpec& spec) { return J(spec.parameters_json); }

// The error's field: the text between the first pair of quotes ("parameter 'x' ...").
std::string field_of(const Status& s) {
  const std::string& m = s.message();
  size_t a = m.find('\''), b = m.find('\'', a + 1);
  return a == std::string::npos || b == std::string::npos ? "" : m.substr(a + 1, b - a - 1);
}

TEST(OpenAiRequest, ConstraintFieldsPassToTheBackendUnchanged) {
  const char* fields[] = {
      R"("response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}})",
      R"("response_format":{"type":"json_object"})",
      R"("guided_json":{"type":"object","properties":{"a":{"type":"integer"}}})",
      R"("guided_regex":"[a-z]+")",
      R"("guided_choice":["yes","no"])",
      R"("guided_grammar":"root ::= \"a\"")",
      R"("grammar":"root ::= \"b\"")",
      R"("json_schema":{"type":"string"})",
  };
  for (const char* f : fields) {
    Json::Value extra = J(std::string("{") + f + "}");
    const std::string key = extra.getMemberNames()[0];
    for (bool chat : {false, true}) {
      Json::Value body = chat ? J(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})")
                              : J(R"({"model":"m","prompt":"hi"})");
      body[key] = extra[key];
      auto r = chat ? parse_chat_request(body) : parse_completion_request(body);
      ASSERT_TRUE(r.ok()) << f << ": " << r.status().to_string();
      EXPECT_EQ(params_of(make_choice_request(r.value(), 0))[key], extra[key]) << f;
    }
  }
}

TEST(OpenAiRequest, RefusalsNameTheirField) {
  struct Case {
    const char* body;
    const char* field;
  } cases[] = {
      {R"({"model":"","prompt":"hi"})", "model"},
      {R"({"model":"m"})", "prompt"},
      {R"({"model":"m","prompt":"hi","suffix":"x"})", "suffix"},
      {R"({"model":"m","prompt":"hi","n":17})", "n"},
      {R"({"model":"m","prompt":"hi","stream_options":{"include_usage":true}})", "stream_options"},
  };
  for (const auto& c : cases) {
    auto r = parse_completion_request(J(c.body));
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.body;
    EXPECT_EQ(field_of(r.status()), c.field) << c.body << ": " << r.status().to_string();
  }
}

TEST(OpenAiRequest, SamplingFieldsReachTheBackendUnderTheirNames) {
  auto r = parse_completion_request(J(R"({"model":"m","prompt":"hi","min_tokens":3,"logit_bias":{"7":-100},
      "stop_token_ids":[2],"skip_special_tokens":false,"max_completion_tokens":9,"user":"u"})"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  Json::Value p = params_of(make_choice_request(r.value(), 0));
  EXPECT_EQ(p["min_tokens"].asInt(), 3);
  EXPECT_EQ(p["logit_bias"]["7"].asInt(), -100);
  EXPECT_EQ(p["stop_token_ids"][0].asInt(), 2);
  EXPECT_FALSE(p["skip_special_tokens"].asBool());
  EXPECT_EQ(p["max_tokens"].asInt(), 9) << "max_completion_tokens is max_tokens";
  EXPECT_FALSE(p.isMember("user"));
}

TEST(OpenAiRequest, MaxCompletionTokensMustAgreeWithMaxTokens) {
  for (const char* base : {R"({"model":"m","prompt":"hi")", R"({"model":"m","messages":[{"role":"user","content":"x"}])"}) {
    const bool chat = std::string(base).find("messages") != std::string::npos;
    auto parse = [&](const std::string& extra) {
      Json::Value b = J(std::string(base) + extra + "}");
      return chat ? parse_chat_request(b) : parse_completion_request(b);
    };
    auto same = parse(R"(,"max_tokens":4,"max_completion_tokens":4)");
    ASSERT_TRUE(same.ok()) << same.status().to_string();
    EXPECT_TRUE(same->has_max_tokens);
    auto differ = parse(R"(,"max_tokens":4,"max_completion_tokens":5)");
    ASSERT_FALSE(differ.ok());
    EXPECT_EQ(field_of(differ.status()), "max_completion_tokens");
  }
}

TEST(OpenAiRequest, AMissingModelIsLeftToTheHandler) {
  auto r = parse_completion_request(J(R"({"prompt":"hi"})"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->model.empty());
  EXPECT_FALSE(parse_completion_request(J(R"({"model":"","prompt":"hi"})")).ok());
  EXPECT_FALSE(parse_completion_request(J(R"({"model":7,"prompt":"hi"})")).ok());
}

TEST(OpenAiRequest, AListOfPromptsGivesNChoicesPerPrompt) {
  auto r = parse_completion_request(J(R"({"model":"m","prompt":["a",[5,6],"c"],"n":2,"seed":10,"echo":true})"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->prompts.size(), 3u);
  EXPECT_EQ(r->num_choices(), 6);
  EXPECT_EQ(*r->prompt_of(1).text, "a");
  EXPECT_FALSE(r->prompt_of(2).text.has_value());
  EXPECT_EQ(r->prompt_of(3).ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(*r->prompt_of(5).text, "c");
  for (int i = 0; i < 6; ++i) {
    RequestSpec spec = make_choice_request(r.value(), i);
    EXPECT_EQ(params_of(spec)["seed"].asUInt64(), 10u + static_cast<uint64_t>(i % 2)) << "choice " << i;
    ASSERT_EQ(spec.inputs.size(), 1u);
    EXPECT_EQ(spec.inputs[0].name, i / 2 == 1 ? "input_ids" : "text_input") << "choice " << i;
  }
  // One prompt of token ids is not a list of prompts.
  auto ids = parse_completion_request(J(R"({"model":"m","prompt":[1,2,3]})"));
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->num_choices(), 1);
  EXPECT_EQ(ids->prompts[0].ids.size(), 3u);
  for (const char* bad : {R"({"model":"m","prompt":[]})", R"({"model":"m","prompt":["a",[]]})",
                          R"({"model":"m","prompt":["a",3]})", R"({"model":"m","prompt":[-1]})"}) {
    auto b = parse_completion_request(J(bad));
    ASSERT_FALSE(b.ok()) << bad;
    EXPECT_EQ(field_of(b.status()), "prompt") << bad;
  }
}

TEST(OpenAiRequest, OutputFormatsKeepTheirPropertyOrder) {
  // "zeta" before "alpha": jsoncpp would sort them; the backend must see the client's order.
  const std::string text = R"({"model":"m","prompt":"hi","guided_json":{"type":"object","properties":{
      "zeta":{"type":"integer"},"alpha":{"type":"string"}}}})";
  auto r = parse_completion_request(J(text));
  ASSERT_TRUE(r.ok());
  r->body_text = text;
  const std::string params = make_choice_request(r.value(), 0).parameters_json;
  ASSERT_NE(params.find("\"zeta\""), std::string::npos) << params;
  EXPECT_LT(params.find("\"zeta\""), params.find("\"alpha\"")) << params;
  r->body_text.clear();
  const std::string sorted = make_choice_request(r.value(), 0).parameters_json;
  EXPECT_GT(sorted.find("\"zeta\""), sorted.find("\"alpha\"")) << "without the text, jsoncpp's order: " << sorted;
}

}  // namespace
}  // namespace ferry::host

namespace ferry::host {
namespace {

// The backend's prompt_logprobs: vLLM's field on both endpoints, and completions' echo with
// logprobs (the larger of the two when both are given); nothing without either.
TEST(OpenAiRequest, PromptLogprobsReachTheBackend) {
  struct Case {
    const char* extra;
    int backend;  // -1: no prompt_logprobs parameter
  } cases[] = {
      {"", -1},
      {R"(,"logprobs":2)", -1},
      {R"(,"echo":true)", -1},
      {R"(,"echo":true,"logprobs":2)", 2},
      {R"(,"prompt_logprobs":0)", 0},
      {R"(,"prompt_logprobs":5,"echo":true,"logprobs":2)", 5},
      {R"(,"prompt_logprobs":1,"echo":true,"logprobs":3)", 3},
      {R"(,"max_tokens":0,"echo":true,"logprobs":0)", 0},
  };
  for (const auto& c : cases) {
    auto r = parse_completion_request(J(std::string(R"({"model":"m","prompt":"hi")") + c.extra + "}"));
    ASSERT_TRUE(r.ok()) << c.extra << ": " << r.status().to_string();
    const Json::Value p = params_of(make_choice_request(r.value(), 0));
    EXPECT_EQ(p.isMember("prompt_logprobs") ? p["prompt_logprobs"].asInt() : -1, c.backend) << c.extra;
  }
  auto chat = parse_chat_request(J(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"prompt_logprobs":4})"));
  ASSERT_TRUE(chat.ok()) << chat.status().to_string();
  EXPECT_EQ(chat->num_prompt_logprobs, 4);
  EXPECT_EQ(params_of(make_choice_request(chat.value(), 0))["prompt_logprobs"].asInt(), 4);
  for (const char* bad : {"-1", "21", "1.5", "true", "\"3\""}) {
    auto r = parse_completion_request(J(std::string(R"({"model":"m","prompt":"hi","prompt_logprobs":)") + bad + "}"));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(field_of(r.status()), "prompt_logprobs") << r.status().to_string();
  }
}

}  // namespace
}  // namespace ferry::host
