// Inverted dropout with the shared counter-based generator (psrpc/philox.h): element i draws
// uniform_at(seed, offset + i) wherever it runs, so masks match the CPU backend bit for bit.
#include "cuda_compat.h"
#include "psrpc/philox.h"

namespace psrpc {
namespace cuda {
namespace {

__global__ void dropout_forward_kernel(const float* x, float* y, uint8_t* mask, int64_t n, float p, float keep,
                                       uint64_t seed, uint64_t offset) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const bool kept = rng::dropout_keep(seed, offset + static_cast<uint64_t>(i), p);
    mask[i] = kept ? 1 : 0;
    y[i] = kept ? x[i] / keep : 0.0f;
  }
}

__global__ void dropout_backward_kernel(const float* dy, const uint8_t* mask, float* dx, int64_t n, float keep) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dx[i] = mask[i] ? dy[i] / keep : 0.0f;
}

}  // namespace
}  // namespace cuda

namespace kernels {

// A kept element is divided by keep = 1 - p (float), as the CPU backend does: IEEE division is
// correctly rounded on both (nvcc's default -prec-div=true), so y matches the CPU bit for bit.
void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed, uint64_t offset) {
  using namespace cuda;
  if (n <= 0) return;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, dropout_forward_kernel)(x, y, mask, n, p, 1.0f - p, seed, offset);
}

void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) {
  using namespace cuda;
  if (n <= 0) return;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, dropout_backward_kernel)(dy, mask, dx, n, 1.0f - p);
}

float uniform_at(uint64_t seed, uint64_t index) { return rng::uniform_at(seed, index); }

}  // namespace kernels
}  // namespace psrpc
