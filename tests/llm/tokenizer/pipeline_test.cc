// Whole-pipeline properties on the real tokenizer folders: NFC normalization, very long inputs,
// concurrent use of one const Tokenizer, and encoding that stops past a token limit.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "test_util.h"

namespace ferry::llm {
namespace {

std::vector<TokenId> enc(const Tokenizer* tok, std::string_view text) {
  auto ids = tok->encode(text, false);
  EXPECT_TRUE(ids.ok()) << ids.status().to_string();
  return ids.ok() ? ids.value() : std::vector<TokenId>{};
}

TEST(Pipeline, QwenNormalizesToNfc) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, "hf-tokenizer-qwen3");
  // "café" with a combining acute accent (U+0065 U+0301) is the same text as precomposed U+00E9.
  EXPECT_EQ(enc(tok, "caf\x65\xCC\x81 ol\x65\xCC\x81"), enc(tok, "caf\xC3\xA9 ol\xC3\xA9"));
  // Llama 3 has no normalizer: the two spellings stay different.
  FERRY_LOAD_TOKENIZER_OR_SKIP(llama3, "hf-tokenizer-llama3");
  EXPECT_NE(enc(llama3, "caf\x65\xCC\x81"), enc(llama3, "caf\xC3\xA9"));
}

TEST(Pipeline, LongInputsRoundTrip) {
  const std::string spaces(200000, ' ');
  const std::string letters(200000, 'a');
  std::string mixed_text;
  for (int i = 0; i < 20000; ++i) mixed_text += "word" + std::to_string(i) + (i % 7 == 0 ? "\n\n" : "  ");
  for (const char* folder : {"hf-tokenizer-llama3", "hf-tokenizer-llama2", "hf-tokenizer-qwen3", "hf-tokenizer-gpt2"}) {
    FERRY_LOAD_TOKENIZER_OR_SKIP(tok, folder);
    for (const std::string* text : {&spaces, &letters, static_cast<const std::string*>(&mixed_text)}) {
      const auto ids = enc(tok, *text);
      EXPECT_FALSE(ids.empty()) << folder;
      EXPECT_EQ(tok->decode(ids, false), *text) << folder;
    }
  }
}

TEST(Pipeline, ConcurrentEncodeDecodeAgreeWithSerial) {
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i) {
    texts.push_back("Request " + std::to_string(i) + ": the quick brown fox jumps over the lazy dog; " +
                    "naïve café 東京 🦙 " + std::string(static_cast<size_t>(i % 5), ' ') + "end.");
  }
  for (const char* folder : {"hf-tokenizer-llama3", "hf-tokenizer-mistral-7b", "hf-tokenizer-qwen3"}) {
    FERRY_LOAD_TOKENIZER_OR_SKIP(tok, folder);
    std::vector<std::vector<TokenId>> serial;
    for (const auto& t : texts) serial.push_back(enc(tok, t));
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int round = 0; round < 20; ++round) {
          for (size_t i = 0; i < texts.size(); ++i) {
            auto ids = tok->encode(texts[(i + static_cast<size_t>(t)) % texts.size()], false);
            const auto& want = serial[(i + static_cast<size_t>(t)) % texts.size()];
            if (!ids.ok() || ids.value() != want ||
                tok->decode(want, false) != texts[(i + static_cast<size_t>(t)) % texts.size()]) {
              ++mismatches[static_cast<size_t>(t)];
            }
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int m : mismatches) EXPECT_EQ(m, 0) << folder;
  }
}

// encode(text, add_special, max_tokens) stops once it has more than max_tokens ids: what it
// returns is a prefix of the full encoding just past the limit, and a text that fits is unchanged.
TEST(Pipeline, EncodeStopsOnceOverMaxTokens) {
  for (const char* folder : {"hf-tokenizer-llama3", "hf-tokenizer-llama2"}) {
    SCOPED_TRACE(folder);
    FERRY_LOAD_TOKENIZER_OR_SKIP(tok, folder);
    std::string text;
    for (int i = 0; i < 400; ++i) text += "The ferry crosses the water number " + std::to_string(i) + ", again. ";
    auto full = tok->encode(text, true);
    ASSERT_TRUE(full.ok());
    ASSERT_GT(full->size(), 1000u);
    for (size_t max : {size_t{0}, size_t{1}, size_t{100}, size_t{999}}) {
      auto cut = tok->encode(text, true, max);
      ASSERT_TRUE(cut.ok());
      EXPECT_GT(cut->size(), max);
      // Past the limit by at most one word's ids: the check runs per pre-tokenized word. (Llama 2's
      // SentencePiece-style pipeline has no pre-tokenizer split, so its text is one word.)
      if (std::string(folder) == "hf-tokenizer-llama3") {
        EXPECT_LE(cut->size(), max + 8);
      }
      EXPECT_TRUE(std::equal(cut->begin(), cut->end(), full->begin())) << "a prefix of the full encoding";
    }
    auto fits = tok->encode(text, true, full->size());
    ASSERT_TRUE(fits.ok());
    EXPECT_EQ(fits.value(), full.value()) << "BOS/EOS included when the whole text fits";
    auto one_short = tok->encode(text, true, full->size() - 1);
    ASSERT_TRUE(one_short.ok());
    EXPECT_GT(one_short->size(), full->size() - 1);
  }
}

}  // namespace
}  // namespace ferry::llm
