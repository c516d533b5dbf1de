// mistral-common's golden token ids for chat requests. Only the v1 tokenizer (Mistral-7B v0.1/v0.2)
// has a tokenizer.json here (hf-tokenizer-mistral-7b); v2/v3 exist only as sentencepiece .model
// files, which ferry does not load (it serves HF tokenizer.json folders).
#include <gtest/gtest.h>
#include <json/json.h>

#include "test_util.h"

namespace ferry::llm {
namespace {

std::optional<Json::Value> read_json(const std::filesystem::path& path) {
  auto text = testing::read_text(path);
  if (!text) return std::nullopt;
  Json::Value v;
  std::istringstream in(*text);
  in >> v;
  return v;
}

// The Mistral v1 instruct format that mistral-common encodes for a conversation without tools:
// <s>[INST] u1 [/INST] a1</s>[INST] u2 [/INST] ...
std::string v1_prompt(const Json::Value& messages) {
  std::string s = "<s>";
  for (const Json::Value& m : messages) {
    if (m["role"].asString() == "user") {
      s += "[INST] " + m["content"].asString() + " [/INST]";
    } else {
      s += " ";
      s += m["content"].asString();
      s += "</s>";
    }
  }
  return s;
}

TEST(MistralCommon, NoToolsV1MatchesGoldenIds) {
  const auto dir = testing::testdata_dir() / "mistral-common" / "samples" / "no_tools";
  auto sample = read_json(dir / "sample.json");
  auto tokens = read_json(dir / "tokens_v1.json");
  auto text = testing::read_text(dir / "text_v1.txt");
  if (!sample || !tokens || !text) GTEST_SKIP() << "test data missing: " << dir.string();
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, "hf-tokenizer-mistral-7b");

  std::vector<TokenId> expected;
  for (const Json::Value& id : (*tokens)["tokens"]) expected.push_back(id.asInt());
  auto ids = tok->encode(v1_prompt((*sample)["messages"]), /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids.value(), expected);

  // text_v1.txt is the golden ids' pieces joined: check the vocabulary maps them the same way.
  std::string pieces;
  for (TokenId id : expected) {
    const std::string* p = tok->id_to_token(id);
    ASSERT_NE(p, nullptr) << id;
    pieces += *p;
  }
  std::string golden = *text;
  while (!golden.empty() && golden.back() == '\n') golden.pop_back();
  EXPECT_EQ(pieces, golden);
}

TEST(MistralCommon, BosAddedByDefault) {
  FERRY_LOAD_TOKENIZER_OR_SKIP(tok, "hf-tokenizer-mistral-7b");
  ASSERT_TRUE(tok->bos_token_id().has_value());
  EXPECT_EQ(tok->bos_token(), "<s>");
  EXPECT_EQ(tok->eos_token(), "</s>");
  auto plain = tok->encode("Hello world", false);
  auto with = tok->encode("Hello world", true);
  ASSERT_TRUE(plain.ok() && with.ok());
  ASSERT_EQ(with->size(), plain->size() + 1);
  EXPECT_EQ(with.value()[0], *tok->bos_token_id());
  EXPECT_TRUE(std::equal(plain->begin(), plain->end(), with->begin() + 1));
}

}  // namespace
}  // namespace ferry::llm
