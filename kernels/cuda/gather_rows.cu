// Row gather: one block per output row, threads stride over the row.
#include "kernels/cuda/gather_rows.cuh"

#include <climits>
#include <cmath>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/launch.cuh"

namespace ferry::kernels::cuda {
namespace {

__global__ void gather_rows_kernel(float* __restrict__ out, const float* __restrict__ in,
                                   const int32_t* __restrict__ rows, int64_t num_in_rows, int64_t dim) {
  const int64_t i = blockIdx.x;
  const int64_t r = rows[i];
  const bool valid = r >= 0 && r < num_in_rows;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) out[i * dim + j] = valid ? in[r * dim + j] : NAN;
}

}  // namespace

Status gather_rows(float* out, const float* in, const int32_t* rows, int64_t num_rows, int64_t num_in_rows, int64_t dim,
                   cudaStream_t stream) {
  const char* op = "cuda::gather_rows";
  FERRY_CUDA_REQUIRE(num_rows >= 0 && num_rows <= INT_MAX && num_in_rows >= 0 && dim > 0, op);
  if (num_rows == 0) return Status::Ok();
  FERRY_CUDA_REQUIRE(out && in && rows, op);
  const unsigned threads = dim >= 1024 ? 256 : 64;
  detail::launch_kernel(gather_rows_kernel, static_cast<unsigned>(num_rows), threads, 0, stream, out, in, rows,
                        num_in_rows, dim);
  FERRY_CUDA_CHECK_LAUNCH("gather_rows_kernel");
  return Status::Ok();
}

}  // namespace ferry::kernels::cuda
