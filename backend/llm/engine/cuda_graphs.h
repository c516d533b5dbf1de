// DecodeGraphs: the CUDA graphs of CudaEngine's decode steps, one per batch-size bucket, captured on
// first use and replayed on every later decode step of that bucket (docs/cuda.md, "CUDA graphs").
//
// A graph freezes every kernel argument of the work captured into it (grid sizes, scalars, device
// pointers), so what a step changes must be in device memory that the caller rewrites before each
// replay; the caller records work whose arguments depend only on the bucket and on buffers that
// outlive the graph. Capture uses cudaStreamCaptureModeThreadLocal: other threads (other engines,
// model loads) may allocate meanwhile; the capturing thread may not (the engine allocates nothing
// in a step).
//
// Ownership: owns its cudaGraphExec_t's; destroy (or clear) it only while its stream has no replay
// pending. Thread-safety: none; one per engine, used from the step thread.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "common/status.h"

namespace ferry::llm {

class DecodeGraphs {
 public:
  // Buckets 1, 2, 4, then multiples of 8, the last one max_num_seqs (>= 1).
  explicit DecodeGraphs(int64_t max_num_seqs);
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  // The smallest bucket holding num_seqs sequences (1 <= num_seqs <= max_num_seqs).
  int64_t bucket_for(int64_t num_seqs) const;

  // Enqueues the bucket's graph on `stream`. Without one yet, first captures it: `record` runs with
  // `stream` capturing (it enqueues the work and must not synchronize or allocate), and its graph
  // is instantiated. A failed capture leaves no graph (the next call tries again) and returns the
  // error of `record`, or Internal for the CUDA failure.
  Status launch(int64_t bucket, cudaStream_t stream, const std::function<Status()>& record);

  // Destroys every graph (their frozen pointers are stale, e.g. the KV cache was reallocated).
  void clear();

  int64_t num_captured() const { return num_captured_; }  // captures since creation, rebuilds included
  int64_t num_replayed() const { return num_replayed_; }  // launches of a graph, the first included
  int64_t num_graphs() const;                             // graphs held now

 private:
  size_t index_of(int64_t bucket) const;

  std::vector<int64_t> buckets_;          // ascending; the last is max_num_seqs
  std::vector<cudaGraphExec_t> execs_;    // per bucket, nullptr until captured
  int64_t num_captured_ = 0;
  int64_t num_replayed_ = 0;
};

}  // namespace ferry::llm
