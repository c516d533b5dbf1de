// Small hand-written tokenizer.json files: pipeline pieces whose HF behaviour is documented in HF
// tokenizers' own tests, and load errors that must name the key.
#include <gtest/gtest.h>
#include <json/json.h>

#include "backend/llm/tokenizer/incremental_detokenizer.h"
#include "test_util.h"

namespace ferry::llm {
namespace {

// A BPE whose vocabulary is the given tokens (ids in order) with ignore_merges, so any pre-token
// that is itself in the vocabulary comes out as one id: encode() then shows the pre-token split.
Json::Value word_bpe(const std::vector<std::string>& tokens) {
  Json::Value tj(Json::objectValue);
  tj["model"]["type"] = "BPE";
  tj["model"]["ignore_merges"] = true;
  tj["model"]["merges"] = Json::Value(Json::arrayValue);
  for (size_t i = 0; i < tokens.size(); ++i) tj["model"]["vocab"][tokens[i]] = static_cast<int>(i);
  return tj;
}

Result<std::unique_ptr<Tokenizer>> build(const Json::Value& tj, const Json::Value& config = Json::Value()) {
  Json::StreamWriterBuilder w;
  return Tokenizer::from_json(Json::writeString(w, tj), config.isNull() ? "" : Json::writeString(w, config));
}

std::vector<TokenId> enc(const Tokenizer& tok, std::string_view text) {
  auto ids = tok.encode(text, false);
  EXPECT_TRUE(ids.ok()) << ids.status().to_string();
  return ids.ok() ? ids.value() : std::vector<TokenId>{};
}

Json::Value added(const std::string& content, int id, bool lstrip, bool rstrip, bool single_word) {
  Json::Value t(Json::objectValue);
  t["id"] = id;
  t["content"] = content;
  t["lstrip"] = lstrip;
  t["rstrip"] = rstrip;
  t["single_word"] = single_word;
  t["normalized"] = false;
  t["special"] = true;
  return t;
}

// HF tokenizers' test_lstrip_unicode_space / test_single_word_is_correct expectations.
TEST(AddedTokens, LstripRstripSingleWord) {
  Json::Value tj = word_bpe({"Hi", "there", "<mask>", " My", "name", " A"});
  tj["pre_tokenizer"]["type"] = "WhitespaceSplit";
  tj["added_tokens"].append(added("<mask>", 2, true, true, true));
  auto tok = build(tj);
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  // "Hi <mask> there\t<mask>\t<mask>\u2000": both masks take the whitespace around them.
  EXPECT_EQ(enc(**tok, "Hi <mask> there\t<mask>\t<mask>\xE2\x80\x80"), (std::vector<TokenId>{0, 2, 1, 2, 2}));
  // single_word: "A<mask>" and "<mask>ony" are not matches (the text stays text and has no ids).
  EXPECT_EQ(enc(**tok, "<mask>name<mask>"), (std::vector<TokenId>{}));
  EXPECT_EQ(enc(**tok, "<mask> name <mask>"), (std::vector<TokenId>{2, 4, 2}));
}

TEST(AddedTokens, LongestMatchWinsAndSpecialFlagDrivesSkip) {
  Json::Value tj = word_bpe({"a", "<x>", "<x>>"});
  tj["added_tokens"].append(added("<x>", 1, false, false, false));
  Json::Value longer = added("<x>>", 2, false, false, false);
  longer["special"] = false;
  tj["added_tokens"].append(longer);
  auto tok = build(tj);
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  EXPECT_EQ(enc(**tok, "a<x>>a<x>a"), (std::vector<TokenId>{0, 2, 0, 1, 0}));
  EXPECT_TRUE((*tok)->is_special(1));
  EXPECT_FALSE((*tok)->is_special(2));
  EXPECT_EQ((*tok)->decode(std::vector<TokenId>{0, 1, 2}, true), "a <x>>");  // no decoder: joined by spaces
}

// HF's Metaspace tests: "Hey friend!" -> "▁Hey", "▁friend!"; "Hey   friend!" -> "▁Hey", "▁", "▁", "▁friend!".
TEST(PreTokenizer, MetaspaceSplitsAndPrepends) {
  const std::string m = "\xE2\x96\x81";
  Json::Value tj = word_bpe({m + "Hey", m + "friend!", m});
  tj["pre_tokenizer"]["type"] = "Metaspace";
  tj["pre_tokenizer"]["replacement"] = m;
  tj["pre_tokenizer"]["prepend_scheme"] = "always";
  tj["decoder"]["type"] = "Metaspace";
  tj["decoder"]["replacement"] = m;
  tj["decoder"]["prepend_scheme"] = "always";
  auto tok = build(tj);
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  EXPECT_EQ(enc(**tok, "Hey friend!"), (std::vector<TokenId>{0, 1}));
  EXPECT_EQ(enc(**tok, "Hey   friend!"), (std::vector<TokenId>{0, 2, 2, 1}));
  EXPECT_EQ((*tok)->decode(std::vector<TokenId>{0, 1}, false), "Hey friend!");
  // Streaming agrees with the first-token rule.
  IncrementalDetokenizer detok(**tok, false);
  EXPECT_EQ(detok.add(0), "Hey");
  EXPECT_EQ(detok.add(1), " friend!");
}

// HF's SplitDelimiterBehavior on "a--b" split on "-" (pieces "a" "-" "-" "b"). A match merges
// into its neighbour only when the previous piece looked at was not itself a match.
TEST(PreTokenizer, SplitBehaviors) {
  const std::vector<std::string> vocab = {"a", "-", "b", "a-", "-b", "--"};
  const std::pair<const char*, std::vector<TokenId>> cases[] = {
      {"Removed", {0, 2}},                // a b
      {"Isolated", {0, 1, 1, 2}},         // a - - b
      {"MergedWithPrevious", {3, 1, 2}},  // a- - b
      {"MergedWithNext", {0, 1, 4}},      // a - -b
      {"Contiguous", {0, 5, 2}},          // a -- b
  };
  for (const auto& [behavior, expected] : cases) {
    Json::Value tj = word_bpe(vocab);
    tj["pre_tokenizer"]["type"] = "Split";
    tj["pre_tokenizer"]["pattern"]["String"] = "-";
    tj["pre_tokenizer"]["behavior"] = behavior;
    tj["pre_tokenizer"]["invert"] = false;
    auto tok = build(tj);
    ASSERT_TRUE(tok.ok()) << tok.status().to_string();
    EXPECT_EQ(enc(**tok, "a--b"), expected) << behavior;
  }
}

TEST(Bpe, MergesByRankWithByteFallbackAndUnk) {
  Json::Value tj(Json::objectValue);
  tj["model"]["type"] = "BPE";
  tj["model"]["byte_fallback"] = true;
  tj["model"]["fuse_unk"] = true;
  tj["model"]["unk_token"] = "<unk>";
  const char* vocab[] = {"<unk>", "a", "b", "c", "ab", "bc", "abc", "<0xC3>", "<0xA9>"};
  for (int i = 0; i < 9; ++i) tj["model"]["vocab"][vocab[i]] = i;
  tj["model"]["merges"].append("b c");   // rank 0: "bc" first,
  tj["model"]["merges"].append("a b");   // so "abc" is a + bc, and "a bc" is not a merge:
  tj["model"]["merges"].append("ab c");  // "abc" is unreachable from "a"+"bc".
  auto tok = build(tj);
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  EXPECT_EQ(enc(**tok, "abc"), (std::vector<TokenId>{1, 5}));
  EXPECT_EQ(enc(**tok, "ab"), (std::vector<TokenId>{4}));
  EXPECT_EQ(enc(**tok,
                "\xC3\xA9"
                "a"),
            (std::vector<TokenId>{7, 8, 1}));  // é via <0xC3><0xA9>
  // x and y have neither a token nor byte tokens: one fused unk.
  EXPECT_EQ(enc(**tok, "axyb"), (std::vector<TokenId>{1, 0, 2}));
}

TEST(Bpe, MergesOverUnknownTokensAreSkipped) {
  Json::Value tj = word_bpe({"a", "b", "ab"});
  tj["model"]["ignore_merges"] = false;
  tj["model"]["merges"].append("   ");  // splits as "" + "  ": not in the vocabulary
  tj["model"]["merges"].append("a c");  // "c" is unknown
  tj["model"]["merges"].append("a b");
  auto tok = build(tj);
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  EXPECT_EQ(enc(**tok, "ab"), (std::vector<TokenId>{2}));
}

TEST(Errors, UnsupportedPartsNameTheirKey) {
  auto expect_error = [](const Json::Value& tj, const std::string& needle) {
    auto tok = build(tj);
    ASSERT_FALSE(tok.ok()) << needle;
    EXPECT_NE(tok.status().message().find(needle), std::string::npos) << tok.status().to_string();
  };
  Json::Value unigram(Json::objectValue);
  unigram["model"]["type"] = "Unigram";
  expect_error(unigram, "tokenizer.json: model.type 'Unigram' is not supported");

  Json::Value tj = word_bpe({"a"});
  tj["normalizer"]["type"] = "Sequence";
  tj["normalizer"]["normalizers"][0]["type"] = "NFC";
  tj["normalizer"]["normalizers"][1]["type"] = "Precompiled";
  expect_error(tj, "normalizer.normalizers[1].type 'Precompiled' is not supported");

  tj = word_bpe({"a"});
  tj["pre_tokenizer"]["type"] = "Split";
  tj["pre_tokenizer"]["pattern"]["Regex"] = "(unclosed";
  tj["pre_tokenizer"]["behavior"] = "Isolated";
  expect_error(tj, "pre_tokenizer.pattern");

  tj = word_bpe({"a"});
  tj["decoder"]["type"] = "WordPiece";
  expect_error(tj, "decoder.type 'WordPiece' is not supported");

  tj = word_bpe({"a", "b"});
  tj["model"]["merges"].append("ab");
  expect_error(tj, "model.merges[0] 'ab' is not 'left right'");

  tj = word_bpe({"a"});
  tj["post_processor"]["type"] = "Magic";
  expect_error(tj, "post_processor.type 'Magic' is not supported");

  auto broken = Tokenizer::from_json("{ not json");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("tokenizer.json: not valid JSON"), std::string::npos);
}

TEST(Errors, MissingFolderAndInvalidText) {
  auto missing = Tokenizer::load("/nonexistent/ferry/model");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  auto tok = build(word_bpe({"a"}));
  ASSERT_TRUE(tok.ok());
  auto bad = (*tok)->encode("a\xFF", false);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(Config, BosEosFlagsOverrideThePostProcessor) {
  Json::Value tj = word_bpe({"<s>", "</s>", "a"});
  tj["added_tokens"].append(added("<s>", 0, false, false, false));
  tj["added_tokens"].append(added("</s>", 1, false, false, false));
  Json::Value config(Json::objectValue);
  config["bos_token"] = "<s>";
  config["eos_token"]["content"] = "</s>";  // the AddedToken-dict form
  config["add_bos_token"] = true;
  config["add_eos_token"] = true;
  config["chat_template"][0]["name"] = "default";
  config["chat_template"][0]["template"] = "{{ messages }}";
  config["chat_template"][1]["name"] = "tool_use";
  config["chat_template"][1]["template"] = "{{ tools }}";
  auto tok = build(tj, config);
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  auto ids = (*tok)->encode("a", true);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids.value(), (std::vector<TokenId>{0, 2, 1}));
  EXPECT_TRUE((*tok)->adds_bos());
  EXPECT_TRUE((*tok)->adds_eos());
  EXPECT_EQ((*tok)->chat_template(), "{{ messages }}");
  EXPECT_EQ((*tok)->named_chat_templates().at("tool_use"), "{{ tools }}");
}

}  // namespace
}  // namespace ferry::llm
