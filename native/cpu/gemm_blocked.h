// Cache-blocked GEMM (GotoBLAS / BLIS structure) for row-major C, written once over a vector
// traits type and instantiated per instruction set by gemm_avx512.cc and gemm_avx2.cc, each of
// which includes this header under its own `#pragma GCC target`.
//
// C is computed in MR x NR tiles by a register-blocked microkernel: NR = NV vectors along a row of
// C (loaded from op(B)), MR rows (broadcast from op(A)), MR * NV accumulators. Loops, outer to inner:
//   jc (NC columns) > pc (KC of k) > ic (MC rows) > jr (NR columns) > ir (MR rows) > microkernel,
// so one kc x NR micro-panel of B stays in L1 while MR-row panels of A stream from L2.
// Large operands are packed into contiguous, aligned, zero-padded panels (thread_local buffers,
// grown once); small ones are read in place, because at the MLP's shapes (64 x 64 x 784 and
// smaller) packing would cost as much as the product: op(A) is broadcast from any layout, and
// op(B) rows are loaded directly when B is not transposed. Transposed B is always packed.
//
// Traits provides: V (vector), M (lane mask), W (lanes), MR, NV, KC, MC, NC, kDirectLimit,
// zero(), load(p), loadm(p, M), store(p, V), storem(p, V, M), bcast(float), fma(a, b, c) = a*b+c,
// mul(a, b), mask(count), and the two transposing packers, which want shuffles: pack_bt(...) for
// B^T and pack_a_rows(...) for A not transposed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace psrpc {
namespace cpu {
namespace blocked {

// A 64-byte aligned scratch buffer per thread, grown once and kept: no allocation on the hot path.
struct Scratch {
  float* data = nullptr;
  size_t capacity = 0;  // in floats

  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(data); }

  // Returns false (and leaves the buffer as it was) when memory cannot be had.
  bool reserve(size_t floats) {
    if (floats <= capacity) return true;
    const size_t bytes = ((floats * sizeof(float) + 63) / 64) * 64;
    float* grown = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (grown == nullptr) return false;
    std::free(data);
    data = grown;
    capacity = bytes / sizeof(float);
    return true;
  }
};

// One MR_ x (NV*W) tile: C = alpha * sum_p opA(i, p) * opB(p, :) + beta * C.
// A_ROWS: op(A)(i, p) = a[i * a_rs + p] (A not transposed, read in place); otherwise
//         op(A)(i, p) = a[i + p * a_cs] (a packed panel with a_cs = MR, or A transposed in place).
// B row p starts at b + p * b_rs. B_MASK: the last vector of a B row is partial (read in place at
// the right edge), so it is loaded under `last` like the C edge.
template <class T, int MR_, int NV, bool A_ROWS, bool B_MASK, bool BETA>
inline void microkernel(int64_t kc, const float* __restrict a, int64_t a_rs, int64_t a_cs,
                        const float* __restrict b, int64_t b_rs, float* __restrict c, int64_t ldc,
                        float alpha, float beta, typename T::M last) {
  using V = typename T::V;
  constexpr int W = T::W;
  V acc[MR_][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR_; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = T::zero();
  }
  const float* arow[MR_];
  if (A_ROWS) {
#pragma GCC unroll 16
    for (int i = 0; i < MR_; ++i) arow[i] = a + i * a_rs;
  }
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      bv[v] = (B_MASK && v == NV - 1) ? T::loadm(b + v * W, last) : T::load(b + v * W);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR_; ++i) {
      const V ai = T::bcast(A_ROWS ? arow[i][p] : a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = T::fma(ai, bv[v], acc[i][v]);
    }
    b += b_rs;
    if (!A_ROWS) a += a_cs;
  }
  const V va = T::bcast(alpha);
  const V vb = T::bcast(beta);
#pragma GCC unroll 16
  for (int i = 0; i < MR_; ++i) {
    float* crow = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const bool edge = v == NV - 1;
      V r = T::mul(acc[i][v], va);
      if (BETA) r = T::fma(edge ? T::loadm(crow + v * W, last) : T::load(crow + v * W), vb, r);
      if (edge) {
        T::storem(crow + v * W, r, last);
      } else {
        T::store(crow + v * W, r);
      }
    }
  }
}

// Picks the microkernel for mr <= MR_ rows at run time (a chain of compile-time row counts).
template <class T, int MR_, int NV, bool A_ROWS, bool B_MASK, bool BETA>
inline void tile(int mr, int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                 int64_t b_rs, float* c, int64_t ldc, float alpha, float beta, typename T::M last) {
  if constexpr (MR_ > 1) {
    if (mr < MR_) {
      tile<T, MR_ - 1, NV, A_ROWS, B_MASK, BETA>(mr, kc, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta,
                                                 last);
      return;
    }
  }
  microkernel<T, MR_, NV, A_ROWS, B_MASK, BETA>(kc, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta,
                                                last);
}

template <class T, int NV, bool A_ROWS, bool B_MASK>
inline void tile_beta(bool use_beta, int mr, int64_t kc, const float* a, int64_t a_rs, int64_t a_cs,
                      const float* b, int64_t b_rs, float* c, int64_t ldc, float alpha, float beta,
                      typename T::M last) {
  if (use_beta) {
    tile<T, T::MR, NV, A_ROWS, B_MASK, true>(mr, kc, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta, last);
  } else {
    tile<T, T::MR, NV, A_ROWS, B_MASK, false>(mr, kc, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta, last);
  }
}

// NV_USED vectors of the tile are live (the right edge of C may need fewer than T::NV).
template <class T, bool A_ROWS, bool B_MASK>
inline void tile_nv(int nv, bool use_beta, int mr, int64_t kc, const float* a, int64_t a_rs,
                    int64_t a_cs, const float* b, int64_t b_rs, float* c, int64_t ldc, float alpha,
                    float beta, typename T::M last) {
  static_assert(T::NV == 2, "the edge dispatch below assumes two vectors per tile row");
  if (nv == 2) {
    tile_beta<T, 2, A_ROWS, B_MASK>(use_beta, mr, kc, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta, last);
  } else {
    tile_beta<T, 1, A_ROWS, B_MASK>(use_beta, mr, kc, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta, last);
  }
}

// Packs op(A)[i0 : i0+mc, p0 : p0+kc] into MR-row panels: panel q holds (i, p) at p * MR + i.
// Rows past mc in the last panel are never read (the edge microkernel has fewer rows).
template <class T>
inline void pack_a(bool trans_a, const float* a, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                   int64_t kc, float* dst) {
  constexpr int MR = T::MR;
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
    float* panel = dst + (ir / MR) * kc * MR;
    if (trans_a) {
      // A is k x m: the MR values of one p are contiguous.
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = a + (p0 + p) * lda + i0 + ir;
        for (int i = 0; i < mr; ++i) panel[p * MR + i] = src[i];
      }
    } else {
      T::pack_a_rows(a + (i0 + ir) * lda + p0, lda, mr, kc, panel);  // a transpose: the traits' shuffles
    }
  }
}

// Packs op(B)[p0 : p0+kc, j0 : j0+nc] for B not transposed into NR-column panels, zero-padded on
// the right: panel q holds (p, j) at p * NR + j.
template <class T>
inline void pack_b(const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                   float* dst) {
  constexpr int W = T::W, NR = T::NV * T::W;
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
    float* panel = dst + (jr / NR) * kc * NR;
    const float* src = b + p0 * ldb + j0 + jr;
    if (nr == NR) {
      for (int64_t p = 0; p < kc; ++p) {
        for (int v = 0; v < T::NV; ++v) T::store(panel + p * NR + v * W, T::load(src + p * ldb + v * W));
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        for (int j = 0; j < nr; ++j) panel[p * NR + j] = src[p * ldb + j];
        for (int j = nr; j < NR; ++j) panel[p * NR + j] = 0.0f;
      }
    }
  }
}

// Returns false, having touched nothing, when the packing buffers cannot be grown.
template <class T>
bool gemm_blocked(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc) {
  constexpr int MR = T::MR, W = T::W, NR = T::NV * T::W;
  thread_local Scratch a_buf, b_buf;

  // Read in place what fits in L2 anyway; pack what would thrash L1/TLB (and transposed B).
  const bool packed_b = trans_b || k * n > T::kDirectLimit;
  const bool packed_a = m * k > T::kDirectLimit;

  // Even k blocks: 784 becomes 4 x 196 rather than 3 x 256 + 16.
  const int64_t k_blocks = (k + T::KC - 1) / T::KC;
  const int64_t kc_max = (k + k_blocks - 1) / k_blocks;
  const int64_t nc_max = packed_b ? std::min<int64_t>(n, T::NC) : n;
  const int64_t mc_max = packed_a ? std::min<int64_t>(m, T::MC) : m;
  if (packed_b && !b_buf.reserve(static_cast<size_t>(kc_max * ((nc_max + NR - 1) / NR) * NR))) return false;
  if (packed_a && !a_buf.reserve(static_cast<size_t>(kc_max * ((mc_max + MR - 1) / MR) * MR))) return false;

  for (int64_t jc = 0; jc < n; jc += nc_max) {
    const int64_t nc = std::min(nc_max, n - jc);
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = std::min(kc_max, k - pc);
      const bool use_beta = pc > 0 || beta != 0.0f;
      const float beta_now = pc > 0 ? 1.0f : beta;
      if (packed_b) {
        if (trans_b) {
          T::pack_bt(b, ldb, pc, kc, jc, nc, b_buf.data);
        } else {
          pack_b<T>(b, ldb, pc, kc, jc, nc, b_buf.data);
        }
      }
      for (int64_t ic = 0; ic < m; ic += mc_max) {
        const int64_t mc = std::min(mc_max, m - ic);
        if (packed_a) pack_a<T>(trans_a, a, lda, ic, mc, pc, kc, a_buf.data);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          const int nv = (nr + W - 1) / W;
          const typename T::M last = T::mask(nr - (nv - 1) * W);
          const float* bp = packed_b ? b_buf.data + (jr / NR) * kc * NR : b + pc * ldb + jc + jr;
          const int64_t b_rs = packed_b ? NR : ldb;
          const bool b_mask = !packed_b && nr < nv * W;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            float* cp = c + (ic + ir) * ldc + jc + jr;
            if (packed_a) {
              const float* ap = a_buf.data + (ir / MR) * kc * MR;
              if (b_mask) {
                tile_nv<T, false, true>(nv, use_beta, mr, kc, ap, 1, MR, bp, b_rs, cp, ldc, alpha, beta_now, last);
              } else {
                tile_nv<T, false, false>(nv, use_beta, mr, kc, ap, 1, MR, bp, b_rs, cp, ldc, alpha, beta_now, last);
              }
            } else if (trans_a) {
              const float* ap = a + pc * lda + ic + ir;
              if (b_mask) {
                tile_nv<T, false, true>(nv, use_beta, mr, kc, ap, 1, lda, bp, b_rs, cp, ldc, alpha, beta_now, last);
              } else {
                tile_nv<T, false, false>(nv, use_beta, mr, kc, ap, 1, lda, bp, b_rs, cp, ldc, alpha, beta_now, last);
              }
            } else {
              const float* ap = a + (ic + ir) * lda + pc;
              if (b_mask) {
                tile_nv<T, true, true>(nv, use_beta, mr, kc, ap, lda, 1, bp, b_rs, cp, ldc, alpha, beta_now, last);
              } else {
                tile_nv<T, true, false>(nv, use_beta, mr, kc, ap, lda, 1, bp, b_rs, cp, ldc, alpha, beta_now, last);
              }
            }
          }
        }
      }
    }
  }
  return true;
}

}  // namespace blocked
}  // namespace cpu
}  // namespace psrpc
