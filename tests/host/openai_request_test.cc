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
      {R"({"prompt":"hi"})", "model"},
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

}  // namespace
}  // namespace ferry::host
