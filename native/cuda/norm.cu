// Batch normalisation (torch.nn.BatchNorm2d) over x [n, c, hw]: one block per channel, which
// reduces that channel's n * hw values in double through shared memory (two passes: the mean,
// then the squared deviations from it, so a large mean costs no precision) and then normalises
// them. A block owns its channel outright and reads all of it before writing, which is why y
// may alias x (and dx may alias dy) without a second kernel. Reductions run in a fixed order:
// results are deterministic.
#include <cmath>

#include "block_reduce.cuh"

namespace psrpc {
namespace cuda {
namespace {

struct NormDims {
  int64_t n, c, hw;
};

// Element j of channel ch (j < n * hw).
__device__ __forceinline__ int64_t norm_at(const NormDims& d, int64_t ch, int64_t j) {
  const int64_t i = j / d.hw;
  return (i * d.c + ch) * d.hw + (j - i * d.hw);
}

__global__ void bn_forward_kernel(NormDims d, const float* x, float* y, const float* __restrict__ gamma,
                                  const float* __restrict__ beta, float* __restrict__ save_mean,
                                  float* __restrict__ save_invstd, float* __restrict__ running_mean,
                                  float* __restrict__ running_var, bool training, float momentum, float eps) {
  __shared__ double shared[kMaxReduceThreads];
  const int64_t m = d.n * d.hw;
  for (int64_t ch = blockIdx.x; ch < d.c; ch += gridDim.x) {
    float mean, invstd;
    if (training) {
      double acc = 0.0;
      for (int64_t j = threadIdx.x; j < m; j += blockDim.x) acc += static_cast<double>(x[norm_at(d, ch, j)]);
      const double mu = block_reduce(acc, shared, SumOp<double>()) / static_cast<double>(m);
      double dev = 0.0;
      for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
        const double t = static_cast<double>(x[norm_at(d, ch, j)]) - mu;
        dev += t * t;
      }
      const double var = block_reduce(dev, shared, SumOp<double>()) / static_cast<double>(m);
      mean = static_cast<float>(mu);
      invstd = static_cast<float>(1.0 / sqrt(var + static_cast<double>(eps)));
      if (threadIdx.x == 0) {
        save_mean[ch] = mean;
        save_invstd[ch] = invstd;
        if (running_mean) {
          const double unbiased = m > 1 ? var * static_cast<double>(m) / static_cast<double>(m - 1) : var;
          const double keep = 1.0 - static_cast<double>(momentum);
          running_mean[ch] = static_cast<float>(keep * running_mean[ch] + momentum * mu);
          running_var[ch] = static_cast<float>(keep * running_var[ch] + momentum * unbiased);
        }
      }
    } else {
      mean = running_mean[ch];
      invstd = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[ch]) + static_cast<double>(eps)));
      if (threadIdx.x == 0) {
        save_mean[ch] = mean;
        save_invstd[ch] = invstd;
      }
    }
    const float scale = gamma ? gamma[ch] * invstd : invstd;
    const float shift = beta ? beta[ch] : 0.0f;
    // Every read of this channel's x happened before the last reduction's barrier (training) or
    // happens at the same index just below, so writing y over x is safe.
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
      const int64_t at = norm_at(d, ch, j);
      y[at] = (x[at] - mean) * scale + shift;
    }
  }
}

__global__ void bn_backward_kernel(NormDims d, const float* __restrict__ x, const float* dy,
                                   const float* __restrict__ gamma, const float* __restrict__ save_mean,
                                   const float* __restrict__ save_invstd, float* dx, float* __restrict__ dgamma,
                                   float* __restrict__ dbeta, bool training, bool accumulate_dx,
                                   bool accumulate_dgamma, bool accumulate_dbeta) {
  __shared__ double shared[kMaxReduceThreads];
  const int64_t m = d.n * d.hw;
  for (int64_t ch = blockIdx.x; ch < d.c; ch += gridDim.x) {
    const float mean = save_mean[ch], invstd = save_invstd[ch];
    double acc_dy = 0.0, acc_dy_xhat = 0.0;
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
      const int64_t at = norm_at(d, ch, j);
      const double g = static_cast<double>(dy[at]);
      acc_dy += g;
      acc_dy_xhat += g * static_cast<double>((x[at] - mean) * invstd);
    }
    const double sum_dy = block_reduce(acc_dy, shared, SumOp<double>());
    const double sum_dy_xhat = block_reduce(acc_dy_xhat, shared, SumOp<double>());
    if (threadIdx.x == 0) {
      if (dbeta) dbeta[ch] = static_cast<float>(accumulate_dbeta ? dbeta[ch] + sum_dy : sum_dy);
      if (dgamma) dgamma[ch] = static_cast<float>(accumulate_dgamma ? dgamma[ch] + sum_dy_xhat : sum_dy_xhat);
    }
    if (!dx) continue;
    const float scale = gamma ? gamma[ch] * invstd : invstd;
    // dy was read in full before the barriers above, so dx may be dy's own storage.
    const float mean_dy = training ? static_cast<float>(sum_dy / static_cast<double>(m)) : 0.0f;
    const float mean_dy_xhat = training ? static_cast<float>(sum_dy_xhat / static_cast<double>(m)) : 0.0f;
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
      const int64_t at = norm_at(d, ch, j);
      const float xhat = (x[at] - mean) * invstd;
      const float g = training ? scale * (dy[at] - mean_dy - xhat * mean_dy_xhat) : scale * dy[at];
      dx[at] = accumulate_dx ? dx[at] + g : g;
    }
  }
}

int channel_blocks(int64_t c) { return static_cast<int>(c < kMaxBlocks ? c : kMaxBlocks); }

}  // namespace
}  // namespace cuda

namespace kernels {

void batch_norm_forward(const float* x, float* y, const float* gamma, const float* beta, float* save_mean,
                        float* save_invstd, float* running_mean, float* running_var, int64_t n, int64_t c, int64_t hw,
                        bool training, float momentum, float eps) {
  using namespace cuda;
  if (n <= 0 || c <= 0 || hw <= 0) return;
  PSRPC_LAUNCH(channel_blocks(c), kMaxReduceThreads, 0, bn_forward_kernel)(
      NormDims{n, c, hw}, x, y, gamma, beta, save_mean, save_invstd, running_mean, running_var, training, momentum, eps);
}

void batch_norm_backward(const float* x, const float* dy, const float* gamma, const float* save_mean,
                         const float* save_invstd, float* dx, float* dgamma, float* dbeta, int64_t n, int64_t c,
                         int64_t hw, bool training, bool accumulate_dx, bool accumulate_dgamma, bool accumulate_dbeta) {
  using namespace cuda;
  if (n <= 0 || c <= 0 || hw <= 0) return;
  if (!dx && !dgamma && !dbeta) return;
  PSRPC_LAUNCH(channel_blocks(c), kMaxReduceThreads, 0, bn_backward_kernel)(
      NormDims{n, c, hw}, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, training, accumulate_dx,
      accumulate_dgamma, accumulate_dbeta);
}

}  // namespace kernels
}  // namespace psrpc
