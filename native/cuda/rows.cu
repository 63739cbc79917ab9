// Row-wise kernels of the classifier head: log-softmax forward/backward, fused cross entropy,
// NLL. One block per row (grid-stride over rows), block size matched to the row length; the
// losses reduce on the device (per-block partials, then one block) and copy one scalar back.
#include <cmath>

#include "block_reduce.cuh"

namespace psrpc {
namespace cuda {
namespace {

// Writes y = x - logsumexp(x) for one row and returns logsumexp. All reads of x happen before
// the last barrier, so y may alias x.
__device__ float log_softmax_row(const float* x, float* y, int64_t cols, float* shared) {
  float local_max = -INFINITY;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) local_max = fmaxf(local_max, x[c]);
  const float row_max = block_reduce(local_max, shared, MaxOp<float>());
  float local_sum = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) local_sum += expf(x[c] - row_max);
  const float lse = row_max + logf(block_reduce(local_sum, shared, SumOp<float>()));
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) y[c] = x[c] - lse;
  return lse;
}

__global__ void log_softmax_forward_kernel(const float* x, float* y, int64_t rows, int64_t cols) {
  __shared__ float shared[kMaxReduceThreads];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) log_softmax_row(x + r * cols, y + r * cols, cols, shared);
}

__global__ void log_softmax_backward_kernel(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  __shared__ float shared[kMaxReduceThreads];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    float local = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) local += dyr[c];
    const float total = block_reduce(local, shared, SumOp<float>());
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dxr[c] = dyr[c] - expf(yr[c]) * total;
  }
}

__global__ void cross_entropy_forward_kernel(const float* logits, const int32_t* labels, float* logp, int64_t rows,
                                             int64_t cols, double* partials) {
  __shared__ float shared[kMaxReduceThreads];
  double loss = 0.0;  // meaningful in thread 0 only
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    // Read the label's logit before any thread writes logp (which may alias logits).
    const float picked = threadIdx.x == 0 ? logits[r * cols + labels[r]] : 0.0f;
    const float lse = log_softmax_row(logits + r * cols, logp + r * cols, cols, shared);
    if (threadIdx.x == 0) loss += static_cast<double>(lse - picked);
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = loss;
}

__global__ void cross_entropy_backward_kernel(const float* logp, const int32_t* labels, float* dlogits, int64_t rows,
                                              int64_t cols, float scale) {
  const int64_t n = rows * cols;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t r = i / cols, c = i - r * cols;
    const float onehot = c == labels[r] ? 1.0f : 0.0f;
    dlogits[i] = (expf(logp[i]) - onehot) * scale;
  }
}

__global__ void nll_forward_kernel(const float* logp, const int32_t* labels, int64_t rows, int64_t cols,
                                   double* partials) {
  __shared__ double shared[kMaxReduceThreads];
  double acc = 0.0;
  for (int64_t r = global_thread(); r < rows; r += grid_threads()) acc -= static_cast<double>(logp[r * cols + labels[r]]);
  const double total = block_reduce(acc, shared, SumOp<double>());
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void nll_backward_kernel(const int32_t* labels, float* dlogp, int64_t rows, int64_t cols, float scale) {
  const int64_t n = rows * cols;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t r = i / cols, c = i - r * cols;
    dlogp[i] = c == labels[r] ? -scale : 0.0f;
  }
}

int row_blocks(int64_t rows) { return static_cast<int>(rows < kMaxBlocks ? rows : kMaxBlocks); }

}  // namespace
}  // namespace cuda

namespace kernels {

void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  using namespace cuda;
  if (rows <= 0 || cols <= 0) return;
  PSRPC_LAUNCH(row_blocks(rows), row_threads(cols), 0, log_softmax_forward_kernel)(x, y, rows, cols);
}

void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  using namespace cuda;
  if (rows <= 0 || cols <= 0) return;
  PSRPC_LAUNCH(row_blocks(rows), row_threads(cols), 0, log_softmax_backward_kernel)(y, dy, dx, rows, cols);
}

float cross_entropy_forward(const float* logits, const int32_t* labels, float* logp, int64_t rows, int64_t cols) {
  using namespace cuda;
  if (rows <= 0 || cols <= 0) return 0.0f;
  double* scratch = reduction_scratch();
  if (!scratch) return __builtin_nanf("");
  const int blocks = row_blocks(rows);
  PSRPC_LAUNCH(blocks, row_threads(cols), 0, cross_entropy_forward_kernel)(logits, labels, logp, rows, cols, scratch);
  return static_cast<float>(finish_reduction(scratch, blocks, scratch + kMaxBlocks) / static_cast<double>(rows));
}

void cross_entropy_backward(const float* logp, const int32_t* labels, float* dlogits, int64_t rows, int64_t cols,
                            float scale) {
  using namespace cuda;
  if (rows <= 0 || cols <= 0) return;
  const int64_t n = rows * cols;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, cross_entropy_backward_kernel)(logp, labels, dlogits, rows, cols, scale);
}

float nll_forward(const float* logp, const int32_t* labels, int64_t rows, int64_t cols) {
  using namespace cuda;
  if (rows <= 0 || cols <= 0) return 0.0f;
  double* scratch = reduction_scratch();
  if (!scratch) return __builtin_nanf("");
  const int blocks = blocks_for(rows, kMaxReduceThreads);
  PSRPC_LAUNCH(blocks, kMaxReduceThreads, 0, nll_forward_kernel)(logp, labels, rows, cols, scratch);
  return static_cast<float>(finish_reduction(scratch, blocks, scratch + kMaxBlocks) / static_cast<double>(rows));
}

void nll_backward(const int32_t* labels, float* dlogp, int64_t rows, int64_t cols, float scale) {
  using namespace cuda;
  if (rows <= 0 || cols <= 0) return;
  const int64_t n = rows * cols;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, nll_backward_kernel)(labels, dlogp, rows, cols, scale);
}

}  // namespace kernels
}  // namespace psrpc
