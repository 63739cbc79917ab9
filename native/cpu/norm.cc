// The CPU batch-normalisation kernels of the contract (torch.nn.BatchNorm2d over NCHW, statistics
// in double), each loop compiled for AVX-512, AVX2 and the baseline and dispatched at run time.
// The loops live in norm_loops.h; per channel, the rows of all n images are visited in turn.
#include <cmath>
#include <cstdint>

#include "psrpc/kernels.h"
#include "simd.h"

namespace psrpc {
namespace cpu {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")
namespace avx512 {
#include "norm_loops.h"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "norm_loops.h"
}  // namespace avx2
#pragma GCC pop_options

namespace scalar {
#include "norm_loops.h"
}  // namespace scalar

namespace {

struct NormLoops {
  double (*row_sum)(const float*, int64_t);
  double (*row_sq_dev)(const float*, int64_t, double);
  void (*row_grad_sums)(const float*, const float*, int64_t, double, double*);
  void (*normalise_row)(const float*, float*, int64_t, float, float, float);
  void (*grad_row)(const float*, const float*, float*, int64_t, float, float, float, float, bool, bool);
};

const NormLoops& loops() {
  static const NormLoops table[3] = {
      {scalar::row_sum, scalar::row_sq_dev, scalar::row_grad_sums, scalar::normalise_row, scalar::grad_row},
      {avx2::row_sum, avx2::row_sq_dev, avx2::row_grad_sums, avx2::normalise_row, avx2::grad_row},
      {avx512::row_sum, avx512::row_sq_dev, avx512::row_grad_sums, avx512::normalise_row, avx512::grad_row},
  };
  return table[static_cast<int>(simd_level())];
}

}  // namespace
}  // namespace cpu

namespace kernels {

void batch_norm_forward(const float* x, float* y, const float* gamma, const float* beta,
                        float* save_mean, float* save_invstd, float* running_mean,
                        float* running_var, int64_t n, int64_t c, int64_t hw, bool training,
                        float momentum, float eps) {
  const cpu::NormLoops& l = cpu::loops();
  const double m = static_cast<double>(n) * static_cast<double>(hw);
  for (int64_t ch = 0; ch < c; ++ch) {
    double mean, invstd;
    if (training) {
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) s += l.row_sum(x + (i * c + ch) * hw, hw);
      mean = s / m;
      double q = 0.0;
      for (int64_t i = 0; i < n; ++i) q += l.row_sq_dev(x + (i * c + ch) * hw, hw, mean);
      const double var = q / m;
      invstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
      if (running_mean != nullptr && running_var != nullptr) {
        const double unbiased = m > 1.0 ? var * m / (m - 1.0) : var;
        const double mom = static_cast<double>(momentum);
        running_mean[ch] = static_cast<float>((1.0 - mom) * running_mean[ch] + mom * mean);
        running_var[ch] = static_cast<float>((1.0 - mom) * running_var[ch] + mom * unbiased);
      }
    } else {
      mean = running_mean[ch];
      invstd = 1.0 / std::sqrt(static_cast<double>(running_var[ch]) + static_cast<double>(eps));
    }
    save_mean[ch] = static_cast<float>(mean);
    save_invstd[ch] = static_cast<float>(invstd);
    const double g = gamma != nullptr ? gamma[ch] : 1.0;
    const float scale = static_cast<float>(invstd * g);
    const float shift = beta != nullptr ? beta[ch] : 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      l.normalise_row(x + (i * c + ch) * hw, y + (i * c + ch) * hw, hw, save_mean[ch], scale, shift);
    }
  }
}

void batch_norm_backward(const float* x, const float* dy, const float* gamma,
                         const float* save_mean, const float* save_invstd, float* dx, float* dgamma,
                         float* dbeta, int64_t n, int64_t c, int64_t hw, bool training,
                         bool accumulate_dx, bool accumulate_dgamma, bool accumulate_dbeta) {
  const cpu::NormLoops& l = cpu::loops();
  const double m = static_cast<double>(n) * static_cast<double>(hw);
  for (int64_t ch = 0; ch < c; ++ch) {
    const float mean = save_mean[ch];
    const double invstd = save_invstd[ch];
    double sums[2] = {0.0, 0.0};  // sum dy, sum dy * (x - mean)
    if (dgamma != nullptr || dbeta != nullptr || (training && dx != nullptr)) {
      for (int64_t i = 0; i < n; ++i) {
        l.row_grad_sums(x + (i * c + ch) * hw, dy + (i * c + ch) * hw, hw, mean, sums);
      }
    }
    if (dbeta != nullptr) dbeta[ch] = static_cast<float>((accumulate_dbeta ? dbeta[ch] : 0.0) + sums[0]);
    if (dgamma != nullptr) {
      dgamma[ch] = static_cast<float>((accumulate_dgamma ? dgamma[ch] : 0.0) + sums[1] * invstd);
    }
    if (dx == nullptr) continue;
    const double g = gamma != nullptr ? gamma[ch] : 1.0;
    const float k = static_cast<float>(g * invstd);
    const float mean_dy = training ? static_cast<float>(sums[0] / m) : 0.0f;
    const float proj = training ? static_cast<float>(sums[1] * invstd * invstd / m) : 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t at = (i * c + ch) * hw;
      l.grad_row(x + at, dy + at, dx + at, hw, mean, k, mean_dy, proj, training, accumulate_dx);
    }
  }
}

}  // namespace kernels
}  // namespace psrpc
