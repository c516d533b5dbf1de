#include "backend/llm/engine/cuda_graphs.h"

#include <algorithm>

#include "common/status.h"
#include "kernels/cuda/cuda_check.cuh"

namespace ferry::llm {

DecodeGraphs::DecodeGraphs(int64_t max_num_seqs) {
  FERRY_CHECK(max_num_seqs >= 1);
  // vLLM's capture sizes: small batches each get a close fit, larger ones pad to a multiple of 8.
  for (int64_t b : {int64_t{1}, int64_t{2}, int64_t{4}}) {
    if (b < max_num_seqs) buckets_.push_back(b);
  }
  for (int64_t b = 8; b < max_num_seqs; b += 8) buckets_.push_back(b);
  buckets_.push_back(max_num_seqs);
  execs_.assign(buckets_.size(), nullptr);
}

DecodeGraphs::~DecodeGraphs() { clear(); }

int64_t DecodeGraphs::bucket_for(int64_t num_seqs) const {
  FERRY_CHECK(num_seqs >= 1 && num_seqs <= buckets_.back());
  return *std::lower_bound(buckets_.begin(), buckets_.end(), num_seqs);
}

size_t DecodeGraphs::index_of(int64_t bucket) const {
  const auto it = std::lower_bound(buckets_.begin(), buckets_.end(), bucket);
  FERRY_CHECK(it != buckets_.end() && *it == bucket);
  return static_cast<size_t>(it - buckets_.begin());
}

int64_t DecodeGraphs::num_graphs() const {
  return std::count_if(execs_.begin(), execs_.end(), [](cudaGraphExec_t e) { return e != nullptr; });
}

void DecodeGraphs::clear() {
  for (cudaGraphExec_t& e : execs_) {
    if (e != nullptr) (void)cudaGraphExecDestroy(e);
    e = nullptr;
  }
}

Status DecodeGraphs::launch(int64_t bucket, cudaStream_t stream, const std::function<Status()>& record) {
  cudaGraphExec_t& exec = execs_[index_of(bucket)];
  if (exec == nullptr) {
    FERRY_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    const Status recorded = record();
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream, &graph);  // always: the stream leaves capture mode
    if (!recorded.ok() || ended != cudaSuccess) {
      if (graph != nullptr) (void)cudaGraphDestroy(graph);
      (void)cudaGetLastError();  // capture errors are not sticky: clear the last error for the next step
      if (!recorded.ok()) return recorded;
      FERRY_CUDA_RETURN_IF_ERROR(ended);
    }
    const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
    (void)cudaGraphDestroy(graph);  // the executable graph does not need it
    if (instantiated != cudaSuccess) exec = nullptr;
    FERRY_CUDA_RETURN_IF_ERROR(instantiated);
    ++num_captured_;
  }
  FERRY_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec, stream));
  ++num_replayed_;
  return Status::Ok();
}

}  // namespace ferry::llm
