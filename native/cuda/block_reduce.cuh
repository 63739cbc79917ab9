// Block-wide reductions through shared memory (no warp intrinsics, so the SIMT emulation runs
// them unchanged). blockDim.x must be a power of two no larger than kMaxReduceThreads; every
// thread of the block must call them (they contain barriers). The shared buffer is reused by
// the next call: the trailing barrier makes that safe.
#pragma once

#include "cuda_compat.h"

namespace psrpc {
namespace cuda {

constexpr int kMaxReduceThreads = 256;

template <typename T>
struct SumOp {
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
template <typename T>
struct MaxOp {
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// Returns the reduction of `value` over the block to every thread.
template <typename T, typename Op>
__device__ T block_reduce(T value, T* shared, Op op) {
  const unsigned tid = threadIdx.x;
  shared[tid] = value;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (tid < stride) shared[tid] = op(shared[tid], shared[tid + stride]);
    __syncthreads();
  }
  const T total = shared[0];
  __syncthreads();
  return total;
}

// Threads for a block that reduces along a row of `cols` elements: one to eight warps.
inline int row_threads(int64_t cols) {
  int t = 32;
  while (t < kMaxReduceThreads && t < cols) t <<= 1;
  return t;
}

}  // namespace cuda
}  // namespace psrpc
