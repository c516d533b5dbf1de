// Constrained decoding end to end, against a real ferry-server serving the trained stories260K
// checkpoint and the tiny-llama demo model: every output format field (response_format,
// guided_json / guided_regex / guided_choice / guided_grammar, structured_outputs, llama.cpp's
// grammar / json_schema) over generate, infer and ZeroMQ gives text that parses and fits, greedy and
// sampled, streamed and not, with batching and n > 1; bad formats are 400s that name the problem;
// the KV pool is back to empty afterwards.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>
#include <thread>

#include "client/http_client.h"
#include "client/zmq_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

using client::HttpClient;
using client::HttpResult;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class StructuredOutput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    stories_missing_ = add_test_language_models(repo_->path());
    if (stories_missing_.empty()) {
      // 24 blocks of 16 tokens: six ~150-token answers at once must preempt.
      fs::create_directories(repo_->path() + "/small_pool");
      fs::copy(stories260k_dir(), repo_->path() + "/small_pool/1", fs::copy_options::recursive);
      write_file(repo_->path() + "/small_pool/config.json",
                 R"({"backend":"llm","max_num_seqs":8,"kv_cache_num_blocks":24,"enable_prefix_caching":false})");
    }
    server_ = ServerProcess::start(repo_->path(), {}).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete repo_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    http_ = std::make_unique<HttpClient>(server_->http_url());
  }
  bool stories() { return stories_missing_.empty(); }

  // generate on `model` with `params` (an object text) over the prompt; the reply's JSON.
  // The body is written as text around `params` (an object text), so that the key order inside it
  // reaches the server as written.
  HttpResult generate(const std::string& model, const std::string& params, const std::string& prompt = "Once") {
    const size_t open = params.find('{');
    std::string body = "{\"text_input\":" + dump(Json::Value(prompt));
    const std::string rest = params.substr(open + 1);
    body += rest.find_first_not_of(" \t\r\n}") == std::string::npos ? "}" : "," + rest;
    return http_->post("/v2/models/" + model + "/generate", body);
  }
  std::string generated_text(const std::string& model, const std::string& params, std::string* finish = nullptr) {
    auto r = generate(model, params);
    EXPECT_EQ(r.status, 200) << params << " -> " << r.body;
    Json::Value j = parse(r.body);
    if (finish != nullptr) *finish = j["finish_reason"].asString();
    return j["text_output"].asString();
  }
  Json::Value backend_stats(const std::string& model) {
    return parse(http_->get("/v2/models/" + model + "/stats").body)["model_stats"][0]["backend"];
  }

  static inline TempDir* repo_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  static inline std::string stories_missing_;
  std::unique_ptr<HttpClient> http_;
};

#define NEED_STORIES() \
  if (!stories()) GTEST_SKIP() << stories_missing_

// The text parses as one JSON value (leading whitespace allowed, nothing after it).
bool parses(const std::string& text, Json::Value* out) {
  Json::CharReaderBuilder b;
  b["failIfExtra"] = true;
  b["rejectDupKeys"] = true;
  std::unique_ptr<Json::CharReader> r(b.newCharReader());
  std::string errs;
  return r->parse(text.data(), text.data() + text.size(), out, &errs);
}

TEST_F(StructuredOutput, GuidedChoiceGivesExactlyOneOfTheChoices) {
  NEED_STORIES();
  const std::set<std::string> choices = {"happy", "sad", "a long way home"};
  for (int seed = 0; seed < 6; ++seed) {
    std::string finish;
    std::string text = generated_text(
        "stories",
        R"({"max_tokens":40,"temperature":1.0,"seed":)" + std::to_string(seed) +
            R"(,"guided_choice":["happy","sad","a long way home"]})",
        &finish);
    EXPECT_TRUE(choices.count(text)) << "seed " << seed << ": '" << text << "'";
    EXPECT_EQ(finish, "stop");
  }
}

TEST_F(StructuredOutput, GuidedRegexOutputMatchesTheWholePattern) {
  NEED_STORIES();
  const std::string re = "[A-Z][a-z]{2,6} (is|was) [0-9]{1,3}\\.";
  for (int seed = 0; seed < 4; ++seed) {
    Json::Value p;
    p["max_tokens"] = 40;
    p["temperature"] = 1.0;
    p["seed"] = seed;
    p["guided_regex"] = re;
    std::string finish;
    std::string text = generated_text("stories", dump(p), &finish);
    EXPECT_TRUE(std::regex_match(text, std::regex(re))) << "'" << text << "'";
    EXPECT_EQ(finish, "stop");
  }
}

// A schema with the kinds every service sends: required and optional properties, enum, nested
// object, array bounds, integer bounds, a string length bound.
constexpr const char* kPersonSchema = R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":12},
  "age":{"type":"integer","minimum":0,"maximum":120},
  "mood":{"enum":["happy","sad"]},
  "pets":{"type":"array","items":{"type":"string","maxLength":8},"maxItems":3},
  "home":{"type":"object","properties":{"city":{"type":"string","maxLength":10}},"required":["city"],
          "additionalProperties":false}},
  "required":["name","age","mood"],"additionalProperties":false})";

void expect_person(const std::string& text) {
  Json::Value v;
  ASSERT_TRUE(parses(text, &v)) << "not JSON: '" << text << "'";
  ASSERT_TRUE(v.isObject()) << text;
  for (const auto& k : v.getMemberNames()) {
    EXPECT_TRUE(k == "name" || k == "age" || k == "mood" || k == "pets" || k == "home") << "extra key " << k;
  }
  ASSERT_TRUE(v["name"].isString()) << text;
  EXPECT_LE(v["name"].asString().size(), 12u * 4) << text;  // maxLength counts characters
  ASSERT_TRUE(v["age"].isIntegral()) << text;
  EXPECT_GE(v["age"].asInt64(), 0) << text;
  EXPECT_LE(v["age"].asInt64(), 120) << text;
  ASSERT_TRUE(v["mood"] == "happy" || v["mood"] == "sad") << text;
  if (v.isMember("pets")) {
    ASSERT_TRUE(v["pets"].isArray()) << text;
    EXPECT_LE(v["pets"].size(), 3u) << text;
    for (const auto& p : v["pets"]) EXPECT_TRUE(p.isString()) << text;
  }
  if (v.isMember("home")) {
    ASSERT_TRUE(v["home"].isObject()) << text;
    EXPECT_TRUE(v["home"]["city"].isString()) << text;
    EXPECT_EQ(v["home"].size(), 1u) << text;
  }
}

TEST_F(StructuredOutput, JsonSchemaOutputParsesAndFitsGreedyAndSampled) {
  NEED_STORIES();
  const Json::Value schema = parse(kPersonSchema);
  for (int seed = -1; seed < 8; ++seed) {  // -1: greedy
    Json::Value p;
    p["max_tokens"] = 200;
    p["temperature"] = seed < 0 ? 0.0 : 1.0;
    if (seed >= 0) p["seed"] = seed;
    p["guided_json"] = schema;
    std::string finish;
    std::string text = generated_text("stories", dump(p), &finish);
    SCOPED_TRACE("seed " + std::to_string(seed));
    EXPECT_EQ(finish, "stop") << text;
    expect_person(text);
  }
}

TEST_F(StructuredOutput, EveryFieldNameAsksForTheSameFormat) {
  NEED_STORIES();
  const std::string schema = kPersonSchema;
  // The same schema (or grammar) under each name gives the same greedy text.
  const std::vector<std::string> bodies = {
      R"({"guided_json":)" + schema + "}",
      R"({"json_schema":)" + schema + "}",
      R"({"guided_json":)" + dump(Json::Value(schema)) + "}",  // the schema as a JSON string
      R"({"structured_outputs":{"json":)" + schema + "}}",
      R"({"response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,"schema":)" + schema + "}}}",
  };
  // (Written as text: the schema's property order reaches the server as kPersonSchema has it.)
  std::string first;
  for (const std::string& extra : bodies) {
    std::string text = generated_text("stories", R"({"max_tokens":200,"temperature":0,)" + extra.substr(1));
    expect_person(text);
    EXPECT_LT(text.find("\"name\""), text.find("\"age\"")) << text;  // the schema's order, not the alphabet's
    if (first.empty()) first = text;
    EXPECT_EQ(text, first) << extra;
  }
  // json_object: any object. Its strings are unbounded and stories260K, a storyteller, rarely
  // closes them within its 512-token window, so: an object starts, and one that ends parses.
  for (const char* extra : {R"({"response_format":{"type":"json_object"}})", R"({"structured_outputs":{"json_object":true}})"}) {
    Json::Value p = parse(extra);
    p["max_tokens"] = 300;
    p["temperature"] = 0;
    std::string finish;
    std::string text = generated_text("stories", dump(p), &finish);
    EXPECT_EQ(text.substr(0, 1), "{") << extra << " -> '" << text << "'";
    Json::Value v;
    if (finish == "stop") EXPECT_TRUE(parses(text, &v) && v.isObject()) << text;
    else EXPECT_EQ(finish, "length");
  }
  // GBNF under its three names.
  for (const char* field : {"guided_grammar", "grammar"}) {
    Json::Value p;
    p["max_tokens"] = 30;
    p["temperature"] = 0;
    p[field] = "root ::= \"Tim \" (\"ran\" | \"sat\") \"!\"";
    std::string text = generated_text("stories", dump(p));
    EXPECT_TRUE(text == "Tim ran!" || text == "Tim sat!") << field << ": '" << text << "'";
  }
}

TEST_F(StructuredOutput, ConstrainedAndFreeRequestsBatchedTogether) {
  NEED_STORIES();
  // 8 concurrent requests, half constrained, sampled with seeds: each constrained one fits, each
  // free one equals the same request sent alone (the masks are per sequence).
  std::vector<std::string> alone(8), together(8);
  auto body = [](int i) {
    Json::Value p;
    p["max_tokens"] = 300;
    p["temperature"] = 0.8;
    p["seed"] = 100 + i;
    if (i % 2 == 0) p["guided_json"] = parse(kPersonSchema);
    else p["ignore_eos"] = true;
    return dump(p);
  };
  for (int i = 0; i < 8; ++i) alone[static_cast<size_t>(i)] = generated_text("stories", body(i));
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      HttpClient c(server_->http_url());
      Json::Value b = parse(body(i));
      b["text_input"] = "Once";
      auto r = c.post("/v2/models/stories/generate", dump(b));
      together[static_cast<size_t>(i)] = parse(r.body)["text_output"].asString();
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    if (i % 2 == 0) expect_person(together[static_cast<size_t>(i)]);
    EXPECT_EQ(together[static_cast<size_t>(i)], alone[static_cast<size_t>(i)]);
  }
  EXPECT_TRUE(eventually([&] { return backend_stats("stories")["kv_blocks_used"].asInt64() == 0; }, 5s))
      << dump(backend_stats("stories"));
}

TEST_F(StructuredOutput, PreemptedConstrainedRequestsKeepTheirPlaceInTheGrammar) {
  NEED_STORIES();
  // The same seeded requests on a pool that must preempt and on one that need not: a preempted
  // request is recomputed from its prompt and tokens, and its matcher (which follows the tokens)
  // must carry on where it was, so the answers are identical and fit.
  auto body = [](int i) {
    Json::Value p;
    p["max_tokens"] = 300;
    p["temperature"] = 0.9;
    p["seed"] = 40 + i;
    p["guided_json"] = parse(kPersonSchema);
    p["text_input"] = "Once";
    return dump(p);
  };
  const int64_t before = backend_stats("small_pool")["preemptions"].asInt64();
  std::vector<std::string> small(6), big(6);
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      HttpClient c(server_->http_url());
      auto r = c.post("/v2/models/small_pool/generate", body(i));
      small[static_cast<size_t>(i)] = r.status == 200 ? parse(r.body)["text_output"].asString() : r.body;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 6; ++i) {
    auto r = http_->post("/v2/models/stories/generate", body(i));
    big[static_cast<size_t>(i)] = parse(r.body)["text_output"].asString();
  }
  EXPECT_GT(backend_stats("small_pool")["preemptions"].asInt64(), before) << dump(backend_stats("small_pool"));
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    expect_person(small[static_cast<size_t>(i)]);
    EXPECT_EQ(small[static_cast<size_t>(i)], big[static_cast<size_t>(i)]);
  }
  EXPECT_TRUE(eventually([&] { return backend_stats("small_pool")["kv_blocks_used"].asInt64() == 0; }, 5s));
}

TEST_F(StructuredOutput, StreamedAndZeroMqAnswersFitToo) {
  NEED_STORIES();
  Json::Value p;
  p["max_tokens"] = 200;
  p["temperature"] = 1.0;
  p["seed"] = 3;
  p["guided_json"] = parse(kPersonSchema);
  const std::string whole = generated_text("stories", dump(p));
  expect_person(whole);

  Json::Value b = p;
  b["text_input"] = "Once";
  std::string streamed;
  auto r = http_->post_stream("/v2/models/stories/generate_stream", dump(b), [&](const std::string& d) {
    streamed += parse(d)["text_output"].asString();
    return true;
  });
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(streamed, whole);

  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once"]}])");
  ASSERT_TRUE(zmq.send(client::ZmqClient::infer_message("z", "stories", in, p, true)).ok());
  Json::Value last;
  auto zmq_text = zmq.receive_text(20000ms, &last);
  ASSERT_TRUE(zmq_text.has_value()) << dump(last);
  EXPECT_EQ(*zmq_text, whole);
}

TEST_F(StructuredOutput, TinyLlamaChatFollowsTheSchemaToo) {
  // The demo model has random weights and a 32k byte-level vocabulary: the grammar alone makes
  // its output parse.
  Json::Value p;
  p["max_tokens"] = 300;
  p["temperature"] = 1.0;
  p["seed"] = 11;
  p["messages"] = parse(R"([{"role":"user","content":"Describe a person as JSON."}])");
  p["guided_json"] = parse(kPersonSchema);
  auto r = http_->post("/v2/models/tiny-llama/generate", dump(p));
  ASSERT_EQ(r.status, 200) << r.body;
  Json::Value j = parse(r.body);
  EXPECT_EQ(j["finish_reason"].asString(), "stop") << r.body;
  expect_person(j["text_output"].asString());
}

TEST_F(StructuredOutput, PropertiesComeInTheSchemasOrderOverEveryFrontend) {
  NEED_STORIES();
  // "zeta" before "alpha" as the request writes them (a parsed Json::Value would sort them).
  const std::string schema =
      R"({"type":"object","properties":{"zeta":{"type":"integer","minimum":0,"maximum":9},"alpha":{"enum":["x","y"]}},)"
      R"("required":["zeta","alpha"],"additionalProperties":false})";
  auto in_order = [](const std::string& text) {
    const size_t z = text.find("\"zeta\""), a = text.find("\"alpha\"");
    return z != std::string::npos && a != std::string::npos && z < a;
  };
  const std::string params = R"("max_tokens":60,"temperature":0,"guided_json":)" + schema;
  auto gen = http_->post("/v2/models/stories/generate", R"({"text_input":"Once",)" + params + "}");
  ASSERT_EQ(gen.status, 200) << gen.body;
  EXPECT_TRUE(in_order(parse(gen.body)["text_output"].asString())) << gen.body;
  auto gen_nested = http_->post("/v2/models/stories/generate",
                                R"({"text_input":"Once","parameters":{"response_format":{"type":"json_schema",)"
                                R"("json_schema":{"name":"o","schema":)" + schema + R"(}}},"max_tokens":60,"temperature":0})");
  ASSERT_EQ(gen_nested.status, 200) << gen_nested.body;
  EXPECT_TRUE(in_order(parse(gen_nested.body)["text_output"].asString())) << gen_nested.body;

  auto infer = http_->post("/v2/models/stories/infer",
                           R"({"inputs":[{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once"]}],)"
                           R"("parameters":{)" + params + "}}");
  ASSERT_EQ(infer.status, 200) << infer.body;
  std::string infer_text;
  const Json::Value infer_json = parse(infer.body);
  for (const auto& o : infer_json["outputs"]) {
    if (o["name"] == "text_output") infer_text = o["data"][0].asString();
  }
  EXPECT_TRUE(in_order(infer_text)) << infer.body;

  // ZeroMQ, as raw text so that the message's own order is what the server reads.
  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  ASSERT_TRUE(zmq.send_raw(R"({"type":"infer","id":"o1","model":"stories","inputs":[{"name":"text_input",)"
                       R"("datatype":"BYTES","shape":[1],"data":["Once"]}],"parameters":{)" + params + "}}")
                  .ok());
  Json::Value last;
  auto zmq_text = zmq.receive_text(20000ms, &last);
  ASSERT_TRUE(zmq_text.has_value()) << dump(last);
  EXPECT_TRUE(in_order(*zmq_text)) << *zmq_text;
}

TEST_F(StructuredOutput, BadFormatsAre400sThatNameTheProblem) {
  NEED_STORIES();
  struct Case {
    std::string params, expect;
  };
  const std::vector<Case> cases = {
      {R"({"guided_json":{"type":"object","not":{"type":"null"}}})", "not"},
      {R"({"guided_json":{"type":"string","multipleOf":3}})", "multipleOf"},
      {R"({"guided_json":"{not json"})", "guided_json"},
      {R"({"guided_regex":"(unclosed"})", "guided_regex"},
      {R"({"guided_choice":[]})", "guided_choice"},
      {R"({"guided_choice":["a",1]})", "guided_choice"},
      {R"({"guided_grammar":"root ::= undefined_rule"})", "undefined_rule"},
      {R"({"grammar":"start ::= \"a\""})", "root"},
      {R"({"response_format":{"type":"xml"}})", "response_format"},
      {R"({"response_format":{"type":"json_schema"}})", "json_schema"},
      {R"({"guided_json":{"type":"object"},"guided_regex":"a"})", "at most one"},
      {R"({"structured_outputs":{"json":{},"regex":"a"}})", "structured_outputs"},
  };
  for (const Case& c : cases) {
    auto r = generate("stories", c.params);
    EXPECT_EQ(r.status, 400) << c.params << " -> " << r.body;
    EXPECT_NE(r.body.find(c.expect), std::string::npos) << c.params << " -> " << r.body;
  }
  // Over ZeroMQ the same refusal is an error response (receive_text gives no text, and the error).
  client::ZmqClient zmq;
  ASSERT_TRUE(zmq.connect(server_->zmq_endpoint()).ok());
  Json::Value in = parse(R"([{"name":"text_input","datatype":"BYTES","shape":[1],"data":["Once"]}])");
  ASSERT_TRUE(zmq.send(client::ZmqClient::infer_message("bad", "stories", in, parse(cases[0].params), false)).ok());
  Json::Value last;
  EXPECT_FALSE(zmq.receive_text(20000ms, &last).has_value());
  EXPECT_EQ(last["error"]["status"].asInt(), 400) << dump(last);
  EXPECT_NE(last["error"]["message"].asString().find(cases[0].expect), std::string::npos) << dump(last);
  // Nothing was left behind, and the model still answers.
  EXPECT_EQ(backend_stats("stories")["kv_blocks_used"].asInt64(), 0);
  EXPECT_FALSE(generated_text("stories", R"({"max_tokens":5,"temperature":0})").empty());
}

}  // namespace
}  // namespace ferry::testing
