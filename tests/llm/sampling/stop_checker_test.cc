#include "backend/llm/sampling/stop_checker.h"

#include <gtest/gtest.h>

namespace ferry::llm {
namespace {

const std::vector<int32_t> kEos = {2};

TEST(StopChecker, StopStringAcrossTokensIsHeldBackThenCut) {
  SamplingParams p;
  p.max_tokens = 100;
  p.stop = {"</end>"};
  StopChecker c(p, kEos);
  StopUpdate u = c.append(10, "Hello </");
  EXPECT_EQ(u.text, "Hello ");  // "</" could start the stop string
  EXPECT_FALSE(u.finished());
  EXPECT_EQ(c.held_back(), "</");
  u = c.append(11, "en");
  EXPECT_EQ(u.text, "");
  u = c.append(12, "d> trailing");
  EXPECT_TRUE(u.finished());
  EXPECT_EQ(u.finish, FinishReason::kStop);
  EXPECT_EQ(u.stop_string, "</end>");
  EXPECT_EQ(u.text, "");  // neither the stop string nor what follows is emitted
  EXPECT_STREQ(finish_reason_name(u.finish), "stop");
}

TEST(StopChecker, HeldTextIsReleasedWhenItStopsMatching) {
  SamplingParams p;
  p.max_tokens = 100;
  p.stop = {"STOP"};
  StopChecker c(p, kEos);
  EXPECT_EQ(c.append(1, "a ST").text, "a ");
  EXPECT_EQ(c.append(5, "O").text, "");
  EXPECT_EQ(c.append(3, "P?").finish, FinishReason::kStop);

  StopChecker d(p, kEos);
  EXPECT_EQ(d.append(1, "a ST").text, "a ");
  StopUpdate u = d.append(5, "ORM");
  EXPECT_EQ(u.text, "STORM");
  EXPECT_FALSE(u.finished());
}

TEST(StopChecker, StopStringInsideOneTokenCutsBeforeIt) {
  SamplingParams p;
  p.max_tokens = 100;
  p.stop = {"\n\n", "User:"};
  StopChecker c(p, kEos);
  StopUpdate u = c.append(5, "answer\n\nmore");
  EXPECT_EQ(u.finish, FinishReason::kStop);
  EXPECT_EQ(u.text, "answer");
  EXPECT_EQ(u.stop_string, "\n\n");
}

TEST(StopChecker, EarliestOfSeveralStopStringsWins) {
  SamplingParams p;
  p.max_tokens = 100;
  p.stop = {"cd", "bcx", "b"};
  StopChecker c(p, kEos);
  StopUpdate u = c.append(5, "abcd");
  EXPECT_EQ(u.text, "a");
  EXPECT_EQ(u.stop_string, "b");
}

TEST(StopChecker, IncludeStopStringKeepsIt) {
  SamplingParams p;
  p.max_tokens = 100;
  p.stop = {"END"};
  p.include_stop_str_in_output = true;
  StopChecker c(p, kEos);
  EXPECT_EQ(c.append(1, "xxE").text, "xx");
  StopUpdate u = c.append(3, "NDyy");
  EXPECT_EQ(u.text, "END");
}

TEST(StopChecker, EosStopsUnlessIgnored) {
  SamplingParams p;
  p.max_tokens = 100;
  p.stop = {"zz"};
  StopChecker c(p, kEos);
  EXPECT_EQ(c.append(7, "abz").text, "ab");
  StopUpdate u = c.append(2, "</s>");
  EXPECT_EQ(u.finish, FinishReason::kStop);
  EXPECT_EQ(u.stop_token, 2);
  EXPECT_EQ(u.text, "z");  // held text released, EOS text not emitted

  p.ignore_eos = true;
  StopChecker d(p, kEos);
  EXPECT_FALSE(d.append(2, "x").finished());
}

TEST(StopChecker, StopTokenIdsStopEvenWithIgnoreEos) {
  SamplingParams p;
  p.max_tokens = 100;
  p.ignore_eos = true;
  p.stop_token_ids = {42};
  StopChecker c(p, kEos);
  EXPECT_FALSE(c.append(2, "a").finished());
  StopUpdate u = c.append(42, "<eot>");
  EXPECT_EQ(u.finish, FinishReason::kStop);
  EXPECT_EQ(u.stop_token, 42);
  EXPECT_EQ(u.text, "");
}

TEST(StopChecker, MaxTokensFinishesWithLengthAndFlushes) {
  SamplingParams p;
  p.max_tokens = 3;
  p.stop = {"abc"};
  StopChecker c(p, kEos);
  EXPECT_EQ(c.append(1, "x").text, "x");
  EXPECT_EQ(c.append(1, "a").text, "");
  StopUpdate u = c.append(1, "b");
  EXPECT_EQ(u.finish, FinishReason::kLength);
  EXPECT_EQ(u.text, "ab");
  EXPECT_EQ(c.num_generated(), 3);
  EXPECT_STREQ(finish_reason_name(u.finish), "length");
}

TEST(StopChecker, StopStringOnLastAllowedTokenIsStopNotLength) {
  SamplingParams p;
  p.max_tokens = 1;
  p.stop = {"!"};
  StopChecker c(p, kEos);
  StopUpdate u = c.append(1, "hi!");
  EXPECT_EQ(u.finish, FinishReason::kStop);
  EXPECT_EQ(u.text, "hi");
}

TEST(StopChecker, EmptyPiecesAndUtf8StopStrings) {
  SamplingParams p;
  p.max_tokens = 100;
  p.stop = {"é"};
  StopChecker c(p, kEos);
  EXPECT_EQ(c.append(1, "").text, "");  // detokenizer waiting for a UTF-8 continuation
  EXPECT_EQ(c.append(1, "caf").text, "caf");
  EXPECT_EQ(c.append(1, "\xC3").text, "");  // could be the start of "é"
  StopUpdate u = c.append(1, "\xA9!");
  EXPECT_EQ(u.finish, FinishReason::kStop);
  EXPECT_EQ(u.text, "");
}

TEST(StopChecker, NoStopStringEndsFewerThanMinTokens) {
  SamplingParams p;
  p.max_tokens = 10;
  p.min_tokens = 3;
  p.stop = {"x"};
  StopChecker c(p, kEos);
  StopUpdate u = c.append(1, "ax");
  EXPECT_FALSE(u.finished());
  EXPECT_EQ(u.text, "ax") << "before min_tokens the text is released unchecked";
  EXPECT_FALSE(c.append(1, "bx").finished());
  u = c.append(1, "cxd");
  EXPECT_TRUE(u.finished()) << "the third token may stop";
  EXPECT_EQ(u.text, "c");
}

}  // namespace
}  // namespace ferry::llm
