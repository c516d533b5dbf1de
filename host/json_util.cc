#include "host/json_util.h"

#include <fstream>
#include <memory>
#include <sstream>

namespace ferry::host {
namespace {

// jsoncpp keeps a builder's settings in a Json::Value and reads them back each time it makes a
// reader or writer; making one per call cost more than parsing or writing a whole small request.
// Readers and writers are not thread-safe, so each thread makes its own once and reuses it.

Json::CharReader& strict_reader() {
  thread_local const std::unique_ptr<Json::CharReader> reader = [] {
    Json::CharReaderBuilder builder;
    builder["failIfExtra"] = true;
    builder["rejectDupKeys"] = true;
    builder["allowSpecialFloats"] = false;
    builder["stackLimit"] = 200;
    return std::unique_ptr<Json::CharReader>(builder.newCharReader());
  }();
  return *reader;
}

Json::StreamWriter& compact_writer() {
  thread_local const std::unique_ptr<Json::StreamWriter> writer = [] {
    Json::StreamWriterBuilder builder;
    builder["indentation"] = "";
    builder["emitUTF8"] = true;
    return std::unique_ptr<Json::StreamWriter>(builder.newStreamWriter());
  }();
  return *writer;
}

}  // namespace

Result<Json::Value> parse_json(std::string_view text, const std::string& what) {
  Json::Value value;
  std::string errors;
  bool ok = false;
  try {
    ok = strict_reader().parse(text.data(), text.data() + text.size(), &value, &errors);
  } catch (const Json::Exception& e) {
    // jsoncpp throws instead of failing when nesting exceeds stackLimit.
    errors = e.what();
  }
  if (!ok) {
    while (!errors.empty() && (errors.back() == '\n' || errors.back() == ' ')) errors.pop_back();
    return Status::InvalidArgument(what + ": malformed JSON: " + errors);
  }
  return value;
}

std::string to_json(const Json::Value& value) {
  std::ostringstream out;
  compact_writer().write(value, &out);
  return std::move(out).str();
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace ferry::host
