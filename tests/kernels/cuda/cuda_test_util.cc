#include "tests/kernels/cuda/cuda_test_util.h"

namespace ferry::kernels::cuda::testing {

bool cuda_available() {
  static const bool available = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return available;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = dist(rng);
    if (x == 0.0f) x = (lo + hi) / 2 + 0.25f;
  }
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float atol, float rtol,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool ok = std::fabs(got[i] - want[i]) <= atol + rtol * std::fabs(want[i]);  // false for NaN
    ASSERT_TRUE(ok) << what << ": index " << i << " got " << got[i] << " want " << want[i];
  }
}

}  // namespace ferry::kernels::cuda::testing
