// Speculative decoding's draft-model method, below the server: DraftProposer over stories260K
// (drafting for itself, so its greedy drafts must be the model's own greedy continuation, which a
// plain full-sequence forward pass computes independently) keeps its KV state right across
// partial acceptance, full acceptance and rejection; batches sequences of different lengths;
// gives sampled requests their q rows; spreads long catch-ups over rounds; never drafts past the
// draft's context; evicts idle states when its pool is full and skips what cannot fit; frees
// every block on release. load_draft_model
// finds snapshots and the highest version folder, loads fewer-layer drafts, and refuses a missing
// folder, an architecture the engine does not run or another vocabulary, saying what differs. The
// "speculative" key's draft form is parsed strictly.
#include <gtest/gtest.h>

#include <json/json.h>

#include <filesystem>
#include <numeric>

#include "backend/llm/draft_model.h"
#include "backend/llm/draft_proposer.h"
#include "backend/llm/json_text.h"
#include "backend/llm/llm_config.h"
#include "common/json_parse.h"
#include "tests/host/test_util.h"
#include "tests/llm/engine/testdata.h"

namespace ferry::llm {
namespace {

namespace fs = std::filesystem;
using ferry::testing::read_file;
using ferry::testing::TempDir;
using ferry::testing::write_file;

fs::path stories_dir() { return testdata() / "stories260K-hf-format.derived"; }

class DraftProposerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(stories_dir() / "model.safetensors")) GTEST_SKIP() << "reference data missing: " << stories_dir();
    auto config = load_model_config(stories_dir());
    ASSERT_TRUE(config.ok()) << config.status().message();
    auto weights = ModelWeights::load_safetensors(config.value(), stories_dir());
    ASSERT_TRUE(weights.ok()) << weights.status().message();
    auto model = load_causal_lm(config.value(), weights.value(), {});
    ASSERT_TRUE(model.ok()) << model.status().message();
    model_ = std::move(model).value();
    auto engine = CpuEngine::create(model_);
    ASSERT_TRUE(engine.ok());
    oracle_ = std::move(engine).value();
    KvCacheOptions kv;
    kv.num_blocks = 32;
    ASSERT_TRUE(oracle_->allocate_kv_cache(kv).ok());
    greedy_.temperature = 0.0f;
  }

  std::unique_ptr<DraftProposer> proposer(int64_t num_blocks, int32_t max_catch_up = 2048) {
    DraftProposerOptions o;
    o.num_blocks = num_blocks;
    o.block_size = 16;
    o.max_catch_up_tokens = max_catch_up;
    auto p = DraftProposer::create(model_, o);
    EXPECT_TRUE(p.ok()) << p.status().message();
    return p.ok() ? std::move(p).value() : nullptr;
  }

  // The model's greedy continuation of `tokens`, n tokens, each from a fresh forward pass over the
  // whole sequence (no KV reuse: independent of the proposer's bookkeeping).
  std::vector<int32_t> greedy_continuation(std::vector<int32_t> tokens, int n) {
    std::vector<int32_t> out;
    std::vector<int32_t> table(32);
    std::iota(table.begin(), table.end(), 0);
    for (int i = 0; i < n; ++i) {
      std::vector<int32_t> positions(tokens.size());
      std::iota(positions.begin(), positions.end(), 0);
      const auto len = static_cast<int32_t>(tokens.size());
      std::vector<SequenceInput> seqs = {{0, len, len, table, 0}};
      ForwardOutput logits;
      EXPECT_TRUE(oracle_->forward({tokens, positions, seqs, false}, &logits).ok());
      const float* row = logits.row(0);
      const auto next = static_cast<int32_t>(std::max_element(row, row + logits.vocab) - row);
      out.push_back(next);
      tokens.push_back(next);
    }
    return out;
  }

  DraftJob job(uint64_t id, const std::vector<int32_t>& tokens, int32_t k, const SamplingParams& p,
               std::vector<int32_t>* drafts, std::vector<float>* probs, SamplingRng* rng = nullptr) {
    return DraftJob{id, tokens, 1, k, &p, rng, drafts, probs};
  }

  std::shared_ptr<const CausalLM> model_;
  std::unique_ptr<CpuEngine> oracle_;
  SamplingParams greedy_;
};

std::vector<int32_t> concat(std::vector<int32_t> a, std::span<const int32_t> b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST_F(DraftProposerTest, SelfDraftingProposesTheGreedyContinuationAcrossAcceptAndReject) {
  auto p = proposer(16);
  ASSERT_NE(p, nullptr);
  std::vector<int32_t> tokens = {1, 403, 407, 261, 378, 266, 292};
  std::vector<int32_t> drafts;
  std::vector<float> probs;
  for (int round = 0; round < 8; ++round) {
    const DraftJob j = job(7, tokens, 4, greedy_, &drafts, &probs);
    ASSERT_TRUE(p->propose({&j, 1}).ok());
    const std::vector<int32_t> expected = greedy_continuation(tokens, 4);
    ASSERT_EQ(drafts, expected) << "round " << round;
    EXPECT_TRUE(probs.empty()) << "greedy drafts are point masses";
    // What the target might have done: kept all (plus a bonus), kept two then corrected one
    // (a token the draft did not propose), kept none, or verified none and decoded three tokens of
    // its own over the following steps (speculation paused): the first is not the draft's, so the
    // draft's K/V of positions before the new last token must be recomputed too.
    switch (round % 4) {
      case 0: tokens = concat(tokens, drafts), tokens.push_back(greedy_continuation(tokens, 1)[0]); break;
      case 1: tokens.insert(tokens.end(), drafts.begin(), drafts.begin() + 2), tokens.push_back((drafts[2] + 1) % 512); break;
      case 2: tokens.push_back((drafts[0] + 7) % 512); break;
      case 3: tokens.insert(tokens.end(), {(drafts[0] + 7) % 512, drafts[1], drafts[2]}); break;
    }
  }
  EXPECT_EQ(p->num_sequences(), 1u);
  EXPECT_GT(p->num_blocks_used(), 0);
  p->release(7);
  EXPECT_EQ(p->num_blocks_used(), 0);
  EXPECT_EQ(p->num_sequences(), 0u);
}

TEST_F(DraftProposerTest, BatchesSequencesAndGivesSampledRequestsTheirQ) {
  auto p = proposer(16);
  ASSERT_NE(p, nullptr);
  const std::vector<int32_t> a = {1, 403, 407, 261}, b = {1, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309};
  SamplingParams sampled;
  sampled.temperature = 0.8f;
  sampled.top_k = 40;
  SamplingRng rng(3);
  std::vector<int32_t> da, db, dc;
  std::vector<float> qa, qb, qc;
  const DraftJob jobs[] = {job(1, a, 3, greedy_, &da, &qa), job(2, b, 4, sampled, &db, &qb, &rng),
                           job(3, b, 2, greedy_, &dc, &qc)};
  ASSERT_TRUE(p->propose(jobs).ok());
  EXPECT_EQ(da, greedy_continuation(a, 3));
  EXPECT_EQ(dc, greedy_continuation(b, 2));
  ASSERT_EQ(db.size(), 4u);
  ASSERT_EQ(qb.size(), 4u * 512);
  for (size_t j = 0; j < db.size(); ++j) {
    const std::span<const float> row(qb.data() + j * 512, 512);
    EXPECT_NEAR(std::accumulate(row.begin(), row.end(), 0.0), 1.0, 1e-4) << j;
    EXPECT_GT(row[static_cast<size_t>(db[j])], 0.0f) << "a draft is drawn from its q";
    EXPECT_LE(std::count_if(row.begin(), row.end(), [](float x) { return x > 0; }), 40) << "top_k applies to q";
  }
  EXPECT_EQ(p->num_sequences(), 3u);
  for (uint64_t id : {1, 2, 3}) p->release(id);
  EXPECT_EQ(p->num_blocks_used(), 0);
}

TEST_F(DraftProposerTest, LongCatchUpsAreSpreadOverRounds) {
  auto p = proposer(16, /*max_catch_up=*/8);
  ASSERT_NE(p, nullptr);
  std::vector<int32_t> tokens(20);
  std::iota(tokens.begin(), tokens.end(), 280);
  std::vector<int32_t> drafts;
  std::vector<float> probs;
  const DraftJob j = job(1, tokens, 3, greedy_, &drafts, &probs);
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(p->propose({&j, 1}).ok());
    EXPECT_TRUE(drafts.empty()) << "round " << round << ": 8 of 20 tokens per round";
  }
  ASSERT_TRUE(p->propose({&j, 1}).ok());
  EXPECT_EQ(drafts, greedy_continuation(tokens, 3));
  p->release(1);
  EXPECT_EQ(p->num_blocks_used(), 0);
}

TEST_F(DraftProposerTest, AFullPoolEvictsIdleStatesAndSkipsWhatCannotFit) {
  auto p = proposer(3);  // 48 positions
  ASSERT_NE(p, nullptr);
  std::vector<int32_t> a(30), b(30), too_long(60);
  std::iota(a.begin(), a.end(), 300);
  std::iota(b.begin(), b.end(), 350);
  std::iota(too_long.begin(), too_long.end(), 100);
  std::vector<int32_t> drafts;
  std::vector<float> probs;
  for (const auto* tokens : {&a, &b, &a}) {  // each needs all 3 blocks (33 positions): the other is evicted
    const DraftJob j = job(tokens == &a ? 1 : 2, *tokens, 4, greedy_, &drafts, &probs);
    ASSERT_TRUE(p->propose({&j, 1}).ok());
    EXPECT_EQ(drafts, greedy_continuation(*tokens, 4));
    EXPECT_EQ(p->num_sequences(), 1u);
    EXPECT_LE(p->num_blocks_used(), 3);
  }
  const DraftJob big = job(3, too_long, 4, greedy_, &drafts, &probs);
  ASSERT_TRUE(p->propose({&big, 1}).ok());
  EXPECT_TRUE(drafts.empty()) << "60 positions never fit 48";
  for (uint64_t id : {1, 2, 3}) p->release(id);
  EXPECT_EQ(p->num_blocks_used(), 0);
}

TEST_F(DraftProposerTest, DraftsStopAtTheDraftsContext) {
  auto p = proposer(40);  // 640 positions: room for the whole 512-token context
  ASSERT_NE(p, nullptr);
  std::vector<int32_t> drafts;
  std::vector<float> probs;
  for (const auto& [len, want] : std::vector<std::pair<int32_t, size_t>>{{500, 4}, {510, 3}, {512, 1}}) {
    std::vector<int32_t> tokens(static_cast<size_t>(len));
    for (int32_t i = 0; i < len; ++i) tokens[static_cast<size_t>(i)] = 3 + (i * 37) % 500;
    const DraftJob j = job(static_cast<uint64_t>(len), tokens, 4, greedy_, &drafts, &probs);
    ASSERT_TRUE(p->propose({&j, 1}).ok()) << len;
    // The last draft step computes position len + k - 2, which must be < max_position_embeddings (512).
    EXPECT_EQ(drafts.size(), want) << len << " tokens";
    p->release(static_cast<uint64_t>(len));
  }
  EXPECT_EQ(p->num_blocks_used(), 0);
}

// --- load_draft_model ----------------------------------------------------------------------------

class DraftModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(stories_dir() / "model.safetensors")) GTEST_SKIP() << "reference data missing: " << stories_dir();
    auto config = load_model_config(stories_dir());
    ASSERT_TRUE(config.ok());
    config_ = config.value();
    auto tokenizer = Tokenizer::load(stories_dir());
    ASSERT_TRUE(tokenizer.ok());
    tokenizer_ = std::move(tokenizer).value();
  }
  // Copies stories260K into `dir`, with num_hidden_layers = `layers`.
  void write_stories(const fs::path& dir, int layers, const std::string& tokenizer_json = "") {
    fs::create_directories(dir);
    for (const char* f : {"model.safetensors", "tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(stories_dir() / f, dir / f, fs::copy_options::overwrite_existing);
    }
    if (!tokenizer_json.empty()) write_file((dir / "tokenizer.json").string(), tokenizer_json);
    Json::Value config = parse_json_text(read_file(stories_dir() / "config.json")).value();
    config["num_hidden_layers"] = layers;
    write_file((dir / "config.json").string(), compact_json(config));
  }

  ModelConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  TempDir repo_;
};

TEST_F(DraftModelTest, FindsSnapshotsAndTheHighestVersionAndLoadsFewerLayers) {
  write_stories(fs::path(repo_.path()) / "snapshot", 2);
  auto snapshot = load_draft_model(repo_.path(), "snapshot", config_, *tokenizer_);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status().message();
  EXPECT_EQ(snapshot->model->config().num_layers, 2);
  EXPECT_EQ(snapshot->path, fs::path(repo_.path()) / "snapshot");

  write_file(repo_ / "served/config.json", R"({"backend":"llm","max_num_seqs":4})");
  write_stories(fs::path(repo_.path()) / "served/1", 5);
  write_stories(fs::path(repo_.path()) / "served/3", 1);
  auto served = load_draft_model(repo_.path(), "served", config_, *tokenizer_);
  ASSERT_TRUE(served.ok()) << served.status().message();
  EXPECT_EQ(served->path, fs::path(repo_.path()) / "served/3");
  EXPECT_EQ(served->model->config().num_layers, 1);
}

TEST_F(DraftModelTest, RefusesAMissingFolderAnUnknownArchitectureAndAnotherVocabulary) {
  auto missing = load_draft_model(repo_.path(), "nowhere", config_, *tokenizer_);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("speculative.draft_model"), std::string::npos) << missing.status().message();
  EXPECT_NE(missing.status().message().find("nowhere"), std::string::npos);

  const fs::path llama2 = testdata() / "hf-tokenizer-llama2";
  if (fs::exists(llama2 / "tokenizer.json")) {
    write_stories(fs::path(repo_.path()) / "other", 2, read_file(llama2 / "tokenizer.json"));
    auto other = load_draft_model(repo_.path(), "other", config_, *tokenizer_);
    ASSERT_FALSE(other.ok());
    EXPECT_NE(other.status().message().find("tokenizer"), std::string::npos) << other.status().message();
    EXPECT_NE(other.status().message().find("32000"), std::string::npos) << other.status().message();
  }
  // The same size, two ids swapped: the first differing id is named.
  Json::Value t = parse_json_text(read_file(stories_dir() / "tokenizer.json")).value();
  t["model"]["vocab"]["\xE2\x96\x81ha"] = 301;
  t["model"]["vocab"]["\xE2\x96\x81S"] = 300;
  write_stories(fs::path(repo_.path()) / "swapped", 2, compact_json(t));
  auto swapped = load_draft_model(repo_.path(), "swapped", config_, *tokenizer_);
  ASSERT_FALSE(swapped.ok());
  EXPECT_NE(swapped.status().message().find("token id 300"), std::string::npos) << swapped.status().message();

  write_stories(fs::path(repo_.path()) / "bert", 2);
  Json::Value bert = parse_json_text(read_file(fs::path(repo_.path()) / "bert/config.json")).value();
  bert["architectures"][0] = "BertModel";
  write_file(repo_ / "bert/config.json", compact_json(bert));
  auto unknown = load_draft_model(repo_.path(), "bert", config_, *tokenizer_);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("not a model the engine runs"), std::string::npos)
      << unknown.status().message();
}

TEST(DraftConfig, TheDraftFormOfSpeculativeIsParsedStrictly) {
  auto ok = LlmConfig::parse(R"({"speculative":{"method":"draft","draft_model":"small","num_speculative_tokens":3}})");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->speculative.method, SpeculativeMethod::kDraft);
  EXPECT_EQ(ok->speculative.draft_model, "small");
  EXPECT_EQ(ok->speculative.num_speculative_tokens, 3);
  EXPECT_STREQ(speculative_method_name(ok->speculative.method), "draft");
  const std::pair<const char*, const char*> bad[] = {
      {R"({"method":"draft","num_speculative_tokens":3})", "'speculative.draft_model' is required"},
      {R"({"method":"draft","draft_model":"../up","num_speculative_tokens":3})", "'speculative.draft_model'"},
      {R"({"method":"draft","draft_model":"","num_speculative_tokens":3})", "'speculative.draft_model'"},
      {R"({"method":"draft","draft_model":"s","num_speculative_tokens":3,"prompt_lookup_min":2})",
       "'speculative.prompt_lookup_min' applies to method \"ngram\" only"},
      {R"({"method":"ngram","draft_model":"s","num_speculative_tokens":3})",
       "'speculative.draft_model' applies to method \"draft\" only"},
      {R"({"method":"eagle","num_speculative_tokens":3})", "must be \"ngram\" or \"draft\""},
  };
  for (const auto& [spec, message] : bad) {
    auto r = LlmConfig::parse(std::string(R"({"speculative":)") + spec + "}");
    ASSERT_FALSE(r.ok()) << spec;
    EXPECT_NE(r.status().message().find(message), std::string::npos) << spec << ": " << r.status().message();
  }
}

TEST(DraftConfig, MinAcceptanceRateIsMeasuredUnlessANumberFixesIt) {
  auto measured = LlmConfig::parse(R"({"speculative":{"method":"ngram","num_speculative_tokens":3}})");
  ASSERT_TRUE(measured.ok()) << measured.status().message();
  EXPECT_TRUE(measured->speculative.measured_rate());
  auto automatic =
      LlmConfig::parse(R"({"speculative":{"method":"ngram","num_speculative_tokens":3,"min_acceptance_rate":"auto"}})");
  ASSERT_TRUE(automatic.ok()) << automatic.status().message();
  EXPECT_TRUE(automatic->speculative.measured_rate());
  auto fixed =
      LlmConfig::parse(R"({"speculative":{"method":"ngram","num_speculative_tokens":3,"min_acceptance_rate":0.25}})");
  ASSERT_TRUE(fixed.ok()) << fixed.status().message();
  EXPECT_FALSE(fixed->speculative.measured_rate());
  EXPECT_EQ(fixed->speculative.min_acceptance_rate, 0.25);
  for (const char* bad : {"-0.1", "1.5", "\"sometimes\"", "true", "null"}) {
    auto r = LlmConfig::parse(
        std::string(R"({"speculative":{"method":"ngram","num_speculative_tokens":3,"min_acceptance_rate":)") + bad +
        "}}");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("'speculative.min_acceptance_rate' must be \"auto\" or a number in [0, 1]"),
              std::string::npos)
        << bad << ": " << r.status().message();
  }
}

}  // namespace
}  // namespace ferry::llm
