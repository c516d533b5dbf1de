#include "backend/llm/llm_config.h"

#include <json/json.h>

#include <algorithm>
#include <memory>

#include "common/json_parse.h"

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

Status parse_instance_group(const Json::Value& v, LlmConfig* c) {
  const std::string key = "instance_group";
  if (!v.isArray() || v.size() != 1 || !v[0].isObject()) {
    return Status::InvalidArgument("key 'instance_group' must be a list with one group {count, kind, gpus}");
  }
  for (const auto& k : v[0].getMemberNames()) {
    const Json::Value& x = v[0][k];
    if (k == "count") {
      int64_t n = 0;
      FERRY_RETURN_IF_ERROR(int_in(x, key + ".count", 1, 64, &n));
      c->num_instances = static_cast<int32_t>(n);
    } else if (k == "kind") {
      std::string kind = x.isString() ? x.asString() : "";
      if (kind == "cpu" || kind == "KIND_CPU") c->gpu = false;
      else if (kind == "gpu" || kind == "KIND_GPU") c->gpu = true;
      else return Status::InvalidArgument("key 'instance_group.kind' must be \"cpu\" or \"gpu\"");
    } else if (k == "gpus") {
      if (!x.isArray()) return Status::InvalidArgument("key 'instance_group.gpus' must be a list of device ids");
      for (const auto& id : x) {
        if (!id.isInt() || id.asInt() < 0) return Status::InvalidArgument("key 'instance_group.gpus' must be a list of device ids");
        c->gpu_ids.push_back(id.asInt());
      }
    } else {
      return Status::InvalidArgument("unknown key 'instance_group." + k + "'");
    }
  }
  return Status::Ok();
}

Status parse_levels(const Json::Value& v, SchedulerConfig* s) {
  if (!v.isArray()) return Status::InvalidArgument("key 'priority_level_config' must be a list, one entry per level");
  s->levels.clear();
  for (const auto& level : v) {
    if (!level.isObject()) return Status::InvalidArgument("key 'priority_level_config' entries must be objects");
    PriorityLevelConfig l;
    for (const auto& k : level.getMemberNames()) {
      const Json::Value& x = level[k];
      const std::string name = "priority_level_config." + k;
      int64_t n = 0;
      if (k == "queue_timeout_ms") {
        FERRY_RETURN_IF_ERROR(int_in(x, name, 0, int64_t{1} << 40, &l.queue_timeout_ms));
      } else if (k == "max_queue_size") {
        FERRY_RETURN_IF_ERROR(int_in(x, name, 0, 1 << 30, &n));
        l.max_queue_size = static_cast<int32_t>(n);
      } else if (k == "timeout_action") {
        std::string a = x.isString() ? x.asString() : "";
        if (a == "reject") l.timeout_action = TimeoutAction::kReject;
        else if (a == "keep_waiting") l.timeout_action = TimeoutAction::kKeepWaiting;
        else return Status::InvalidArgument("key '" + name + "' must be \"reject\" or \"keep_waiting\"");
      } else {
        return Status::InvalidArgument("unknown key '" + name + "'");
      }
    }
    s->levels.push_back(l);
  }
  return Status::Ok();
}

Status parse_speculative(const Json::Value& v, SpeculativeConfig* c) {
  if (!v.isObject()) return Status::InvalidArgument("key 'speculative' must be an object with a 'method'");
  const Json::Value& method = v["method"];
  const std::string m = method.isString() ? method.asString() : "";
  if (m == "ngram") c->method = SpeculativeMethod::kNgram;
  else if (m == "draft") c->method = SpeculativeMethod::kDraft;
  else return Status::InvalidArgument("key 'speculative.method' must be \"ngram\" or \"draft\"");
  const bool ngram = c->method == SpeculativeMethod::kNgram;
  bool has_k = false;
  for (const auto& k : v.getMemberNames()) {
    const Json::Value& x = v[k];
    const std::string name = "speculative." + k;
    int64_t n = 0;
    if ((k == "prompt_lookup_min" || k == "prompt_lookup_max") && !ngram) {
      return Status::InvalidArgument("key '" + name + "' applies to method \"ngram\" only");
    }
    if (k == "draft_model" && ngram) return Status::InvalidArgument("key '" + name + "' applies to method \"draft\" only");
    if (k == "method") {
      continue;
    } else if (k == "num_speculative_tokens") {
      FERRY_RETURN_IF_ERROR(int_in(x, name, 1, 16, &n));
      c->num_speculative_tokens = static_cast<int32_t>(n);
      has_k = true;
    } else if (k == "prompt_lookup_min") {
      FERRY_RETURN_IF_ERROR(int_in(x, name, 1, 64, &n));
      c->prompt_lookup_min = static_cast<int32_t>(n);
    } else if (k == "prompt_lookup_max") {
      FERRY_RETURN_IF_ERROR(int_in(x, name, 1, 64, &n));
      c->prompt_lookup_max = static_cast<int32_t>(n);
    } else if (k == "draft_model") {
      // A folder name of the repository: no path (the draft is looked up beside the model).
      const std::string d = x.isString() ? x.asString() : "";
      if (d.empty() || d == "." || d == ".." || d.find_first_of("/\\") != std::string::npos) {
        return Status::InvalidArgument("key '" + name + "' must be the name of a model folder of the repository");
      }
      c->draft_model = d;
    } else if (k == "disable_by_batch_size") {
      FERRY_RETURN_IF_ERROR(int_in(x, name, 1, 4096, &n));
      c->disable_by_batch_size = static_cast<int32_t>(n);
    } else if (k == "min_acceptance_rate") {
      if (x.isString() && x.asString() == "auto") {
        c->min_acceptance_rate = SpeculativeConfig::kMeasuredRate;
        continue;
      }
      if (!x.isNumeric() || x.isBool() || x.asDouble() < 0.0 || x.asDouble() > 1.0) {
        return Status::InvalidArgument("key '" + name + "' must be \"auto\" or a number in [0, 1]");
      }
      c->min_acceptance_rate = x.asDouble();
    } else {
      return Status::InvalidArgument("unknown key '" + name + "'");
    }
  }
  if (!has_k) return Status::InvalidArgument("key 'speculative.num_speculative_tokens' is required");
  if (!ngram && c->draft_model.empty()) {
    return Status::InvalidArgument("key 'speculative.draft_model' is required for method \"draft\"");
  }
  if (!v.isMember("prompt_lookup_max") && c->prompt_lookup_max < c->prompt_lookup_min) {
    c->prompt_lookup_max = c->prompt_lookup_min;
  }
  if (c->prompt_lookup_max < c->prompt_lookup_min) {
    return Status::InvalidArgument("key 'speculative.prompt_lookup_max' must be >= prompt_lookup_min");
  }
  return Status::Ok();
}

}  // namespace

Result<LlmConfig> LlmConfig::parse(const std::string& json) {
  JsonParseOptions options = kJsonFileOptions;
  options.fail_if_extra = true;
  auto parsed = parse_json_text(json, options);
  if (!parsed.ok() || !parsed->isObject()) {
    return Status::InvalidArgument("llm config must be a JSON object");
  }
  const Json::Value& root = parsed.value();
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
    } else if (key == "kv_cache_memory_fraction") {
      if (!v.isNumeric() || v.isBool() || !(v.asDouble() > 0.0 && v.asDouble() <= 1.0)) {
        return Status::InvalidArgument("key 'kv_cache_memory_fraction' must be a number in (0, 1]");
      }
      c.kv_cache_memory_fraction = v.asDouble();
    } else if (key == "kv_cache_memory_bytes") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 1 << 16, int64_t{1} << 42, &c.kv_cache_memory_bytes));
    } else if (key == "kv_cache_dtype") {
      const std::string d = v.isString() ? v.asString() : "";
      if (d == "auto") c.kv_cache_dtype = kernels::KvCacheDType::kF32;
      else if (d == "fp32") c.kv_cache_dtype = kernels::KvCacheDType::kF32;
      else if (d == "bf16") c.kv_cache_dtype = kernels::KvCacheDType::kBF16;
      else if (d == "int8") c.kv_cache_dtype = kernels::KvCacheDType::kInt8;
      else return Status::InvalidArgument("key 'kv_cache_dtype' must be \"auto\", \"fp32\", \"bf16\" or \"int8\"");
    } else if (key == "weight_dtype") {
      auto d = parse_weight_dtype(v.isString() ? v.asString() : "");
      if (!d.ok()) return d.status().with_prefix("key 'weight_dtype'");
      c.weights.dtype = d.value();
    } else if (key == "weight_group_size") {
      if (!v.isInt() || (v.asInt() != 32 && v.asInt() != 64 && v.asInt() != 128)) {
        return Status::InvalidArgument("key 'weight_group_size' must be 32, 64 or 128");
      }
      c.weights.group_size = v.asInt();
    } else if (key == "weight_zero_points") {
      if (!v.isBool()) return Status::InvalidArgument("key 'weight_zero_points' must be true or false");
      c.weights.int4_zero_points = v.asBool();
    } else if (key == "stream_interval") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 1, 1024, &x));
      c.stream_interval = static_cast<int32_t>(x);
    } else if (key == "num_threads") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 0, 1024, &x));
      c.num_threads = static_cast<int32_t>(x);
    } else if (key == "instance_group") {
      FERRY_RETURN_IF_ERROR(parse_instance_group(v, &c));
    } else if (key == "idle_unload_seconds") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 0, int64_t{1} << 31, &c.idle_unload_seconds));
    } else if (key == "cuda_graphs") {
      if (!v.isBool()) return Status::InvalidArgument("key 'cuda_graphs' must be true or false");
      c.cuda_graphs = v.asBool();
    } else if (key == "enable_prefix_caching") {
      if (!v.isBool()) return Status::InvalidArgument("key 'enable_prefix_caching' must be true or false");
      c.enable_prefix_caching = v.asBool();
    } else if (key == "kv_warmup_prompts") {
      if (!v.isArray()) return Status::InvalidArgument("key 'kv_warmup_prompts' must be a list of strings");
      for (const auto& p : v) {
        if (!p.isString() || p.asString().empty()) return Status::InvalidArgument("key 'kv_warmup_prompts' must be a list of non-empty strings");
        c.kv_warmup_prompts.push_back(p.asString());
      }
    } else if (key == "max_num_batched_tokens") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 1, 1 << 24, &x));
      c.scheduler.max_num_batched_tokens = static_cast<int32_t>(x);
    } else if (key == "long_prefill_token_threshold") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 0, 1 << 24, &x));
      c.scheduler.long_prefill_token_threshold = static_cast<int32_t>(x);
    } else if (key == "scheduling_policy") {
      std::string p = v.isString() ? v.asString() : "";
      if (p == "fcfs") c.scheduler.policy = SchedulingPolicy::kFcfs;
      else if (p == "priority") c.scheduler.policy = SchedulingPolicy::kPriority;
      else if (p == "shortest_prompt_first") c.scheduler.policy = SchedulingPolicy::kShortestPromptFirst;
      else return Status::InvalidArgument("key 'scheduling_policy' must be \"fcfs\", \"priority\" or \"shortest_prompt_first\"");
    } else if (key == "priority_levels") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 1, 64, &x));
      c.scheduler.num_priority_levels = static_cast<int32_t>(x);
    } else if (key == "default_priority") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 0, 64, &x));
      c.scheduler.default_priority = static_cast<uint32_t>(x);
    } else if (key == "priority_level_config") {
      FERRY_RETURN_IF_ERROR(parse_levels(v, &c.scheduler));
    } else if (key == "tool_call_parser") {
      const std::string t = v.isString() ? v.asString() : "";
      if (t != "auto" && t != "none" && t != "llama3_json" && t != "hermes" && t != "mistral") {
        return Status::InvalidArgument(
            "key 'tool_call_parser' must be \"auto\", \"none\", \"llama3_json\", \"hermes\" or \"mistral\"");
      }
      c.tool_call_parser = t;
    } else if (key == "max_queue_delay_ms") {
      FERRY_RETURN_IF_ERROR(int_in(v, key, 0, 60000, &c.scheduler.max_queue_delay_ms));
    } else if (key == "speculative") {
      FERRY_RETURN_IF_ERROR(parse_speculative(v, &c.speculative));
    } else {
      return Status::InvalidArgument("unknown key '" + key + "' for the llm backend");
    }
  }
  c.scheduler.max_num_seqs = c.max_num_seqs;
  if (c.kv_cache_memory_fraction > 0.0 && !c.gpu) {
    return Status::InvalidArgument("key 'kv_cache_memory_fraction' applies to kind gpu instances only "
                                   "(size a cpu pool with kv_cache_memory_bytes)");
  }
  if (c.kv_cache_memory_fraction > 0.0 && c.kv_cache_num_blocks > 0) {
    return Status::InvalidArgument("keys 'kv_cache_memory_fraction' and 'kv_cache_num_blocks' exclude each other");
  }
  if (c.scheduler.max_num_batched_tokens < c.scheduler.max_num_seqs) {
    return Status::InvalidArgument("key 'max_num_batched_tokens' (" + std::to_string(c.scheduler.max_num_batched_tokens) +
                                   ") must be >= max_num_seqs (" + std::to_string(c.scheduler.max_num_seqs) + ")");
  }
  Status s = c.scheduler.validate();
  if (!s.ok()) return s;
  return c;
}

GpuEngineOptions gpu_engine_options(const LlmConfig& c, int instance) {
  GpuEngineOptions o;
  if (!c.gpu_ids.empty()) o.device = c.gpu_ids[static_cast<size_t>(instance) % c.gpu_ids.size()];
  o.weight_dtype = c.weights.dtype;
  o.weight_group_size = c.weights.group_size;
  o.weight_zero_points = c.weights.int4_zero_points;
  o.max_num_tokens = c.scheduler.max_num_batched_tokens;
  o.max_num_seqs = c.scheduler.max_num_seqs;
  o.cuda_graphs = c.cuda_graphs;
  return o;
}

GpuEngineOptions draft_gpu_engine_options(const LlmConfig& c, const WeightLoadOptions& draft_load, int instance) {
  GpuEngineOptions o = gpu_engine_options(c, instance);
  o.weight_dtype = draft_load.dtype;
  o.weight_group_size = draft_load.group_size;
  o.weight_zero_points = draft_load.int4_zero_points;
  return o;
}

std::string resolve_tool_call_parser(const std::string& configured, const std::string& chat_template) {
  if (configured == "none") return "";
  if (configured != "auto") return configured;
  if (chat_template.find("<tool_call>") != std::string::npos) return "hermes";
  if (chat_template.find("[TOOL_CALLS]") != std::string::npos) return "mistral";
  if (chat_template.find("<|python_tag|>") != std::string::npos || chat_template.find("ipython") != std::string::npos) {
    return "llama3_json";
  }
  return "";
}

}  // namespace ferry::llm
