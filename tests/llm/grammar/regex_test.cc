// regex_to_gbnf and choice_to_gbnf: the grammar accepts exactly what std::regex (ECMAScript)
// fully matches, on sample strings; choices are escaped.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "backend/llm/grammar/grammar.h"

namespace ferry::llm::grammar {
namespace {

bool full_match(const std::string& gbnf, const std::string& text) {
  auto g = compile_gbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status().message() << "\n" << gbnf;
  if (!g.ok()) return false;
  Matcher m(g.value(), nullptr);
  return m.accept_bytes(text) && m.can_end();
}

TEST(RegexTest, AgreesWithStdRegex) {
  const std::vector<std::string> regexes = {
      "abc", "a|b|cd", "a*b+c?", "(ab)*", "(?:x|yz){2,3}", "[a-c]+[^a-c]", "\\d{3}-\\d{4}", "\\w+@\\w+\\.com",
      "[\\s,]+", ".x.", "colou?r", "^start.*end$", "a{2}", "a{2,}", "[-a]", "\\.\\*\\+", "(a|ab)(c|bcd)",
      "[\\]x]", "\\x41\\u0042", "[^\\d\\s]"};
  const std::vector<std::string> samples = {
      "", "abc", "a", "b", "cd", "abcd", "ab", "abab", "bc", "aab", "xx", "xyz", "xyzx", "xyzxyzx", "yzyzyz",
      "ccd", "abz", "123-4567", "12-4567", "foo@bar.com", "foo@bar.org", " , ,", ".x.", "axa", "a\nx",
      "color", "colour", "colouur", "start middle end", "startend", "star", "aa", "aaa", "-", "-a", ".*+",
      "abcd", "abbcd", "ac", "]", "x", "AB", "q", "qr", "$", "é", "éxé"};
  for (const std::string& re : regexes) {
    auto gbnf = regex_to_gbnf(re);
    ASSERT_TRUE(gbnf.ok()) << re << ": " << gbnf.status().message();
    const std::regex reference(re, std::regex::ECMAScript);
    for (const std::string& s : samples) {
      // std::regex works on bytes: compare on ASCII samples only, except '.' cases checked below.
      bool ascii = true;
      for (char c : s) ascii &= static_cast<unsigned char>(c) < 0x80;
      if (!ascii) continue;
      EXPECT_EQ(full_match(gbnf.value(), s), std::regex_match(s, reference)) << "regex '" << re << "' on '" << s << "'";
    }
  }
  // A named group is a plain group (std::regex has no named groups to compare with).
  EXPECT_TRUE(full_match(regex_to_gbnf("(?<name>q)r").value(), "qr"));
  EXPECT_FALSE(full_match(regex_to_gbnf("(?<name>q)r").value(), "q"));
  // '.' is one code point, not one byte.
  EXPECT_TRUE(full_match(regex_to_gbnf(".x.").value(), "éxé"));
  EXPECT_FALSE(full_match(regex_to_gbnf("...").value(), "é"));
}

TEST(RegexTest, UnsupportedConstructsAreRefused) {
  for (const char* re : {"(a)\\1", "a(?=b)", "a(?!b)", "\\bword", "a^b", "a$b", "(ab", "ab)", "*a", "[a", "a{2,1}"}) {
    auto gbnf = regex_to_gbnf(re);
    EXPECT_FALSE(gbnf.ok()) << re;
    if (!gbnf.ok()) {
      EXPECT_EQ(gbnf.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(ChoiceTest, ExactlyOneOfTheChoices) {
  const std::vector<std::string> choices = {"yes", "no", "a \"quoted\" \\ one", "line\nbreak", "ünï", ""};
  auto gbnf = choice_to_gbnf(choices);
  ASSERT_TRUE(gbnf.ok()) << gbnf.status().message();
  for (const std::string& c : choices) EXPECT_TRUE(full_match(gbnf.value(), c)) << c;
  for (const char* bad : {"ye", "yesno", "a \"quoted\" \\\\ one", "line\\nbreak", "x"}) {
    EXPECT_FALSE(full_match(gbnf.value(), bad)) << bad;
  }
  EXPECT_FALSE(choice_to_gbnf({}).ok());
  const std::vector<std::string> invalid = {"\xFF"};
  EXPECT_FALSE(choice_to_gbnf(invalid).ok());
}

}  // namespace
}  // namespace ferry::llm::grammar
