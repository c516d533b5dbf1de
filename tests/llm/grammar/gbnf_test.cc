// compile_gbnf: the GBNF syntax it accepts (checked by what the compiled grammar matches) and the
// errors it gives, with their line:column.
#include <gtest/gtest.h>

#include <string>

#include "backend/llm/grammar/grammar.h"
#include "tests/llm/grammar/grammar_test_util.h"

namespace ferry::llm::grammar {
namespace {

using testing::must_compile;

// Whether the whole of `text` matches (the root can end after it).
bool matches(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  Matcher m(g, nullptr);
  return m.accept_bytes(text) && m.can_end();
}

std::string error_of(const std::string& gbnf) {
  auto g = compile_gbnf(gbnf);
  EXPECT_FALSE(g.ok()) << gbnf;
  return g.ok() ? "" : g.status().message();
}

TEST(GbnfTest, LiteralsAndEscapes) {
  auto g = must_compile(R"(root ::= "a\"b\\c\n\t\x41\u00e9\U0001F600")");
  EXPECT_TRUE(matches(g, "a\"b\\c\n\tAé😀"));
  EXPECT_FALSE(matches(g, "a\"b\\c\n\tA"));
  EXPECT_FALSE(matches(g, "a\"b\\c\n\tAe😀"));
}

TEST(GbnfTest, AlternativesSequencesGroups) {
  auto g = must_compile("root ::= \"x\" (\"a\" | \"bc\") \"y\" | \"z\"");
  EXPECT_TRUE(matches(g, "xay"));
  EXPECT_TRUE(matches(g, "xbcy"));
  EXPECT_TRUE(matches(g, "z"));
  EXPECT_FALSE(matches(g, "xy"));
  EXPECT_FALSE(matches(g, "xby"));
  EXPECT_FALSE(matches(g, "zz"));
}

TEST(GbnfTest, CharacterClassesOnCodePoints) {
  auto g = must_compile(R"(root ::= [a-cX] [^a-z] [α-ω] [\u4e00-\u9fff] .)");
  EXPECT_TRUE(matches(g, "bQβ日x"));
  EXPECT_TRUE(matches(g, "X€ω語😀"));
  EXPECT_FALSE(matches(g, "dQβ日x"));   // d not in [a-cX]
  EXPECT_FALSE(matches(g, "aqβ日x"));   // q in a-z
  EXPECT_FALSE(matches(g, "aQb日x"));   // b not Greek
  EXPECT_FALSE(matches(g, "aQβ\xE6x")); // half a character
  // A negated class matches whole characters, never a lone byte of one.
  auto neg = must_compile("root ::= [^a]");
  EXPECT_TRUE(matches(neg, "é"));
  EXPECT_FALSE(matches(neg, "\xC3"));
  EXPECT_FALSE(matches(neg, "\xFF"));
  EXPECT_FALSE(matches(neg, "a"));
}

TEST(GbnfTest, ClassEscapesAndDash) {
  auto g = must_compile(R"(root ::= [\]\-^a-]+)");
  EXPECT_TRUE(matches(g, "]-^a"));
  EXPECT_FALSE(matches(g, "b"));
}

TEST(GbnfTest, Repetitions) {
  auto g = must_compile(R"(root ::= "a"* "b"+ "c"? "d"{2} "e"{1,3} "f"{2,} ("g" "h"){,2})");
  EXPECT_TRUE(matches(g, "bddeff"));
  EXPECT_TRUE(matches(g, "aaabbbcddeeefffffghgh"));
  EXPECT_FALSE(matches(g, "ddeff"));         // b+ needs one
  EXPECT_FALSE(matches(g, "bdeff"));         // d{2}
  EXPECT_FALSE(matches(g, "bddeeeeff"));     // e{1,3}
  EXPECT_FALSE(matches(g, "bddef"));         // f{2,}
  EXPECT_FALSE(matches(g, "bddeffghghgh"));  // {,2}
  EXPECT_FALSE(matches(g, "bddeffg"));
}

TEST(GbnfTest, RulesCommentsAndMultiLine) {
  auto g = must_compile(R"(# a comment
root ::= item ("," item)*   # trailing comment
item ::=
    [0-9]+
  | "x" item
other-rule_2 ::= "unused"
)");
  EXPECT_TRUE(matches(g, "1,x2,xx33"));
  EXPECT_FALSE(matches(g, "1,"));
  EXPECT_FALSE(matches(g, "x"));
}

TEST(GbnfTest, AmbiguousGrammarFollowsEveryParse) {
  auto g = must_compile(R"(root ::= ("a" | "ab" | "abc")* "cd")");
  EXPECT_TRUE(matches(g, "abcd"));     // ab + cd
  EXPECT_TRUE(matches(g, "abccd"));    // abc + cd
  EXPECT_TRUE(matches(g, "aabaabccd"));
  EXPECT_FALSE(matches(g, "abcdd"));
}

TEST(GbnfTest, EmptyAlternativesAndNullableRules) {
  auto g = must_compile(R"(root ::= a b a "!"
a ::= "" | "a"
b ::= a a)");
  EXPECT_TRUE(matches(g, "!"));
  EXPECT_TRUE(matches(g, "aaaa!"));
  EXPECT_FALSE(matches(g, "aaaaa!"));
}

TEST(GbnfTest, Errors) {
  EXPECT_EQ(error_of("item ::= \"a\""), "gbnf: no 'root' rule (the start rule must be called root)");
  EXPECT_EQ(error_of("root ::= item\n"), "gbnf: line 1:10: undefined rule 'item'");
  EXPECT_EQ(error_of("root ::= \"a\"\nroot ::= \"b\""), "gbnf: line 2:1: rule 'root' is defined twice");
  EXPECT_EQ(error_of("root ::= \"abc"), "gbnf: line 1:10: unterminated string literal");
  EXPECT_EQ(error_of("root ::= [abc"), "gbnf: line 1:10: unterminated character class");
  EXPECT_EQ(error_of("root ::= (\"a\""), "gbnf: line 1:14: expected ')' to close the '(' at offset 9");
  EXPECT_EQ(error_of("root ::= \"a\" @"), "gbnf: line 1:14: unexpected character '@'");
  EXPECT_EQ(error_of("root ::= \"\\q\""), "gbnf: line 1:11: unknown escape '\\q'");
  EXPECT_EQ(error_of("root ::= [z-a]"), "gbnf: line 1:13: character range is out of order");
  EXPECT_EQ(error_of("root ::= \"a\"{3,1}"), "gbnf: line 1:13: repetition {m,n} with n < m");
  EXPECT_EQ(error_of("root = \"a\""), "gbnf: line 1:6: expected '::=' after rule name 'root'");
  EXPECT_NE(error_of("root ::= \"a\"{99999}").find("repetition count over"), std::string::npos);
  // Nested repetitions share a helper rule (small); 70 flat ones are over a million elements.
  EXPECT_TRUE(compile_gbnf("root ::= (\"ab\"{16000}){16000}").ok());
  std::string big = "root ::=";
  for (int i = 0; i < 70; ++i) big += " \"a\"{16000}";
  EXPECT_NE(error_of(big).find("too large"), std::string::npos);
}

TEST(GbnfTest, LeftRecursionIsRefused) {
  EXPECT_EQ(error_of("root ::= root \"a\" | \"b\""),
            "gbnf: line 1:1: left recursion (a rule reaches itself without consuming input: root -> root); write it "
            "right-recursive or as a repetition");
  // Through another rule, after a nullable prefix.
  const std::string e = error_of("root ::= x\nx ::= opt y\nopt ::= \"a\"?\ny ::= x \"b\" | \"c\"");
  EXPECT_NE(e.find("left recursion"), std::string::npos) << e;
  EXPECT_NE(e.find("x -> y -> x"), std::string::npos) << e;
  // A repetition of something that can be empty is not left recursion (the cycle is a tail call).
  auto rep = must_compile("root ::= (\"a\"? | \"bc\")* \"d\"");
  EXPECT_TRUE(matches(rep, "d"));
  EXPECT_TRUE(matches(rep, "aabcad"));
  EXPECT_FALSE(matches(rep, "abd"));
  auto nested = must_compile("root ::= ((\"x\"*)*)+ \"y\"");
  EXPECT_TRUE(matches(nested, "y"));
  EXPECT_TRUE(matches(nested, "xxxy"));
  // Right recursion is fine.
  EXPECT_TRUE(compile_gbnf("root ::= \"a\" root | \"b\"").ok());
}

}  // namespace
}  // namespace ferry::llm::grammar
