// GEMM: C = alpha * op(A) * op(B) + beta * C, row-major, with shared-memory tiling.
//
// Each 16 x 16 block computes a 64 x 64 tile of C; each thread owns a 4 x 4 sub-tile strided by
// 16 (rows ty + 16 i, columns tx + 16 j), so shared-memory reads are broadcasts or conflict-free.
// The transpose flags are template parameters: each choice loads its tiles along the stored
// contiguous dimension, so global loads stay coalesced whichever operand is transposed.
#include "cuda_compat.h"

namespace psrpc {
namespace cuda {
namespace {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kSide = 16, kPerThread = 4;

template <bool kTransA, bool kTransB>
__global__ void __launch_bounds__(kSide * kSide)
    gemm_tile(int64_t m, int64_t n, int64_t k, float alpha, const float* __restrict__ a, int64_t lda,
              const float* __restrict__ b, int64_t ldb, float beta, float* __restrict__ c, int64_t ldc,
              int64_t tiles_m) {
  // +1 column of padding: the non-transposed A tile is written down its columns.
  __shared__ float as[kTileK][kTileM + 1];
  __shared__ float bs[kTileK][kTileN + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int t = ty * kSide + tx;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  // gridDim.y is limited to 65535: very tall C is covered by striding over row tiles.
  for (int64_t tile = blockIdx.y; tile < tiles_m; tile += gridDim.y) {
    const int64_t m0 = tile * kTileM;
    float acc[kPerThread][kPerThread];
    for (int i = 0; i < kPerThread; ++i)
      for (int j = 0; j < kPerThread; ++j) acc[i][j] = 0.0f;

    for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
      for (int q = 0; q < (kTileM * kTileK) / (kSide * kSide); ++q) {
        const int e = t + q * kSide * kSide;
        // op(A)[i][kk]: A[i, kk] (contiguous along kk) or A[kk, i] (contiguous along i).
        const int i = kTransA ? e % kTileM : e / kTileK;
        const int kk = kTransA ? e / kTileM : e % kTileK;
        const int64_t gi = m0 + i, gk = k0 + kk;
        float v = 0.0f;
        if (gi < m && gk < k) v = kTransA ? a[gk * lda + gi] : a[gi * lda + gk];
        as[kk][i] = v;
      }
      for (int q = 0; q < (kTileN * kTileK) / (kSide * kSide); ++q) {
        const int e = t + q * kSide * kSide;
        // op(B)[kk][j]: B[kk, j] (contiguous along j) or B[j, kk] (contiguous along kk).
        const int j = kTransB ? e / kTileK : e % kTileN;
        const int kk = kTransB ? e % kTileK : e / kTileN;
        const int64_t gj = n0 + j, gk = k0 + kk;
        float v = 0.0f;
        if (gj < n && gk < k) v = kTransB ? b[gj * ldb + gk] : b[gk * ldb + gj];
        bs[kk][j] = v;
      }
      __syncthreads();
      for (int kk = 0; kk < kTileK; ++kk) {
        float ra[kPerThread], rb[kPerThread];
        for (int i = 0; i < kPerThread; ++i) ra[i] = as[kk][ty + kSide * i];
        for (int j = 0; j < kPerThread; ++j) rb[j] = bs[kk][tx + kSide * j];
        for (int i = 0; i < kPerThread; ++i)
          for (int j = 0; j < kPerThread; ++j) acc[i][j] += ra[i] * rb[j];
      }
      __syncthreads();
    }

    for (int i = 0; i < kPerThread; ++i) {
      const int64_t row = m0 + ty + kSide * i;
      if (row >= m) continue;
      for (int j = 0; j < kPerThread; ++j) {
        const int64_t col = n0 + tx + kSide * j;
        if (col >= n) continue;
        float* out = c + row * ldc + col;
        // beta == 0: C is write-only, as in BLAS (a NaN already in C must not leak through).
        *out = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *out;
      }
    }
  }
}

}  // namespace
}  // namespace cuda

namespace kernels {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  using namespace cuda;
  if (m <= 0 || n <= 0) return;
  const int64_t tiles_m = (m + kTileM - 1) / kTileM;
  const int64_t tiles_n = (n + kTileN - 1) / kTileN;
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(tiles_m < 65535 ? tiles_m : 65535));
  const dim3 block(kSide, kSide);
  if (trans_a) {
    if (trans_b)
      PSRPC_LAUNCH(grid, block, 0, gemm_tile<true, true>)(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, tiles_m);
    else
      PSRPC_LAUNCH(grid, block, 0, gemm_tile<true, false>)(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, tiles_m);
  } else {
    if (trans_b)
      PSRPC_LAUNCH(grid, block, 0, gemm_tile<false, true>)(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, tiles_m);
    else
      PSRPC_LAUNCH(grid, block, 0, gemm_tile<false, false>)(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, tiles_m);
  }
}

}  // namespace kernels
}  // namespace psrpc
