// The GEMM implementations kernels::gemm chooses between (see gemm.cc).
#pragma once

#include <cstdint>

namespace psrpc {
namespace cpu {

// Each has the contract of kernels::gemm restricted to m, n, k > 0 and alpha != 0.
void gemm_scalar(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc);

// The vector paths return false, having touched nothing, when their packing buffers cannot be
// allocated; the caller then falls back to gemm_scalar.
bool gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc);
bool gemm_avx2(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc);

}  // namespace cpu
}  // namespace psrpc
