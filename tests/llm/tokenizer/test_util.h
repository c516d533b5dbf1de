// Shared helpers for the tokenizer tests: where the reference data is, and a process-wide cache of
// loaded tokenizers (the big tokenizer.json files take a while to parse).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "backend/llm/tokenizer/tokenizer.h"

namespace ferry::llm::testing {

// $FERRY_TESTDATA when set, else the directory compiled in by ferry_add_test, else "".
std::filesystem::path testdata_dir();
std::optional<std::string> read_text(const std::filesystem::path& path);
// The tokenizer in $FERRY_TESTDATA/<folder>, loaded once; nullptr when the folder is absent.
// A folder that exists but fails to load is a test failure (reported through *error).
const Tokenizer* shared_tokenizer(const std::string& folder, std::string* error);
// "" -> {}, " 1 2 3" -> {1, 2, 3}.
std::vector<TokenId> parse_ids(const std::string& line);
// Splits the llama.cpp .inp format into its test strings.
std::vector<std::string> split_inp(const std::string& text);

}  // namespace ferry::llm::testing

// Loads `folder` into `var` or skips/fails the test, saying what is missing.
#define FERRY_LOAD_TOKENIZER_OR_SKIP(var, folder)                        \
  const ::ferry::llm::Tokenizer* var = nullptr;                          \
  do {                                                                   \
    std::string load_error_;                                             \
    var = ::ferry::llm::testing::shared_tokenizer(folder, &load_error_); \
    if (var == nullptr && load_error_.empty()) {                         \
      GTEST_SKIP() << "test data missing: $FERRY_TESTDATA/" << (folder); \
    }                                                                    \
    ASSERT_NE(var, nullptr) << load_error_;                              \
  } while (0)
