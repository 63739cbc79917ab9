// 2-D convolution (NCHW, torch.nn.Conv2d semantics) as im2col + the device GEMM, one image at a
// time: the `col` workspace holds one image's columns for all groups, [c * kh * kw, oh * ow], rows
// ordered (channel, ky, kx) so that group g's rows are one contiguous block. The input gradient
// goes back through col2im written as a gather (each input element sums the columns that read it
// in a fixed order), so there are no atomics and every result is deterministic. A 1x1 convolution
// with unit stride and no padding needs no columns at all: the image itself is the matrix.
#include "block_reduce.cuh"

namespace psrpc {
namespace cuda {
namespace {

// The sizes every conv kernel derives from the shape, computed once on the host.
struct ConvDims {
  int64_t cg, ocg;    // channels per group (input, output)
  int64_t k;          // rows of one group's columns: cg * kh * kw
  int64_t hw, p;      // input and output plane sizes
  bool direct;        // 1x1, stride 1, no padding: the columns are the input
};

ConvDims conv_dims(const kernels::Conv2dShape& s) {
  ConvDims d;
  d.cg = s.c / s.groups;
  d.ocg = s.oc / s.groups;
  d.k = d.cg * s.kh * s.kw;
  d.hw = s.h * s.w;
  d.p = s.oh * s.ow;
  d.direct = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0;
  return d;
}

// Geometry passed by value to the kernels (a launch copies it into the parameter buffer).
struct ConvGeom {
  int64_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
};

ConvGeom conv_geom(const kernels::Conv2dShape& s) {
  return ConvGeom{s.c, s.h, s.w, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, s.oh, s.ow};
}

// col[(ci * kh + ky) * kw + kx, oy * ow + ox] = x[ci, oy * sh - ph + ky * dh, ox * sw - pw + kx * dw]
// (0 outside the image). Consecutive threads write consecutive output positions.
__global__ void conv_im2col_kernel(ConvGeom g, const float* __restrict__ x, float* __restrict__ col) {
  const int64_t p = g.oh * g.ow;
  const int64_t total = g.c * g.kh * g.kw * p;
  for (int64_t e = global_thread(); e < total; e += grid_threads()) {
    const int64_t row = e / p, pos = e - row * p;
    const int64_t ci = row / (g.kh * g.kw), r = row - ci * (g.kh * g.kw);
    const int64_t ky = r / g.kw, kx = r - ky * g.kw;
    const int64_t oy = pos / g.ow, ox = pos - oy * g.ow;
    const int64_t iy = oy * g.sh - g.ph + ky * g.dh, ix = ox * g.sw - g.pw + kx * g.dw;
    col[e] = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w ? x[(ci * g.h + iy) * g.w + ix] : 0.0f;
  }
}

// The adjoint of im2col as a gather: dx[ci, iy, ix] (= or +=) the sum of the columns that read
// (ci, iy, ix), visited in (ky, kx) order. An output row oy reads iy through tap ky exactly when
// iy + ph - ky * dh = oy * sh with 0 <= oy < oh.
__global__ void conv_col2im_kernel(ConvGeom g, const float* __restrict__ col, float* __restrict__ dx, bool accumulate) {
  const int64_t p = g.oh * g.ow;
  const int64_t total = g.c * g.h * g.w;
  for (int64_t e = global_thread(); e < total; e += grid_threads()) {
    const int64_t ci = e / (g.h * g.w), r = e - ci * (g.h * g.w);
    const int64_t iy = r / g.w, ix = r - iy * g.w;
    float acc = 0.0f;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t ty = iy + g.ph - ky * g.dh;
      if (ty < 0) break;  // decreasing in ky: no later tap reaches a valid row either
      if (ty % g.sh != 0) continue;
      const int64_t oy = ty / g.sh;
      if (oy >= g.oh) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t tx = ix + g.pw - kx * g.dw;
        if (tx < 0) break;
        if (tx % g.sw != 0) continue;
        const int64_t ox = tx / g.sw;
        if (ox >= g.ow) continue;
        acc += col[((ci * g.kh + ky) * g.kw + kx) * p + oy * g.ow + ox];
      }
    }
    dx[e] = accumulate ? dx[e] + acc : acc;
  }
}

// y[i, o, :] += bias[o] over the whole batch in one launch.
__global__ void conv_bias_add_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t total, int64_t oc,
                                     int64_t p) {
  for (int64_t e = global_thread(); e < total; e += grid_threads()) y[e] += bias[(e / p) % oc];
}

// dbias[o] (= or +=) the sum of dy[:, o, :]: one block per channel, accumulated in double and
// reduced in a fixed order (deterministic, no atomics).
__global__ void conv_bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ dbias, int64_t n, int64_t oc,
                                      int64_t p, bool accumulate) {
  __shared__ double shared[kMaxReduceThreads];
  const int64_t per_channel = n * p;
  for (int64_t o = blockIdx.x; o < oc; o += gridDim.x) {
    double acc = 0.0;
    for (int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
      const int64_t i = j / p, q = j - i * p;
      acc += static_cast<double>(dy[(i * oc + o) * p + q]);
    }
    const double total = block_reduce(acc, shared, SumOp<double>());
    if (threadIdx.x == 0) dbias[o] = accumulate ? static_cast<float>(dbias[o] + total) : static_cast<float>(total);
  }
}

void im2col(const kernels::Conv2dShape& s, const float* x, float* col) {
  const int64_t total = s.c * s.kh * s.kw * s.oh * s.ow;
  PSRPC_LAUNCH(blocks_for(total), kThreads, 0, conv_im2col_kernel)(conv_geom(s), x, col);
}

}  // namespace
}  // namespace cuda

namespace kernels {

// Host code, shared with nothing on the device: the CPU build has its own copy (native/cpu/).
bool conv2d_output(Conv2dShape& s) {
  if (s.sh < 1 || s.sw < 1 || s.dh < 1 || s.dw < 1 || s.kh < 1 || s.kw < 1 || s.ph < 0 || s.pw < 0) return false;
  // An extent past 2^62 exceeds any padded input the N-API layer admits (below 2^55), and
  // computing it must not overflow.
  constexpr int64_t kHuge = int64_t(1) << 62;
  if (s.kh - 1 > kHuge / s.dh || s.kw - 1 > kHuge / s.dw) return false;
  const int64_t span_h = s.h + 2 * s.ph - s.dh * (s.kh - 1) - 1;
  const int64_t span_w = s.w + 2 * s.pw - s.dw * (s.kw - 1) - 1;
  if (span_h < 0 || span_w < 0) return false;  // C++ division truncates toward zero, not floor
  s.oh = span_h / s.sh + 1;
  s.ow = span_w / s.sw + 1;
  return true;
}

int64_t conv2d_workspace(const Conv2dShape& s) {
  const cuda::ConvDims d = cuda::conv_dims(s);
  return d.direct ? 0 : s.c * s.kh * s.kw * d.p;
}

void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias, float* y, float* col) {
  using namespace cuda;
  const ConvDims d = conv_dims(s);
  for (int64_t i = 0; i < s.n; ++i) {
    const float* xi = x + i * s.c * d.hw;
    float* yi = y + i * s.oc * d.p;
    if (!d.direct) im2col(s, xi, col);
    for (int64_t g = 0; g < s.groups; ++g) {
      const float* b = d.direct ? xi + g * d.cg * d.hw : col + g * d.k * d.p;
      gemm(false, false, d.ocg, d.p, d.k, 1.0f, weight + g * d.ocg * d.k, d.k, b, d.p, 0.0f, yi + g * d.ocg * d.p, d.p);
    }
  }
  if (bias) {
    const int64_t total = s.n * s.oc * d.p;
    PSRPC_LAUNCH(blocks_for(total), kThreads, 0, conv_bias_add_kernel)(y, bias, total, s.oc, d.p);
  }
}

void conv2d_backward_input(const Conv2dShape& s, const float* dy, const float* weight, float* dx, float* col,
                           bool accumulate) {
  using namespace cuda;
  const ConvDims d = conv_dims(s);
  const int64_t input = s.c * d.hw;
  for (int64_t i = 0; i < s.n; ++i) {
    const float* dyi = dy + i * s.oc * d.p;
    float* dxi = dx + i * input;
    for (int64_t g = 0; g < s.groups; ++g) {
      // col_g = W_g^T dy_g: [k, ocg] x [ocg, p]; direct convolutions land in dx itself.
      const float* wg = weight + g * d.ocg * d.k;
      const float* dyg = dyi + g * d.ocg * d.p;
      if (d.direct)
        gemm(true, false, d.k, d.p, d.ocg, 1.0f, wg, d.k, dyg, d.p, accumulate ? 1.0f : 0.0f, dxi + g * d.cg * d.hw, d.p);
      else
        gemm(true, false, d.k, d.p, d.ocg, 1.0f, wg, d.k, dyg, d.p, 0.0f, col + g * d.k * d.p, d.p);
    }
    if (!d.direct) PSRPC_LAUNCH(blocks_for(input), kThreads, 0, conv_col2im_kernel)(conv_geom(s), col, dxi, accumulate);
  }
}

void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dweight, float* dbias,
                            float* col, bool accumulate_weight, bool accumulate_bias) {
  using namespace cuda;
  const ConvDims d = conv_dims(s);
  // Images are added in batch order through GEMM's beta, so the sum's order is fixed.
  for (int64_t i = 0; i < s.n; ++i) {
    const float* xi = x + i * s.c * d.hw;
    const float* dyi = dy + i * s.oc * d.p;
    if (!d.direct) im2col(s, xi, col);
    const float beta = i == 0 && !accumulate_weight ? 0.0f : 1.0f;
    for (int64_t g = 0; g < s.groups; ++g) {
      // dW_g += dy_g col_g^T: [ocg, p] x [p, k].
      const float* b = d.direct ? xi + g * d.cg * d.hw : col + g * d.k * d.p;
      gemm(false, true, d.ocg, d.k, d.p, 1.0f, dyi + g * d.ocg * d.p, d.p, b, d.p, beta, dweight + g * d.ocg * d.k, d.k);
    }
  }
  if (dbias) {
    const int blocks = static_cast<int>(s.oc < kMaxBlocks ? s.oc : kMaxBlocks);
    PSRPC_LAUNCH(blocks, kMaxReduceThreads, 0, conv_bias_grad_kernel)(dy, dbias, s.n, s.oc, d.p, accumulate_bias);
  }
}

}  // namespace kernels
}  // namespace psrpc
