// What `scripts/serve` serves: the project's model_repository/ with the echo model and the
// generated tiny-llama demo model. Both must load and answer, including a chat request.
#include <gtest/gtest.h>

#include "client/http_client.h"
#include "tests/integration/fixtures.h"
#include "tests/integration/server_process.h"

namespace ferry::testing {
namespace {

TEST(DefaultRepository, EchoAndTinyLlamaServe) {
  auto server = ServerProcess::start(default_repository());
  ASSERT_NE(server, nullptr);
  client::HttpClient http(server->http_url());
  EXPECT_EQ(http.get("/v2/models/echo/ready").status, 200);
  ASSERT_EQ(http.get("/v2/models/tiny-llama/ready").status, 200) << server->log();

  auto r = http.post("/v2/models/tiny-llama/generate", R"({"text_input":"Once upon a time","max_tokens":8})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = parse(r.body);
  EXPECT_EQ(j["usage"]["completion_tokens"].asInt(), 8);
  EXPECT_EQ(j["finish_reason"].asString(), "length");

  auto chat = http.post("/v2/models/tiny-llama/generate",
                        R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello!"}],
                            "max_tokens":4,"temperature":0})");
  ASSERT_EQ(chat.status, 200) << chat.body;
  // The chat template adds BOS and the role headers around 2 short messages.
  EXPECT_GT(parse(chat.body)["usage"]["prompt_tokens"].asInt(), 10);
}

}  // namespace
}  // namespace ferry::testing
