#include "test_util.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

namespace ferry::llm::testing {

std::filesystem::path testdata_dir() {
  if (const char* dir = std::getenv("FERRY_TESTDATA"); dir != nullptr && *dir != '\0') return dir;
#ifdef FERRY_TEST_TESTDATA
  return FERRY_TEST_TESTDATA;  // compiled in by ferry_add_test
#else
  return {};
#endif
}

std::optional<std::string> read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const Tokenizer* shared_tokenizer(const std::string& folder, std::string* error) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(folder);
  if (it != cache.end()) return it->second.get();
  const std::filesystem::path dir = testdata_dir() / folder;
  std::error_code ec;
  if (testdata_dir().empty() || !std::filesystem::is_directory(dir, ec)) return nullptr;
  auto loaded = Tokenizer::load(dir);
  if (!loaded.ok()) {
    *error = folder + ": " + loaded.status().to_string();
    return nullptr;
  }
  const Tokenizer* ptr = loaded.value().get();
  cache.emplace(folder, std::move(loaded).value());
  return ptr;
}

std::vector<TokenId> parse_ids(const std::string& line) {
  std::vector<TokenId> ids;
  std::istringstream in(line);
  long v = 0;
  while (in >> v) ids.push_back(static_cast<TokenId>(v));
  return ids;
}

std::vector<std::string> split_inp(const std::string& text) {
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const size_t next = text.find(kSep, pos);
    if (next == std::string::npos) break;
    out.push_back(text.substr(pos, next - pos));
    pos = next + kSep.size();
  }
  return out;  // the piece after the last separator is the final empty one: dropped
}

}  // namespace ferry::llm::testing
