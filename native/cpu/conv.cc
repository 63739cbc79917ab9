// The CPU convolution kernels of the contract: im2col per image and group into the caller's
// workspace, then the blocked GEMM (kernels::gemm), and col2im for the input gradient.
//
// Orientations were chosen by measuring the GEMM at the cnn preset's shapes (bench/conv.ts):
//   forward       Y[og, P]  = W[og, K] . col[K, P]       written straight into y (NCHW), beta = 1
//                                                          over rows pre-filled with the bias;
//   input grad    col[K, P] = W^T . dY[og, P]           then col2im adds it into dx;
//   weight grad   dW^T[K, og] += col[K, P] . dY^T        dY^T is the small operand the GEMM packs
//                                                          (packing col^T instead cost ~20%), and
//                                                          dW^T is transposed into dW once at the end.
// with K = c/groups * kh * kw and P = oh * ow. One image's columns (conv2 of the cnn: 400 x 196,
// 313 KB) stay in L2 between im2col and the GEMM; the whole batch's would be 20 MB.
// A 1x1, stride-1, unpadded convolution reads x (and writes dx) in place: its columns are x itself.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "psrpc/kernels.h"
#include "simd.h"

namespace psrpc {
namespace cpu {

using kernels::Conv2dShape;

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")
// GCC 12 reports the intrinsics' own placeholder operands (__Y) in the transposes as maybe
// uninitialised; every lane used is written first (as in gemm_avx512.cc).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
namespace avx512 {
#include "conv_loops.h"

// Stride-1 rows by masked vector moves, 16 output columns at a time. The generic loops above spend
// more time on their zero fills and remainders than on copying (im2col was 35% of conv2's forward);
// here a row segment is one masked load and one masked store, its padding the masked-out lanes.

// Lanes [from, to) of 16, clipped (empty when to <= from).
inline __mmask16 lanes(int64_t from, int64_t to) {
  from = std::max<int64_t>(from, 0);
  to = std::min<int64_t>(to, 16);
  if (to <= from) return 0;
  const uint32_t hi = to >= 16 ? 0xFFFFu : (1u << to) - 1u;
  return static_cast<__mmask16>(hi & ~((1u << from) - 1u));
}

// Element `delta` from `row`, which may lie outside the row: only lanes inside [0, w) of it are
// ever read, and masked-out lanes are not accessed (no fault, no read), so the address is formed in
// integers rather than by pointer arithmetic past the array.
inline uintptr_t shifted(const float* row, int64_t delta) {
  return reinterpret_cast<uintptr_t>(row) + static_cast<uintptr_t>(delta) * sizeof(float);
}

#include "conv_direct.h"

// The shape's fields are copied into locals first: a vector store may alias anything, so the
// compiler would otherwise reload them from memory after every store. The masks of a row depend
// only on kx and the 16-column chunk, never on oy, so they are formed once per kernel column.
inline void im2col_s1(const Conv2dShape& s, int64_t cg, const float* x, float* col) {
  const int64_t h = s.h, w = s.w, oh = s.oh, ow = s.ow, kh = s.kh, kw = s.kw;
  const int64_t sh = s.sh, ph = s.ph, pw = s.pw, dh = s.dh, dw = s.dw, p_len = oh * ow;
  for (int64_t ci = 0; ci < cg; ++ci) {
    const float* xc = x + ci * h * w;
    for (int64_t ky = 0; ky < kh; ++ky) {
      for (int64_t kx = 0; kx < kw; ++kx) {
        float* dst = col + ((ci * kh + ky) * kw + kx) * p_len;
        const int64_t off = kx * dw - pw;  // input column of output column 0
        for (int64_t j0 = 0; j0 < ow; j0 += 16) {
          const __mmask16 out = lanes(0, ow - j0);
          const __mmask16 in = lanes(-off - j0, w - off - j0) & out;
          const uintptr_t first = shifted(xc, j0 + off);
          float* d = dst + j0;
          // Masked stores, one per row segment: full-width stores that overlap the next row
          // measured slower (conv2 forward 2.4 ms against 2.0), the overlapping stores stalling.
          for (int64_t oy = 0; oy < oh; ++oy, d += ow) {
            const int64_t iy = oy * sh - ph + ky * dh;
            const bool inside = iy >= 0 && iy < h;
            const __mmask16 m = inside ? in : 0;
            const uintptr_t at = first + static_cast<uintptr_t>(inside ? iy * w : 0) * sizeof(float);
            _mm512_mask_storeu_ps(d, out, _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(at)));
          }
        }
      }
    }
  }
}

// dx = (accumulate ? dx : 0) + col2im(col), gathering: each 16-column segment of an input row sums
// the kh x kw column rows that reach it in a register and is stored once. Adding column row by
// column row instead re-read and re-wrote each dx row kh * kw times, one float over from the last
// store (failed store forwarding), and needed a zero pass first: col2im was 43% of conv2's input
// gradient that way, and ~30% with only kx in a register.
inline void col2im_s1(const Conv2dShape& s, int64_t cg, const float* col, float* dx, bool accumulate) {
  const int64_t h = s.h, w = s.w, oh = s.oh, ow = s.ow, kh = s.kh, kw = s.kw;
  const int64_t sh = s.sh, ph = s.ph, pw = s.pw, dh = s.dh, dw = s.dw, p_len = oh * ow;
  constexpr int64_t kMaxKw = 32;
  __mmask16 from[kMaxKw];
  for (int64_t ci = 0; ci < cg; ++ci) {
    float* dc = dx + ci * h * w;
    const float* rows = col + ci * kh * kw * p_len;  // the kh * kw column rows of channel ci
    for (int64_t i0 = 0; i0 < w; i0 += 16) {
      const __mmask16 row = lanes(0, w - i0);
      for (int64_t kx0 = 0; kx0 < kw; kx0 += kMaxKw) {
        const int64_t kn = std::min(kMaxKw, kw - kx0);
        // Input column i0 + lane takes output column i0 + lane - off of kernel column kx.
        for (int64_t j = 0; j < kn; ++j) {
          const int64_t off = (kx0 + j) * dw - pw;
          from[j] = lanes(off - i0, ow + off - i0) & row;
        }
        for (int64_t iy = 0; iy < h; ++iy) {
          float* at = dc + iy * w + i0;
          __m512 acc = accumulate || kx0 > 0 ? _mm512_maskz_loadu_ps(row, at) : _mm512_setzero_ps();
          for (int64_t ky = 0; ky < kh; ++ky) {
            const int64_t t = iy + ph - ky * dh;  // = oy * sh
            if (t < 0 || t % sh != 0 || t / sh >= oh) continue;
            const float* src = rows + (ky * kw + kx0) * p_len + (t / sh) * ow;
            for (int64_t j = 0; j < kn; ++j, src += p_len) {
              const int64_t off = (kx0 + j) * dw - pw;
              const uintptr_t lane0 = shifted(src, i0 - off);
              acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(from[j], reinterpret_cast<const float*>(lane0)));
            }
          }
          _mm512_mask_storeu_ps(at, row, acc);
        }
      }
    }
  }
}

// The generic loops for strides > 1, the masked rows for stride 1.
inline void im2col_any(const Conv2dShape& s, int64_t cg, const float* x, float* col) {
  if (s.sw == 1) return im2col_s1(s, cg, x, col);
  im2col(s, cg, x, col);
}

inline void col2im_any(const Conv2dShape& s, int64_t cg, const float* col, float* dx, bool accumulate) {
  if (s.sw == 1) return col2im_s1(s, cg, col, dx, accumulate);
  col2im(s, cg, col, dx, accumulate);
}
}  // namespace avx512
#pragma GCC diagnostic pop
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "conv_loops.h"
}  // namespace avx2
#pragma GCC pop_options

namespace scalar {
#include "conv_loops.h"
}  // namespace scalar

namespace {

// The loops of the path chosen at start-up.
struct ConvLoops {
  void (*im2col)(const Conv2dShape&, int64_t, const float*, float*);
  void (*col2im)(const Conv2dShape&, int64_t, const float*, float*, bool);
  void (*fill_rows)(float*, const float*, int64_t, int64_t);
  double (*row_sum)(const float*, int64_t);
  void (*transpose_add)(const float*, float*, int64_t, int64_t, bool);
};

const ConvLoops& loops() {
  static const ConvLoops table[3] = {
      {scalar::im2col, scalar::col2im, scalar::fill_rows, scalar::row_sum, scalar::transpose_add},
      {avx2::im2col, avx2::col2im, avx2::fill_rows, avx2::row_sum, avx2::transpose_add},
      {avx512::im2col_any, avx512::col2im_any, avx512::fill_rows, avx512::row_sum,
       avx512::transpose_add},
  };
  return table[static_cast<int>(simd_level())];
}

// The sizes every kernel derives from the shape.
struct Dims {
  int64_t cg, og, k_len, p_len, hw;
  bool in_place;  // 1x1, stride 1, no padding: the columns are x itself

  explicit Dims(const Conv2dShape& s)
      : cg(s.c / s.groups),
        og(s.oc / s.groups),
        k_len(s.c / s.groups * s.kh * s.kw),
        p_len(s.oh * s.ow),
        hw(s.h * s.w),
        in_place(s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0) {}

  // The implicit-GEMM paths (conv_direct.h): AVX-512, unit width stride, at least 8 output
  // channels per tile (fewer would leave most lanes idle; the GEMM path is better there), and not
  // the 1x1 convolution, which reads x in place anyway. The input gradient runs as the forward
  // convolution of dy padded by (k - 1) d - p with flipped weights, so it needs unit strides and
  // padding within the dilated kernel.
  bool direct_forward(const Conv2dShape& s) const {
    return simd_level() == SimdLevel::kAvx512 && s.sw == 1 && og >= 8 && !in_place;
  }
  bool direct_input_grad(const Conv2dShape& s) const {
    return simd_level() == SimdLevel::kAvx512 && s.sw == 1 && s.sh == 1 && cg >= 8 && !in_place &&
           s.ph <= (s.kh - 1) * s.dh && s.pw <= (s.kw - 1) * s.dw;
  }
};

// wt[k][o] = w[o][k] for one group's weights [og][k_len].
void transpose_weights(const float* w, int64_t og, int64_t k_len, float* wt) {
  for (int64_t o = 0; o < og; ++o) {
    for (int64_t k = 0; k < k_len; ++k) wt[k * og + o] = w[o * k_len + k];
  }
}

// wt[(o, ky, kx)][ci] = w[o][ci][kh - 1 - ky][kw - 1 - kx]: the input gradient's weights, flipped
// and with the channel roles swapped, for one group.
void flip_weights(const float* w, int64_t og, int64_t cg, int64_t kh, int64_t kw, float* wt) {
  for (int64_t o = 0; o < og; ++o) {
    for (int64_t ci = 0; ci < cg; ++ci) {
      for (int64_t ky = 0; ky < kh; ++ky) {
        for (int64_t kx = 0; kx < kw; ++kx) {
          wt[((o * kh + ky) * kw + kx) * cg + ci] = w[((o * cg + ci) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)];
        }
      }
    }
  }
}

}  // namespace
}  // namespace cpu

namespace kernels {

bool conv2d_output(Conv2dShape& s) {
  const int64_t eh = s.h + 2 * s.ph - s.dh * (s.kh - 1) - 1;
  const int64_t ew = s.w + 2 * s.pw - s.dw * (s.kw - 1) - 1;
  if (eh < 0 || ew < 0 || s.sh < 1 || s.sw < 1) return false;  // floor division of a negative is not C's
  s.oh = eh / s.sh + 1;
  s.ow = ew / s.sw + 1;
  return true;
}

int64_t conv2d_workspace(const Conv2dShape& s) {
  const cpu::Dims d(s);
  // The GEMM path: the columns of one image's group, then the transposed weight gradient of one
  // group. The implicit-GEMM paths: one padded image (x, or dy for the input gradient), then the
  // transposed (or flipped) weights of one group. The same size on every vector path, the largest.
  const int64_t gemm_path = (d.in_place ? 0 : d.k_len * d.p_len) + d.k_len * d.og;
  const int64_t forward = d.cg * (s.h + 2 * s.ph) * (s.w + 2 * s.pw) + d.k_len * d.og;
  const int64_t input_grad = d.og * (s.h + (s.kh - 1) * s.dh) * (s.w + (s.kw - 1) * s.dw) + d.k_len * d.og;
  return std::max(gemm_path, std::max(forward, input_grad));
}

void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                    float* y, float* col) {
  const cpu::Dims d(s);
  const cpu::ConvLoops& l = cpu::loops();
  if (d.direct_forward(s)) {
    const int64_t hp = s.h + 2 * s.ph, wp = s.w + 2 * s.pw;
    float* xpad = col;
    float* wt = col + d.cg * hp * wp;
    for (int64_t g = 0; g < s.groups; ++g) {
      cpu::transpose_weights(weight + g * d.og * d.k_len, d.og, d.k_len, wt);
      for (int64_t n = 0; n < s.n; ++n) {
        cpu::avx512::pad_planes(x + (n * s.c + g * d.cg) * d.hw, d.cg, s.h, s.w, xpad, hp, wp, s.ph, s.pw);
        cpu::avx512::direct_conv({xpad, d.cg, hp, wp, wt, d.og, s.kh, s.kw, s.sh, s.dh, s.dw,
                                  y + (n * s.oc + g * d.og) * d.p_len, s.oh, s.ow,
                                  bias != nullptr ? bias + g * d.og : nullptr, false});
      }
    }
    return;
  }
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t g = 0; g < s.groups; ++g) {
      const float* xg = x + (n * s.c + g * d.cg) * d.hw;
      float* yg = y + (n * s.oc + g * d.og) * d.p_len;
      const float* b = xg;
      if (!d.in_place) {
        l.im2col(s, d.cg, xg, col);
        b = col;
      }
      float beta = 0.0f;
      if (bias != nullptr) {
        l.fill_rows(yg, bias + g * d.og, d.og, d.p_len);
        beta = 1.0f;
      }
      gemm(false, false, d.og, d.p_len, d.k_len, 1.0f, weight + g * d.og * d.k_len, d.k_len, b, d.p_len,
           beta, yg, d.p_len);
    }
  }
}

void conv2d_backward_input(const Conv2dShape& s, const float* dy, const float* weight, float* dx,
                           float* col, bool accumulate) {
  const cpu::Dims d(s);
  const cpu::ConvLoops& l = cpu::loops();
  if (d.direct_input_grad(s)) {
    const int64_t top = (s.kh - 1) * s.dh - s.ph, left = (s.kw - 1) * s.dw - s.pw;
    const int64_t hp = s.h + (s.kh - 1) * s.dh, wp = s.w + (s.kw - 1) * s.dw;
    float* dypad = col;
    float* wt = col + d.og * hp * wp;
    for (int64_t g = 0; g < s.groups; ++g) {
      cpu::flip_weights(weight + g * d.og * d.k_len, d.og, d.cg, s.kh, s.kw, wt);
      for (int64_t n = 0; n < s.n; ++n) {
        cpu::avx512::pad_planes(dy + (n * s.oc + g * d.og) * d.p_len, d.og, s.oh, s.ow, dypad, hp, wp, top, left);
        cpu::avx512::direct_conv({dypad, d.og, hp, wp, wt, d.cg, s.kh, s.kw, 1, s.dh, s.dw,
                                  dx + (n * s.c + g * d.cg) * d.hw, s.h, s.w, nullptr, accumulate});
      }
    }
    return;
  }
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t g = 0; g < s.groups; ++g) {
      const float* dyg = dy + (n * s.oc + g * d.og) * d.p_len;
      const float* wg = weight + g * d.og * d.k_len;
      float* dxg = dx + (n * s.c + g * d.cg) * d.hw;
      if (d.in_place) {
        gemm(true, false, d.k_len, d.p_len, d.og, 1.0f, wg, d.k_len, dyg, d.p_len, accumulate ? 1.0f : 0.0f,
             dxg, d.p_len);
        continue;
      }
      gemm(true, false, d.k_len, d.p_len, d.og, 1.0f, wg, d.k_len, dyg, d.p_len, 0.0f, col, d.p_len);
      l.col2im(s, d.cg, col, dxg, accumulate);
    }
  }
}

void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dweight,
                            float* dbias, float* col, bool accumulate_weight, bool accumulate_bias) {
  const cpu::Dims d(s);
  const cpu::ConvLoops& l = cpu::loops();
  float* dwt = col + (d.in_place ? 0 : d.k_len * d.p_len);
  for (int64_t g = 0; g < s.groups; ++g) {
    for (int64_t n = 0; n < s.n; ++n) {
      const float* xg = x + (n * s.c + g * d.cg) * d.hw;
      const float* dyg = dy + (n * s.oc + g * d.og) * d.p_len;
      const float* a = xg;
      if (!d.in_place) {
        l.im2col(s, d.cg, xg, col);
        a = col;
      }
      gemm(false, true, d.k_len, d.og, d.p_len, 1.0f, a, d.p_len, dyg, d.p_len, n == 0 ? 0.0f : 1.0f, dwt,
           d.og);
    }
    l.transpose_add(dwt, dweight + g * d.og * d.k_len, d.og, d.k_len, accumulate_weight);
  }
  if (dbias == nullptr) return;
  for (int64_t o = 0; o < s.oc; ++o) {
    double acc = accumulate_bias ? static_cast<double>(dbias[o]) : 0.0;
    for (int64_t n = 0; n < s.n; ++n) acc += l.row_sum(dy + (n * s.oc + o) * d.p_len, d.p_len);
    dbias[o] = static_cast<float>(acc);
  }
}

}  // namespace kernels
}  // namespace psrpc
