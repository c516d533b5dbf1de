// llama.cpp's tokenizer vectors (ids written by HF transformers' fast tokenizers with
// add_special_tokens=False) against the matching HF tokenizer folders; see
// $FERRY_TESTDATA/llamacpp-tokenizer-vectors/SOURCE.md for which folder matches which name.
#include <gtest/gtest.h>

#include "test_util.h"

namespace ferry::llm {
namespace {

struct VectorSet {
  const char* vectors;  // ggml-vocab-<vectors>.gguf.inp / .out
  const char* folder;   // HF tokenizer folder under $FERRY_TESTDATA
};

class LlamaCppVectors : public ::testing::TestWithParam<VectorSet> {};

TEST_P(LlamaCppVectors, EncodeMatchesAndDecodeRoundTrips) {
  const VectorSet& set = GetParam();
  const auto base = testing::testdata_dir() / "llamacpp-tokenizer-vectors";
  const std::string stem = std::string("ggml-vocab-") + set.vectors + ".gguf";
  auto inp = testing::read_text(base / (stem + ".inp"));
  auto out = testing::read_text(base / (stem + ".out"));
  if (!inp || !out) GTEST_SKIP() << "test data missing: " << (base / stem).string() << ".inp/.out";
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, set.folder);

  const std::vector<std::string> texts = testing::split_inp(*inp);
  std::vector<std::vector<TokenId>> expected;
  std::istringstream lines(*out);
  for (std::string line; std::getline(lines, line);) expected.push_back(testing::parse_ids(line));
  ASSERT_EQ(texts.size(), 46u);
  ASSERT_EQ(expected.size(), texts.size());

  size_t matched = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = tok->encode(texts[i], /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << ids.status().to_string();
    EXPECT_EQ(ids.value(), expected[i]) << "test string #" << i << ": '" << texts[i] << "'";
    if (ids.value() == expected[i]) ++matched;
    // None of these strings changes under the tokenizers' normalizers, so decoding gives them back.
    EXPECT_EQ(tok->decode(expected[i], /*skip_special_tokens=*/false), texts[i]) << "test string #" << i;
  }
  RecordProperty("matched", static_cast<int>(matched));
  std::printf("[ vectors  ] %s with %s: %zu/%zu\n", set.vectors, set.folder, matched, texts.size());
}

INSTANTIATE_TEST_SUITE_P(All, LlamaCppVectors,
                         ::testing::Values(VectorSet{"llama-spm", "hf-tokenizer-llama2"},
                                           VectorSet{"llama-bpe", "hf-tokenizer-llama3"},
                                           VectorSet{"llama-bpe", "hf-tokenizer-llama3-instruct-rev2"},
                                           VectorSet{"qwen2", "hf-tokenizer-qwen3"},
                                           VectorSet{"qwen2", "qwen-bpe-vocab-merges"},
                                           VectorSet{"gpt-2", "hf-tokenizer-gpt2"}),
                         [](const ::testing::TestParamInfo<VectorSet>& info) {
                           std::string name = std::string(info.param.vectors) + "_" + info.param.folder;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace ferry::llm
