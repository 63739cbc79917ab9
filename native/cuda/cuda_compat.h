// What every .cu file of the CUDA backend includes first: the CUDA runtime under nvcc, the SIMT
// emulation (emu/cuda_emu.h) under g++ with PSRPC_CUDA_EMU, and the few portable helpers the
// kernels share (launch macro, launch geometry, bit casts, the reduction scratch buffer).
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(PSRPC_CUDA_EMU)
#include "emu/cuda_emu.h"
// The emulator has no <<< >>> syntax: the launch becomes a call on a bound-launch object.
#define PSRPC_LAUNCH(grid, block, shmem, ...) ::psrpc_emu::launch(grid, block, shmem, __VA_ARGS__)
#else
#include <cuda_runtime.h>
// Variadic so that template kernels (`gemm_tile<true, false>`) need no extra parentheses.
#define PSRPC_LAUNCH(grid, block, shmem, ...) __VA_ARGS__<<<grid, block, shmem>>>
#endif

#include "psrpc/kernels.h"

namespace psrpc {
namespace cuda {

// Threads per block of the 1-D kernels. Modest on purpose: it is plenty for memory-bound
// elementwise work on sm_80/sm_90, and it bounds the fibers per block under emulation.
constexpr int kThreads = 256;
// Cap on blocks of a grid-stride launch: enough to fill an H100 (132 SMs x 8 blocks of 256), and
// every partial of a reduction fits the fixed scratch buffer below.
constexpr int kMaxBlocks = 1024;

inline int blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b));
}

// Grid-stride loop bounds in 64-bit (tensors may exceed 2^31 elements).
__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__host__ __device__ __forceinline__ uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__) || defined(PSRPC_CUDA_EMU)
  return __float_as_uint(f);
#else
  uint32_t u;
  __builtin_memcpy(&u, &f, sizeof u);
  return u;
#endif
}
__host__ __device__ __forceinline__ float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__) || defined(PSRPC_CUDA_EMU)
  return __uint_as_float(u);
#else
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// Device scratch for two-pass reductions: kMaxBlocks partials plus the final value. Allocated
// once per host thread on first use (never on the hot path after that) and kept for the life
// of the thread. Returns null if the allocation failed.
double* reduction_scratch();

// Sums `count` doubles at `partials` on the device with one block, stores the total at `out`
// (device), and returns it copied to the host. Runs in launch order after the kernels that
// wrote the partials, so no explicit synchronisation is needed.
double finish_reduction(const double* partials, int count, double* out);

}  // namespace cuda
}  // namespace psrpc
