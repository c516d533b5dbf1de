// common/json_writer.h against jsoncpp (the writer it stands in for on the token path): the same
// bytes for strings (every byte value, UTF-8, escapes), numbers that read back as written; and
// host/http/openai_response.h's TextChunkWriter against the DOM chunks it replaces.
#include "common/json_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "host/http/openai_response.h"
#include "host/json_util.h"

namespace ferry {
namespace {

Json::Value parse(const std::string& text) {
  auto v = host::parse_json(text, "test");
  EXPECT_TRUE(v.ok()) << text;
  return v.ok() ? v.value() : Json::Value();
}

std::string written(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

TEST(JsonWriter, StringsAreTheBytesJsoncppWrites) {
  // Every single byte below 0x80, then text mixing escapes, UTF-8 and quotes.
  for (int c = 0; c < 0x80; ++c) {
    const std::string s(1, static_cast<char>(c));
    EXPECT_EQ(written(s), host::to_json(Json::Value(s))) << "byte " << c;
  }
  const std::string samples[] = {"", "plain", "a \"quoted\" \\ path\\", "line\nbreak\r\ttab\b\f", std::string("nul\0in", 6),
                                 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\x1f\x7f end"};
  for (const std::string& s : samples) {
    EXPECT_EQ(written(s), host::to_json(Json::Value(s)));
    EXPECT_EQ(parse(written(s)).asString(), s);
  }
  // Random ASCII and UTF-8 pieces read back unchanged.
  std::mt19937 rng(7);
  const char* pieces[] = {"a", "\"", "\\", "\n", "\x01", " ", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "}", "/"};
  for (int round = 0; round < 200; ++round) {
    std::string s;
    for (int i = static_cast<int>(rng() % 40); i > 0; --i) s += pieces[rng() % std::size(pieces)];
    EXPECT_EQ(written(s), host::to_json(Json::Value(s)));
  }
}

TEST(JsonWriter, NumbersReadBackAsWritten) {
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{42}, std::numeric_limits<int64_t>::min(),
                    std::numeric_limits<int64_t>::max()}) {
    std::string out;
    append_json_int(out, v);
    EXPECT_EQ(parse(out).asInt64(), v);
  }
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> any(-50, 50);
  for (int i = 0; i < 1000; ++i) {
    const double v = i % 2 == 0 ? any(rng) : static_cast<double>(static_cast<float>(any(rng)));
    std::string out;
    append_json_double(out, v);
    EXPECT_EQ(parse(out).asDouble(), v) << out;
  }
  for (double v : {std::nan(""), std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()}) {
    std::string out;
    append_json_double(out, v);
    EXPECT_EQ(out, "null");
  }
}

TEST(JsonWriter, TextChunksEqualTheDomChunks) {
  const host::OaiHeader h{"cmpl-0123456789abcdef01234567", 1764000000, "my \"model\""};
  for (bool usage_null : {false, true}) {
    for (const std::string text : {"", " Once", "a\nb \"c\" \xc3\xa9", "\\"}) {
      std::string out;
      host::TextChunkWriter(h, false, usage_null).append(out, 3, text);
      EXPECT_EQ(parse(out), host::completion_chunk(h, 3, text, Json::Value(), "", usage_null)) << out;
      out.clear();
      const host::OaiHeader chat{"chatcmpl-1", h.created, h.model};
      host::TextChunkWriter(chat, true, usage_null).append(out, 0, text);
      Json::Value delta;
      delta["content"] = text;
      EXPECT_EQ(parse(out), host::chat_chunk(chat, 0, delta, Json::Value(), "", usage_null)) << out;
    }
  }
}

}  // namespace
}  // namespace ferry
