// The AVX2 + FMA instantiation of the blocked GEMM: 6 x 16 tiles (12 ymm accumulators).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "gemm_paths.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "gemm_blocked.h"

namespace psrpc {
namespace cpu {
namespace {

struct Avx2 {
  using V = __m256;
  using M = __m256i;
  static constexpr int W = 8;
  static constexpr int MR = 6;
  static constexpr int NV = 2;
  static constexpr int64_t KC = 256;
  static constexpr int64_t MC = 120;
  static constexpr int64_t NC = 1024;
  static constexpr int64_t kDirectLimit = 96 * 1024;

  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V loadm(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void storem(float* p, V v, M m) { _mm256_maskstore_ps(p, m, v); }
  static V bcast(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static M mask(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }

  // Rows [0, mr) of A (not transposed) into one MR-row panel, (i, p) at p * MR + i.
  static void pack_a_rows(const float* a, int64_t lda, int mr, int64_t kc, float* panel) {
    for (int i = 0; i < mr; ++i) {
      for (int64_t p = 0; p < kc; ++p) panel[p * MR + i] = a[i * lda + p];
    }
  }

  // op(B) = B^T packed into 16-column panels, zero-padded on the right.
  static void pack_bt(const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                      float* dst) {
    constexpr int NR = NV * W;
    for (int64_t jr = 0; jr < nc; jr += NR) {
      const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
      float* panel = dst + (jr / NR) * kc * NR;
      for (int j = 0; j < NR; ++j) {
        if (j < nr) {
          const float* src = b + (j0 + jr + j) * ldb + p0;
          for (int64_t p = 0; p < kc; ++p) panel[p * NR + j] = src[p];
        } else {
          for (int64_t p = 0; p < kc; ++p) panel[p * NR + j] = 0.0f;
        }
      }
    }
  }
};

}  // namespace

bool gemm_avx2(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc) {
  return blocked::gemm_blocked<Avx2>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace cpu
}  // namespace psrpc

#pragma GCC pop_options
