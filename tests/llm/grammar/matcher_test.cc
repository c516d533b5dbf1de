// Matcher: accept/reject, rollback, can_end / is_terminated, and masks against the brute-force
// reference (a fresh matcher fed the prefix and each token's bytes) on random walks.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "backend/llm/grammar/grammar.h"
#include "tests/llm/grammar/grammar_test_util.h"

namespace ferry::llm::grammar {
namespace {

using testing::make_test_vocab;
using testing::mask_has;
using testing::must_compile;
using testing::random_walk;

const char* kJsonish = R"(
root   ::= value
value  ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* )? ws "}"
array  ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" ( [^"\\\x00-\x1f] | "\\" ["\\nt] | "\\u" [0-9a-f]{4} )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]{0,5} ) ( "." [0-9]{1,3} )?
ws     ::= [ \n]{0,3}
)";

TEST(MatcherTest, AcceptRejectKeepsState) {
  auto v = make_test_vocab();
  Matcher m(must_compile(R"(root ::= "ab" [0-9]+ "c")"), v.vocab);
  EXPECT_FALSE(m.accept_bytes("b"));
  EXPECT_TRUE(m.accept_bytes("a"));
  EXPECT_FALSE(m.accept_bytes("bx"));  // fails on the second byte: nothing consumed
  EXPECT_TRUE(m.accept_bytes("b12"));
  EXPECT_FALSE(m.can_end());
  EXPECT_TRUE(m.accept_bytes("3c"));
  EXPECT_TRUE(m.can_end());
  EXPECT_TRUE(m.is_terminated());
  EXPECT_FALSE(m.accept_bytes("c"));
}

TEST(MatcherTest, EndIdsOnlyWhereTheGrammarCanEnd) {
  auto v = make_test_vocab();
  Matcher m(must_compile(R"(root ::= "a"+)"), v.vocab);
  EXPECT_FALSE(m.accept_token(v.end_ids[0]));
  EXPECT_TRUE(m.accept_token('a'));
  EXPECT_TRUE(m.can_end());
  EXPECT_FALSE(m.is_terminated());  // more a's may follow
  EXPECT_FALSE(m.accept_token(v.end_ids.size() + 300));  // an empty-bytes id
  EXPECT_TRUE(m.accept_token(v.end_ids[1]));
  EXPECT_TRUE(m.is_terminated());
  EXPECT_FALSE(m.can_end());
  EXPECT_FALSE(m.accept_token('a'));
  std::vector<uint32_t> mask(bitmask_words(v.vocab->size()), 0xFFFFFFFFu);
  m.fill_mask(mask);
  for (uint32_t w : mask) EXPECT_EQ(w, 0u);
  m.rollback(1);  // undo the end id
  EXPECT_TRUE(m.can_end());
  EXPECT_TRUE(m.accept_token('a'));
}

TEST(MatcherTest, OnlyEndingAllowedWhenComplete) {
  auto v = make_test_vocab();
  Matcher m(must_compile(R"(root ::= "ok")"), v.vocab);
  ASSERT_TRUE(m.accept_bytes("ok"));
  EXPECT_TRUE(m.is_terminated());
  std::vector<uint32_t> mask(bitmask_words(v.vocab->size()));
  m.fill_mask(mask);
  for (int32_t id = 0; id < v.vocab->size(); ++id) {
    const bool is_end = id == v.end_ids[0] || id == v.end_ids[1];
    EXPECT_EQ(mask_has(mask, id), is_end) << id;
  }
}

TEST(MatcherTest, RollbackRestoresEachStep) {
  auto v = make_test_vocab();
  auto g = must_compile(kJsonish);
  Matcher m(g, v.vocab);
  std::vector<uint32_t> before(bitmask_words(v.vocab->size())), after(before.size());
  const std::vector<std::string> steps = {"{\"", "name", "\":", " \"", "ab", "\",", " \"", "age", "\": ", "12", "}"};
  std::vector<std::vector<uint32_t>> masks;
  for (const std::string& s : steps) {
    m.fill_mask(before);
    masks.push_back(before);
    ASSERT_TRUE(m.accept_bytes(s)) << s;
  }
  EXPECT_TRUE(m.can_end());
  for (size_t back = 1; back <= steps.size(); ++back) {
    m.rollback(1);
    m.fill_mask(after);
    EXPECT_EQ(after, masks[steps.size() - back]) << "after rolling back " << back;
  }
  EXPECT_FALSE(m.can_end());
  // And forward again along another path.
  EXPECT_TRUE(m.accept_bytes("[1, true]"));
  EXPECT_TRUE(m.can_end());
}

TEST(MatcherTest, UnboundedRepetitionKeepsWorkingOnLongInputs) {
  auto v = make_test_vocab();
  Matcher m(must_compile(R"(root ::= "\"" [^"]* "\"")"), v.vocab);
  ASSERT_TRUE(m.accept_bytes("\""));
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(m.accept_bytes("xé"));
  EXPECT_TRUE(m.accept_bytes("\""));
  EXPECT_TRUE(m.is_terminated());
}

TEST(MatcherTest, MovedMatcherKeepsItsState) {
  auto v = make_test_vocab();
  Matcher a(must_compile(R"(root ::= "xy")"), v.vocab);
  ASSERT_TRUE(a.accept_bytes("x"));
  Matcher b = std::move(a);
  EXPECT_TRUE(b.accept_bytes("y"));
  EXPECT_TRUE(b.can_end());
}

struct WalkCase {
  const char* name;
  const char* gbnf;
};

class MaskReferenceTest : public ::testing::TestWithParam<WalkCase> {};

// The key correctness test: on random walks, every mask equals the brute-force reference.
TEST_P(MaskReferenceTest, MasksEqualBruteForce) {
  auto v = make_test_vocab();
  auto g = must_compile(GetParam().gbnf);
  ASSERT_NE(g, nullptr);
  int ended = 0;
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    bool end = false;
    random_walk(g, v, seed, 40, /*check_reference=*/true, &end);
    ended += end;
  }
  EXPECT_GT(ended, 0) << "no walk reached an end";
}

INSTANTIATE_TEST_SUITE_P(
    Grammars, MaskReferenceTest,
    ::testing::Values(
        WalkCase{"jsonish", kJsonish},
        WalkCase{"ambiguous", R"(root ::= ( "a" | "ab" | "abc" | "bc" )* "c" | "a"+ "bc"? )"},
        WalkCase{"utf8", R"(root ::= ( [α-ω]+ | [^a-z\x00-\x1f"]{1,3} | "€" | "😀" | "日本語" ) ("-" root)?)"},
        WalkCase{"nullable", R"(root ::= a b a "!" a
a ::= "" | "a" | "ab"
b ::= a a "c"?)"},
        WalkCase{"nullable_repetition", R"(root ::= ( "a"? | "bc" | "" )* "d" ( "e"* ( "f" | "" ) )*)"},
        WalkCase{"keywords", R"(root ::= ( "true" | "false" | "null" | "tr" "ue" "s" ) ( "," ws root )?
ws ::= " "?)"},
        WalkCase{"nested", R"(root ::= "[" ( root ( "," root )* )? "]" | "\"" [a-c]{0,4} "\"" | [0-9]+)"}),
    [](const ::testing::TestParamInfo<WalkCase>& info) { return std::string(info.param.name); });

// A vocabulary big enough that fill_mask allows whole trie subtrees at once (subtrees of 64+
// tokens), on grammars with counted runs (a state per remaining count) and self-loops: masks
// still equal the brute-force reference.
TEST(MatcherTest, SubtreeShortcutsOnALargeVocabulary) {
  std::mt19937 rng(7);
  testing::TestVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(std::string(1, static_cast<char>(b)));
  // Letter tokens and digit/quote tokens apart, so that subtrees under letters hold only letters.
  const std::string letters = "abcdefghij ", others = "\"0123456789";
  for (int i = 0; i < 6000; ++i) {
    const std::string& alphabet = i % 5 == 0 ? others : letters;
    std::string t;
    const int len = 2 + static_cast<int>(rng() % 7);
    for (int k = 0; k < len; ++k) t.push_back(alphabet[rng() % alphabet.size()]);
    v.tokens.push_back(t);
  }
  v.end_ids = {static_cast<int32_t>(v.tokens.size())};
  v.tokens.push_back("");
  v.vocab = TokenVocabulary::build(v.tokens, v.end_ids);
  for (const char* gbnf : {R"(root ::= "\"" [a-j ]{0,12} "\"" [0-9]{1,9})", R"(root ::= [a-j ]{2,7} "\"")",
                           R"(root ::= "\"" [^"]* "\"" | [a-e]{3,20})"}) {
    auto g = must_compile(gbnf);
    for (uint32_t seed = 1; seed <= 3; ++seed) {
      bool ended = false;
      random_walk(g, v, seed, 12, /*check_reference=*/true, &ended, 0.2);
    }
  }
}

}  // namespace
}  // namespace ferry::llm::grammar
