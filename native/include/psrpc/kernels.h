// The kernel contract: every backend (cpu/, cuda/) implements exactly these functions.
//
// All tensors are dense, row-major float32 unless stated. Pointers are to memory the backend owns
// (host memory for cpu/, device memory for cuda/). Sizes are element counts. No function allocates
// on the hot path, none throws: argument validation happens once, in the N-API layer
// (native/binding.cc), before any pointer is touched.
//
// Random numbers (dropout) come from a counter-based generator, hash(seed, offset + i), so that the
// CPU and CUDA backends draw the same mask for the same (seed, offset) whatever their threading.
#pragma once

#include <cstddef>
#include <cstdint>

namespace psrpc {
namespace kernels {

// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C[m,n]
// op(A) = A (stored m x k, leading dimension lda) or A^T (A stored k x m) when trans_a.
// op(B) = B (stored k x n, ldb) or B^T (B stored n x k) when trans_b. C is m x n with ldc.
// beta == 0 means C is write-only (NaNs in C are not propagated), as in BLAS.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// y[r, c] += bias[c] for r < rows, c < cols (y is rows x cols, contiguous).
void bias_add(float* y, const float* bias, int64_t rows, int64_t cols);
// dbias[c] = sum_r dy[r, c]  (or += when accumulate).
void bias_grad(const float* dy, float* dbias, int64_t rows, int64_t cols, bool accumulate);

// y = max(x, 0). In place is allowed (y == x).
void relu_forward(const float* x, float* y, int64_t n);
// dx = dy where x > 0, else 0. In place is allowed (dx == dy). `x` may be the forward output.
void relu_backward(const float* x, const float* dy, float* dx, int64_t n);

// Row-wise log-softmax: y[r, :] = x[r, :] - logsumexp(x[r, :]). In place is allowed.
void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols);
// dx = dy - exp(y) * sum(dy) per row, where y is the forward output. In place (dx == dy) allowed.
void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols);

// Fused log-softmax + negative log-likelihood (cross entropy). Writes log-probabilities to logp
// (rows x cols; may alias logits) and returns the mean loss over rows.
// labels[r] must be in [0, cols): the N-API layer checks this before the call.
float cross_entropy_forward(const float* logits, const int32_t* labels, float* logp, int64_t rows,
                            int64_t cols);
// dlogits = (softmax - onehot(labels)) * scale, with softmax = exp(logp). dlogits may alias logp.
// scale is usually grad_output / rows (mean reduction).
void cross_entropy_backward(const float* logp, const int32_t* labels, float* dlogits, int64_t rows,
                            int64_t cols, float scale);
// Mean NLL over rows of given log-probabilities: -mean_r logp[r, labels[r]].
float nll_forward(const float* logp, const int32_t* labels, int64_t rows, int64_t cols);
// dlogp = 0 everywhere except dlogp[r, labels[r]] = -scale.
void nll_backward(const int32_t* labels, float* dlogp, int64_t rows, int64_t cols, float scale);

// Inverted dropout: keep element i with probability 1 - p (mask[i] = 1, y = x / (1 - p)), else
// mask[i] = 0 and y = 0. Element i draws uniform(seed, offset + i). p in [0, 1). In place allowed.
void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed,
                     uint64_t offset);
// dx = dy * mask / (1 - p). In place allowed.
void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p);
// The uniform [0, 1) draw used by dropout, exposed so tests can check both backends agree.
float uniform_at(uint64_t seed, uint64_t index);

// y += alpha * x
void axpy(int64_t n, float alpha, const float* x, float* y);
// x *= alpha
void scale(int64_t n, float alpha, float* x);
// out = a + b, out = a * b (elementwise; out may alias a or b)
void add(int64_t n, const float* a, const float* b, float* out);
void mul(int64_t n, const float* a, const float* b, float* out);
// Sum of all elements, accumulated in double.
double sum(int64_t n, const float* x);

// Fused SGD, PyTorch semantics (torch.optim.SGD):
//   g = grad + weight_decay * param
//   if momentum != 0: buf = first_step ? g : momentum * buf + (1 - dampening) * g
//                     g = nesterov ? g + momentum * buf : buf
//   param -= lr * g
// momentum_buf may be null when momentum == 0.
void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, float lr,
                float momentum, float dampening, float weight_decay, bool nesterov, bool first_step);

// Fused Adam / AdamW, PyTorch semantics (torch.optim.Adam, torch.optim.AdamW when decoupled):
// step is 1-based (the step being taken). m and v are the first and second moment buffers.
void adam_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                 float beta1, float beta2, float eps, float weight_decay, bool decoupled_weight_decay,
                 int64_t step);

// ---- Convolution, pooling and batch normalisation (NCHW, float32, contiguous) --------------------
//
// The N-API layer checks every size below before a kernel runs: all counts >= 1, strides and
// dilations >= 1, paddings >= 0, c and oc divisible by groups, oh and ow >= 1, and each array long
// enough; outputs never overlap inputs unless a kernel says so.

// Geometry of a 2-D convolution, torch.nn.Conv2d semantics (zero padding, cross-correlation):
//   x [n, c, h, w], weight [oc, c / groups, kh, kw], bias [oc], y [n, oc, oh, ow],
//   oh = (h + 2 ph - dh (kh - 1) - 1) / sh + 1 and ow likewise (floor), filled in by conv2d_output.
struct Conv2dShape {
  int64_t n, c, h, w;
  int64_t oc, kh, kw;
  int64_t sh, sw, ph, pw, dh, dw, groups;
  int64_t oh, ow;
};
// Fills s.oh and s.ow from the other fields; returns false (leaving them) when either would be < 1.
bool conv2d_output(Conv2dShape& s);
// Elements of the `col` workspace the three conv kernels need for this shape on this backend (the
// caller passes a buffer at least this long; its contents are scratch, before and after). May be 0.
int64_t conv2d_workspace(const Conv2dShape& s);
// y = conv2d(x, weight) + bias; bias may be null (no bias). y is overwritten.
void conv2d_forward(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                    float* y, float* col);
// dx = conv2d's input gradient for dy [n, oc, oh, ow] (= or += when accumulate).
void conv2d_backward_input(const Conv2dShape& s, const float* dy, const float* weight, float* dx,
                           float* col, bool accumulate);
// dweight = sum over the batch of dy_n . im2col(x_n)^T (= or += when accumulate_weight);
// dbias[o] = sum of dy[:, o, :, :] (= or += when accumulate_bias); dbias may be null.
void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dweight,
                            float* dbias, float* col, bool accumulate_weight, bool accumulate_bias);

// Geometry of 2-D pooling over `planes` independent planes (planes = n * c) of h x w:
//   window kh x kw, stride sh x sw, zero-size padding ph, pw (ph <= kh / 2, pw <= kw / 2, as torch),
//   oh = (h + 2 ph - kh) / sh + 1 and ow likewise (floor, torch's ceil_mode=False), from pool2d_output.
struct Pool2dShape {
  int64_t planes, h, w;
  int64_t kh, kw, sh, sw, ph, pw;
  int64_t oh, ow;
};
// Fills s.oh and s.ow; returns false (leaving them) when either would be < 1.
bool pool2d_output(Pool2dShape& s);
// y = max over each window (padding never wins); indices[p, o] = iy * w + ix of the maximum within
// its plane, the first one in row-major window order on ties; a NaN in the window wins (as torch).
void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* indices);
// dx (= or += when accumulate) receives dy[p, o] at indices[p, o] (summed where windows overlap).
void max_pool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* indices, float* dx,
                         bool accumulate);
// y = mean over each window. count_include_pad (torch's default): the divisor counts the padding
// positions of the window (kh * kw, clipped to the padded input); otherwise only the input's.
void avg_pool2d_forward(const Pool2dShape& s, const float* x, float* y, bool count_include_pad);
// dx (= or += when accumulate) = each dy spread evenly over its window with the forward's divisor.
void avg_pool2d_backward(const Pool2dShape& s, const float* dy, float* dx, bool count_include_pad,
                         bool accumulate);

// Batch normalisation of x [n, c, hw] per channel, torch.nn.BatchNorm2d semantics, statistics in double.
//   training: mean and biased variance over the n * hw values of each channel;
//             save_mean[c] = mean, save_invstd[c] = 1 / sqrt(var + eps); when running_mean and
//             running_var are not null: running = (1 - momentum) * running + momentum * batch, with
//             the unbiased variance (var * m / (m - 1), m = n * hw; var itself when m == 1).
//   eval:     save_mean = running_mean, save_invstd = 1 / sqrt(running_var + eps) (running stats
//             required, left unchanged).
//   y = (x - save_mean) * save_invstd * gamma + beta, gamma and beta may be null (1 and 0).
// y may alias x.
void batch_norm_forward(const float* x, float* y, const float* gamma, const float* beta,
                        float* save_mean, float* save_invstd, float* running_mean,
                        float* running_var, int64_t n, int64_t c, int64_t hw, bool training,
                        float momentum, float eps);
// With xhat = (x - save_mean) * save_invstd, sums over the n * hw values of each channel:
//   dbeta[c] = sum dy;  dgamma[c] = sum dy * xhat  (each = or += by its flag; either may be null)
//   training: dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
//   eval:     dx = gamma * invstd * dy        (gamma null: 1; dx may be null; dx may alias dy)
void batch_norm_backward(const float* x, const float* dy, const float* gamma,
                         const float* save_mean, const float* save_invstd, float* dx, float* dgamma,
                         float* dbeta, int64_t n, int64_t c, int64_t hw, bool training,
                         bool accumulate_dx, bool accumulate_dgamma, bool accumulate_dbeta);

// Conversions. fp16 is IEEE binary16, bf16 is the top 16 bits of binary32; both round to nearest
// even; NaN stays NaN, overflow goes to infinity (fp16).
void f32_to_f16(const float* x, uint16_t* y, int64_t n);
void f16_to_f32(const uint16_t* x, float* y, int64_t n);
void f32_to_bf16(const float* x, uint16_t* y, int64_t n);
void bf16_to_f32(const uint16_t* x, float* y, int64_t n);

// ---- 16-bit wire formats (src/tensor/half.ts: collectives and parameter-server traffic) ----
// cpu/half.cc only: wire buffers are host memory (cuda/ has no twins, and its binding calls none).
// Bit for bit what half.ts's TypeScript fallback computes, on every vector path, for any n and any
// alignment (tails included):
// - bf16 is the top half of the fp32 pattern, rounded to nearest even (overflow after rounding
//   gives inf); a NaN keeps its sign and top payload bits and is made quiet (never inf).
// - fp16 is IEEE binary16, rounded to nearest even: overflow gives inf, subnormals are exact, a NaN
//   keeps its sign and top payload bits and is made quiet (what F16C's vcvtps2ph does).
// - Widening is exact; an fp16 signalling NaN widens to the quiet NaN (as vcvtph2ps does).
// - acc_*: acc[i] = acc[i] + x[i] (op kWireSum) or max(acc[i], x[i]) (op kWireMax: acc[i] when it is
//   greater, else x[i]), x the widened src[i], in fp32. Every NaN result (a NaN operand, inf - inf)
//   is the quiet NaN 0x7fc00000: which payload x86 keeps for NaN + NaN depends on operand order,
//   which compilers may swap, so the kernels fix it.
// Outputs must not overlap inputs (the N-API layer checks).
constexpr int kWireSum = 0;
constexpr int kWireMax = 1;
void wire_to_bf16(const float* src, uint16_t* dst, int64_t n);
void wire_from_bf16(const uint16_t* src, float* dst, int64_t n);
void wire_to_f16(const float* src, uint16_t* dst, int64_t n);
void wire_from_f16(const uint16_t* src, float* dst, int64_t n);
void acc_bf16(float* acc, const uint16_t* src, int64_t n, int op);
void acc_f16(float* acc, const uint16_t* src, int64_t n, int op);
void acc_f32(float* acc, const float* src, int64_t n, int op);
// x[i] = widen(narrow(x[i])) in place: what the receivers of x hold.
void round_bf16(float* x, int64_t n);
void round_f16(float* x, int64_t n);
// How many of x[0..n) are inf or NaN.
size_t nonfinite_count(const float* x, int64_t n);

}  // namespace kernels
}  // namespace psrpc
