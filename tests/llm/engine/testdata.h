// Where the reference data (../shared/testdata) is: FERRY_TESTDATA from the environment, else the
// directory CMake was configured with (FERRY_TESTDATA_DEFAULT_DIR); empty when neither is set.
#pragma once

#include <cstdlib>
#include <filesystem>

namespace ferry::llm {

inline std::filesystem::path testdata() {
  const char* root = std::getenv("FERRY_TESTDATA");
  if (root != nullptr && *root != '\0') return root;
#ifdef FERRY_TESTDATA_DEFAULT_DIR
  return FERRY_TESTDATA_DEFAULT_DIR;
#else
  return {};
#endif
}

}  // namespace ferry::llm
