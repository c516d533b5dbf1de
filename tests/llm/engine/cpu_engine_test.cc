// The CPU forward pass: stories260K against llama2.c's golden logits and greedy continuations, and
// batching invariants (batched == alone, prefill+decode == full prefill, chunked prefill) on the
// real model and on small dummy Qwen2 (biases) / Qwen3 (q/k norm) / Llama 3 (rope scaling) shapes.
#include <gtest/gtest.h>
#include <json/json.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include <unistd.h>

#include "backend/llm/engine/cpu_engine.h"
#include "tests/llm/engine/testdata.h"

namespace ferry::llm {
namespace {

// Drives an engine with a private cache and per-sequence block tables.
class Runner {
 public:
  Runner(std::unique_ptr<CpuEngine> engine, int64_t num_blocks = 256, int64_t block_size = 16,
         kernels::KvCacheDType dtype = kernels::KvCacheDType::kF32)
      : engine_(std::move(engine)), alloc_(num_blocks), block_size_(block_size) {
    KvCacheOptions kv;
    kv.num_blocks = num_blocks;
    kv.block_size = block_size;
    kv.dtype = dtype;
    FERRY_CHECK(engine_->allocate_kv_cache(kv).ok());
  }

  int new_sequence() {
    tables_.emplace_back();
    lens_.push_back(0);
    return static_cast<int>(tables_.size()) - 1;
  }

  // One step: for each (sequence, new tokens) pair, appends the tokens. Returns logits rows.
  ForwardOutput step(const std::vector<std::pair<int, std::vector<int32_t>>>& work, bool all_logits = false) {
    std::vector<int32_t> ids, pos;
    std::vector<SequenceInput> seqs;
    for (const auto& [s, toks] : work) {
      SequenceInput in;
      in.query_start = static_cast<int32_t>(ids.size());
      in.query_len = static_cast<int32_t>(toks.size());
      in.context_len = lens_[s] + in.query_len;
      FERRY_CHECK(alloc_.ensure_capacity(&tables_[s], in.context_len, block_size_));
      for (int32_t i = 0; i < in.query_len; ++i) {
        ids.push_back(toks[i]);
        pos.push_back(lens_[s] + i);
      }
      seqs.push_back(in);
    }
    for (size_t i = 0; i < work.size(); ++i) seqs[i].block_table = tables_[work[i].first];
    ForwardBatch batch{ids, pos, seqs, all_logits};
    ForwardOutput out;
    Status st = engine_->forward(batch, &out);
    EXPECT_TRUE(st.ok()) << st.to_string();
    for (const auto& [s, toks] : work) lens_[s] += static_cast<int32_t>(toks.size());
    return out;
  }

  CpuEngine& engine() { return *engine_; }
  const KvCacheStorage& cache() { return *engine_->kv_cache(); }

 private:
  std::unique_ptr<CpuEngine> engine_;
  SimpleBlockAllocator alloc_;
  int64_t block_size_;
  std::vector<std::vector<int32_t>> tables_;
  std::vector<int32_t> lens_;
};

int32_t argmax_row(const float* row, int64_t n) {
  int32_t best = 0;
  for (int64_t j = 1; j < n; ++j)
    if (row[j] > row[best]) best = static_cast<int32_t>(j);
  return best;
}

float max_abs_diff(const float* a, const float* b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

std::unique_ptr<CpuEngine> make_engine(const LoadedModel& m, kernels::Backend backend = kernels::Backend::kCpu) {
  auto e = CpuEngine::create(m.config, m.weights, {backend});
  FERRY_CHECK(e.ok());
  return std::move(e).value();
}

std::optional<Json::Value> load_golden(std::string* why) {
  const auto path = testdata() / "llama2c-stories260K" / "golden_outputs.derived.json";
  std::ifstream in(path);
  if (!in) {
    *why = "golden outputs not found at " + path.string();
    return std::nullopt;
  }
  Json::Value root;
  Json::CharReaderBuilder b;
  std::string errs;
  FERRY_CHECK(Json::parseFromStream(b, in, &root, &errs));
  return root;
}

const Json::Value* find_case(const Json::Value& golden, const std::string& name) {
  for (const auto& c : golden["cases"])
    if (c["name"].asString() == name) return &c;
  return nullptr;
}

std::vector<int32_t> ids_of(const Json::Value& v) {
  std::vector<int32_t> out;
  for (const auto& x : v) out.push_back(x.asInt());
  return out;
}

// Tolerance for logits against llama2.c (fp32, other summation order): the reference data were
// checked by an independent implementation to ~1e-5; logits here are O(10), so 1e-4 absolute
// leaves a 10x margin while still catching any real error (a wrong RoPE pairing or norm moves
// logits by O(1)).
constexpr float kGoldenLogitTol = 1e-4f;

// int8 KV against fp32 KV on stories260K (Int8KvCacheStories260KAccuracy), measured on the three
// greedy golden cases: max |logit diff| 0.60 over the first 64 positions and 1.08 over all 255;
// teacher-forced argmax agreement 64/64, 197/200, 253/256; free-running greedy tokens equal to
// golden before the first divergence 60/60, 118/200, 118/256. For scale: rounding the same cache
// to bf16 instead gives 0.13 / 0.20 and keeps all greedy tokens, to fp16 0.018 / 0.025. int8's
// relative error per row (~0.5% rms for this model's rows, amax ~2.3x rms) is ~4.5x bf16's, and
// this 260K-parameter model with head_dim 8 passes it to the logits undamped. The bounds below
// are the measurements with a margin for another summation order; they catch a broken scale
// (logits off by O(10)) but are not a quality target.
constexpr float kInt8LogitTolFirst = 1.0f;     // first 64 positions
constexpr float kInt8LogitTol = 1.5f;          // every position
constexpr double kInt8MinArgmaxAgreement = 0.97;
constexpr int64_t kInt8MinLeadingTokens = 100;  // or the whole continuation when shorter

TEST(CpuEngineGoldenTest, Stories260KPromptLogitsAndGreedyContinuation) {
  std::string why;
  auto model = load_stories(&why);
  if (!model) GTEST_SKIP() << why;
  auto golden = load_golden(&why);
  if (!golden) GTEST_SKIP() << why;
  const Json::Value* c = find_case(*golden, "prompt_once_upon_a_time_greedy_64");
  ASSERT_NE(c, nullptr);
  const auto prompt = ids_of((*c)["prompt_token_ids"]);
  const auto expected = ids_of((*c)["generated_token_ids"]);
  const Json::Value& logits_at = (*c)["logits_at_position"];
  const int64_t vocab = model->config.vocab_size;

  Runner r(make_engine(*model));
  const int s = r.new_sequence();
  // Prefill the whole prompt in one pass, with every position's logits.
  ForwardOutput out = r.step({{s, prompt}}, /*all_logits=*/true);
  ASSERT_EQ(out.num_rows, static_cast<int64_t>(prompt.size()));
  int checked_logits = 0;
  auto check_logits = [&](int64_t pos, const float* row) {
    for (const auto& entry : logits_at) {
      if (entry["pos"].asInt64() != pos) continue;
      std::vector<float> want;
      for (const auto& x : entry["logits"]) want.push_back(x.asFloat());
      ASSERT_EQ(static_cast<int64_t>(want.size()), vocab);
      EXPECT_LE(max_abs_diff(row, want.data(), vocab), kGoldenLogitTol) << "position " << pos;
      EXPECT_EQ(argmax_row(row, vocab), entry["argmax"].asInt()) << "position " << pos;
      ++checked_logits;
    }
  };
  for (int64_t p = 0; p < out.num_rows; ++p) check_logits(p, out.row(p));

  // Then decode greedily, one token per step, feeding back our own choice.
  std::vector<int32_t> generated = {argmax_row(out.row(out.num_rows - 1), vocab)};
  int64_t pos = static_cast<int64_t>(prompt.size());
  while (generated.size() < expected.size()) {
    ForwardOutput d = r.step({{s, {generated.back()}}});
    check_logits(pos, d.row(0));
    generated.push_back(argmax_row(d.row(0), vocab));
    ++pos;
  }
  EXPECT_EQ(checked_logits, 8);
  EXPECT_EQ(generated, expected);
}

TEST(CpuEngineGoldenTest, Stories260KBosOnlyGreedy256) {
  std::string why;
  auto model = load_stories(&why);
  if (!model) GTEST_SKIP() << why;
  auto golden = load_golden(&why);
  if (!golden) GTEST_SKIP() << why;
  for (const char* name : {"bos_only_greedy_200", "bos_only_greedy_256_default_steps"}) {
    const Json::Value* c = find_case(*golden, name);
    ASSERT_NE(c, nullptr) << name;
    const auto expected = ids_of((*c)["generated_token_ids"]);
    Runner r(make_engine(*model));
    const int s = r.new_sequence();
    std::vector<int32_t> generated;
    int32_t next = ids_of((*c)["prompt_token_ids"]).at(0);
    while (generated.size() < expected.size()) {
      ForwardOutput d = r.step({{s, {next}}});
      next = argmax_row(d.row(0), model->config.vocab_size);
      generated.push_back(next);
    }
    EXPECT_EQ(generated, expected) << name;
  }
}

// int8 KV cache on stories260K, over llama2.c's three greedy golden cases:
// (1) logit error: each case's tokens (prompt + golden continuation, teacher-forced, one prefill
//     pass with every position's logits) through an fp32 and an int8 cache -- the same inputs, only
//     the cache dtype differs; max |logit difference| over all positions and over the first 64;
// (2) greedy agreement: free-running greedy decode with the int8 cache against the golden
//     continuation; the number of leading tokens that match, and of matching tokens overall.
// The figures are printed; the assertions are the measured values with a margin (see below).
TEST(CpuEngineGoldenTest, Int8KvCacheStories260KAccuracy) {
  std::string why;
  auto model = load_stories(&why);
  if (!model) GTEST_SKIP() << why;
  auto golden = load_golden(&why);
  if (!golden) GTEST_SKIP() << why;
  const int64_t vocab = model->config.vocab_size;
  constexpr int64_t kFirstPositions = 64;
  for (const char* name : {"prompt_once_upon_a_time_greedy_64", "bos_only_greedy_200", "bos_only_greedy_256_default_steps"}) {
    SCOPED_TRACE(name);
    const Json::Value* c = find_case(*golden, name);
    ASSERT_NE(c, nullptr);
    const auto prompt = ids_of((*c)["prompt_token_ids"]);
    const auto expected = ids_of((*c)["generated_token_ids"]);
    std::vector<int32_t> tokens = prompt;
    tokens.insert(tokens.end(), expected.begin(), expected.end() - 1);  // inputs whose next token is golden

    Runner f32(make_engine(*model)), i8(make_engine(*model), 256, 16, kernels::KvCacheDType::kInt8);
    const int sf = f32.new_sequence(), si = i8.new_sequence();
    ForwardOutput lf = f32.step({{sf, tokens}}, true), li = i8.step({{si, tokens}}, true);
    float max_diff = 0, max_diff_first = 0;
    int argmax_agree = 0;
    for (int64_t p = 0; p < lf.num_rows; ++p) {
      const float d = max_abs_diff(lf.row(p), li.row(p), vocab);
      max_diff = std::max(max_diff, d);
      if (p < kFirstPositions) max_diff_first = std::max(max_diff_first, d);
      argmax_agree += argmax_row(lf.row(p), vocab) == argmax_row(li.row(p), vocab);
    }

    Runner greedy(make_engine(*model), 256, 16, kernels::KvCacheDType::kInt8);
    const int sg = greedy.new_sequence();
    ForwardOutput out = greedy.step({{sg, prompt}});
    std::vector<int32_t> generated = {argmax_row(out.row(0), vocab)};
    while (generated.size() < expected.size()) {
      out = greedy.step({{sg, {generated.back()}}});
      generated.push_back(argmax_row(out.row(0), vocab));
    }
    size_t leading = 0;
    while (leading < expected.size() && generated[leading] == expected[leading]) ++leading;
    size_t same = 0;
    for (size_t i = 0; i < expected.size(); ++i) same += generated[i] == expected[i];

    std::printf("int8 KV, %s: max |logit diff| vs fp32 KV %.4f (first %lld positions %.4f; logits O(10)), "
                "argmax agrees at %d/%lld positions; greedy: %zu/%zu leading tokens match golden, %zu/%zu overall\n",
                name, max_diff, static_cast<long long>(kFirstPositions), max_diff_first, argmax_agree,
                static_cast<long long>(lf.num_rows), leading, expected.size(), same, expected.size());
    EXPECT_LE(max_diff_first, kInt8LogitTolFirst);
    EXPECT_LE(max_diff, kInt8LogitTol);
    EXPECT_GE(argmax_agree, kInt8MinArgmaxAgreement * static_cast<double>(lf.num_rows));
    EXPECT_GE(static_cast<int64_t>(leading), std::min<int64_t>(kInt8MinLeadingTokens, static_cast<int64_t>(expected.size())));
  }
}

// The fast CPU kernels and the plain-loop reference kernels give the same model outputs.
TEST(CpuEngineGoldenTest, CpuKernelsMatchReferenceKernelsOnWholeModel) {
  std::string why;
  auto model = load_stories(&why);
  if (!model) GTEST_SKIP() << why;
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401};
  for (kernels::KvCacheDType dtype : {kernels::KvCacheDType::kF32, kernels::KvCacheDType::kInt8}) {
    SCOPED_TRACE(kernels::kv_cache_dtype_name(dtype));
    Runner fast(make_engine(*model, kernels::Backend::kCpu), 256, 16, dtype);
    Runner ref(make_engine(*model, kernels::Backend::kReference), 256, 16, dtype);
    const int a = fast.new_sequence(), b = ref.new_sequence();
    ForwardOutput x = fast.step({{a, prompt}}, true), y = ref.step({{b, prompt}}, true);
    ASSERT_EQ(x.logits.size(), y.logits.size());
    EXPECT_LE(max_abs_diff(x.logits.data(), y.logits.data(), static_cast<int64_t>(x.logits.size())), 5e-5f);
  }
}

// The pool is sized by bytes_per_block: int8 values plus one fp32 scale per (slot, head), K and V.
TEST(KvCacheStorageTest, Int8BytesPerBlockAndAccessors) {
  KvCacheShape s{/*num_layers=*/12, /*num_blocks=*/3, /*block_size=*/16, /*num_kv_heads=*/4, /*head_dim=*/64};
  EXPECT_EQ(s.bytes_per_block(), 2 * 12 * 16 * 4 * 64 * 4);
  KvCacheShape q = s;
  q.dtype = kernels::KvCacheDType::kInt8;
  EXPECT_EQ(q.bytes_per_block(), 2 * 12 * 16 * 4 * (64 + 4));
  EXPECT_NEAR(static_cast<double>(s.bytes_per_block()) / q.bytes_per_block(), 3.76, 0.01);
  const int64_t budget = int64_t{256} << 20;
  EXPECT_GE(budget / q.bytes_per_block(), 3 * (budget / s.bytes_per_block()));
  auto cache = KvCacheStorage::create(q);
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ(cache->dtype(), kernels::KvCacheDType::kInt8);
  cache->k_int8(11)[3 * 16 * 4 * 64 - 1] = 5;  // last element of the last layer: in bounds
  cache->v_scales(11)[3 * 16 * 4 - 1] = 1.0f;
  EXPECT_EQ(cache->k_scales(0)[0], 0.0f);  // zero-filled
}

// Writes `tensors` (name -> fp32 values and shape) as one safetensors file of dtype `dtype`
// ("F32", "BF16" or "F16"), converting each value.
void write_model_file(const std::filesystem::path& path, const std::string& dtype,
                      const std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>>& tensors) {
  std::string header = "{";
  std::string data;
  for (const auto& [name, t] : tensors) {
    const auto& [shape, values] = t;
    const size_t begin = data.size();
    for (float v : values) {
      if (dtype == "F32") {
        data.append(reinterpret_cast<const char*>(&v), 4);
      } else {
        const uint16_t h = dtype == "BF16" ? kernels::f32_to_bf16(v) : kernels::f32_to_f16(v);
        data.append(reinterpret_cast<const char*>(&h), 2);
      }
    }
    std::string shape_s;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i > 0) shape_s += ',';
      shape_s += std::to_string(shape[i]);
    }
    if (header.size() > 1) header += ",";
    header += "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[" + shape_s + "],\"data_offsets\":[" +
              std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
  }
  header += "}";
  const uint64_t len = header.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&len), 8);  // little-endian host
  out << header << data;
}

// Narrow weights end to end: the engine on a BF16 (or F16) checkpoint gives the same logits as on
// an F32 checkpoint holding the same rounded values. Both are derived from stories260K.
TEST(CpuEngineGoldenTest, Bf16AndF16CheckpointsMatchTheirF32Rounding) {
  std::string why;
  auto model = load_stories(&why);
  if (!model) GTEST_SKIP() << why;
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("ferry_narrow_" + std::to_string(::getpid()));
  for (const std::string dtype : {"BF16", "F16"}) {
    SCOPED_TRACE(dtype);
    std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>> narrow, rounded;
    for (const WeightSpec& spec : model->weights.specs()) {
      std::vector<float> v(static_cast<size_t>(spec.numel()));
      ASSERT_TRUE(model->weights.read_f32(spec.name, v.data()).ok());
      std::vector<float> r(v.size());
      for (size_t i = 0; i < v.size(); ++i) {
        r[i] = dtype == "BF16" ? kernels::bf16_to_f32(kernels::f32_to_bf16(v[i]))
                               : kernels::f16_to_f32(kernels::f32_to_f16(v[i]));
      }
      narrow.push_back({spec.name, {spec.shape, v}});
      rounded.push_back({spec.name, {spec.shape, r}});
    }
    std::filesystem::create_directories(dir / "narrow");
    std::filesystem::create_directories(dir / "rounded");
    write_model_file(dir / "narrow" / "model.safetensors", dtype, narrow);
    write_model_file(dir / "rounded" / "model.safetensors", "F32", rounded);
    auto wn = ModelWeights::load_safetensors(model->config, dir / "narrow");
    auto wr = ModelWeights::load_safetensors(model->config, dir / "rounded");
    ASSERT_TRUE(wn.ok()) << wn.status().to_string();
    ASSERT_TRUE(wr.ok()) << wr.status().to_string();
    EXPECT_EQ(wn->view("model.norm.weight")->dtype_name, dtype);
    // Converted to fp32 at load: identical fp32 values in, identical kernels, so bit-equal out.
    WeightLoadOptions as_f32;
    as_f32.dtype = WeightDType::kF32;
    auto converted = CpuEngine::create(model->config, wn.value(), {}, as_f32);
    ASSERT_TRUE(converted.ok());
    // Served in place ("auto": the checkpoint's dtype, read from the mapping): the same values
    // through the bf16/fp16 kernels, whose fp32 sums run in another order (logits O(10): 1e-4).
    auto in_place = CpuEngine::create(model->config, wn.value());
    ASSERT_TRUE(in_place.ok());
    EXPECT_EQ(std::string(kernels::weight_format_name((*in_place)->model().weight_format())),
              dtype == "BF16" ? "bf16" : "fp16");
    Runner a(std::move(converted).value()), b(make_engine({model->config, wr.value()}));
    Runner c(std::move(in_place).value());
    const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 432};
    const int sa = a.new_sequence(), sb = b.new_sequence(), sc = c.new_sequence();
    ForwardOutput x = a.step({{sa, prompt}}, true), y = b.step({{sb, prompt}}, true), z = c.step({{sc, prompt}}, true);
    EXPECT_EQ(x.logits, y.logits);
    ASSERT_EQ(z.logits.size(), y.logits.size());
    EXPECT_LE(max_abs_diff(z.logits.data(), y.logits.data(), static_cast<int64_t>(y.logits.size())), 1e-4f);
  }
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Batching invariants, on the real model and on dummy shapes that exercise other architectures.

LoadedModel dummy_model(const std::string& json) {
  auto c = parse_model_config(json);
  FERRY_CHECK(c.ok());
  return LoadedModel{c.value(), ModelWeights::dummy(c.value(), 7)};
}

std::vector<LoadedModel> models_under_test() {
  std::vector<LoadedModel> out;
  std::string why;
  if (auto s = load_stories(&why)) out.push_back(std::move(*s));
  out.push_back(dummy_model(R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":48,"intermediate_size":72,
    "num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"vocab_size":97,"rope_theta":1000000.0,
    "tie_word_embeddings":true})"));
  out.push_back(dummy_model(R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":40,"intermediate_size":56,
    "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":14,"vocab_size":83})"));
  out.push_back(dummy_model(R"({"architectures":["LlamaForCausalLM"],"hidden_size":32,"intermediate_size":40,
    "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,"vocab_size":71,"rope_theta":500000.0,
    "max_position_embeddings":4096,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
    "high_freq_factor":4.0,"original_max_position_embeddings":16}})"));
  return out;
}

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab, int32_t salt) {
  std::vector<int32_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(static_cast<int32_t>((i * 37 + salt * 11 + 1) % vocab));
  return t;
}

// Batched vs alone: fp32 GEMMs of different M may sum in another order, hence a small tolerance.
constexpr float kBatchTol = 2e-5f;

void check_batched_equals_unbatched(kernels::KvCacheDType dtype, float tol) {
  for (const LoadedModel& m : models_under_test()) {
    SCOPED_TRACE(m.config.architecture_name);
    const int64_t vocab = m.config.vocab_size;
    const auto a = some_tokens(23, vocab, 1), b = some_tokens(5, vocab, 2);

    Runner alone(make_engine(m), 64, 4, dtype);  // small blocks: sequences span several, non-contiguous
    const int sa = alone.new_sequence(), sb = alone.new_sequence();
    ForwardOutput oa = alone.step({{sa, a}}), ob = alone.step({{sb, b}});
    ForwardOutput oa2 = alone.step({{sa, {5}}}), ob2 = alone.step({{sb, {9}}});

    Runner together(make_engine(m), 64, 4, dtype);
    const int ta = together.new_sequence(), tb = together.new_sequence();
    ForwardOutput both = together.step({{ta, a}, {tb, b}});
    ASSERT_EQ(both.num_rows, 2);
    EXPECT_LE(max_abs_diff(both.row(0), oa.row(0), vocab), tol);
    EXPECT_LE(max_abs_diff(both.row(1), ob.row(0), vocab), tol);
    // A decode step for both sequences at once (different context lengths).
    ForwardOutput both2 = together.step({{tb, {9}}, {ta, {5}}});
    EXPECT_LE(max_abs_diff(both2.row(0), ob2.row(0), vocab), tol);
    EXPECT_LE(max_abs_diff(both2.row(1), oa2.row(0), vocab), tol);
    // Decode of one sequence mixed with the prefill of a new one.
    const int tc = together.new_sequence();
    const auto c = some_tokens(11, vocab, 3);
    ForwardOutput mixed = together.step({{ta, {7}}, {tc, c}});
    Runner solo(make_engine(m), 64, 4, dtype);
    const int sc = solo.new_sequence();
    ForwardOutput oc = solo.step({{sc, c}});
    EXPECT_LE(max_abs_diff(mixed.row(1), oc.row(0), vocab), tol);
    ForwardOutput oa3 = alone.step({{sa, {7}}});
    EXPECT_LE(max_abs_diff(mixed.row(0), oa3.row(0), vocab), tol);  // the decode half of the mixed step
  }
}

void check_prefill_then_decode_equals_full_prefill(kernels::KvCacheDType dtype, float tol) {
  for (const LoadedModel& m : models_under_test()) {
    SCOPED_TRACE(m.config.architecture_name);
    const int64_t vocab = m.config.vocab_size;
    const auto tokens = some_tokens(37, vocab, 4);

    Runner full(make_engine(m), 64, 16, dtype);
    const int f = full.new_sequence();
    ForwardOutput all = full.step({{f, tokens}}, /*all_logits=*/true);
    ASSERT_EQ(all.num_rows, 37);

    // Prefill 9 tokens, then chunked prefill of 12 more, then decode the rest one by one.
    Runner inc(make_engine(m), 64, 16, dtype);
    const int s = inc.new_sequence();
    ForwardOutput p = inc.step({{s, std::vector<int32_t>(tokens.begin(), tokens.begin() + 9)}});
    EXPECT_LE(max_abs_diff(p.row(0), all.row(8), vocab), tol);
    ForwardOutput chunk = inc.step({{s, std::vector<int32_t>(tokens.begin() + 9, tokens.begin() + 21)}}, true);
    for (int i = 0; i < 12; ++i) EXPECT_LE(max_abs_diff(chunk.row(i), all.row(9 + i), vocab), tol) << i;
    for (int pos = 21; pos < 37; ++pos) {
      ForwardOutput d = inc.step({{s, {tokens[pos]}}});
      EXPECT_LE(max_abs_diff(d.row(0), all.row(pos), vocab), tol) << "position " << pos;
    }
  }
}

TEST(CpuEngineBatchTest, BatchedEqualsUnbatched) {
  check_batched_equals_unbatched(kernels::KvCacheDType::kF32, kBatchTol);
}

TEST(CpuEngineBatchTest, PrefillThenDecodeEqualsFullPrefill) {
  check_prefill_then_decode_equals_full_prefill(kernels::KvCacheDType::kF32, kBatchTol);
}

// With an int8 cache the invariants still hold: a token's quantized K/V depend only on its own
// values (one scale per slot and head), never on what else shares its block or step. The fp32
// noise of GEMMs of another M still passes through, a little amplified by the int8 path's other
// summation order (measured up to 2.1e-5). A flipped int8 rounding (not seen in these cases)
// would show as a larger difference.
constexpr float kInt8BatchTol = 5e-5f;

TEST(CpuEngineBatchTest, Int8KvBatchedEqualsUnbatched) {
  check_batched_equals_unbatched(kernels::KvCacheDType::kInt8, kInt8BatchTol);
}

TEST(CpuEngineBatchTest, Int8KvPrefillThenDecodeEqualsFullPrefill) {
  check_prefill_then_decode_equals_full_prefill(kernels::KvCacheDType::kInt8, kInt8BatchTol);
}

TEST(CpuEngineBatchTest, InvalidBatchesAreRejected) {
  LoadedModel m = dummy_model(R"({"architectures":["LlamaForCausalLM"],"hidden_size":16,"intermediate_size":24,
    "num_hidden_layers":1,"num_attention_heads":2,"vocab_size":50,"max_position_embeddings":64})");
  auto engine = make_engine(m);
  ForwardOutput out;
  std::vector<int32_t> table = {2};
  std::vector<int32_t> ids = {3, 4}, pos = {0, 1};
  std::vector<SequenceInput> seqs = {{0, 2, 2, table}};
  EXPECT_EQ(engine->forward({ids, pos, seqs}, &out).code(), StatusCode::kInvalidArgument) << "no KV cache yet";
  KvCacheOptions kv;
  kv.num_blocks = 4;
  ASSERT_TRUE(engine->allocate_kv_cache(kv).ok());
  EXPECT_TRUE(engine->forward({ids, pos, seqs}, &out).ok());

  // Each bad batch is InvalidArgument and leaves the cache exactly as it was.
  const KvCacheStorage& cache = *engine->kv_cache();
  const KvCacheShape& shape = cache.shape();
  const size_t layer_floats = static_cast<size_t>(shape.num_blocks * shape.elements_per_block());
  const float* k0 = const_cast<KvCacheStorage&>(cache).k(0);
  const std::vector<float> k_before(k0, k0 + layer_floats);
  auto rejected = [&](const ForwardBatch& batch) {
    Status s = engine->forward(batch, &out);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_TRUE(std::equal(k_before.begin(), k_before.end(), k0)) << "the cache was touched";
  };
  std::vector<int32_t> bad_ids = {3, 50};
  rejected({bad_ids, pos, seqs});
  std::vector<int32_t> bad_table = {4};
  std::vector<SequenceInput> bad_block = {{0, 2, 2, bad_table}};
  rejected({ids, pos, bad_block});
  std::vector<SequenceInput> too_long = {{0, 2, 17, table}};  // one block cannot hold 17 tokens
  std::vector<int32_t> pos_long = {15, 16};
  rejected({ids, pos_long, too_long});
  std::vector<int32_t> bad_pos = {0, 5};
  rejected({ids, bad_pos, seqs});
  std::vector<SequenceInput> gap = {{0, 1, 1, table}};  // token 1 belongs to no sequence
  rejected({ids, pos, gap});
}

}  // namespace
}  // namespace ferry::llm

namespace ferry::llm {
namespace {

// Speculative decoding in the engine: stories260K decoded greedily with drafts (the golden's next
// tokens, one of them wrong every other step) verified k at a time must emit exactly the golden
// continuation; rejected positions are simply overwritten by the next step's query.
TEST(CpuEngineSpeculativeTest, VerifiedDraftsEmitTheGoldenGreedyContinuation) {
  std::string why;
  auto model = load_stories(&why);
  if (!model) GTEST_SKIP() << why;
  auto golden = load_golden(&why);
  if (!golden) GTEST_SKIP() << why;
  const Json::Value* c = find_case(*golden, "bos_only_greedy_200");
  ASSERT_NE(c, nullptr);
  const auto expected = ids_of((*c)["generated_token_ids"]);
  auto engine = make_engine(*model);
  KvCacheOptions kv;
  kv.num_blocks = 32;
  kv.block_size = 16;
  ASSERT_TRUE(engine->allocate_kv_cache(kv).ok());
  std::vector<int32_t> table(32);
  for (int32_t b = 0; b < 32; ++b) table[static_cast<size_t>(b)] = 31 - b;  // not in order
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  std::vector<int32_t> tokens = ids_of((*c)["prompt_token_ids"]);  // prompt, then emitted tokens
  const size_t prompt_len = tokens.size();
  int32_t computed = 0;
  int64_t steps = 0, accepted = 0;
  StepOutput out;
  while (tokens.size() - prompt_len < expected.size()) {
    const size_t done = tokens.size() - prompt_len;
    // Query: the not yet computed known tokens, then up to 3 drafts from the golden.
    std::vector<int32_t> query(tokens.begin() + computed, tokens.end());
    const int32_t k = static_cast<int32_t>(std::min<size_t>(3, expected.size() - done - 1));
    for (int32_t j = 0; j < k; ++j) {
      int32_t d = expected[done + static_cast<size_t>(j)];
      if (steps % 2 == 1 && j == 1) d = (d + 1) % static_cast<int32_t>(model->config.vocab_size);
      query.push_back(d);
    }
    std::vector<int32_t> positions;
    for (size_t i = 0; i < query.size(); ++i) positions.push_back(computed + static_cast<int32_t>(i));
    SequenceInput in;
    in.query_len = static_cast<int32_t>(query.size());
    in.context_len = computed + in.query_len;
    in.block_table = table;
    in.num_draft_tokens = k;
    const std::vector<SequenceInput> seqs = {in};
    const std::vector<int32_t> output(tokens.begin() + static_cast<std::ptrdiff_t>(prompt_len), tokens.end());
    const std::vector<SamplingSequence> sampling = {{&greedy, {tokens.data(), prompt_len}, output, nullptr, {}}};
    ASSERT_TRUE(engine->step(ForwardBatch{query, positions, seqs, false}, sampling, false, &out).ok());
    ASSERT_LE(out.num_extra[0], k);
    // Emitted: samples[0], then the extras; all but the last are accepted drafts.
    const int32_t emitted = 1 + out.num_extra[0];
    tokens.push_back(out.samples[0].token);
    for (int32_t j = 0; j < out.num_extra[0]; ++j) tokens.push_back(out.extra[out.extra_begin[0] + j].token);
    computed += in.query_len - k + emitted - 1;  // the known tokens and the accepted drafts
    accepted += emitted - 1;
    ++steps;
  }
  EXPECT_EQ(std::vector<int32_t>(tokens.begin() + static_cast<std::ptrdiff_t>(prompt_len), tokens.end()), expected);
  EXPECT_GT(accepted, 0);
  EXPECT_LT(steps, static_cast<int64_t>(expected.size())) << "fewer steps than tokens";
}

TEST(CpuEngineSpeculativeTest, InconsistentDraftBatchesAreRejected) {
  std::string why;
  auto model = load_stories(&why);
  if (!model) GTEST_SKIP() << why;
  auto engine = make_engine(*model);
  KvCacheOptions kv;
  kv.num_blocks = 4;
  kv.block_size = 16;
  ASSERT_TRUE(engine->allocate_kv_cache(kv).ok());
  const std::vector<int32_t> table = {0, 1, 2, 3};
  const std::vector<int32_t> query = {1, 5, 6}, positions = {0, 1, 2};
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  const std::vector<SamplingSequence> sampling = {{&greedy, {query.data(), 1}, {}, nullptr, {}}};
  auto run = [&](int32_t drafts, bool all_logits, std::span<const SamplingSequence> s) {
    SequenceInput in;
    in.query_len = 3;
    in.context_len = 3;
    in.block_table = table;
    in.num_draft_tokens = drafts;
    const std::vector<SequenceInput> seqs = {in};
    StepOutput out;
    return engine->step(ForwardBatch{query, positions, seqs, all_logits}, s, false, &out).code();
  };
  EXPECT_EQ(run(2, false, sampling), StatusCode::kOk);
  EXPECT_EQ(run(3, false, sampling), StatusCode::kInvalidArgument) << "drafts must leave one known token";
  EXPECT_EQ(run(-1, false, sampling), StatusCode::kInvalidArgument);
  EXPECT_EQ(run(2, true, {}), StatusCode::kInvalidArgument) << "drafts with all_logits";
  EXPECT_EQ(run(2, false, {}), StatusCode::kInvalidArgument) << "drafts without sampling";
}

}  // namespace
}  // namespace ferry::llm
