// engine_bench: CPU forward-pass throughput of the ferry engine (prefill and decode tokens/s).
//
// Not a test: prints figures for perf/RESULTS.md. Usage:
//   engine_bench --model DIR            an HF folder (config.json + safetensors)
//   engine_bench --dummy SHAPE          random weights: "100m" (Llama, ~110M params), "tiny", or an HF
//                                       folder whose config.json gives the shape (e.g. the demo model)
//   options: --prompt N (prefill length, default 128) --decode N (decode steps, default 64)
//            --batch B (sequences decoded together, default 1) --reference (plain-loop kernels)
//            --threads T (the engine's own pool of T threads; default: the process-wide pool, all cores)
//            --kv-dtype fp32|bf16|int8 (KV cache element type, default fp32)
//            --weight-dtype auto|fp32|bf16|fp16|int8|int4 (weight format, default auto = checkpoint's)
//            --group G (int4 group size, default 32)
//            --draft K (speculative decoding's verification cost: every decode step computes, per
//            sequence, its token plus K more, with the logits of all 1 + K; default 0)
//   "--dummy 1b" is TinyLlama-1.1B's shape (22 layers, hidden 2048, 32 heads / 4 KV heads, bf16).
// Prefill: B sequences of N tokens, each in one forward pass (one pass per sequence).
// Decode: B sequences step together, one token each per forward pass; tokens/s counts all B; "cpu
// ms/step" is the process CPU time per step (all threads, spinning pool workers included).
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fstream>

#include "backend/llm/engine/cpu_engine.h"

using namespace ferry;
using namespace ferry::llm;

namespace {

const char* kDummy100M = R"({"architectures":["LlamaForCausalLM"],"hidden_size":768,"intermediate_size":2048,
  "num_hidden_layers":12,"num_attention_heads":12,"num_key_value_heads":4,"vocab_size":32000,
  "max_position_embeddings":4096,"rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":true})";
const char* kDummy1B = R"({"architectures":["LlamaForCausalLM"],"hidden_size":2048,"intermediate_size":5632,
  "num_hidden_layers":22,"num_attention_heads":32,"num_key_value_heads":4,"vocab_size":32000,
  "max_position_embeddings":2048,"rms_norm_eps":1e-5,"rope_theta":10000.0,"torch_dtype":"bfloat16"})";
const char* kDummyTiny = R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,
  "num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,
  "max_position_embeddings":512,"tie_word_embeddings":true})";

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of the whole process (all its threads, spinning workers included), in seconds: on a
// shared machine the wall clock also counts the time other processes held the cores.
double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Resident set of this process, from /proc/self/status (MiB; 0 where unavailable).
double rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

int fail(const Status& s) {
  std::fprintf(stderr, "engine_bench: %s\n", s.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, dummy;
  int prompt_len = 128, decode_steps = 64, batch = 1;
  kernels::Backend backend = kernels::Backend::kCpu;
  kernels::KvCacheDType kv_dtype = kernels::KvCacheDType::kF32;
  WeightLoadOptions load;
  int threads = 0, draft = 0;
  bool bad_arg = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model") model_dir = next();
    else if (a == "--dummy") dummy = next();
    else if (a == "--prompt") prompt_len = std::atoi(next());
    else if (a == "--decode") decode_steps = std::atoi(next());
    else if (a == "--batch") batch = std::atoi(next());
    else if (a == "--reference") backend = kernels::Backend::kReference;
    else if (a == "--threads") threads = std::atoi(next());
    else if (a == "--draft") draft = std::atoi(next());
    else if (a == "--group") load.group_size = std::atoi(next());
    else if (a == "--weight-dtype") {
      auto d = parse_weight_dtype(next());
      if (d.ok()) load.dtype = d.value();
      else bad_arg = true;
    } else if (a == "--kv-dtype") {
      const std::string d = next();
      if (d == "fp32") kv_dtype = kernels::KvCacheDType::kF32;
      else if (d == "bf16") kv_dtype = kernels::KvCacheDType::kBF16;
      else if (d == "int8") kv_dtype = kernels::KvCacheDType::kInt8;
      else bad_arg = true;
    } else bad_arg = true;
    if (bad_arg) {
      std::fprintf(stderr, "usage: engine_bench (--model DIR | --dummy 100m|tiny) [--prompt N] [--decode N] "
                           "[--batch B] [--reference] [--threads T] [--kv-dtype fp32|bf16|int8] [--weight-dtype D] [--group G]\n");
      return 2;
    }
  }
  if (prompt_len < 1 || decode_steps < 0 || batch < 1 || draft < 0) return fail(Status::InvalidArgument("bad sizes"));

  Result<ModelConfig> config = Status::InvalidArgument("give --model DIR or --dummy SHAPE");
  if (!model_dir.empty()) config = load_model_config(model_dir);
  else if (dummy == "100m") config = parse_model_config(kDummy100M);
  else if (dummy == "tiny") config = parse_model_config(kDummyTiny);
  else if (dummy == "1b") config = parse_model_config(kDummy1B);
  else if (!dummy.empty()) config = load_model_config(dummy);
  if (!config.ok()) return fail(config.status());
  Result<ModelWeights> weights = model_dir.empty() ? Result<ModelWeights>(ModelWeights::dummy(config.value(), 1))
                                                   : ModelWeights::load_safetensors(config.value(), model_dir);
  if (!weights.ok()) return fail(weights.status());
  if (prompt_len + decode_steps + draft > config->max_position_embeddings) {
    return fail(Status::InvalidArgument("prompt + decode exceeds max_position_embeddings"));
  }
  const double t_load = now_s();
  CpuEngineOptions options;
  options.backend = backend;
  options.num_threads = threads;
  auto engine = CpuEngine::create(config.value(), weights.value(), options, load);
  if (!engine.ok()) return fail(engine.status());
  const double load_s = now_s() - t_load;

  const int64_t block_size = 16;
  const int64_t blocks_per_seq = (prompt_len + decode_steps + draft + block_size - 1) / block_size;
  KvCacheOptions kv;
  kv.num_blocks = blocks_per_seq * batch;
  kv.block_size = block_size;
  kv.dtype = kv_dtype;
  auto blocks = (*engine)->allocate_kv_cache(kv);
  if (!blocks.ok()) return fail(blocks.status());
  std::vector<std::vector<int32_t>> tables(batch);
  for (int b = 0; b < batch; ++b)
    for (int64_t i = 0; i < blocks_per_seq; ++i) tables[b].push_back(static_cast<int32_t>(b * blocks_per_seq + i));

  const int64_t vocab = config->vocab_size;
  ForwardOutput out;
  std::vector<int32_t> last(batch);
  // Prefill: one pass per sequence over its whole prompt.
  double prefill_s = 0;
  for (int b = 0; b < batch; ++b) {
    std::vector<int32_t> ids(prompt_len), pos(prompt_len);
    for (int i = 0; i < prompt_len; ++i) {
      ids[i] = static_cast<int32_t>((i * 131 + b * 17 + 1) % vocab);
      pos[i] = i;
    }
    std::vector<SequenceInput> seqs = {{0, prompt_len, prompt_len, tables[b]}};
    const double t0 = now_s();
    Status st = (*engine)->forward({ids, pos, seqs}, &out);
    prefill_s += now_s() - t0;
    if (!st.ok()) return fail(st);
    kernels::argmax({}, &last[b], out.row(0), 1, vocab);
  }
  // Decode: all sequences together, one token each per step (plus --draft more), greedy.
  const double t1 = now_s(), c1 = cpu_s();
  const int q = 1 + draft;
  for (int step = 0; step < decode_steps; ++step) {
    const int32_t ctx = prompt_len + step + 1;
    std::vector<int32_t> ids, pos;
    std::vector<SequenceInput> seqs;
    for (int b = 0; b < batch; ++b) {
      for (int j = 0; j < q; ++j) {
        ids.push_back(last[b]);
        pos.push_back(ctx - 1 + j);
      }
      seqs.push_back({b * q, q, ctx + draft, tables[b]});
    }
    Status st = (*engine)->forward({ids, pos, seqs, /*all_logits=*/draft > 0}, &out);
    if (!st.ok()) return fail(st);
    for (int b = 0; b < batch; ++b) kernels::argmax({}, &last[b], out.row(b * q), 1, vocab);
  }
  const double decode_s = now_s() - t1, decode_cpu_s = cpu_s() - c1;

  double params = static_cast<double>(weights->num_parameters());
  std::printf("model: %s (%.1fM params, %s)  kernels: %s (%s)  weights: %s, %.1f MiB\n",
              model_dir.empty() ? ("dummy " + dummy).c_str() : model_dir.c_str(), params / 1e6,
              config->architecture_name.c_str(), backend == kernels::Backend::kCpu ? "cpu" : "reference",
              kernels::cpu_isa_name(), weight_dtype_name(load.dtype),
              static_cast<double>((*engine)->model().weight_bytes()) / (1 << 20));
  std::printf("load: %.2f s  kv cache: %s, %.1f MiB  rss: %.0f MiB\n", load_s, kernels::kv_cache_dtype_name(kv_dtype),
              static_cast<double>((*engine)->kv_block_bytes(block_size, kv_dtype) * blocks.value()) / (1 << 20),
              rss_mib());
  std::printf("prefill: %d seq x %d tokens in %.3f s = %.1f tokens/s\n", batch, prompt_len, prefill_s,
              batch * prompt_len / prefill_s);
  if (decode_steps > 0) {
    std::printf("decode:  %d seq x %d steps (query %d per seq) in %.3f s = %.1f tokens/s (%.2f ms/step, "
                "cpu %.2f ms/step)\n",
                batch, decode_steps, q, decode_s, batch * decode_steps / decode_s, 1e3 * decode_s / decode_steps,
                1e3 * decode_cpu_s / decode_steps);
  }
  return 0;
}
