// make_checkpoint: writes a HuggingFace model folder (config.json, model.safetensors, tokenizer files)
// holding ModelWeights::dummy's values, so that ferry (reading the folder) and another engine (after
// converting the folder, e.g. to GGUF) compute with identical weights.
//
// Not a test: a tool for the side-by-side measurements in perf/RESULTS.md. Usage:
//   make_checkpoint --out DIR [--shape 1b|100m|CONFIG_JSON_FILE] [--seed S] [--dtype bf16|f32]
//                   [--tokenizer DIR]
//   --shape 1b (default) is TinyLlama-1.1B's shape (22 layers, hidden 2048, intermediate 5632, 32 heads /
//     4 KV heads, vocab 32000, untied lm_head), the same config as `engine_bench --dummy 1b`.
//   --seed (default 1, engine_bench's) picks the values: the folder's tensors equal
//     ModelWeights::dummy(config, seed).read_f32(name), rounded to bf16 (round to nearest even, the
//     rounding ferry's loader applies to dummy weights of a bf16 config), or stored as fp32.
//   --tokenizer DIR: tokenizer.json, tokenizer_config.json, special_tokens_map.json, tokenizer.model
//     and generation_config.json are copied from DIR when present (e.g.
//     $FERRY_TESTDATA/hf-tokenizer-llama2, the Llama 2 tokenizer TinyLlama uses).
// The file is written tensor by tensor (one tensor's fp32 values in memory at a time).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "backend/llm/model/model_config.h"
#include "backend/llm/model/model_weights.h"
#include "kernels/kernels.h"

using namespace ferry;
using namespace ferry::llm;
namespace fs = std::filesystem;

namespace {

// TinyLlama-1.1B (TinyLlama/TinyLlama-1.1B-Chat-v1.0's config.json, its shape and token ids).
const char* kConfig1B = R"({
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 2048,
  "intermediate_size": 5632,
  "num_hidden_layers": 22,
  "num_attention_heads": 32,
  "num_key_value_heads": 4,
  "vocab_size": 32000,
  "max_position_embeddings": 2048,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "hidden_act": "silu",
  "attention_bias": false,
  "tie_word_embeddings": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "bfloat16"
}
)";

// engine_bench's "100m" shape, written with the Llama 2 vocabulary size.
const char* kConfig100M = R"({
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 768,
  "intermediate_size": 2048,
  "num_hidden_layers": 12,
  "num_attention_heads": 12,
  "num_key_value_heads": 4,
  "vocab_size": 32000,
  "max_position_embeddings": 4096,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "hidden_act": "silu",
  "tie_word_embeddings": true,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "bfloat16"
}
)";

std::string shape_json(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int usage() {
  std::fprintf(stderr,
               "usage: make_checkpoint --out DIR [--shape 1b|100m|CONFIG_JSON_FILE] [--seed S] [--dtype bf16|f32] "
               "[--tokenizer DIR]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir, shape = "1b", dtype = "bf16", tokenizer_dir;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (a == "--out") out_dir = v;
    else if (a == "--shape") shape = v;
    else if (a == "--seed") seed = std::strtoull(v, nullptr, 10);
    else if (a == "--dtype") dtype = v;
    else if (a == "--tokenizer") tokenizer_dir = v;
    else return usage();
  }
  if (out_dir.empty() || (dtype != "bf16" && dtype != "f32")) return usage();

  std::string config_text;
  if (shape == "1b") config_text = kConfig1B;
  else if (shape == "100m") config_text = kConfig100M;
  else {
    std::ifstream in(shape, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "make_checkpoint: cannot read %s\n", shape.c_str());
      return 1;
    }
    config_text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto config = parse_model_config(config_text);
  if (!config.ok()) {
    std::fprintf(stderr, "make_checkpoint: %s\n", config.status().to_string().c_str());
    return 1;
  }
  const ModelWeights weights = ModelWeights::dummy(config.value(), seed);

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) {
    std::fprintf(stderr, "make_checkpoint: cannot create %s: %s\n", out_dir.c_str(), ec.message().c_str());
    return 1;
  }
  std::ofstream(fs::path(out_dir) / "config.json", std::ios::binary) << config_text;

  // Header: every planned tensor, back to back, in plan order.
  const size_t elem = dtype == "bf16" ? 2 : 4;
  std::string header = "{\"__metadata__\":{\"format\":\"pt\",\"generator\":\"ferry perf/make_checkpoint seed " +
                       std::to_string(seed) + "\"}";
  size_t offset = 0;
  for (const WeightSpec& s : weights.specs()) {
    const size_t bytes = static_cast<size_t>(s.numel()) * elem;
    header += ",\"" + s.name + "\":{\"dtype\":\"" + (elem == 2 ? "BF16" : "F32") + "\",\"shape\":" +
              shape_json(s.shape) + ",\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';

  const fs::path path = fs::path(out_dir) / "model.safetensors";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t len = header.size();
  char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  out.write(len_bytes, 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));

  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  for (const WeightSpec& s : weights.specs()) {
    const size_t n = static_cast<size_t>(s.numel());
    f32.resize(n);
    Status st = weights.read_f32(s.name, f32.data());
    if (!st.ok()) {
      std::fprintf(stderr, "make_checkpoint: %s\n", st.to_string().c_str());
      return 1;
    }
    if (elem == 2) {
      bf16.resize(n);
      for (size_t i = 0; i < n; ++i) bf16[i] = kernels::f32_to_bf16(f32[i]);
      out.write(reinterpret_cast<const char*>(bf16.data()), static_cast<std::streamsize>(n * 2));
    } else {
      out.write(reinterpret_cast<const char*>(f32.data()), static_cast<std::streamsize>(n * 4));
    }
  }
  out.close();
  if (!out) {
    std::fprintf(stderr, "make_checkpoint: writing %s failed\n", path.c_str());
    return 1;
  }

  int copied = 0;
  if (!tokenizer_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                          "generation_config.json"}) {
      const fs::path src = fs::path(tokenizer_dir) / f;
      if (!fs::exists(src)) continue;
      fs::copy_file(src, fs::path(out_dir) / f, fs::copy_options::overwrite_existing, ec);
      if (ec) {
        std::fprintf(stderr, "make_checkpoint: copying %s: %s\n", src.c_str(), ec.message().c_str());
        return 1;
      }
      ++copied;
    }
  }
  std::printf("wrote %s: %zu tensors, %.1fM parameters, %s, %.1f MiB of data (seed %llu); %d tokenizer files\n",
              out_dir.c_str(), weights.specs().size(), static_cast<double>(weights.num_parameters()) / 1e6,
              dtype.c_str(), static_cast<double>(offset) / (1 << 20), static_cast<unsigned long long>(seed), copied);
  return 0;
}
