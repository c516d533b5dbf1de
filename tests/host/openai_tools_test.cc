// Tool calling's request fields and reply parsing (host/http/openai_tools.h): each model format
// (Llama 3 JSON, Hermes / Qwen <tool_call>, Mistral [TOOL_CALLS]) and the constrained forms of
// tool_choice "required" and a named function, whole and streamed.
#include "host/http/openai_tools.h"

#include <gtest/gtest.h>

#include "host/json_util.h"

namespace ferry::host {
namespace {

Json::Value J(const std::string& text) { return parse_json(text, "test").value(); }

const char* kTools = R"([{"type":"function","function":{"name":"get_weather","description":"d",
    "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
    {"type":"function","function":{"name":"get_time","parameters":{"type":"object"}}}])";

ToolRequest tools_with(const std::string& extra = "") {
  auto r = parse_tool_request(J(std::string(R"({"tools":)") + kTools + extra + "}"));
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? r.value() : ToolRequest{};
}

TEST(OpenAiTools, ParsesToolsAndToolChoice) {
  ToolRequest r = tools_with();
  EXPECT_EQ(r.tools.size(), 2u);
  EXPECT_EQ(r.choice, ToolRequest::Choice::kAuto) << "tools without tool_choice: auto";
  EXPECT_TRUE(r.active());
  EXPECT_EQ(tools_with(R"(,"tool_choice":"none")").choice, ToolRequest::Choice::kNone);
  EXPECT_FALSE(tools_with(R"(,"tool_choice":"none")").active());
  EXPECT_EQ(tools_with(R"(,"tool_choice":"required")").choice, ToolRequest::Choice::kRequired);
  ToolRequest named = tools_with(R"(,"tool_choice":{"type":"function","function":{"name":"get_time"}})");
  EXPECT_EQ(named.choice, ToolRequest::Choice::kFunction);
  EXPECT_EQ(named.function, "get_time");
  EXPECT_FALSE(tools_with(R"(,"parallel_tool_calls":false)").parallel_tool_calls);

  auto none = parse_tool_request(J("{}"));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->active());

  for (const char* bad : {
           R"({"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":"sometimes"})",
           R"({"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}})",
           R"({"tool_choice":"required"})",
       }) {
    auto r = parse_tool_request(J(bad));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("'tool_choice'"), std::string::npos) << r.status().to_string();
  }
  for (const char* bad : {R"({"tools":[{"type":"retrieval"}]})", R"({"tools":[{"type":"function","function":{}}]})",
                          R"({"tools":{"type":"function"}})"}) {
    auto r = parse_tool_request(J(bad));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("'tools'"), std::string::npos) << r.status().to_string();
  }
  EXPECT_FALSE(parse_tool_request(J(R"({"functions":[]})")).ok());
}

TEST(OpenAiTools, SchemasForRequiredAndNamedChoices) {
  EXPECT_TRUE(tool_call_schema(tools_with()).isNull()) << "auto is not constrained";
  Json::Value named = tool_call_schema(tools_with(R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}})"));
  EXPECT_EQ(named["required"][0].asString(), "city") << to_json(named);
  Json::Value required = tool_call_schema(tools_with(R"(,"tool_choice":"required","parallel_tool_calls":false)"));
  EXPECT_EQ(required["type"].asString(), "array");
  EXPECT_EQ(required["minItems"].asInt(), 1);
  EXPECT_EQ(required["maxItems"].asInt(), 1);
  ASSERT_EQ(required["items"]["anyOf"].size(), 2u);
  EXPECT_EQ(required["items"]["anyOf"][1]["properties"]["name"]["enum"][0].asString(), "get_time");
}

// Parameters with $defs and local $refs (as pydantic and zod write them) are moved under the
// "required" schema's items: their references must follow them there (found by the schema suite:
// the backend refused the schema, "'$ref' '#/$defs/pt' points at nothing"). Data is left alone.
TEST(OpenAiTools, RequiredSchemaKeepsToolReferencesResolvable) {
  const std::string tools = R"([{"type":"function","function":{"name":"a","parameters":{"type":"object"}}},
      {"type":"function","function":{"name":"route","parameters":{"type":"object",
      "properties":{"from":{"$ref":"#/$defs/pt"},"via":{"type":"array","items":{"$ref":"#/$defs/pt"}},
                    "tag":{"const":{"$ref":"#/not/a/ref"}},"self":{"anyOf":[{"$ref":"#"},{"type":"null"}]}},
      "$defs":{"pt":{"type":"object","properties":{"x":{"type":"integer"}},"additionalProperties":{"$ref":"#/$defs/pt"}}}}}}])";
  auto r = parse_tool_request(J(R"({"tool_choice":"required","tools":)" + tools + "}"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const Json::Value schema = tool_call_schema(r.value());
  const std::string at = "#/items/anyOf/1/properties/parameters";
  const Json::Value& p = schema["items"]["anyOf"][1]["properties"]["parameters"];
  EXPECT_EQ(p["properties"]["from"]["$ref"].asString(), at + "/$defs/pt");
  EXPECT_EQ(p["properties"]["via"]["items"]["$ref"].asString(), at + "/$defs/pt");
  EXPECT_EQ(p["properties"]["self"]["anyOf"][0]["$ref"].asString(), at);
  EXPECT_EQ(p["$defs"]["pt"]["additionalProperties"]["$ref"].asString(), at + "/$defs/pt");
  EXPECT_EQ(p["properties"]["tag"]["const"]["$ref"].asString(), "#/not/a/ref") << "a const value is data";
  // The named function's schema is the parameters themselves: references stay as written.
  auto named = parse_tool_request(J(R"({"tool_choice":{"type":"function","function":{"name":"route"}},"tools":)" + tools + "}"));
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(tool_call_schema(named.value())["properties"]["from"]["$ref"].asString(), "#/$defs/pt");
}

// The constrained schema as text keeps each tool's properties in the order the request declares
// them (the grammar generates an object's members in its schema's order), with the $refs of
// "required" still rebased; the parsed schema is unchanged.
TEST(OpenAiTools, SchemaTextKeepsTheDeclaredPropertyOrder) {
  const std::string tools = R"([{"type":"function","function":{"name":"a","parameters":{"type":"object",
      "properties":{"zeta":{"type":"string"},"alpha":{"$ref":"#/$defs/n"}},"required":["zeta","alpha"],
      "$defs":{"n":{"type":"integer"}}}}},
      {"type":"function","function":{"name":"b","parameters":{"type":"object","properties":{"y":{"type":"null"},
      "x":{"type":"boolean"}}}}}])";
  for (const char* choice : {R"("required")", R"({"type":"function","function":{"name":"a"}})"}) {
    auto r = parse_tool_request(J(std::string(R"({"tool_choice":)") + choice + R"(,"tools":)" + tools + "}"));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    const Json::Value schema = tool_call_schema(r.value());
    const std::string text = tool_call_schema_text(r.value(), schema, tools);
    EXPECT_EQ(J(text), schema) << text;  // the same schema, only the key order differs
    EXPECT_LT(text.find("\"zeta\""), text.find("\"alpha\"")) << text;
    EXPECT_LT(text.find("\"properties\""), text.find("\"required\"")) << text;
    if (std::string(choice) == "\"required\"") {
      EXPECT_LT(text.find("\"y\""), text.find("\"x\"")) << text;
      EXPECT_NE(text.find("\"#/items/anyOf/0/properties/parameters/$defs/n\""), std::string::npos) << text;
    }
  }
}

void expect_call(const ToolCall& c, const std::string& name, const std::string& arguments_json) {
  EXPECT_EQ(c.name, name);
  EXPECT_EQ(c.id.rfind("call_", 0), 0u) << c.id;
  EXPECT_EQ(J(c.arguments), J(arguments_json)) << c.arguments;
}

TEST(OpenAiTools, ParsesEachModelFormat) {
  ToolRequest r = tools_with();
  auto hermes = parse_reply(r, ToolCallFormat::kHermes,
                            "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                            "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>");
  EXPECT_EQ(hermes.content, "Let me look.\n");
  ASSERT_EQ(hermes.calls.size(), 2u);
  expect_call(hermes.calls[0], "get_weather", R"({"city":"Paris"})");
  expect_call(hermes.calls[1], "get_time", "{}");
  EXPECT_NE(hermes.calls[0].id, hermes.calls[1].id);

  auto llama = parse_reply(r, ToolCallFormat::kLlama3Json,
                           "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}; "
                           "{\"name\": \"get_time\", \"parameters\": {}}");
  EXPECT_EQ(llama.content, "");
  ASSERT_EQ(llama.calls.size(), 2u);
  expect_call(llama.calls[0], "get_weather", R"({"city":"Oslo"})");

  auto mistral = parse_reply(r, ToolCallFormat::kMistral,
                             "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]");
  ASSERT_EQ(mistral.calls.size(), 1u);
  expect_call(mistral.calls[0], "get_weather", R"({"city":"Rome"})");

  // Brackets and quotes inside strings do not end the call early.
  auto tricky = parse_reply(r, ToolCallFormat::kHermes,
                            R"(<tool_call>{"name":"get_weather","arguments":{"city":"a}\"]b"}}</tool_call>)");
  ASSERT_EQ(tricky.calls.size(), 1u);
  expect_call(tricky.calls[0], "get_weather", R"({"city":"a}\"]b"})");
}

TEST(OpenAiTools, TextThatIsNotACallStaysContent) {
  ToolRequest r = tools_with();
  for (auto [format, text] : {std::pair{ToolCallFormat::kHermes, "Just text."},
                              std::pair{ToolCallFormat::kHermes, "<tool_call>{\"name\": broken"},
                              std::pair{ToolCallFormat::kLlama3Json, "The weather is {fine}."},
                              std::pair{ToolCallFormat::kLlama3Json, "{\"city\": \"no name\"}"},
                              std::pair{ToolCallFormat::kMistral, "[TOOL_CALLS] not json"}}) {
    auto p = parse_reply(r, format, text);
    EXPECT_TRUE(p.calls.empty()) << text;
    EXPECT_EQ(p.content, text);
  }
  // tool_choice none: a call-shaped reply is content.
  auto none = parse_reply(tools_with(R"(,"tool_choice":"none")"), ToolCallFormat::kHermes,
                          "<tool_call>{\"name\":\"get_time\",\"arguments\":{}}</tool_call>");
  EXPECT_TRUE(none.calls.empty());
}

TEST(OpenAiTools, ConstrainedRepliesAndParallelism) {
  auto named = parse_reply(tools_with(R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}})"),
                           ToolCallFormat::kNone, R"({"city": "Lima"})");
  ASSERT_EQ(named.calls.size(), 1u);
  expect_call(named.calls[0], "get_weather", R"({"city":"Lima"})");
  auto required = parse_reply(tools_with(R"(,"tool_choice":"required")"), ToolCallFormat::kHermes,
                              R"([{"name":"get_time","parameters":{}},{"name":"get_weather","parameters":{"city":"X"}}])");
  ASSERT_EQ(required.calls.size(), 2u);
  expect_call(required.calls[1], "get_weather", R"({"city":"X"})");
  auto single = parse_reply(tools_with(R"(,"parallel_tool_calls":false)"), ToolCallFormat::kHermes,
                            "<tool_call>{\"name\":\"get_time\",\"arguments\":{}}</tool_call>"
                            "<tool_call>{\"name\":\"get_weather\",\"arguments\":{}}</tool_call>");
  ASSERT_EQ(single.calls.size(), 1u);
  EXPECT_EQ(single.calls[0].name, "get_time");
}

TEST(OpenAiTools, JsonOfCallsForMessagesAndDeltas) {
  std::vector<ToolCall> calls = {{"call_1", "f", R"({"a":1})"}};
  Json::Value m = tool_calls_json(calls, false);
  EXPECT_FALSE(m[0].isMember("index"));
  EXPECT_EQ(m[0]["id"].asString(), "call_1");
  EXPECT_EQ(m[0]["type"].asString(), "function");
  EXPECT_EQ(m[0]["function"]["name"].asString(), "f");
  EXPECT_EQ(m[0]["function"]["arguments"].asString(), R"({"a":1})");
  EXPECT_EQ(tool_calls_json(calls, true)[0]["index"].asInt(), 0);
}

// Streams `pieces` through a ToolCallStream; returns the content streamed before finish and the
// finish result.
std::pair<std::string, ParsedReply> stream(const ToolRequest& r, ToolCallFormat f, std::vector<std::string> pieces) {
  ToolCallStream s(&r, f);
  std::string streamed;
  for (const auto& p : pieces) {
    ToolStreamDelta d = s.add(p);
    EXPECT_FALSE(d.started) << "only a named function's call starts before the end";
    streamed += d.content;
  }
  return {streamed, s.finish()};
}

TEST(OpenAiTools, StreamPassesContentAndHoldsCalls) {
  ToolRequest r = tools_with();
  auto [before, end] = stream(r, ToolCallFormat::kHermes,
                              {"Sure", ", one moment.", "<tool", "_call>{\"name\":", "\"get_time\",\"arguments\":{}}",
                               "</tool_call>"});
  EXPECT_EQ(before, "Sure, one moment.") << "content before the marker streams; the marker's start is held";
  EXPECT_EQ(end.content, "");
  ASSERT_EQ(end.calls.size(), 1u);
  EXPECT_EQ(end.calls[0].name, "get_time");

  // A held prefix of the marker that turns out to be text is released.
  auto [text, tail] = stream(r, ToolCallFormat::kHermes, {"a <tool", "box> b"});
  EXPECT_EQ(text + tail.content, "a <toolbox> b");
  EXPECT_TRUE(tail.calls.empty());

  // Llama 3: a reply that starts with "{" is held whole; one that does not streams at once.
  auto [l_before, l_end] = stream(r, ToolCallFormat::kLlama3Json,
                                  {" ", "{\"name\": \"get_weather\", ", "\"parameters\": {\"city\": \"Oslo\"}}"});
  EXPECT_EQ(l_before, "");
  ASSERT_EQ(l_end.calls.size(), 1u);
  auto [plain, plain_end] = stream(r, ToolCallFormat::kLlama3Json, {"Hello", " {not a call}"});
  EXPECT_EQ(plain, "Hello {not a call}");
  EXPECT_TRUE(plain_end.calls.empty());

  // Without active tools everything streams.
  ToolRequest none = tools_with(R"(,"tool_choice":"none")");
  auto [all, nothing] = stream(none, ToolCallFormat::kHermes, {"<tool_call>{}", "</tool_call>"});
  EXPECT_EQ(all, "<tool_call>{}</tool_call>");
  EXPECT_EQ(nothing.content, "");
}

TEST(OpenAiTools, ANamedFunctionStreamsItsArgumentsAsTheyCome) {
  ToolRequest r = tools_with(R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}})");
  ToolCallStream s(&r, ToolCallFormat::kHermes);
  ToolStreamDelta first = s.add("{\"ci");
  ASSERT_TRUE(first.started.has_value());
  EXPECT_EQ(first.started->name, "get_weather");
  EXPECT_EQ(first.started->id.rfind("call_", 0), 0u);
  EXPECT_EQ(first.content, "");
  EXPECT_EQ(first.arguments, "{\"ci");
  ToolStreamDelta second = s.add("ty\": \"Lima\"}");
  EXPECT_FALSE(second.started);
  EXPECT_EQ(second.arguments, "ty\": \"Lima\"}");
  EXPECT_TRUE(s.arguments_streamed());
  ParsedReply end = s.finish();
  ASSERT_EQ(end.calls.size(), 1u);
  EXPECT_EQ(end.calls[0].id, first.started->id);
  EXPECT_EQ(J(end.calls[0].arguments), J(R"({"city":"Lima"})"));
}

}  // namespace
}  // namespace ferry::host
