// LlmModelContext: what the instances of one model share, immutable after load: configs,
// tokenizer, chat template, weights, EOS ids, limits, and the model-level metric handles.
#pragma once

#include <cstdint>
#include <memory>
#include <source_location>
#include <string>
#include <vector>

#include "backend/llm/chat_template/chat_template.h"
#include "backend/llm/draft_model.h"
#include "backend/llm/llm_config.h"
#include "backend/llm/model/architecture.h"
#include "backend/llm/model/model_config.h"
#include "backend/llm/model/model_weights.h"
#include "backend/llm/tokenizer/tokenizer.h"
#include "ferry/ferry.h"

namespace ferry::llm {

struct LlmMetrics {
  ferry_metric* prompt_tokens = nullptr;      // counter
  ferry_metric* generated_tokens = nullptr;   // counter
  ferry_metric* ttft = nullptr;               // histogram, seconds
  ferry_metric* itl = nullptr;                // histogram, seconds
  ferry_metric* e2e = nullptr;                // histogram, seconds
  ferry_metric* batch_size = nullptr;         // histogram, sequences per step
  ferry_metric* prefix_query_tokens = nullptr;  // counter
  ferry_metric* prefix_hit_tokens = nullptr;    // counter
  ferry_metric* preemptions = nullptr;        // counter
  ferry_metric* evictions = nullptr;          // counter
  ferry_metric* cold_starts = nullptr;        // counter
  // Speculative decoding, labelled with the method (see docs/metrics.md).
  ferry_metric* spec_proposed_tokens = nullptr;  // counter
  ferry_metric* spec_accepted_tokens = nullptr;  // counter
  ferry_metric* spec_emitted_tokens = nullptr;   // counter
  ferry_metric* spec_acceptance_length = nullptr;  // histogram: tokens emitted per verified step
};

struct LlmModelContext {
  const ferry_host_api* host = nullptr;
  std::string name;
  int64_t version = 0;
  LlmConfig config;
  ModelConfig model_config;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ChatTemplate> chat_template;  // null when the model has none (or it is unusable)
  ModelWeights weights;                    // the checkpoint (mappings) or dummy generator
  std::shared_ptr<const CausalLM> model;  // the loaded weights, shared by every instance
  // Speculative method "draft" (draft_model.h): the draft (its CPU weights shared by every cpu
  // instance; a gpu instance uploads its own copy), and the blocks of each instance's draft KV
  // pool. Null / 0 otherwise.
  std::shared_ptr<const DraftModel> draft;
  int64_t draft_num_blocks = 0;
  std::vector<int32_t> eos_ids;
  int64_t max_model_len = 0;
  int64_t num_blocks = 0;  // KV blocks per instance
  int32_t anchor_token = -1;  // a plain token that decodes to anchor_text on its own (for token texts)
  std::string anchor_text;
  LlmMetrics metrics;

  // The caller's file and line go with the message, so the host's log shows where it came from.
  void log(ferry_log_level level, const std::string& message,
           std::source_location where = std::source_location::current()) const {
    host->log(host->host, level, where.file_name(), static_cast<int>(where.line()), message.c_str());
  }
  // Host metric calls that tolerate a metric that failed to register.
  void add(ferry_metric* m, double v) const {
    if (m) host->metric_add(m, v);
  }
  void set(ferry_metric* m, double v) const {
    if (m) host->metric_set(m, v);
  }
  void observe(ferry_metric* m, double v) const {
    if (m) host->metric_observe(m, v);
  }
};

}  // namespace ferry::llm
