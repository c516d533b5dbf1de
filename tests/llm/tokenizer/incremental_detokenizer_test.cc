// The streaming property: feeding ids one at a time, every delta is well-formed UTF-8 and all the
// deltas (plus finish()) add up to decode(all ids), for every tokenizer folder we have.
#include "backend/llm/tokenizer/incremental_detokenizer.h"

#include <gtest/gtest.h>

#include <random>

#include "backend/llm/tokenizer/utf8.h"
#include "test_util.h"

namespace ferry::llm {
namespace {

std::vector<std::string> test_strings() {
  std::vector<std::string> out;
  auto inp =
      testing::read_text(testing::testdata_dir() / "llamacpp-tokenizer-vectors" / "ggml-vocab-llama-spm.gguf.inp");
  if (inp) out = testing::split_inp(*inp);
  const char* extra[] = {
      " leading space",
      "  two leading spaces",
      "trailing space ",
      "\n\nnewlines first",
      "中文字符和日本語のテキスト",
      "emoji 🦙🦙 and flags 🇫🇷 and ZWJ 👨‍👩‍👧",
      "Ünïcödé çà et là",
      "<|begin_of_text|><|eot_id|><|im_start|><s></s><|endoftext|>",
      "code:\n\tif (x) { return 0; }\n",
  };
  for (const char* s : extra) out.emplace_back(s);
  return out;
}

// Streams ids through a detokenizer and checks the property; returns the streamed text.
std::string stream(const Tokenizer& tok, const std::vector<TokenId>& ids, bool skip) {
  IncrementalDetokenizer detok(tok, skip);
  std::string text;
  for (TokenId id : ids) {
    const std::string delta = detok.add(id);
    EXPECT_TRUE(utf8::is_valid(delta)) << "delta after id " << id << " is not valid UTF-8";
    text += delta;
  }
  const std::string tail = detok.finish();
  EXPECT_TRUE(utf8::is_valid(tail));
  text += tail;
  EXPECT_EQ(detok.num_tokens(), ids.size());
  return text;
}

class DetokenizerProperty : public ::testing::TestWithParam<const char*> {};

TEST_P(DetokenizerProperty, DeltasAddUpToDecodeOnTestStrings) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, GetParam());
  const auto strings = test_strings();
  if (strings.size() < 46)
    GTEST_SKIP() << "test data missing: llamacpp-tokenizer-vectors/ggml-vocab-llama-spm.gguf.inp";
  size_t checked = 0;
  for (const std::string& s : strings) {
    for (bool add_special : {false, true}) {
      auto ids = tok->encode(s, add_special);
      ASSERT_TRUE(ids.ok());
      for (bool skip : {false, true}) {
        EXPECT_EQ(stream(*tok, ids.value(), skip), tok->decode(ids.value(), skip))
            << "text '" << s << "' add_special=" << add_special << " skip=" << skip;
        ++checked;
      }
    }
  }
  std::printf("[ detok    ] %s: %zu streams checked\n", GetParam(), checked);
}

TEST_P(DetokenizerProperty, DeltasAddUpToDecodeOnRandomIds) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, GetParam());
  std::mt19937 rng(1234);
  std::uniform_int_distribution<TokenId> any(0, static_cast<TokenId>(tok->vocab_size()) - 1);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<TokenId> ids(1 + trial % 40);
    for (TokenId& id : ids) id = any(rng);
    for (bool skip : {false, true}) {
      EXPECT_EQ(stream(*tok, ids, skip), tok->decode(ids, skip)) << "trial " << trial;
    }
  }
}

TEST_P(DetokenizerProperty, HoldsBackSplitCharactersUntilComplete) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, GetParam());
  // Emoji and CJK need several byte-level / byte-fallback tokens each in these vocabularies.
  auto ids = tok->encode("🦙", false);
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer detok(*tok, true);
  std::string text;
  for (size_t i = 0; i < ids->size(); ++i) {
    const std::string delta = detok.add(ids.value()[i]);
    if (i + 1 < ids->size()) {
      EXPECT_TRUE(delta.empty() || delta == " ") << "partial character leaked: '" << delta << "'";
    }
    text += delta;
  }
  EXPECT_EQ(detok.finish(), "");
  EXPECT_EQ(text, tok->decode(ids.value(), true));
  EXPECT_EQ(text, "🦙");
}

INSTANTIATE_TEST_SUITE_P(All, DetokenizerProperty,
                         ::testing::Values("hf-tokenizer-llama2", "hf-tokenizer-mistral-7b", "hf-tokenizer-llama3",
                                           "hf-tokenizer-llama3-instruct-rev2", "hf-tokenizer-qwen3",
                                           "qwen-bpe-vocab-merges", "hf-tokenizer-gpt2",
                                           "stories260K-hf-format.derived"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(IncrementalDetokenizer, SentencePieceFirstSpaceIsStrippedOnce) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, "hf-tokenizer-llama2");
  auto ids = tok->encode("Hello world", true);  // <s> ▁Hello ▁world
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer detok(*tok, /*skip_special_tokens=*/true);
  std::vector<std::string> deltas;
  for (TokenId id : ids.value()) deltas.push_back(detok.add(id));
  ASSERT_EQ(deltas.size(), 3u);
  EXPECT_EQ(deltas[0], "");
  EXPECT_EQ(deltas[1], "Hello");
  EXPECT_EQ(deltas[2], " world");
}

}  // namespace
}  // namespace ferry::llm
