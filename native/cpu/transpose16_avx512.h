// transpose16: the 16 x 16 in-register float transpose shared by the AVX-512 GEMM packer
// (gemm_avx512.cc) and the implicit-GEMM convolution (conv_direct.h). Include it inside a region
// compiled for AVX-512 (`#pragma GCC target("avx512f,...")`) and inside the namespace that uses it;
// it needs <immintrin.h>. No include guard: each includer puts it in its own namespace.

// Transposes 16 rows of 16 floats in place (r[i][j] becomes r[j][i]).
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + q], lane L: column 4L + q of rows 4g .. 4g + 3.
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int q = 0; q < 4; ++q) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
    const __m512 v1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
    r[q] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    r[4 + q] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    r[8 + q] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    r[12 + q] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
}
