#include "backend/llm/tokenizer/utf8.h"

#include <gtest/gtest.h>

#include "backend/llm/tokenizer/byte_level.h"
#include "backend/llm/tokenizer/regex.h"

namespace ferry::llm {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8, LossyReplacesMaximalSubparts) {
  std::string out;
  // Unicode's example (Table 3-8 practice): F0 80 80 41 -> U+FFFD U+FFFD U+FFFD A; E1 80 41 -> one U+FFFD, A.
  EXPECT_EQ(utf8::append_lossy("\xF0\x80\x80\x41", true, out), 4u);
  EXPECT_EQ(out, kFffd + kFffd + kFffd + "A");
  out.clear();
  utf8::append_lossy("\xE1\x80\x41", true, out);
  EXPECT_EQ(out, kFffd + "A");
  out.clear();
  utf8::append_lossy("a\xFF\xC3\xA9", true, out);
  EXPECT_EQ(out, "a" + kFffd + "\xC3\xA9");
}

TEST(Utf8, LossyHoldsBackAnIncompleteTail) {
  std::string out;
  EXPECT_EQ(utf8::append_lossy("ab\xF0\x9F\xA6", false, out), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(utf8::append_lossy("ab\xF0\x9F\xA6", true, out), 5u);
  EXPECT_EQ(out, "ab" + kFffd);
  // An invalid byte after the lead is decided at once, even when not final.
  out.clear();
  EXPECT_EQ(utf8::append_lossy("\xF0\x41", false, out), 2u);
  EXPECT_EQ(out, kFffd + "A");
}

TEST(Utf8, Validity) {
  EXPECT_TRUE(utf8::is_valid("plain ascii"));
  EXPECT_TRUE(utf8::is_valid("\xE4\xB8\xAD\xF0\x9F\xA6\x99"));
  EXPECT_FALSE(utf8::is_valid("\xC0\xAF"));          // overlong
  EXPECT_FALSE(utf8::is_valid("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(utf8::is_valid("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(utf8::is_valid("\xE4\xB8"));          // truncated
}

TEST(ByteLevel, AlphabetRoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string chars;
  byte_level::bytes_to_chars(all, chars);
  EXPECT_TRUE(utf8::is_valid(chars));
  std::string back;
  ASSERT_TRUE(byte_level::chars_to_bytes(chars, back));
  EXPECT_EQ(back, all);
  // GPT-2's alphabet: space is U+0120 'Ġ', newline U+010A 'Ċ', printable ASCII is itself.
  EXPECT_EQ(byte_level::byte_to_char(' '), "\xC4\xA0");
  EXPECT_EQ(byte_level::byte_to_char('\n'), "\xC4\x8A");
  EXPECT_EQ(byte_level::byte_to_char('A'), "A");
  std::string none;
  EXPECT_FALSE(byte_level::chars_to_bytes("\xE2\x96\x81", none));  // U+2581 is not in the alphabet
}

TEST(Regex, RustStyleWhitespaceIncludesNextLine) {
  EXPECT_EQ(adapt_rust_pattern(R"(\s+(?!\S))"), R"([\s\x{85}]+(?![^\s\x{85}]))");
  EXPECT_EQ(adapt_rust_pattern(R"([^\s\p{L}])"), R"([^\s\x{85}\p{L}])");
  auto re = Regex::compile(R"(\s+)");
  ASSERT_TRUE(re.ok());
  std::vector<std::pair<size_t, size_t>> m;
  re->find_all(
      "a\xC2\x85"
      "b",
      m);  // U+0085 between a and b
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], (std::pair<size_t, size_t>{1, 3}));
}

TEST(Regex, BadPatternIsAnError) {
  auto re = Regex::compile("(unclosed");
  ASSERT_FALSE(re.ok());
  EXPECT_EQ(re.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::llm
