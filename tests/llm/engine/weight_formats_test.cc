// Accuracy of each weight format on stories260K (a real trained model, fp32 checkpoint), against
// the same model computed from fp32 weights and against llama2.c's golden greedy continuations:
//   max |logit difference| (teacher-forced over prompt + golden continuation, every position),
//   argmax agreement at those positions, perplexity of the golden continuation, and free-running
//   greedy tokens that match the golden continuation before the first divergence.
// The figures are printed (perf/RESULTS.md records them); the bounds are the measurements with a
// margin, so that a broken format (wrong scale, wrong nibble order: logits off by O(1-10)) fails.
#include <gtest/gtest.h>
#include <json/json.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "backend/llm/engine/cpu_engine.h"
#include "kernels/cpu/linear.h"
#include "tests/llm/engine/testdata.h"
#include "backend/llm/engine/kv_cache_storage.h"

namespace ferry::llm {
namespace {

struct Format {
  const char* name;
  WeightLoadOptions load;
  float max_logit_diff;       // bound on max |logit - fp32 logit| over every position
  double min_argmax_agree;    // fraction of positions whose argmax equals fp32's
  double max_ppl_ratio;       // perplexity / fp32 perplexity
  int64_t min_leading;        // greedy tokens equal to golden before the first divergence (per case, capped)
};

WeightLoadOptions opts(WeightDType d, int64_t group = 32, bool zeros = false) {
  WeightLoadOptions o;
  o.dtype = d;
  o.group_size = group;
  o.int4_zero_points = zeros;
  return o;
}

// A sequence run through one engine with its own blocks.
std::vector<std::vector<float>> all_logits(CpuEngine& e, const std::vector<int32_t>& tokens) {
  std::vector<int32_t> table;
  SimpleBlockAllocator alloc(64);
  FERRY_CHECK(alloc.ensure_capacity(&table, static_cast<int64_t>(tokens.size()), 16));
  std::vector<int32_t> pos(tokens.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  std::vector<SequenceInput> seqs = {{0, static_cast<int32_t>(tokens.size()), static_cast<int32_t>(tokens.size()), table}};
  ForwardOutput out;
  FERRY_CHECK(e.forward({tokens, pos, seqs, true}, &out).ok());
  std::vector<std::vector<float>> rows;
  for (int64_t r = 0; r < out.num_rows; ++r) rows.emplace_back(out.row(r), out.row(r) + out.vocab);
  return rows;
}

std::vector<int32_t> greedy(CpuEngine& e, const std::vector<int32_t>& prompt, size_t n) {
  std::vector<int32_t> table, tokens = prompt, out_ids;
  SimpleBlockAllocator alloc(64);
  int32_t done = 0;
  ForwardOutput out;
  while (out_ids.size() < n) {
    FERRY_CHECK(alloc.ensure_capacity(&table, static_cast<int64_t>(tokens.size()), 16));
    const int32_t q = static_cast<int32_t>(tokens.size()) - done;
    std::vector<int32_t> ids(tokens.begin() + done, tokens.end()), pos;
    for (int32_t i = 0; i < q; ++i) pos.push_back(done + i);
    std::vector<SequenceInput> seqs = {{0, q, static_cast<int32_t>(tokens.size()), table}};
    FERRY_CHECK(e.forward({ids, pos, seqs}, &out).ok());
    done = static_cast<int32_t>(tokens.size());
    int32_t best = 0;
    for (int64_t j = 1; j < out.vocab; ++j)
      if (out.row(0)[j] > out.row(0)[best]) best = static_cast<int32_t>(j);
    out_ids.push_back(best);
    tokens.push_back(best);
  }
  return out_ids;
}

TEST(WeightFormats, Stories260KAccuracyPerFormat) {
  const auto dir = testdata() / "stories260K-hf-format.derived";
  const auto golden_path = testdata() / "llama2c-stories260K" / "golden_outputs.derived.json";
  if (testdata().empty() || !std::filesystem::exists(dir / "model.safetensors") || !std::filesystem::exists(golden_path)) {
    GTEST_SKIP() << "stories260K or its golden outputs not found under FERRY_TESTDATA=" << testdata();
  }
  auto config = load_model_config(dir);
  ASSERT_TRUE(config.ok());
  auto weights = ModelWeights::load_safetensors(config.value(), dir);
  ASSERT_TRUE(weights.ok());
  Json::Value golden;
  {
    std::ifstream in(golden_path);
    Json::CharReaderBuilder b;
    std::string errs;
    ASSERT_TRUE(Json::parseFromStream(b, in, &golden, &errs));
  }
  // Bounds: measured (printed below) with a margin; see perf/RESULTS.md "Weight formats".
  // Measured 2026-12-02 (max |dlogit|, worst argmax agreement, worst ppl ratio, fewest leading
  // greedy tokens over the three cases): bf16 0.114, 0.992, 1.001, 60/60 (185 on the long cases);
  // fp16 0.012, 1.0, 1.000, all; int8 0.32, 0.984, 1.004, 57 (61); int4 g32 5.3, 0.89, 1.12, 16;
  // int4 g32 with zero points 4.1, 0.90, 1.05, 34. stories260K is 260K parameters with rows of 64:
  // quantization error per weight reaches the logits nearly undamped, unlike a 1B model.
  // all_logits runs whole sequences (prefill-sized m): where the linear path computes 16-bit
  // weights at bf16 precision (the AMX GEMM rounds x, and fp16 weights, to bf16), fp16 is held to
  // bf16's bounds (measured on the AMX path: 0.157, 0.995 (199/200), 1.001, all 60/200/256 greedy
  // tokens).
  const bool bf16_gemm = kernels::cpu::linear_rounds_to_bf16(kernels::WeightFormat::kF16, 64);
  const Format formats[] = {
      {"bf16", opts(WeightDType::kBF16), 0.25f, 0.98, 1.01, 150},
      {"fp16", opts(WeightDType::kF16), bf16_gemm ? 0.25f : 0.03f, bf16_gemm ? 0.98 : 0.99,
       bf16_gemm ? 1.01 : 1.002, bf16_gemm ? 150 : 200},
      {"int8", opts(WeightDType::kInt8), 0.6f, 0.95, 1.02, 40},
      {"int4 g32", opts(WeightDType::kInt4, 32), 8.0f, 0.80, 1.20, 8},
      {"int4 g32 zero points", opts(WeightDType::kInt4, 32, true), 7.0f, 0.80, 1.15, 20},
  };
  auto base = CpuEngine::create(config.value(), weights.value(), {}, opts(WeightDType::kF32));
  ASSERT_TRUE(base.ok());
  KvCacheOptions kv;
  kv.num_blocks = 64;
  ASSERT_TRUE((*base)->allocate_kv_cache(kv).ok());
  const int64_t vocab = config->vocab_size;
  for (const Format& f : formats) {
    SCOPED_TRACE(f.name);
    auto e = CpuEngine::create(config.value(), weights.value(), {}, f.load);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    ASSERT_TRUE((*e)->allocate_kv_cache(kv).ok());
    for (const char* name : {"prompt_once_upon_a_time_greedy_64", "bos_only_greedy_200", "bos_only_greedy_256_default_steps"}) {
      const Json::Value* c = nullptr;
      for (const auto& x : golden["cases"])
        if (x["name"].asString() == name) c = &x;
      ASSERT_NE(c, nullptr) << name;
      std::vector<int32_t> prompt, expected;
      for (const auto& x : (*c)["prompt_token_ids"]) prompt.push_back(x.asInt());
      for (const auto& x : (*c)["generated_token_ids"]) expected.push_back(x.asInt());
      std::vector<int32_t> tokens = prompt;
      tokens.insert(tokens.end(), expected.begin(), expected.end() - 1);
      const auto ref = all_logits(**base, tokens), got = all_logits(**e, tokens);
      float max_diff = 0;
      int agree = 0;
      double nll_ref = 0, nll_got = 0;
      auto nll = [&](const std::vector<float>& row, int32_t target) {
        double m = row[0], sum = 0;
        for (float v : row) m = std::max<double>(m, v);
        for (float v : row) sum += std::exp(v - m);
        return -(row[static_cast<size_t>(target)] - m - std::log(sum));
      };
      auto argmax = [&](const std::vector<float>& row) {
        return std::max_element(row.begin(), row.end()) - row.begin();
      };
      for (size_t p = 0; p < ref.size(); ++p) {
        for (int64_t j = 0; j < vocab; ++j) max_diff = std::max(max_diff, std::fabs(ref[p][j] - got[p][j]));
        agree += argmax(ref[p]) == argmax(got[p]);
        if (p + 1 >= prompt.size()) {  // positions that predict a golden continuation token
          nll_ref += nll(ref[p], expected[p + 1 - prompt.size()]);
          nll_got += nll(got[p], expected[p + 1 - prompt.size()]);
        }
      }
      const double n = static_cast<double>(expected.size());
      const double ppl_ref = std::exp(nll_ref / n), ppl = std::exp(nll_got / n);
      const auto gen = greedy(**e, prompt, expected.size());
      size_t leading = 0;
      while (leading < expected.size() && gen[leading] == expected[leading]) ++leading;
      std::printf("weights %-22s %-36s max|dlogit| %.4f  argmax %zu/%zu  ppl %.4f (fp32 %.4f)  greedy leading %zu/%zu\n",
                  f.name, name, max_diff, static_cast<size_t>(agree), ref.size(), ppl, ppl_ref, leading, expected.size());
      EXPECT_LE(max_diff, f.max_logit_diff);
      EXPECT_GE(agree, f.min_argmax_agree * static_cast<double>(ref.size()));
      EXPECT_LE(ppl / ppl_ref, f.max_ppl_ratio);
      EXPECT_GE(static_cast<int64_t>(leading), std::min<int64_t>(f.min_leading, static_cast<int64_t>(expected.size())));
    }
  }
}

}  // namespace
}  // namespace ferry::llm
