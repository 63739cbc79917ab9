// Implicit-GEMM convolution on AVX-512 for unit width stride: out^T = col^T . wt computed without
// ever writing col. A tile is 14 output pixels of one output row (the rows of the GEMM's 14 x 32
// register tile) by 32 output channels (its two vectors): for every (ci, ky, kx) the 32 weights
// wt[(ci, ky, kx)][o] are loaded and each pixel's input value, in[ci][oy sh + ky dh][ox + kx dw] of
// a zero-padded input, is broadcast into them. Every lane does useful work (Y = W . col wastes the
// tile rows past oc = 32 and the columns past 196), and the im2col stores, the bottleneck beside
// the GEMM (20-30% of a conv), are gone. The tile is transposed in registers on the way out, so
// the output stays NCHW.
//
// Included by conv.cc inside its AVX-512 namespace, after lanes(). No include guard on purpose.

#include "transpose16_avx512.h"

// One direct convolution of a padded input plane stack into an output [c_out][oh][ow].
struct DirectConv {
  const float* in;  // [c_in][hp][wp], zero-padded so that every tap of every output is inside
  int64_t c_in, hp, wp;
  const float* wt;  // [c_in * kh * kw][c_out]
  int64_t c_out, kh, kw, sh, dh, dw;
  float* out;  // [c_out][oh][ow]
  int64_t oh, ow;
  const float* bias;  // [c_out] or null
  bool accumulate;    // out += instead of out =
};

// R pixels (<= 14) starting at output (oy, ox0), NV vectors of channels starting at o0.
template <int R, int NV>
inline void direct_tile(const DirectConv& d, int64_t oy, int64_t ox0, int64_t o0) {
  const int64_t left = d.c_out - o0;
  const __mmask16 tail = lanes(0, left - (NV - 1) * 16);  // live lanes of the last channel vector
  // Every loop over acc's indices is unrolled, so the 28 accumulators live in registers (without
  // the pragmas GCC kept them on the stack: 75 GFLOP/s instead of ~200).
  __m512 acc[R][NV];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    const __mmask16 m = v == NV - 1 ? tail : 0xFFFF;
    const __m512 b = d.bias != nullptr ? _mm512_maskz_loadu_ps(m, d.bias + o0 + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 14
    for (int i = 0; i < R; ++i) acc[i][v] = b;
  }
  const int64_t plane = d.hp * d.wp;
  const float* base = d.in + oy * d.sh * d.wp + ox0;
  const float* w = d.wt + o0;
  for (int64_t ci = 0; ci < d.c_in; ++ci) {
    for (int64_t ky = 0; ky < d.kh; ++ky) {
      const float* xr = base + ci * plane + ky * d.dh * d.wp;
      for (int64_t kx = 0; kx < d.kw; ++kx, w += d.c_out) {
        const float* xk = xr + kx * d.dw;
        __m512 wv[NV];
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) wv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(tail, w + 16 * v) : _mm512_loadu_ps(w + 16 * v);
#pragma GCC unroll 14
        for (int i = 0; i < R; ++i) {
          const __m512 a = _mm512_set1_ps(xk[i]);
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, wv[v], acc[i][v]);
        }
      }
    }
  }
  // Transpose each 16-channel block: row j of the result is channel o0 + 16 v + j, lanes = pixels.
  const __mmask16 px = lanes(0, R);
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    __m512 t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) t[i] = i < R ? acc[i][v] : _mm512_setzero_ps();
    transpose16(t);
    const int64_t channels = std::min<int64_t>(16, left - 16 * v);
    for (int64_t j = 0; j < channels; ++j) {
      float* o = d.out + ((o0 + 16 * v + j) * d.oh + oy) * d.ow + ox0;
      const __m512 r = d.accumulate ? _mm512_add_ps(t[j], _mm512_maskz_loadu_ps(px, o)) : t[j];
      _mm512_mask_storeu_ps(o, px, r);
    }
  }
}

template <int R>
inline void direct_tile_nv(const DirectConv& d, int64_t oy, int64_t ox0, int64_t o0) {
  if (d.c_out - o0 > 16) {
    direct_tile<R, 2>(d, oy, ox0, o0);
  } else {
    direct_tile<R, 1>(d, oy, ox0, o0);
  }
}

// Picks the tile for r pixels (a chain of compile-time widths, as the GEMM's tile()).
template <int R>
inline void direct_tile_r(int r, const DirectConv& d, int64_t oy, int64_t ox0, int64_t o0) {
  if constexpr (R > 1) {
    if (r < R) return direct_tile_r<R - 1>(r, d, oy, ox0, o0);
  }
  direct_tile_nv<R>(d, oy, ox0, o0);
}

inline void direct_conv(const DirectConv& d) {
  for (int64_t oy = 0; oy < d.oh; ++oy) {
    for (int64_t ox0 = 0; ox0 < d.ow; ox0 += 14) {
      const int r = static_cast<int>(std::min<int64_t>(14, d.ow - ox0));
      for (int64_t o0 = 0; o0 < d.c_out; o0 += 32) direct_tile_r<14>(r, d, oy, ox0, o0);
    }
  }
}

// dst[ci][pt + iy][pl + ix] = src[ci][iy][ix], zero elsewhere: dst is [c][hp][wp].
inline void pad_planes(const float* src, int64_t c, int64_t h, int64_t w, float* dst, int64_t hp, int64_t wp,
                       int64_t pt, int64_t pl) {
  for (int64_t ci = 0; ci < c; ++ci) {
    float* dp = dst + ci * hp * wp;
    for (int64_t r = 0; r < hp; ++r) {
      float* row = dp + r * wp;
      const int64_t iy = r - pt;
      if (iy < 0 || iy >= h) {
        for (int64_t j = 0; j < wp; ++j) row[j] = 0.0f;
        continue;
      }
      const float* s = src + (ci * h + iy) * w;
      for (int64_t j = 0; j < pl; ++j) row[j] = 0.0f;
      for (int64_t j = 0; j < w; ++j) row[pl + j] = s[j];
      for (int64_t j = pl + w; j < wp; ++j) row[j] = 0.0f;
    }
  }
}
