#include "backend/llm/llm_config.h"

#include <json/json.h>

#include <memory>

namespace ferry::llm {
namespace {

Status int_in(const Json::Value& v, const std::string& key, int64_t lo, int64_t hi, int64_t* out) {
  if (!v.isInt64() || v.asInt64() < lo || v.asInt64() > hi) {
    return Status::InvalidArgument("key '" + key + "' must be an integer in [" + std::to_string(lo) + ", " +
                                   std::to_string(hi) + "]");
  }
  *out = v.asInt64();
  return Status::Ok();
}

}  // namespace

Result<LlmConfig> LlmConfig::parse(const std::string& json) {
  Json::CharReaderBuilder b;
  b["failIfExtra"] = true;
  std::unique_ptr<Json::CharReader> reader(b.newCharReader());
  Json::Value root;
  std::string errors;
  if (!reader->parse(json.data(), json.data() + json.size(), &root, &errors) || !root.isObject()) {
    return Status::InvalidArgument("llm config must be a JSON object");
  }
  LlmConfig c;
  for (const auto& key : root.getMemberNames()) {
    const Json::Value& v = root[key];
    int64_t x = 0;
    if (key == "load_format") {
      if (!v.isString() || (v.asString() != "auto" && v.asString() != "dummy")) {
        return Status::InvalidArgument("key 'load_format' must be \"auto\" or \"dummy\"");
      }
      c.dummy_weights = v.asString() == "dummy";
    } else if (key == "seed") {
      if (!v.isUInt64()) return Status::InvalidArgument("key 'seed' must be an integer >= 0");
      c.seed = v.asUInt64();
    } else if (key == "max_num_seqs") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 1, 4096, &x));
      c.max_num_seqs = static_cast<int32_t>(x);
    } else if (key == "max_model_len") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 1, int64_t{1} << 24, &c.max_model_len));
    } else if (key == "kv_cache_block_size") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 1, 1024, &x));
      c.kv_cache_block_size = static_cast<int32_t>(x);
    } else if (key == "kv_cache_num_blocks") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 0, int64_t{1} << 30, &c.kv_cache_num_blocks));
    } else if (key == "kv_cache_memory_bytes") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 1 << 16, int64_t{1} << 42, &c.kv_cache_memory_bytes));
    } else if (key == "num_threads") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 0, 1024, &x));
      c.num_threads = static_cast<int32_t>(x);
    } else {
      return Status::InvalidArgument("unknown key '" + key + "' for the llm backend");
    }
  }
  return c;
}

}  // namespace ferry::llm
