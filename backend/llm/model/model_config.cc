#include "backend/llm/model/model_config.h"

#include "backend/llm/model/architecture.h"

#include <json/json.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "common/json_parse.h"

namespace ferry::llm {

namespace {

Result<Json::Value> parse_json(std::string_view text, const std::string& what) {
  auto root = parse_json_text(text, kJsonFileOptions);
  if (!root.ok()) return Status::InvalidArgument(what + ": not valid JSON: " + root.status().message());
  if (!root->isObject()) return Status::InvalidArgument(what + ": top level is not an object");
  return root;
}

bool present(const Json::Value& obj, const char* key) { return obj.isMember(key) && !obj[key].isNull(); }

// A required or defaulted positive integer key.
Result<int64_t> get_int(const Json::Value& obj, const char* key, std::optional<int64_t> fallback = std::nullopt) {
  if (!present(obj, key)) {
    if (fallback) return *fallback;
    return Status::InvalidArgument(std::string("config.json: missing key '") + key + "'");
  }
  const Json::Value& v = obj[key];
  if (!v.isInt64() || v.asInt64() <= 0) {  // isIntegral() also admits UInt64 values asInt64() throws on
    return Status::InvalidArgument(std::string("config.json: key '") + key + "' must be a positive integer");
  }
  return static_cast<int64_t>(v.asInt64());
}

Result<double> get_number(const Json::Value& obj, const char* key, double fallback, const char* where) {
  if (!present(obj, key)) return fallback;
  if (!obj[key].isNumeric()) {
    return Status::InvalidArgument(std::string(where) + ": key '" + key + "' must be a number");
  }
  return obj[key].asDouble();
}

Result<bool> get_bool(const Json::Value& obj, const char* key, bool fallback) {
  if (!present(obj, key)) return fallback;
  if (!obj[key].isBool()) return Status::InvalidArgument(std::string("config.json: key '") + key + "' must be a boolean");
  return obj[key].asBool();
}

// eos_token_id: an int or a list of ints.
Result<std::vector<int32_t>> get_token_ids(const Json::Value& v, const std::string& where) {
  std::vector<int32_t> ids;
  if (v.isInt()) {
    ids.push_back(v.asInt());
  } else if (v.isArray()) {
    for (const auto& e : v) {
      if (!e.isInt()) return Status::InvalidArgument(where + ": must be an integer or a list of integers");
      ids.push_back(e.asInt());
    }
  } else {
    return Status::InvalidArgument(where + ": must be an integer or a list of integers");
  }
  return ids;
}

// rope_scaling {"type": "longrope" or "su", "short_factor": [..], "long_factor": [..]} (Phi-3): each
// list has one divisor per rotated frequency. original_max_position_embeddings is read from
// rope_scaling first (newer HF configs), then from the top level (Phi-3's configs).
Status parse_longrope(const Json::Value& root, const Json::Value& rs, ModelConfig* c) {
  ModelConfig::LongRope lr;
  for (auto [key, out] : {std::pair<const char*, std::vector<float>*>{"short_factor", &lr.short_factor},
                          {"long_factor", &lr.long_factor}}) {
    const Json::Value& list = rs[key];
    if (!list.isArray() || static_cast<int64_t>(list.size()) != c->rotary_dim / 2) {
      return Status::InvalidArgument(std::string("config.json: rope_scaling.") + key + " must be a list of " +
                                     std::to_string(c->rotary_dim / 2) + " numbers (rotary dimension / 2)");
    }
    for (const auto& x : list) {
      if (!x.isNumeric() || x.asDouble() <= 0) {
        return Status::InvalidArgument(std::string("config.json: rope_scaling.") + key + " must hold numbers > 0");
      }
      out->push_back(static_cast<float>(x.asDouble()));
    }
  }
  const Json::Value& orig = present(rs, "original_max_position_embeddings") ? rs : root;
  FERRY_ASSIGN_OR_RETURN(lr.original_max_position_embeddings,
                         get_int(orig, "original_max_position_embeddings", c->max_position_embeddings));
  double attention_factor = 0;
  FERRY_ASSIGN_OR_RETURN(attention_factor, get_number(rs, "attention_factor", 0.0, "config.json rope_scaling"));
  if (attention_factor < 0) return Status::InvalidArgument("config.json: rope_scaling.attention_factor must be > 0");
  lr.attention_factor = static_cast<float>(attention_factor);
  c->longrope = std::move(lr);
  return Status::Ok();
}

Status parse_rope_scaling(const Json::Value& root, ModelConfig* c) {
  if (!present(root, "rope_scaling")) return Status::Ok();
  const Json::Value& rs = root["rope_scaling"];
  if (!rs.isObject()) return Status::InvalidArgument("config.json: key 'rope_scaling' must be an object or null");
  const Json::Value& type_value = rs.get("rope_type", rs.get("type", "default"));
  if (!type_value.isString()) return Status::InvalidArgument("config.json: rope_scaling.rope_type must be a string");
  std::string type = type_value.asString();
  auto number = [&](const char* key, double fallback) {
    return get_number(rs, key, fallback, "config.json rope_scaling");
  };
  if (type == "default") return Status::Ok();
  if (type == "longrope" || type == "su") return parse_longrope(root, rs, c);
  if (type != "llama3" && type != "linear") {
    return Status::Unimplemented("config.json: rope_scaling.rope_type '" + type +
                                 "' is not supported (supported: default, linear, llama3, longrope)");
  }
  auto factor = number("factor", 1.0);
  if (!factor.ok()) return factor.status();
  if (*factor <= 0) return Status::InvalidArgument("config.json: rope_scaling.factor must be > 0");
  c->rope.factor = static_cast<float>(*factor);
  if (type == "linear") {
    c->rope.scaling = kernels::RopeScaling::kLinear;
    return Status::Ok();
  }
  c->rope.scaling = kernels::RopeScaling::kLlama3;
  auto low = number("low_freq_factor", 1.0);
  auto high = number("high_freq_factor", 4.0);
  auto orig = number("original_max_position_embeddings", 8192.0);
  if (!low.ok()) return low.status();
  if (!high.ok()) return high.status();
  if (!orig.ok()) return orig.status();
  if (*high <= *low) {
    return Status::InvalidArgument("config.json: rope_scaling.high_freq_factor must exceed low_freq_factor");
  }
  c->rope.low_freq_factor = static_cast<float>(*low);
  c->rope.high_freq_factor = static_cast<float>(*high);
  c->rope.original_max_position_embeddings = static_cast<int64_t>(*orig);
  return Status::Ok();
}


// quantization_config of GPTQ and AWQ checkpoints (AutoGPTQ / AutoAWQ as saved by transformers).
Status parse_quantization(const Json::Value& root, QuantizationConfig* q) {
  if (!present(root, "quantization_config")) return Status::Ok();
  const Json::Value& qc = root["quantization_config"];
  const std::string where = "config.json: quantization_config";
  if (!qc.isObject()) return Status::InvalidArgument(where + " must be an object");
  const Json::Value& method = qc.get("quant_method", "");
  const std::string m = method.isString() ? method.asString() : "";
  if (m == "gptq") q->method = QuantizationConfig::Method::kGptq;
  else if (m == "awq") q->method = QuantizationConfig::Method::kAwq;
  else return Status::Unimplemented(where + ".quant_method '" + m + "' is not supported (supported: gptq, awq)");
  const Json::Value& bits = qc.get("bits", qc.get("w_bit", 4));
  if (!bits.isInt() || (bits.asInt() != 4 && bits.asInt() != 8) ||
      (q->method == QuantizationConfig::Method::kAwq && bits.asInt() != 4)) {
    return Status::Unimplemented(where + ".bits must be 4 or 8 for GPTQ, 4 for AWQ");
  }
  q->bits = bits.asInt();
  const Json::Value& group = qc.get("group_size", qc.get("q_group_size", 128));
  if (!group.isInt() || (group.asInt() != -1 && group.asInt() < 1)) {
    return Status::InvalidArgument(where + ".group_size must be -1 or a positive integer");
  }
  q->group_size = group.asInt() == -1 ? 0 : group.asInt();
  const Json::Value& sym = qc.get("sym", true);
  const Json::Value& desc = qc.get("desc_act", false);
  if (!sym.isBool() || !desc.isBool()) return Status::InvalidArgument(where + ": sym and desc_act must be booleans");
  q->sym = sym.asBool();
  q->desc_act = desc.asBool();
  const Json::Value& format = qc.get("checkpoint_format", "gptq");
  q->gptq_v2 = format.isString() && format.asString() == "gptq_v2";
  if (q->method == QuantizationConfig::Method::kAwq) {
    const Json::Value& version = qc.get("version", "gemm");
    const std::string v = version.isString() ? version.asString() : "";
    if (v != "gemm" && v != "GEMM") {
      return Status::Unimplemented(where + ".version '" + v + "' is not supported (supported: gemm)");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<ModelConfig> parse_model_config(std::string_view json_text) {
  auto parsed = parse_json(json_text, "config.json");
  if (!parsed.ok()) return parsed.status();
  const Json::Value& root = parsed.value();
  ModelConfig c;

  if (!root["architectures"].isArray() || root["architectures"].empty() || !root["architectures"][0].isString()) {
    return Status::InvalidArgument("config.json: key 'architectures' must be a non-empty list of names");
  }
  c.architecture_name = root["architectures"][0].asString();
  const ArchitectureInfo* arch = find_architecture(c.architecture_name);
  if (arch == nullptr) {
    return Status::Unimplemented("config.json: architectures[0] '" + c.architecture_name +
                                 "' is not supported (supported: " + supported_architectures() + ")");
  }
  FERRY_ASSIGN_OR_RETURN(c.hidden_size, get_int(root, "hidden_size"));
  FERRY_ASSIGN_OR_RETURN(c.intermediate_size, get_int(root, "intermediate_size"));
  FERRY_ASSIGN_OR_RETURN(c.num_layers, get_int(root, "num_hidden_layers"));
  FERRY_ASSIGN_OR_RETURN(c.num_heads, get_int(root, "num_attention_heads"));
  FERRY_ASSIGN_OR_RETURN(c.num_kv_heads, get_int(root, "num_key_value_heads", c.num_heads));
  FERRY_ASSIGN_OR_RETURN(c.vocab_size, get_int(root, "vocab_size"));
  FERRY_ASSIGN_OR_RETURN(c.max_position_embeddings, get_int(root, "max_position_embeddings", 2048));
  if (present(root, "head_dim")) {
    FERRY_ASSIGN_OR_RETURN(c.head_dim, get_int(root, "head_dim"));
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return Status::InvalidArgument("config.json: 'hidden_size' is not a multiple of 'num_attention_heads' "
                                     "and no 'head_dim' is given");
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) return Status::InvalidArgument("config.json: 'head_dim' must be even for RoPE");
  // Real models use 64-256; the bound keeps the arithmetic below (double products cast back to
  // int64) exact and in range (model_config_fuzzer: hidden_size 2^63 - 2 with one head).
  constexpr int64_t kMaxHeadDim = int64_t{1} << 20;
  if (c.head_dim > kMaxHeadDim) {
    return Status::InvalidArgument("config.json: 'head_dim' (or hidden_size / num_attention_heads) is " +
                                   std::to_string(c.head_dim) + ", over " + std::to_string(kMaxHeadDim));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return Status::InvalidArgument("config.json: 'num_attention_heads' must be a multiple of 'num_key_value_heads'");
  }
  double eps = 0, theta = 0;
  FERRY_ASSIGN_OR_RETURN(eps, get_number(root, "rms_norm_eps", 1e-6, "config.json"));
  FERRY_ASSIGN_OR_RETURN(theta, get_number(root, "rope_theta", 10000.0, "config.json"));
  if (eps <= 0) return Status::InvalidArgument("config.json: key 'rms_norm_eps' must be > 0");
  if (theta <= 0) return Status::InvalidArgument("config.json: key 'rope_theta' must be > 0");
  c.rms_norm_eps = static_cast<float>(eps);
  c.rope.theta = static_cast<float>(theta);
  double rotary_fraction = 1;
  FERRY_ASSIGN_OR_RETURN(rotary_fraction, get_number(root, "partial_rotary_factor", 1.0, "config.json"));
  // HF: int(head_dim * partial_rotary_factor) dimensions rotate.
  c.rotary_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * rotary_fraction);
  if (rotary_fraction <= 0 || rotary_fraction > 1 || c.rotary_dim < 2 || c.rotary_dim % 2 != 0) {
    return Status::InvalidArgument("config.json: key 'partial_rotary_factor' must be in (0, 1] and leave an even "
                                   "number of rotated dimensions");
  }
  FERRY_RETURN_IF_ERROR(parse_rope_scaling(root, &c));

  const Json::Value& act_value = root.get("hidden_act", root.get("hidden_activation", "silu"));
  if (!act_value.isString()) return Status::InvalidArgument("config.json: key 'hidden_act' must be a string");
  c.hidden_act = act_value.asString();
  FERRY_ASSIGN_OR_RETURN(c.tie_word_embeddings, get_bool(root, "tie_word_embeddings", false));
  const Json::Value& dtype = present(root, "torch_dtype") ? root["torch_dtype"] : root["dtype"];
  const std::string dtype_name = dtype.isString() ? dtype.asString() : "float32";
  if (dtype_name == "float32") {
    c.dtype = kernels::DType::kF32;
  } else if (dtype_name == "bfloat16") {
    c.dtype = kernels::DType::kBF16;
  } else if (dtype_name == "float16") {
    c.dtype = kernels::DType::kF16;
  } else {
    return Status::Unimplemented("config.json: torch_dtype '" + dtype_name + "' is not supported");
  }
  const Json::Value& use_sliding_window = root.get("use_sliding_window", true);
  if (present(root, "sliding_window") && root["sliding_window"].isInt64() &&
      (!use_sliding_window.isBool() || use_sliding_window.asBool())) {
    c.sliding_window = root["sliding_window"].asInt64();
  }
  FERRY_RETURN_IF_ERROR(parse_quantization(root, &c.quantization));
  if (present(root, "bos_token_id")) {
    if (!root["bos_token_id"].isInt()) return Status::InvalidArgument("config.json: key 'bos_token_id' must be an integer");
    c.bos_token_id = root["bos_token_id"].asInt();
  }
  if (present(root, "eos_token_id")) {
    FERRY_ASSIGN_OR_RETURN(c.eos_token_ids, get_token_ids(root["eos_token_id"], "config.json: key 'eos_token_id'"));
  }
  // The architecture's own keys (biases, norms, activation, soft-caps, windows).
  FERRY_RETURN_IF_ERROR(arch->configure(root, &c));
  return c;
}

Status apply_generation_config(std::string_view json_text, ModelConfig* config) {
  auto parsed = parse_json(json_text, "generation_config.json");
  if (!parsed.ok()) return parsed.status();
  const Json::Value& root = parsed.value();
  if (present(root, "eos_token_id")) {
    auto ids = get_token_ids(root["eos_token_id"], "generation_config.json: key 'eos_token_id'");
    if (!ids.ok()) return ids.status();
    config->eos_token_ids = std::move(ids).value();
  }
  if (present(root, "bos_token_id")) {
    if (!root["bos_token_id"].isInt()) {
      return Status::InvalidArgument("generation_config.json: key 'bos_token_id' must be an integer");
    }
    config->bos_token_id = root["bos_token_id"].asInt();
  }
  return Status::Ok();
}

Result<std::string> read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::Internal("cannot read " + path.string());
  return ss.str();
}

Result<ModelConfig> load_model_config(const std::filesystem::path& model_dir) {
  auto text = read_text_file(model_dir / "config.json");
  if (!text.ok()) return text.status();
  auto config = parse_model_config(text.value());
  if (!config.ok()) return config.status().with_prefix(model_dir.string());
  const auto gen_path = model_dir / "generation_config.json";
  if (std::filesystem::exists(gen_path)) {
    auto gen = read_text_file(gen_path);
    if (!gen.ok()) return gen.status();
    FERRY_RETURN_IF_ERROR(apply_generation_config(gen.value(), &config.value()).with_prefix(model_dir.string()));
  }
  return config;
}

}  // namespace ferry::llm
