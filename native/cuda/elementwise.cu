// Elementwise kernels: relu, bias add, axpy, scale, add, mul. Grid-stride loops, so any n runs
// on a bounded grid (and the SIMT emulation creates a bounded number of threads).
#include "cuda_compat.h"

namespace psrpc {
namespace cuda {
namespace {

__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : 0.0f;
  }
}

__global__ void relu_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

__global__ void bias_add_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t n, int64_t cols) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] += bias[i % cols];
}

__global__ void axpy_kernel(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] += alpha * x[i];
}

__global__ void scale_kernel(int64_t n, float alpha, float* x) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) x[i] *= alpha;
}

__global__ void add_kernel(int64_t n, const float* a, const float* b, float* out) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = a[i] + b[i];
}

__global__ void mul_kernel(int64_t n, const float* a, const float* b, float* out) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = a[i] * b[i];
}

}  // namespace
}  // namespace cuda

namespace kernels {

using cuda::blocks_for;
using cuda::kThreads;

void relu_forward(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, cuda::relu_forward_kernel)(x, y, n);
}

void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, cuda::relu_backward_kernel)(x, dy, dx, n);
}

void bias_add(float* y, const float* bias, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t n = rows * cols;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, cuda::bias_add_kernel)(y, bias, n, cols);
}

void axpy(int64_t n, float alpha, const float* x, float* y) {
  if (n <= 0) return;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, cuda::axpy_kernel)(n, alpha, x, y);
}

void scale(int64_t n, float alpha, float* x) {
  if (n <= 0) return;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, cuda::scale_kernel)(n, alpha, x);
}

void add(int64_t n, const float* a, const float* b, float* out) {
  if (n <= 0) return;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, cuda::add_kernel)(n, a, b, out);
}

void mul(int64_t n, const float* a, const float* b, float* out) {
  if (n <= 0) return;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, cuda::mul_kernel)(n, a, b, out);
}

}  // namespace kernels
}  // namespace psrpc
