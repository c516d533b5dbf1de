// Added/special tokens, BOS/EOS handling and the tokenizer_config / generation_config fields,
// on the real HF tokenizer folders.
#include <gtest/gtest.h>
#include <json/json.h>

#include "test_util.h"

namespace ferry::llm {
namespace {

std::vector<TokenId> enc(const Tokenizer* tok, std::string_view text, bool special = false) {
  auto ids = tok->encode(text, special);
  EXPECT_TRUE(ids.ok()) << ids.status().to_string();
  return ids.ok() ? ids.value() : std::vector<TokenId>{};
}

TokenId id_of(const Tokenizer* tok, std::string_view token) {
  auto id = tok->token_to_id(token);
  EXPECT_TRUE(id.has_value()) << token;
  return id.value_or(-1);
}

std::vector<TokenId> cat(std::initializer_list<std::vector<TokenId>> parts) {
  std::vector<TokenId> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(SpecialTokens, Llama3HeaderTokensAreNeverSplit) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, "hf-tokenizer-llama3");
  const TokenId start = id_of(tok, "<|start_header_id|>");
  const TokenId end = id_of(tok, "<|end_header_id|>");
  const TokenId eot = id_of(tok, "<|eot_id|>");
  EXPECT_EQ(start, 128006);
  EXPECT_EQ(end, 128007);
  EXPECT_EQ(eot, 128009);
  EXPECT_TRUE(tok->is_special(eot));
  const auto ids = enc(tok, "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>");
  EXPECT_EQ(ids, cat({{start}, enc(tok, "user"), {end}, enc(tok, "\n\nHello!"), {eot}}));
  // Inside a word too, and the text around it is encoded on its own.
  EXPECT_EQ(enc(tok, "abc<|eot_id|>def"), cat({enc(tok, "abc"), {eot}, enc(tok, "def")}));
  // Decoding keeps or drops them on request.
  EXPECT_EQ(tok->decode(ids, false), "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>");
  EXPECT_EQ(tok->decode(ids, true), "user\n\nHello!");
}

TEST(SpecialTokens, Llama3BosDependsOnPostProcessor) {
  // The original upload's post_processor is plain ByteLevel: HF adds no BOS (see SOURCE.md).
  FERRY_LOAD_TOKENIZER_OR_SKIP(orig, "hf-tokenizer-llama3");
  EXPECT_EQ(enc(orig, "Hello", true), enc(orig, "Hello", false));
  EXPECT_FALSE(orig->adds_bos());
  // The later revision uses TemplateProcessing(<|begin_of_text|> $A).
  FERRY_LOAD_TOKENIZER_OR_SKIP(rev2, "hf-tokenizer-llama3-instruct-rev2");
  EXPECT_EQ(enc(rev2, "Hello", true), cat({{128000}, enc(rev2, "Hello", false)}));
  EXPECT_TRUE(rev2->adds_bos());
  EXPECT_EQ(rev2->bos_token_id(), 128000);
  EXPECT_EQ(rev2->eos_token(), "<|eot_id|>");
  EXPECT_EQ(rev2->eos_token_id(), 128009);
  EXPECT_FALSE(rev2->chat_template().empty());
  EXPECT_NE(rev2->chat_template().find("<|start_header_id|>"), std::string::npos);
}

TEST(SpecialTokens, Llama2AddsBosAndDecodesLikeHf) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, "hf-tokenizer-llama2");
  EXPECT_TRUE(tok->adds_bos());
  EXPECT_FALSE(tok->adds_eos());
  EXPECT_EQ(tok->bos_token_id(), 1);
  EXPECT_EQ(tok->eos_token_id(), 2);
  EXPECT_TRUE(tok->chat_template().empty());
  const auto plain = enc(tok, "Hello");
  EXPECT_EQ(enc(tok, "Hello", true), cat({{1}, plain}));
  // HF: decode([1, 15043]) == "<s> Hello" (the first piece keeps its space after a kept <s>).
  EXPECT_EQ(plain, (std::vector<TokenId>{15043}));
  EXPECT_EQ(tok->decode(std::vector<TokenId>{1, 15043}, false), "<s> Hello");
  EXPECT_EQ(tok->decode(std::vector<TokenId>{1, 15043}, true), "Hello");
  // <s> written in the text is recognised as the special token.
  const auto ids = enc(tok, "Hi <s> there");
  EXPECT_NE(std::find(ids.begin(), ids.end(), 1), ids.end());
}

TEST(SpecialTokens, QwenChatMarkersAndGenerationConfig) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, "hf-tokenizer-qwen3");
  const TokenId im_start = id_of(tok, "<|im_start|>");
  const TokenId im_end = id_of(tok, "<|im_end|>");
  EXPECT_EQ(im_start, 151644);
  EXPECT_EQ(im_end, 151645);
  EXPECT_EQ(enc(tok, "<|im_start|>user\nHi<|im_end|>\n"),
            cat({{im_start}, enc(tok, "user\nHi"), {im_end}, enc(tok, "\n")}));
  EXPECT_FALSE(tok->adds_bos());
  EXPECT_EQ(enc(tok, "Hi", true), enc(tok, "Hi", false));
  EXPECT_EQ(tok->eos_token_id(), im_end);
  EXPECT_FALSE(tok->chat_template().empty());

  FERRY_LOAD_TOKENIZER_OR_SKIP(qwen2, "qwen-bpe-vocab-merges");
  EXPECT_EQ(qwen2->generation_eos_token_ids(), (std::vector<TokenId>{151645, 151643}));
  EXPECT_EQ(qwen2->stop_token_ids(), (std::vector<TokenId>{151645, 151643}));
  EXPECT_EQ(enc(qwen2, "<|im_start|>system\n"), cat({{151644}, enc(qwen2, "system\n")}));
}

TEST(SpecialTokens, Gpt2EndOfText) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, "hf-tokenizer-gpt2");
  EXPECT_EQ(enc(tok, "Hello<|endoftext|>"), cat({enc(tok, "Hello"), {50256}}));
  EXPECT_EQ(enc(tok, "Hello", true), enc(tok, "Hello", false));
  EXPECT_EQ(tok->vocab_size(), 50257u);
}

// SOURCE.md of stories260K-hf-format.derived: "Once upon a time" with add_special_tokens ->
// [1, 403, 407, 261, 378]; and llama2.c's printed greedy outputs are the decoded generated ids.
TEST(SpecialTokens, Stories260KPromptAndGoldenDecode) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, "stories260K-hf-format.derived");
  EXPECT_EQ(enc(tok, "Once upon a time", true), (std::vector<TokenId>{1, 403, 407, 261, 378}));
  auto golden = testing::read_text(testing::testdata_dir() / "llama2c-stories260K" / "golden_outputs.derived.json");
  if (!golden) GTEST_SKIP() << "test data missing: llama2c-stories260K/golden_outputs.derived.json";
  Json::Value root;
  std::istringstream(*golden) >> root;
  int checked = 0;
  for (const Json::Value& c : root["cases"]) {
    std::vector<TokenId> ids;
    for (const Json::Value& id : c["all_token_ids"]) ids.push_back(id.asInt());
    std::string expected = c["stdout_text"].asString();
    std::string got = tok->decode(ids, /*skip_special_tokens=*/true);
    // llama2.c ends its output with a newline of its own.
    while (!expected.empty() && expected.back() == '\n') expected.pop_back();
    while (!got.empty() && got.back() == '\n') got.pop_back();
    EXPECT_EQ(got, expected) << c["name"].asString();
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace ferry::llm
