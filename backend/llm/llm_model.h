// LlmModel: one loaded model version of the llm backend. It loads what the instances share
// (LlmModelContext: tokenizer, chat template, weights, limits, metrics), starts the instances of
// its instance_group, prefills the KV warm-up prompts, and routes each request to the least-loaded
// instance (queued plus running tokens). Tokenize / detokenize requests are answered at once.
//
// Thread-safety: submit, cancel and describe are safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/llm/big_stack_executor.h"
#include "backend/llm/guided_decoding.h"
#include "backend/llm/llm_context.h"
#include "backend/llm/llm_instance.h"
#include "common/status.h"
#include "ferry/ferry.h"

namespace ferry::llm {

class LlmModel {
 public:
  static Result<std::unique_ptr<LlmModel>> create(const ferry_host_api* host, const ferry_model_desc& desc);
  ~LlmModel();  // instances end every request with a CANCELLED FINAL
  LlmModel(const LlmModel&) = delete;
  LlmModel& operator=(const LlmModel&) = delete;

  Status submit(const ferry_request& request, ferry_responder* responder);
  bool cancel(uint64_t request_id);
  std::string describe(ferry_describe_kind kind) const;

 private:
  LlmModel() = default;
  Status load(const ferry_host_api* host, const ferry_model_desc& desc);
  void create_metrics();
  void destroy_metrics();
  void answer_now(const LlmRequest& request, ferry_responder* responder);
  // The KServe metadata object: platform, context window, tool-call format, inputs and outputs.
  std::string metadata_json() const;
  Status warm_up();
  Status load_draft(const ferry_model_desc& desc);  // speculative method "draft" (llm_model.cc)

  LlmModelContext ctx_;
  std::string metadata_;  // metadata_json(), set by load()
  std::vector<std::unique_ptr<LlmInstance>> instances_;
  // Request parsing (chat template, tokenizer) runs here, off the caller's small stack.
  std::unique_ptr<BigStackExecutor> preprocess_;
  std::unique_ptr<GuidedDecoding> guided_;  // grammars and the token vocabulary for output formats
};

}  // namespace ferry::llm
