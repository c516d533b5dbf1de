// Compact, single-line JSON text for the llm backend's response parameters and statistics.
#pragma once

#include <json/json.h>

#include <string>

namespace ferry::llm {

inline std::string compact_json(const Json::Value& v) {
  static const Json::StreamWriterBuilder kWriter = [] {
    Json::StreamWriterBuilder w;
    w["indentation"] = "";
    w["emitUTF8"] = true;
    return w;
  }();
  return Json::writeString(kWriter, v);
}

}  // namespace ferry::llm
