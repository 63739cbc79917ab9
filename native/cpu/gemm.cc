// kernels::gemm: the degenerate cases, then the vector path chosen at start-up.
#include <cstdint>

#include "gemm_paths.h"
#include "psrpc/kernels.h"
#include "simd.h"

namespace psrpc {
namespace cpu {

// crow = beta * crow; beta == 0 writes zeros without reading the row (BLAS semantics: NaN-safe).
static void scale_row(float* crow, int64_t n, float beta) {
  if (beta == 0.0f) {
    for (int64_t j = 0; j < n; ++j) crow[j] = 0.0f;
  } else if (beta != 1.0f) {
    for (int64_t j = 0; j < n; ++j) crow[j] *= beta;
  }
}

void gemm_scalar(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    float* crow = c + i * ldc;
    scale_row(crow, n, beta);
    for (int64_t p = 0; p < k; ++p) {
      const float aip = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
      if (trans_b) {
        for (int64_t j = 0; j < n; ++j) crow[j] += aip * b[j * ldb + p];
      } else {
        const float* brow = b + p * ldb;
        for (int64_t j = 0; j < n; ++j) crow[j] += aip * brow[j];
      }
    }
  }
}

}  // namespace cpu

namespace kernels {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    // Only the beta * C part is left; beta == 0 writes zeros without reading C (BLAS semantics).
    for (int64_t i = 0; i < m; ++i) cpu::scale_row(c + i * ldc, n, beta);
    return;
  }
  bool done = false;
  switch (cpu::simd_level()) {
    case cpu::SimdLevel::kAvx512:
      done = cpu::gemm_avx512(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      break;
    case cpu::SimdLevel::kAvx2:
      done = cpu::gemm_avx2(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      break;
    default:
      break;
  }
  if (!done) cpu::gemm_scalar(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace kernels
}  // namespace psrpc
