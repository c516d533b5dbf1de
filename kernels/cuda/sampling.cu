// Sampling: one block per entry (a power of two of threads, 32 to 1024, about 16 ids a thread), no
// staging buffer: z and p are recomputed from the logits on each pass (the row stays in L2).
//
// The kept set and the draw are "the first id, in an order, at which a running weight reaches a
// goal" (count k for top_k; mass top_p x kept for top_p; mass u x kept, strictly, for the draw).
// In descending order (z desc, ties lower id) that id is found without sorting: a bisection over
// the order-preserving bit patterns of z finds the largest z value v whose "weight of z >= v"
// reaches the goal (about 32 block-wide passes), and among the ids with z == v (equal z, so equal
// p) a walk in id order finds how many are needed: each thread owns a contiguous chunk of ids, an
// exclusive scan of the chunk weights tells it where its chunk starts, and the thread in whose
// chunk the goal is reached walks it. In id order (the draw without top_k / top_p) the walk runs
// over every kept id. A cut is then (v, id): ids with z > v, or z == v and a lower-or-equal id.
#include "kernels/cuda/sampling.cuh"

#include <climits>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"  // first: the emulation build's __device__ and friends
#include "kernels/cuda/device_utils.cuh"

namespace ferry::kernels::cuda {
namespace {

constexpr int kMaxThreads = 1024;

// exp(x) for x <= 0, the CPU sampler's exp_nonpositive (backend/llm/sampling/sampler.cc) operation
// for operation: x = n ln2 + r, a degree-7 Taylor polynomial of r, times 2^n; 0 below -87. The _rn
// intrinsics keep nvcc from contracting a * b + c into an FMA, which would round differently.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.428606765330187e-06f;
constexpr float kExpUnderflow = -87.0f;

__device__ inline float exp_nonpositive(float x) {
  if (!(x >= kExpUnderflow)) return 0.0f;
  const float n = rintf(__fmul_rn(x, kLog2e));
  const float r = __fadd_rn(__fadd_rn(x, -__fmul_rn(n, kLn2Hi)), -__fmul_rn(n, kLn2Lo));
  float y = 1.0f / 5040;
  y = __fadd_rn(__fmul_rn(y, r), 1.0f / 720);
  y = __fadd_rn(__fmul_rn(y, r), 1.0f / 120);
  y = __fadd_rn(__fmul_rn(y, r), 1.0f / 24);
  y = __fadd_rn(__fmul_rn(y, r), 1.0f / 6);
  y = __fadd_rn(__fmul_rn(y, r), 0.5f);
  y = __fadd_rn(__fmul_rn(y, r), 1.0f);
  y = __fadd_rn(__fmul_rn(y, r), 1.0f);
  return ldexpf(y, static_cast<int>(n));
}

// z's position in float order as an unsigned integer (a < b iff key(a) < key(b) for non-NaN; -0
// and +0 share one key, as they compare equal).
__device__ inline uint32_t order_key(float z) {
  const uint32_t b = __float_as_uint(z == 0.0f ? 0.0f : z);
  return (b & 0x80000000u) != 0 ? ~b : (b | 0x80000000u);
}

// The ids up to a point of the descending order: z above key's, or equal and id <= id.
struct Cut {
  uint32_t key;
  int32_t id;
  __device__ bool keeps(uint32_t k, int64_t j) const { return k > key || (k == key && j <= id); }
};
constexpr Cut kKeepAll{0u, INT_MAX};

struct Shared {
  double d[32];
  float f[32];
  uint32_t u[32];
  int32_t i[32];
  int32_t pick;
};

using detail::block_reduce;
using detail::MaxFloatOp;
using detail::MaxOp;
using detail::MinOp;
using detail::SumOp;

// Exclusive prefix sum over the block in thread order; every thread gets its own prefix.
__device__ double block_exclusive_scan(double v, double* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, num_warps = blockDim.x >> 5;
  double inclusive = v;
  for (int offset = 1; offset < 32; offset <<= 1) {
    const double up = __shfl_up_sync(detail::kFullMask, inclusive, offset);
    if (lane >= offset) inclusive += up;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    double total = lane < num_warps ? scratch[lane] : 0.0;
    for (int offset = 1; offset < 32; offset <<= 1) {
      const double up = __shfl_up_sync(detail::kFullMask, total, offset);
      if (lane >= offset) total += up;
    }
    scratch[lane] = total;  // inclusive over warps
  }
  __syncthreads();
  const double before = (warp > 0 ? scratch[warp - 1] : 0.0) + inclusive - v;
  __syncthreads();  // scratch is read before anyone reuses it
  return before;
}

// The first id of the row's largest value (NaN never wins; a row of -inf and NaN gives its first
// -inf, a row of NaN id 0): the CPU's first_argmax. value(j) gives element j.
template <typename Value>
__device__ int32_t first_argmax(Value value, int64_t vocab, Shared& sh) {
  float best_v = -INFINITY;
  int32_t best_i = INT_MAX;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = value(j);
    // Ascending j: a later equal value never replaces, but the first -inf does replace "none".
    if (v > best_v || (v == best_v && best_i == INT_MAX)) best_v = v, best_i = static_cast<int32_t>(j);
  }
  const float top = block_reduce(best_v, MaxFloatOp{}, -INFINITY, sh.f);
  const int32_t first = block_reduce(best_v == top ? best_i : INT_MAX, MinOp{}, INT_MAX, sh.i);
  return first == INT_MAX ? 0 : first;
}

// Whether a running weight has reached a goal: >= goal, or > goal when strict.
__device__ inline bool reaches(double weight, double goal, bool strict) { return strict ? weight > goal : weight >= goal; }

// One sampled row: z, p and the cuts applied so far.
struct Row {
  const float* logits;
  int64_t vocab;
  float inv_t;
  float max_z;
  float min_z = -INFINITY;  // min_p: z below it is dropped
  Cut top_k = kKeepAll;
  Cut top_p = kKeepAll;

  __device__ float z(int64_t j) const { return __fmul_rn(logits[j], inv_t); }
  __device__ float prob(float zj) const { return exp_nonpositive(__fadd_rn(zj, -max_z)); }
  // Whether id j is kept so far; sets its z and key. -inf (and NaN) z are never kept: they carry no
  // mass, and the CPU counts them among top_k's k only when fewer than k others are left.
  __device__ bool kept(int64_t j, float& zj, uint32_t& key) const {
    zj = z(j);
    if (!(zj > -INFINITY && zj >= min_z)) return false;
    key = order_key(zj);
    return top_k.keeps(key, j) && top_p.keeps(key, j);
  }
  // A kept id's weight: 1 (counting) or its unnormalized probability.
  template <bool kMass>
  __device__ double weight(float zj) const {
    return kMass ? static_cast<double>(prob(zj)) : 1.0;
  }
};

// The weight of the kept ids with key >= from.
template <bool kMass>
__device__ double weight_from(const Row& row, uint32_t from, Shared& sh) {
  double acc = 0.0;
  for (int64_t j = threadIdx.x; j < row.vocab; j += blockDim.x) {
    float zj;
    uint32_t key;
    if (row.kept(j, zj, key) && key >= from) acc += row.weight<kMass>(zj);
  }
  return block_reduce(acc, SumOp{}, 0.0, sh.d);
}

// The walk in id order over the kept ids with key == only_key (every kept id when any_key): the
// first id at which base + the running weight reaches goal, or the last such id with weight when
// rounding never reaches it (-1 when there is none).
template <bool kMass>
__device__ int32_t walk(const Row& row, bool any_key, uint32_t only_key, double base, double goal, bool strict,
                        Shared& sh) {
  const int64_t chunk = (row.vocab + blockDim.x - 1) / blockDim.x;
  const int64_t begin = min(row.vocab, static_cast<int64_t>(threadIdx.x) * chunk);
  const int64_t end = min(row.vocab, begin + chunk);
  auto matches = [&](int64_t j, float& zj) {
    uint32_t key;
    return row.kept(j, zj, key) && (any_key || key == only_key);
  };
  double local = 0.0;
  int32_t last = -1;
  for (int64_t j = begin; j < end; ++j) {
    float zj;
    if (!matches(j, zj)) continue;
    const double w = row.weight<kMass>(zj);
    local += w;
    if (w > 0.0) last = static_cast<int32_t>(j);
  }
  if (threadIdx.x == 0) sh.pick = INT_MAX;
  double running = base + block_exclusive_scan(local, sh.d);  // its barriers publish sh.pick
  if (!reaches(running, goal, strict)) {
    for (int64_t j = begin; j < end; ++j) {
      float zj;
      if (!matches(j, zj)) continue;
      running += row.weight<kMass>(zj);
      if (reaches(running, goal, strict)) {
        atomicMin(&sh.pick, static_cast<int32_t>(j));
        break;
      }
    }
  }
  __syncthreads();
  const int32_t pick = sh.pick;
  __syncthreads();  // read by all before the next walk resets it
  if (pick != INT_MAX) return pick;
  return block_reduce(last, MaxOp{}, -1, sh.i);
}

// The cut at the first id, in descending order, where the kept ids' running weight reaches goal;
// false when their whole weight `total` does not.
template <bool kMass>
__device__ bool find_cut(const Row& row, double total, double goal, bool strict, Shared& sh, Cut* cut) {
  if (!reaches(total, goal, strict)) return false;
  // Invariant: weight_from(lo) reaches the goal, weight_from(hi) = above does not.
  const uint32_t top = order_key(row.max_z);
  uint32_t lo = 0, hi = top + 1;
  double above = 0.0;
  if (reaches(0.0, goal, strict)) {
    lo = top;
  } else {
    while (hi - lo > 1) {
      const uint32_t mid = lo + (hi - lo) / 2;
      const double w = weight_from<kMass>(row, mid, sh);
      if (reaches(w, goal, strict)) {
        lo = mid;
      } else {
        hi = mid;
        above = w;
      }
    }
  }
  const int32_t id = walk<kMass>(row, /*any_key=*/false, lo, above, goal, strict, sh);
  *cut = Cut{lo, id < 0 ? INT_MAX : id};
  return true;
}

// The last kept id with mass in the draw's order: the CPU's answer when rounding leaves the draw
// short of u x mass.
__device__ int32_t last_with_mass(const Row& row, bool id_order, Shared& sh) {
  uint32_t low_key = UINT_MAX;
  int32_t last_id = -1;
  for (int64_t j = threadIdx.x; j < row.vocab; j += blockDim.x) {
    float zj;
    uint32_t key;
    if (!row.kept(j, zj, key) || !(row.prob(zj) > 0.0f)) continue;
    last_id = static_cast<int32_t>(j);
    low_key = min(low_key, key);
  }
  if (id_order) return max(0, block_reduce(last_id, MaxOp{}, -1, sh.i));
  low_key = block_reduce(low_key, MinOp{}, UINT_MAX, sh.u);
  last_id = -1;
  for (int64_t j = threadIdx.x; j < row.vocab; j += blockDim.x) {
    float zj;
    uint32_t key;
    if (row.kept(j, zj, key) && key == low_key && row.prob(zj) > 0.0f) last_id = static_cast<int32_t>(j);
  }
  return max(0, block_reduce(last_id, MaxOp{}, -1, sh.i));
}

__device__ int32_t sample_row(const float* logits, int64_t vocab, const SamplingRowParams& prm, Shared& sh) {
  if (!(prm.temperature >= 1e-5f)) return first_argmax([&](int64_t j) { return logits[j]; }, vocab, sh);
  Row row{logits, vocab, 1.0f / prm.temperature, -INFINITY};
  float max_z = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) max_z = fmaxf(max_z, row.z(j));
  row.max_z = block_reduce(max_z, MaxFloatOp{}, -INFINITY, sh.f);
  if (row.max_z == -INFINITY) return first_argmax([&](int64_t j) { return row.z(j); }, vocab, sh);
  if (prm.min_p > 0.0f) row.min_z = __fadd_rn(row.max_z, logf(prm.min_p));

  const bool use_top_k = prm.top_k > 0 && prm.top_k < vocab;
  const bool use_top_p = prm.top_p < 1.0f;
  Cut cut;
  if (use_top_k && find_cut<false>(row, weight_from<false>(row, 0, sh), prm.top_k, false, sh, &cut)) row.top_k = cut;
  if (use_top_p) {
    const double mass = weight_from<true>(row, 0, sh);
    if (find_cut<true>(row, mass, static_cast<double>(prm.top_p) * mass, false, sh, &cut)) row.top_p = cut;
  }
  const double mass = weight_from<true>(row, 0, sh);
  const double target = prm.u * mass;
  int32_t pick = -1;
  if (!use_top_k && !use_top_p) {
    if (reaches(mass, target, true)) pick = walk<true>(row, /*any_key=*/true, 0u, 0.0, target, true, sh);
  } else if (find_cut<true>(row, mass, target, true, sh, &cut)) {
    pick = cut.id;
  }
  return pick >= 0 && pick != INT_MAX ? pick : last_with_mass(row, !use_top_k && !use_top_p, sh);
}

__global__ void __launch_bounds__(kMaxThreads)
    sample_kernel(int32_t* out, const float* __restrict__ logits, const SamplingRowParams* __restrict__ params,
                  int64_t vocab) {
  __shared__ Shared sh;
  const SamplingRowParams prm = params[blockIdx.x];
  const int32_t token = sample_row(logits + static_cast<int64_t>(prm.row) * vocab, vocab, prm, sh);
  if (threadIdx.x == 0) out[blockIdx.x] = token;
}

// About 16 ids per thread, so a small vocabulary (and the emulator) does not pay for idle threads.
int threads_for(int64_t vocab) {
  int threads = 32;
  while (threads < kMaxThreads && threads * 16 < vocab) threads *= 2;
  return threads;
}

}  // namespace

Status sample(int32_t* out, const float* logits, const SamplingRowParams* params, int64_t num_entries, int64_t vocab,
              cudaStream_t stream) {
  FERRY_CUDA_REQUIRE(num_entries >= 0 && num_entries <= INT_MAX, "cuda::sample");
  FERRY_CUDA_REQUIRE(vocab > 0 && vocab < INT_MAX, "cuda::sample");
  if (num_entries == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && logits && params, "cuda::sample");
  detail::launch_kernel(sample_kernel, static_cast<unsigned>(num_entries), threads_for(vocab), 0, stream, out, logits,
                        params, vocab);
  FERRY_CUDA_CHECK_LAUNCH("sample_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
