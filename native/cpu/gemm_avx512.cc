// The AVX-512 instantiation of the blocked GEMM: 14 x 32 tiles (28 of the 32 zmm registers hold
// accumulators, 2 the B row, 1 the broadcast A value) and a
// transposing B packer built on 16 x 16 in-register transposes.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "gemm_paths.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")
// GCC 12 reports the intrinsics' own placeholder operands (__Y) in the transposes as maybe
// uninitialised; every lane used is written first.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "gemm_blocked.h"

namespace psrpc {
namespace cpu {
namespace {

#include "transpose16_avx512.h"

struct Avx512 {
  using V = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static constexpr int MR = 14;  // <= 16: pack_a_rows transposes 16-row blocks
  static constexpr int NV = 2;
  static constexpr int64_t KC = 320;
  static constexpr int64_t MC = 140;
  static constexpr int64_t NC = 1024;
  static constexpr int64_t kDirectLimit = 96 * 1024;  // floats: operands up to ~384 KiB are read in place

  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V loadm(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void storem(float* p, V v, M m) { _mm512_mask_storeu_ps(p, m, v); }
  static V bcast(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static M mask(int count) { return count >= 16 ? static_cast<M>(0xFFFF) : static_cast<M>((1u << count) - 1u); }

  // Packs rows [0, mr) x columns [0, kc) of A (not transposed) into one MR-row panel, (i, p) at
  // p * MR + i, by 16 x 16 transposes. Rows mr .. MR - 1 of the panel come out zero.
  static void pack_a_rows(const float* a, int64_t lda, int mr, int64_t kc, float* panel) {
    const M rows_mask = mask(MR);
    for (int64_t pp = 0; pp < kc; pp += W) {
      const int pn = static_cast<int>(std::min<int64_t>(W, kc - pp));
      const M pm = mask(pn);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) r[i] = i < mr ? _mm512_maskz_loadu_ps(pm, a + i * lda + pp) : _mm512_setzero_ps();
      transpose16(r);
      for (int j = 0; j < pn; ++j) _mm512_mask_storeu_ps(panel + (pp + j) * MR, rows_mask, r[j]);
    }
  }

  // Packs op(B) = B^T (B stored n x k) for p in [p0, p0+kc), j in [j0, j0+nc) into 32-column
  // panels: 16 x 16 blocks of B are loaded along k (contiguous), transposed in registers and
  // stored along j. Columns past nc are zero.
  static void pack_bt(const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                      float* dst) {
    constexpr int NR = NV * W;
    for (int64_t jr = 0; jr < nc; jr += NR) {
      const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
      float* panel = dst + (jr / NR) * kc * NR;
      for (int half = 0; half < NV; ++half) {
        const int rows = std::max(0, std::min(W, nr - half * W));
        for (int64_t pp = 0; pp < kc; pp += W) {
          const int pn = static_cast<int>(std::min<int64_t>(W, kc - pp));
          const M pm = mask(pn);
          __m512 r[16];
          for (int i = 0; i < 16; ++i) {
            r[i] = i < rows ? _mm512_maskz_loadu_ps(pm, b + (j0 + jr + half * W + i) * ldb + p0 + pp)
                            : _mm512_setzero_ps();
          }
          transpose16(r);
          for (int i = 0; i < pn; ++i) _mm512_store_ps(panel + (pp + i) * NR + half * W, r[i]);
        }
      }
    }
  }
};

}  // namespace

bool gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  return blocked::gemm_blocked<Avx512>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace cpu
}  // namespace psrpc

#pragma GCC diagnostic pop
#pragma GCC pop_options
