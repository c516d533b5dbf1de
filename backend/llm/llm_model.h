// LlmModel: one loaded model version of the llm backend -- tokenizer, chat template, CPU engine,
// paged KV cache -- and the generation loop that serves its requests.
//
// The loop is iteration-level: every step runs one forward pass over all running sequences,
// a whole prompt for a newly admitted sequence and one token for each decoding one, then samples,
// detokenizes, checks stops and streams each sequence's new text. Requests wait FCFS; one is
// admitted when fewer than max_num_seqs run and the KV pool can reserve blocks for its prompt plus
// max_tokens (so a running sequence never runs out of blocks). Priorities, chunked prefill,
// preemption and prefix caching are not here yet (the scheduler issue adds them).
//
// Thread-safety: submit, cancel and describe are safe from any thread; one worker thread runs the
// steps and sends every response.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <json/json.h>

#include "backend/llm/chat_template/chat_template.h"
#include "backend/llm/engine/cpu_engine.h"
#include "backend/llm/engine/kv_cache_storage.h"
#include "backend/llm/llm_config.h"
#include "backend/llm/llm_request.h"
#include "backend/llm/sampling/sampler.h"
#include "backend/llm/sampling/sampling_rng.h"
#include "backend/llm/sampling/stop_checker.h"
#include "backend/llm/tokenizer/incremental_detokenizer.h"
#include "backend/llm/tokenizer/tokenizer.h"
#include "common/status.h"
#include "ferry/ferry.h"

namespace ferry::llm {

class LlmModel {
 public:
  static Result<std::unique_ptr<LlmModel>> create(const ferry_host_api* host, const ferry_model_desc& desc);
  ~LlmModel();  // ends every request with a CANCELLED FINAL, then joins the worker
  LlmModel(const LlmModel&) = delete;
  LlmModel& operator=(const LlmModel&) = delete;

  Status submit(const ferry_request& request, ferry_responder* responder);
  bool cancel(uint64_t request_id);
  std::string describe(ferry_describe_kind kind) const;

 private:
  using Clock = std::chrono::steady_clock;

  struct Sequence {
    uint64_t id = 0;
    ferry_responder* responder = nullptr;
    bool stream = false;
    std::vector<int32_t> prompt;
    std::vector<int32_t> output;
    SamplingParams params;
    SamplingRng rng{0};
    std::unique_ptr<IncrementalDetokenizer> detokenizer;
    std::unique_ptr<StopChecker> stop;
    std::vector<int32_t> block_table;
    int32_t num_computed = 0;     // tokens whose K/V are in the cache
    std::string pending_text;     // text not yet sent
    std::vector<int32_t> pending_ids;
    std::vector<SampleResult> pending_logprobs;
    bool echo = false;            // the first response carries the prompt
    bool cancelled = false;       // guarded by mu_
    Clock::time_point submitted, started, last_token;
  };

  LlmModel(const ferry_host_api* host, std::string name, int64_t version) : host_(host), name_(std::move(name)), version_(version) {}
  Status load(const ferry_model_desc& desc);
  void create_metrics();
  void run();
  // One step over `batch`: forward, sample, stream. Finished sequences get num_computed = -1.
  void step(std::vector<Sequence*>& running);
  // Sends what the sequence has pending; `final` ends it with finish_reason (or `error`).
  void send(Sequence& seq, bool final, const char* finish_reason, const Status& error);
  void release(Sequence& seq);
  // Answers a tokenize / detokenize request at once (no generation).
  void answer_now(const LlmRequest& request, ferry_responder* responder);
  Json::Value logprob_json(const SampleResult& r) const;
  void observe_token_times(Sequence& seq, Clock::time_point now);
  void log(ferry_log_level level, const std::string& message) const;

  const ferry_host_api* host_;
  const std::string name_;
  const int64_t version_;
  LlmConfig config_;
  ModelConfig model_config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_template_;  // null when the model has none
  std::vector<int32_t> eos_ids_;
  std::unique_ptr<CpuEngine> engine_;
  std::unique_ptr<KvCacheStorage> cache_;
  std::unique_ptr<SimpleBlockAllocator> blocks_;  // used only by the worker thread
  std::unique_ptr<Sampler> sampler_;              // used only by the worker thread
  int64_t max_model_len_ = 0;
  int64_t num_blocks_ = 0;

  // Step scratch, reused (worker thread only).
  std::vector<int32_t> token_ids_, positions_;
  std::vector<SequenceInput> inputs_;
  ForwardOutput logits_;
  SampleResult sample_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                               // guarded by mu_
  std::deque<std::unique_ptr<Sequence>> waiting_;       // guarded by mu_
  std::vector<std::unique_ptr<Sequence>> running_;      // guarded by mu_ (the worker reads it unlocked)
  std::atomic<int64_t> blocks_used_{0};                 // written by the worker, read by describe
  uint64_t num_requests_ = 0, num_prompt_tokens_ = 0, num_generated_tokens_ = 0, num_cancelled_ = 0;  // mu_

  ferry_metric* m_prompt_tokens_ = nullptr;
  ferry_metric* m_generated_tokens_ = nullptr;
  ferry_metric* m_running_ = nullptr;
  ferry_metric* m_waiting_ = nullptr;
  ferry_metric* m_blocks_used_ = nullptr;
  ferry_metric* m_ttft_ = nullptr;
  ferry_metric* m_itl_ = nullptr;
  ferry_metric* m_e2e_ = nullptr;
  ferry_metric* m_batch_size_ = nullptr;
  std::thread worker_;
};

}  // namespace ferry::llm
