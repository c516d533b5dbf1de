// Where tests find the build, the sources and the reference data: the environment variables
// FERRY_BINARY_DIR / FERRY_SOURCE_DIR / FERRY_TESTDATA when set, else the directories the build
// compiled in (ferry_add_test defines FERRY_TEST_*). Test code only.
#pragma once

#include <cstdlib>
#include <string>

namespace ferry::testing {

inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && v[0] != '\0') ? v : fallback;
}

#ifdef FERRY_TEST_BINARY_DIR
inline std::string binary_dir() { return env_or("FERRY_BINARY_DIR", FERRY_TEST_BINARY_DIR); }
inline std::string source_dir() { return env_or("FERRY_SOURCE_DIR", FERRY_TEST_SOURCE_DIR); }
inline std::string testdata_dir() { return env_or("FERRY_TESTDATA", FERRY_TEST_TESTDATA); }
#endif

}  // namespace ferry::testing
