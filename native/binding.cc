// N-API surface of the CPU addon (psrpc.node): the NativeKernels interface of src/tensor/native.ts.
//
// This layer only converts and checks arguments, then calls the kernel contract
// (include/psrpc/kernels.h). Typed arrays are used in place (napi_get_typedarray_info already
// applies the view's byteOffset; SharedArrayBuffer views work the same), never copied. Every
// argument is checked before any memory is touched: a wrong type throws a TypeError, a wrong size,
// shape, leading dimension, label or probability throws a RangeError that names the function, the
// argument and the value, and the output arrays are left as they were.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>

#include "cpu/simd.h"
#include "napi_args.h"
#include "psrpc/rows.h"
#include "psrpc/kernels.h"

namespace {

namespace k = psrpc::kernels;
using namespace psrpc::napi;  // NOLINT: the argument layer is this file's vocabulary

napi_value Simd(napi_env env, napi_callback_info info) {
  napi_value out = nullptr;
  napi_create_string_utf8(env, psrpc::cpu::simd_name(psrpc::cpu::simd_level()), NAPI_AUTO_LENGTH, &out);
  return out;
}

// Checks one gemm operand stored rows x cols with leading dimension ld.
template <typename Shape>
void check_matrix(const Args& args, const View<float>& x, const char* ld_name, int64_t ld, int64_t rows,
                  int64_t cols, const Shape& shape) {
  const int64_t min_ld = cols > 1 ? cols : 1;
  if (ld < min_ld) {
    args.range(std::string(ld_name) + "=" + std::to_string(ld) + " is smaller than the row length " +
               std::to_string(cols) + " of " + x.name + " (" + shape() + ")");
  }
  const unsigned __int128 needed =
      rows == 0 || cols == 0 ? 0 : product(rows - 1, ld) + static_cast<unsigned __int128>(cols);
  at_least_length(args, x, needed, shape);
}

napi_value Gemm(napi_env env, napi_callback_info info) {
  const Args args(env, info, "gemm");
  const bool trans_a = args.boolean(0, "transA");
  const bool trans_b = args.boolean(1, "transB");
  const int64_t m = args.count(2, "m");
  const int64_t n = args.count(3, "n");
  const int64_t kk = args.count(4, "k");
  const float alpha = static_cast<float>(args.finite(5, "alpha"));
  const View<float> a = array<float>(args, 6, "a");
  const int64_t lda = args.count(7, "lda");
  const View<float> b = array<float>(args, 8, "b");
  const int64_t ldb = args.count(9, "ldb");
  const float beta = static_cast<float>(args.finite(10, "beta"));
  const View<float> c = array<float>(args, 11, "c");
  const int64_t ldc = args.count(12, "ldc");

  const auto dim = [](const char* name, int64_t v) { return std::string(name) + "=" + std::to_string(v); };
  check_matrix(args, a, "lda", lda, trans_a ? kk : m, trans_a ? m : kk, [&] {
    return std::string(trans_a ? "transA " : "") + dim("m", m) + " " + dim("k", kk) + " " + dim("lda", lda);
  });
  check_matrix(args, b, "ldb", ldb, trans_b ? n : kk, trans_b ? kk : n, [&] {
    return std::string(trans_b ? "transB " : "") + dim("k", kk) + " " + dim("n", n) + " " + dim("ldb", ldb);
  });
  check_matrix(args, c, "ldc", ldc, m, n, [&] { return dim("m", m) + " " + dim("n", n) + " " + dim("ldc", ldc); });
  if (m > 0 && n > 0) {
    if (kk > 0) {
      disjoint(args, c, a);
      disjoint(args, c, b);
    }
  }
  k::gemm(trans_a, trans_b, m, n, kk, alpha, a.data, lda, b.data, ldb, beta, c.data, ldc);
  return undefined(env);
}

napi_value BiasAdd(napi_env env, napi_callback_info info) {
  const Args args(env, info, "biasAdd");
  const View<float> y = array<float>(args, 0, "y");
  const View<float> bias = array<float>(args, 1, "bias");
  const int64_t rows = args.count(2, "rows");
  const int64_t cols = args.count(3, "cols");
  at_least_length(args, y, product(rows, cols), [&] { return rows_cols(rows, cols); });
  at_least_length(args, bias, static_cast<unsigned __int128>(cols), [&] { return rows_cols(rows, cols); });
  if (rows > 0 && cols > 0) disjoint(args, y, bias);
  if (rows == 0 || cols == 0) return undefined(env);  // nothing to add (and no 2^53 empty rows to walk)
  k::bias_add(y.data, bias.data, rows, cols);
  return undefined(env);
}

napi_value BiasGrad(napi_env env, napi_callback_info info) {
  const Args args(env, info, "biasGrad");
  const View<float> dy = array<float>(args, 0, "dy");
  const View<float> dbias = array<float>(args, 1, "dbias");
  const int64_t rows = args.count(2, "rows");
  const int64_t cols = args.count(3, "cols");
  const bool accumulate = args.boolean(4, "accumulate");
  at_least_length(args, dy, product(rows, cols), [&] { return rows_cols(rows, cols); });
  at_least_length(args, dbias, static_cast<unsigned __int128>(cols), [&] { return rows_cols(rows, cols); });
  if (cols > 0) disjoint(args, dbias, dy);
  if (cols == 0) return undefined(env);
  k::bias_grad(dy.data, dbias.data, rows, cols, accumulate);
  return undefined(env);
}

napi_value ReluForward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "reluForward");
  const View<float> x = array<float>(args, 0, "x");
  const View<float> y = array<float>(args, 1, "y");
  same_length(args, x, y);
  same_or_disjoint(args, y, x);
  k::relu_forward(x.data, y.data, x.length);
  return undefined(env);
}

napi_value ReluBackward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "reluBackward");
  const View<float> x = array<float>(args, 0, "x");
  const View<float> dy = array<float>(args, 1, "dy");
  const View<float> dx = array<float>(args, 2, "dx");
  same_length(args, x, dy);
  same_length(args, x, dx);
  same_or_disjoint(args, dx, x);
  same_or_disjoint(args, dx, dy);
  k::relu_backward(x.data, dy.data, dx.data, x.length);
  return undefined(env);
}

napi_value LogSoftmaxForward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "logSoftmaxForward");
  const View<float> x = array<float>(args, 0, "x");
  const View<float> y = array<float>(args, 1, "y");
  const int64_t rows = args.count(2, "rows");
  const int64_t cols = args.count(3, "cols");
  at_least_length(args, x, product(rows, cols), [&] { return rows_cols(rows, cols); });
  at_least_length(args, y, product(rows, cols), [&] { return rows_cols(rows, cols); });
  same_or_disjoint(args, y, x);
  if (rows == 0 || cols == 0) return undefined(env);
  k::log_softmax_forward(x.data, y.data, rows, cols);
  return undefined(env);
}

napi_value LogSoftmaxBackward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "logSoftmaxBackward");
  const View<float> y = array<float>(args, 0, "y");
  const View<float> dy = array<float>(args, 1, "dy");
  const View<float> dx = array<float>(args, 2, "dx");
  const int64_t rows = args.count(3, "rows");
  const int64_t cols = args.count(4, "cols");
  for (const View<float>* v : {&y, &dy, &dx}) at_least_length(args, *v, product(rows, cols), [&] { return rows_cols(rows, cols); });
  same_or_disjoint(args, dx, y);
  same_or_disjoint(args, dx, dy);
  if (rows == 0 || cols == 0) return undefined(env);
  k::log_softmax_backward(y.data, dy.data, dx.data, rows, cols);
  return undefined(env);
}

napi_value CrossEntropyForward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "crossEntropyForward");
  const View<float> logits = array<float>(args, 0, "logits");
  const View<int32_t> labels = array<int32_t>(args, 1, "labels");
  const View<float> logp = array<float>(args, 2, "logp");
  const int64_t rows = args.count(3, "rows");
  const int64_t cols = args.count(4, "cols");
  at_least_length(args, logits, product(rows, cols), [&] { return rows_cols(rows, cols); });
  at_least_length(args, logp, product(rows, cols), [&] { return rows_cols(rows, cols); });
  at_least_length(args, labels, static_cast<unsigned __int128>(rows), [&] { return rows_cols(rows, cols); });
  same_or_disjoint(args, logp, logits);
  disjoint(args, logp, labels);
  check_labels(args, labels, rows, cols);
  const float loss = k::cross_entropy_forward(logits.data, labels.data, logp.data, rows, cols);
  return number_value(env, loss);
}

napi_value CrossEntropyBackward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "crossEntropyBackward");
  const View<float> logp = array<float>(args, 0, "logp");
  const View<int32_t> labels = array<int32_t>(args, 1, "labels");
  const View<float> dlogits = array<float>(args, 2, "dlogits");
  const int64_t rows = args.count(3, "rows");
  const int64_t cols = args.count(4, "cols");
  const float scale = static_cast<float>(args.finite(5, "scale"));
  at_least_length(args, logp, product(rows, cols), [&] { return rows_cols(rows, cols); });
  at_least_length(args, dlogits, product(rows, cols), [&] { return rows_cols(rows, cols); });
  at_least_length(args, labels, static_cast<unsigned __int128>(rows), [&] { return rows_cols(rows, cols); });
  same_or_disjoint(args, dlogits, logp);
  disjoint(args, dlogits, labels);
  check_labels(args, labels, rows, cols);
  k::cross_entropy_backward(logp.data, labels.data, dlogits.data, rows, cols, scale);
  return undefined(env);
}

napi_value NllForward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "nllForward");
  const View<float> logp = array<float>(args, 0, "logp");
  const View<int32_t> labels = array<int32_t>(args, 1, "labels");
  const int64_t rows = args.count(2, "rows");
  const int64_t cols = args.count(3, "cols");
  at_least_length(args, logp, product(rows, cols), [&] { return rows_cols(rows, cols); });
  at_least_length(args, labels, static_cast<unsigned __int128>(rows), [&] { return rows_cols(rows, cols); });
  check_labels(args, labels, rows, cols);
  return number_value(env, k::nll_forward(logp.data, labels.data, rows, cols));
}

napi_value NllBackward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "nllBackward");
  const View<int32_t> labels = array<int32_t>(args, 0, "labels");
  const View<float> dlogp = array<float>(args, 1, "dlogp");
  const int64_t rows = args.count(2, "rows");
  const int64_t cols = args.count(3, "cols");
  const float scale = static_cast<float>(args.finite(4, "scale"));
  at_least_length(args, dlogp, product(rows, cols), [&] { return rows_cols(rows, cols); });
  at_least_length(args, labels, static_cast<unsigned __int128>(rows), [&] { return rows_cols(rows, cols); });
  disjoint(args, dlogp, labels);
  check_labels(args, labels, rows, cols);
  k::nll_backward(labels.data, dlogp.data, rows, cols, scale);
  return undefined(env);
}

napi_value DropoutForward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "dropoutForward");
  const View<float> x = array<float>(args, 0, "x");
  const View<float> y = array<float>(args, 1, "y");
  const View<uint8_t> mask = array<uint8_t>(args, 2, "mask");
  const double p = args.unit(3, "p");
  const int64_t seed = args.count(4, "seed");
  const int64_t offset = args.count(5, "offset");
  same_length(args, x, y);
  same_length(args, x, mask);
  same_or_disjoint(args, y, x);
  disjoint(args, mask, x);
  disjoint(args, mask, y);
  k::dropout_forward(x.data, y.data, mask.data, x.length, static_cast<float>(p), static_cast<uint64_t>(seed),
                     static_cast<uint64_t>(offset));
  return undefined(env);
}

napi_value DropoutBackward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "dropoutBackward");
  const View<float> dy = array<float>(args, 0, "dy");
  const View<uint8_t> mask = array<uint8_t>(args, 1, "mask");
  const View<float> dx = array<float>(args, 2, "dx");
  const double p = args.unit(3, "p");
  same_length(args, dy, mask);
  same_length(args, dy, dx);
  same_or_disjoint(args, dx, dy);
  disjoint(args, dx, mask);
  k::dropout_backward(dy.data, mask.data, dx.data, dy.length, static_cast<float>(p));
  return undefined(env);
}

napi_value UniformAt(napi_env env, napi_callback_info info) {
  const Args args(env, info, "uniformAt");
  const int64_t seed = args.count(0, "seed");
  const int64_t index = args.count(1, "index");
  return number_value(env, k::uniform_at(static_cast<uint64_t>(seed), static_cast<uint64_t>(index)));
}

napi_value Axpy(napi_env env, napi_callback_info info) {
  const Args args(env, info, "axpy");
  const float alpha = static_cast<float>(args.finite(0, "alpha"));
  const View<float> x = array<float>(args, 1, "x");
  const View<float> y = array<float>(args, 2, "y");
  same_length(args, x, y);
  same_or_disjoint(args, y, x);
  k::axpy(x.length, alpha, x.data, y.data);
  return undefined(env);
}

napi_value Scale(napi_env env, napi_callback_info info) {
  const Args args(env, info, "scale");
  const float alpha = static_cast<float>(args.finite(0, "alpha"));
  const View<float> x = array<float>(args, 1, "x");
  k::scale(x.length, alpha, x.data);
  return undefined(env);
}

template <void (*Kernel)(int64_t, const float*, const float*, float*)>
napi_value Binary(napi_env env, napi_callback_info info, const char* fn) {
  const Args args(env, info, fn);
  const View<float> a = array<float>(args, 0, "a");
  const View<float> b = array<float>(args, 1, "b");
  const View<float> out = array<float>(args, 2, "out");
  same_length(args, a, b);
  same_length(args, a, out);
  same_or_disjoint(args, out, a);
  same_or_disjoint(args, out, b);
  Kernel(a.length, a.data, b.data, out.data);
  return undefined(env);
}

napi_value Add(napi_env env, napi_callback_info info) { return Binary<k::add>(env, info, "add"); }
napi_value Mul(napi_env env, napi_callback_info info) { return Binary<k::mul>(env, info, "mul"); }

napi_value Sum(napi_env env, napi_callback_info info) {
  const Args args(env, info, "sum");
  const View<float> x = array<float>(args, 0, "x");
  return number_value(env, k::sum(x.length, x.data));
}

napi_value SgdUpdate(napi_env env, napi_callback_info info) {
  const Args args(env, info, "sgdUpdate");
  const View<float> param = array<float>(args, 0, "param");
  const View<float> grad = array<float>(args, 1, "grad");
  const double lr = args.at_least(3, "lr", 0.0);
  const double momentum = args.at_least(4, "momentum", 0.0);
  const double dampening = args.finite(5, "dampening");
  const double weight_decay = args.at_least(6, "weightDecay", 0.0);
  const bool nesterov = args.boolean(7, "nesterov");
  const bool first_step = args.boolean(8, "firstStep");
  View<float> buf;
  buf.name = "momentumBuf";
  if (momentum != 0.0 || !args.is_nullish(2)) {
    if (momentum != 0.0 && args.is_nullish(2)) {
      throw_type(args.env(), "sgdUpdate: momentumBuf must be a Float32Array when momentum is " +
                                 number_text(momentum) + ", got " + describe(args.env(), args.raw(2)));
    }
    buf = array<float>(args, 2, "momentumBuf");
    same_length(args, param, buf);
  }
  same_length(args, param, grad);
  if (nesterov && (momentum <= 0.0 || dampening != 0.0)) {
    args.range("nesterov needs momentum > 0 and dampening = 0, got momentum=" + number_text(momentum) +
               " dampening=" + number_text(dampening));
  }
  disjoint(args, param, grad);
  disjoint(args, param, buf);
  disjoint(args, buf, grad);
  k::sgd_update(param.data, grad.data, momentum != 0.0 ? buf.data : nullptr, param.length, static_cast<float>(lr),
                static_cast<float>(momentum), static_cast<float>(dampening), static_cast<float>(weight_decay),
                nesterov, first_step);
  return undefined(env);
}

napi_value AdamUpdate(napi_env env, napi_callback_info info) {
  const Args args(env, info, "adamUpdate");
  const View<float> param = array<float>(args, 0, "param");
  const View<float> grad = array<float>(args, 1, "grad");
  const View<float> m = array<float>(args, 2, "m");
  const View<float> v = array<float>(args, 3, "v");
  const double lr = args.at_least(4, "lr", 0.0);
  const double beta1 = args.unit(5, "beta1");
  const double beta2 = args.unit(6, "beta2");
  const double eps = args.at_least(7, "eps", 0.0);
  const double weight_decay = args.at_least(8, "weightDecay", 0.0);
  const bool decoupled = args.boolean(9, "decoupled");
  const int64_t step = args.count(10, "step");
  if (step < 1) args.range("step must be >= 1 (it is the 1-based step being taken), got " + std::to_string(step));
  same_length(args, param, grad);
  same_length(args, param, m);
  same_length(args, param, v);
  disjoint(args, param, grad);
  disjoint(args, param, m);
  disjoint(args, param, v);
  disjoint(args, m, grad);
  disjoint(args, v, grad);
  disjoint(args, m, v);
  k::adam_update(param.data, grad.data, m.data, v.data, param.length, static_cast<float>(lr),
                 static_cast<float>(beta1), static_cast<float>(beta2), static_cast<float>(eps),
                 static_cast<float>(weight_decay), decoupled, step);
  return undefined(env);
}

// ---- convolution, pooling, batch normalisation -------------------------------------------------
// The geometry arrives as one list of integers (Conv2dGeometry, Pool2dGeometry in native.ts); every
// field, the derived output size and every array's length against it are checked before a kernel runs.

constexpr const char* kConvFields[14] = {"n", "c", "h", "w", "oc", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "groups"};
constexpr int kConvLo[14] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1};
constexpr const char* kPoolFields[9] = {"planes", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw"};
constexpr int kPoolLo[9] = {1, 1, 1, 1, 1, 1, 1, 0, 0};

std::string conv_text(const k::Conv2dShape& s) {
  return "n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) + " h=" + std::to_string(s.h) + " w=" +
         std::to_string(s.w) + " oc=" + std::to_string(s.oc) + " kernel " + std::to_string(s.kh) + "x" +
         std::to_string(s.kw) + " stride " + std::to_string(s.sh) + "x" + std::to_string(s.sw) + " padding " +
         std::to_string(s.ph) + "x" + std::to_string(s.pw) + " dilation " + std::to_string(s.dh) + "x" +
         std::to_string(s.dw) + " groups=" + std::to_string(s.groups) + " (output " + std::to_string(s.oh) + "x" +
         std::to_string(s.ow) + ")";
}

unsigned __int128 product4(int64_t a, int64_t b, int64_t c, int64_t d) { return product(a, b) * product(c, d); }

k::Conv2dShape conv_shape(const Args& args, size_t i) {
  int64_t g[14];
  integer_list(args, i, "geometry", kConvFields, kConvLo, 14, g);
  k::Conv2dShape s{g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], 0, 0};
  if (s.c % s.groups != 0 || s.oc % s.groups != 0) {
    args.range("groups=" + std::to_string(s.groups) + " must divide c=" + std::to_string(s.c) + " and oc=" +
               std::to_string(s.oc));
  }
  if (!k::conv2d_output(s)) {
    args.range("the output is empty: input " + std::to_string(s.h) + "x" + std::to_string(s.w) + " padded by " +
               std::to_string(s.ph) + "x" + std::to_string(s.pw) + " is smaller than the dilated kernel " +
               std::to_string(s.dh * (s.kh - 1) + 1) + "x" + std::to_string(s.dw * (s.kw - 1) + 1));
  }
  // The columns of one image (K x P) must be addressable; a real workspace of that size could not exist anyway.
  const unsigned __int128 k_len = product(s.c / s.groups, s.kh) * static_cast<unsigned __int128>(s.kw);
  if (k_len * (product(s.oh, s.ow) + static_cast<unsigned __int128>(s.oc)) > static_cast<unsigned __int128>(kMaxSafeInteger)) {
    args.range("the im2col columns of " + conv_text(s) + " exceed 2^53 elements");
  }
  return s;
}

// x, weight, bias and the output-shaped array (y or dy) against the shape; col against the workspace.
void check_conv(const Args& args, const k::Conv2dShape& s, const View<float>* x, const View<float>& weight,
                const View<float>* bias, const View<float>& out, const View<float>& col) {
  const auto shape = [&] { return conv_text(s); };
  if (x) at_least_length(args, *x, product4(s.n, s.c, s.h, s.w), shape);
  at_least_length(args, weight, product4(s.oc, s.c / s.groups, s.kh, s.kw), shape);
  if (bias && bias->data) at_least_length(args, *bias, static_cast<unsigned __int128>(s.oc), shape);
  at_least_length(args, out, product4(s.n, s.oc, s.oh, s.ow), shape);
  at_least_length(args, col, static_cast<unsigned __int128>(k::conv2d_workspace(s)), [&] {
    return conv_text(s) + " (conv2dWorkspace)";
  });
}

napi_value Conv2dWorkspace(napi_env env, napi_callback_info info) {
  const Args args(env, info, "conv2dWorkspace");
  const k::Conv2dShape s = conv_shape(args, 0);
  return number_value(env, static_cast<double>(k::conv2d_workspace(s)));
}

napi_value Conv2dForward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "conv2dForward");
  const k::Conv2dShape s = conv_shape(args, 0);
  const View<float> x = array<float>(args, 1, "x");
  const View<float> weight = array<float>(args, 2, "weight");
  const View<float> bias = optional_array<float>(args, 3, "bias");
  const View<float> y = array<float>(args, 4, "y");
  const View<float> col = array<float>(args, 5, "col");
  check_conv(args, s, &x, weight, &bias, y, col);
  for (const View<float>* in : {&x, &weight, &bias, &col}) disjoint(args, y, *in);
  for (const View<float>* in : {&x, &weight, &bias}) disjoint(args, col, *in);
  k::conv2d_forward(s, x.data, weight.data, bias.data, y.data, col.data);
  return undefined(env);
}

napi_value Conv2dBackwardInput(napi_env env, napi_callback_info info) {
  const Args args(env, info, "conv2dBackwardInput");
  const k::Conv2dShape s = conv_shape(args, 0);
  const View<float> dy = array<float>(args, 1, "dy");
  const View<float> weight = array<float>(args, 2, "weight");
  const View<float> dx = array<float>(args, 3, "dx");
  const View<float> col = array<float>(args, 4, "col");
  const bool accumulate = args.boolean(5, "accumulate");
  check_conv(args, s, &dx, weight, nullptr, dy, col);
  for (const View<float>* in : {&dy, &weight, &col}) disjoint(args, dx, *in);
  for (const View<float>* in : {&dy, &weight}) disjoint(args, col, *in);
  k::conv2d_backward_input(s, dy.data, weight.data, dx.data, col.data, accumulate);
  return undefined(env);
}

napi_value Conv2dBackwardWeight(napi_env env, napi_callback_info info) {
  const Args args(env, info, "conv2dBackwardWeight");
  const k::Conv2dShape s = conv_shape(args, 0);
  const View<float> x = array<float>(args, 1, "x");
  const View<float> dy = array<float>(args, 2, "dy");
  const View<float> dweight = array<float>(args, 3, "dweight");
  const View<float> dbias = optional_array<float>(args, 4, "dbias");
  const View<float> col = array<float>(args, 5, "col");
  const bool accumulate_weight = args.boolean(6, "accumulateWeight");
  const bool accumulate_bias = args.boolean(7, "accumulateBias");
  check_conv(args, s, &x, dweight, &dbias, dy, col);
  for (const View<float>* in : {&x, &dy, &col, &dbias}) disjoint(args, dweight, *in);
  for (const View<float>* in : {&x, &dy, &col}) disjoint(args, dbias, *in);
  for (const View<float>* in : {&x, &dy}) disjoint(args, col, *in);
  k::conv2d_backward_weight(s, x.data, dy.data, dweight.data, dbias.data, col.data, accumulate_weight,
                            accumulate_bias);
  return undefined(env);
}

std::string pool_text(const k::Pool2dShape& s) {
  return "planes=" + std::to_string(s.planes) + " h=" + std::to_string(s.h) + " w=" + std::to_string(s.w) +
         " window " + std::to_string(s.kh) + "x" + std::to_string(s.kw) + " stride " + std::to_string(s.sh) + "x" +
         std::to_string(s.sw) + " padding " + std::to_string(s.ph) + "x" + std::to_string(s.pw) + " (output " +
         std::to_string(s.oh) + "x" + std::to_string(s.ow) + ")";
}

k::Pool2dShape pool_shape(const Args& args, size_t i) {
  int64_t g[9];
  integer_list(args, i, "geometry", kPoolFields, kPoolLo, 9, g);
  k::Pool2dShape s{g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], 0, 0};
  if (2 * s.ph > s.kh || 2 * s.pw > s.kw) {
    args.range("padding " + std::to_string(s.ph) + "x" + std::to_string(s.pw) + " must be at most half the window " +
               std::to_string(s.kh) + "x" + std::to_string(s.kw));
  }
  if (product(s.h, s.w) > 2147483647u) {
    args.range("planes of " + std::to_string(s.h) + "x" + std::to_string(s.w) + " exceed the 2^31 - 1 positions an Int32 index holds");
  }
  if (!k::pool2d_output(s)) {
    args.range("the output is empty: input " + std::to_string(s.h) + "x" + std::to_string(s.w) + " padded by " +
               std::to_string(s.ph) + "x" + std::to_string(s.pw) + " is smaller than the window " +
               std::to_string(s.kh) + "x" + std::to_string(s.kw));
  }
  return s;
}

void check_pool(const Args& args, const k::Pool2dShape& s, const View<float>& x, const View<float>& y) {
  const auto shape = [&] { return pool_text(s); };
  at_least_length(args, x, product(s.planes, s.h) * static_cast<unsigned __int128>(s.w), shape);
  at_least_length(args, y, product(s.planes, s.oh) * static_cast<unsigned __int128>(s.ow), shape);
}

napi_value MaxPool2dForward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "maxPool2dForward");
  const k::Pool2dShape s = pool_shape(args, 0);
  const View<float> x = array<float>(args, 1, "x");
  const View<float> y = array<float>(args, 2, "y");
  const View<int32_t> indices = array<int32_t>(args, 3, "indices");
  check_pool(args, s, x, y);
  at_least_length(args, indices, product(s.planes, s.oh) * static_cast<unsigned __int128>(s.ow), [&] { return pool_text(s); });
  disjoint(args, y, x);
  disjoint(args, indices, x);
  disjoint(args, indices, y);
  k::max_pool2d_forward(s, x.data, y.data, indices.data);
  return undefined(env);
}

napi_value MaxPool2dBackward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "maxPool2dBackward");
  const k::Pool2dShape s = pool_shape(args, 0);
  const View<float> dy = array<float>(args, 1, "dy");
  const View<int32_t> indices = array<int32_t>(args, 2, "indices");
  const View<float> dx = array<float>(args, 3, "dx");
  const bool accumulate = args.boolean(4, "accumulate");
  check_pool(args, s, dx, dy);
  const int64_t outputs = s.planes * s.oh * s.ow;
  at_least_length(args, indices, static_cast<unsigned __int128>(outputs), [&] { return pool_text(s); });
  disjoint(args, dx, dy);
  disjoint(args, dx, indices);
  const int64_t hw = s.h * s.w;
  for (int64_t o = 0; o < outputs; ++o) {
    const int32_t at = indices.data[o];
    if (at < 0 || at >= hw) {
      args.range("indices[" + std::to_string(o) + "] = " + std::to_string(at) + " is outside the plane's [0, " +
                 std::to_string(hw) + ")");
    }
  }
  k::max_pool2d_backward(s, dy.data, indices.data, dx.data, accumulate);
  return undefined(env);
}

napi_value AvgPool2dForward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "avgPool2dForward");
  const k::Pool2dShape s = pool_shape(args, 0);
  const View<float> x = array<float>(args, 1, "x");
  const View<float> y = array<float>(args, 2, "y");
  const bool count_include_pad = args.boolean(3, "countIncludePad");
  check_pool(args, s, x, y);
  disjoint(args, y, x);
  k::avg_pool2d_forward(s, x.data, y.data, count_include_pad);
  return undefined(env);
}

napi_value AvgPool2dBackward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "avgPool2dBackward");
  const k::Pool2dShape s = pool_shape(args, 0);
  const View<float> dy = array<float>(args, 1, "dy");
  const View<float> dx = array<float>(args, 2, "dx");
  const bool count_include_pad = args.boolean(3, "countIncludePad");
  const bool accumulate = args.boolean(4, "accumulate");
  check_pool(args, s, dx, dy);
  disjoint(args, dx, dy);
  k::avg_pool2d_backward(s, dy.data, dx.data, count_include_pad, accumulate);
  return undefined(env);
}

// n, c, hw (>= 1 each) and the lengths of the [n, c, hw] arrays and the per-channel ones.
struct NormDims {
  int64_t n, c, hw;
};

NormDims norm_dims(const Args& args, size_t i) {
  NormDims d{args.count(i, "n"), args.count(i + 1, "c"), args.count(i + 2, "hw")};
  if (d.n < 1 || d.c < 1 || d.hw < 1) {
    args.range("n, c and hw must be >= 1, got n=" + std::to_string(d.n) + " c=" + std::to_string(d.c) + " hw=" +
               std::to_string(d.hw));
  }
  return d;
}

std::string norm_text(const NormDims& d) {
  return "n=" + std::to_string(d.n) + " c=" + std::to_string(d.c) + " hw=" + std::to_string(d.hw);
}

void check_norm(const Args& args, const NormDims& d, std::initializer_list<const View<float>*> full,
                std::initializer_list<const View<float>*> channel) {
  const unsigned __int128 total = product(d.n, d.c) * static_cast<unsigned __int128>(d.hw);
  for (const View<float>* v : full) {
    if (v->data) at_least_length(args, *v, total, [&] { return norm_text(d); });
  }
  for (const View<float>* v : channel) {
    if (v->data) at_least_length(args, *v, static_cast<unsigned __int128>(d.c), [&] { return norm_text(d); });
  }
}

napi_value BatchNormForward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "batchNormForward");
  const View<float> x = array<float>(args, 0, "x");
  const View<float> y = array<float>(args, 1, "y");
  const View<float> gamma = optional_array<float>(args, 2, "gamma");
  const View<float> beta = optional_array<float>(args, 3, "beta");
  const View<float> save_mean = array<float>(args, 4, "saveMean");
  const View<float> save_invstd = array<float>(args, 5, "saveInvstd");
  const View<float> running_mean = optional_array<float>(args, 6, "runningMean");
  const View<float> running_var = optional_array<float>(args, 7, "runningVar");
  const NormDims d = norm_dims(args, 8);
  const bool training = args.boolean(11, "training");
  const double momentum = args.finite(12, "momentum");
  const double eps = args.at_least(13, "eps", 0.0);
  if ((running_mean.data == nullptr) != (running_var.data == nullptr) || (!training && running_mean.data == nullptr)) {
    const bool mean_missing = running_mean.data == nullptr;
    throw_type(env, std::string("batchNormForward: ") + (mean_missing ? "runningMean" : "runningVar") +
                        " must be a Float32Array " + (training ? "when the other running statistic is given" : "in eval mode") +
                        ", got " + describe(env, args.raw(mean_missing ? 6 : 7)));
  }
  check_norm(args, d, {&x, &y}, {&gamma, &beta, &save_mean, &save_invstd, &running_mean, &running_var});
  same_or_disjoint(args, y, x);
  const View<float>* outs[] = {&save_mean, &save_invstd, &running_mean, &running_var};
  for (const View<float>* in : {&gamma, &beta, &save_mean, &save_invstd, &running_mean, &running_var}) disjoint(args, y, *in);
  for (const View<float>* out : outs) {
    for (const View<float>* in : {&x, &gamma, &beta}) disjoint(args, *out, *in);
    for (const View<float>* other : outs) {
      if (other != out) disjoint(args, *out, *other);
    }
  }
  k::batch_norm_forward(x.data, y.data, gamma.data, beta.data, save_mean.data, save_invstd.data, running_mean.data,
                        running_var.data, d.n, d.c, d.hw, training, static_cast<float>(momentum), static_cast<float>(eps));
  return undefined(env);
}

napi_value BatchNormBackward(napi_env env, napi_callback_info info) {
  const Args args(env, info, "batchNormBackward");
  const View<float> x = array<float>(args, 0, "x");
  const View<float> dy = array<float>(args, 1, "dy");
  const View<float> gamma = optional_array<float>(args, 2, "gamma");
  const View<float> save_mean = array<float>(args, 3, "saveMean");
  const View<float> save_invstd = array<float>(args, 4, "saveInvstd");
  const View<float> dx = optional_array<float>(args, 5, "dx");
  const View<float> dgamma = optional_array<float>(args, 6, "dgamma");
  const View<float> dbeta = optional_array<float>(args, 7, "dbeta");
  const NormDims d = norm_dims(args, 8);
  const bool training = args.boolean(11, "training");
  const bool accumulate_dx = args.boolean(12, "accumulateDx");
  const bool accumulate_dgamma = args.boolean(13, "accumulateDgamma");
  const bool accumulate_dbeta = args.boolean(14, "accumulateDbeta");
  check_norm(args, d, {&x, &dy, &dx}, {&gamma, &save_mean, &save_invstd, &dgamma, &dbeta});
  same_or_disjoint(args, dx, dy);
  for (const View<float>* in : {&x, &gamma, &save_mean, &save_invstd, &dgamma, &dbeta}) disjoint(args, dx, *in);
  for (const View<float>* in : {&x, &dy, &gamma, &save_mean, &save_invstd, &dbeta}) disjoint(args, dgamma, *in);
  for (const View<float>* in : {&x, &dy, &gamma, &save_mean, &save_invstd}) disjoint(args, dbeta, *in);
  k::batch_norm_backward(x.data, dy.data, gamma.data, save_mean.data, save_invstd.data, dx.data, dgamma.data, dbeta.data,
                         d.n, d.c, d.hw, training, accumulate_dx, accumulate_dgamma, accumulate_dbeta);
  return undefined(env);
}

template <typename In, typename Out, void (*Kernel)(const In*, Out*, int64_t)>
napi_value Convert(napi_env env, napi_callback_info info, const char* fn) {
  const Args args(env, info, fn);
  const View<In> x = array<In>(args, 0, "x");
  const View<Out> y = array<Out>(args, 1, "y");
  same_length(args, x, y);
  disjoint(args, y, x);
  Kernel(x.data, y.data, x.length);
  return undefined(env);
}

napi_value F32ToF16(napi_env env, napi_callback_info info) { return Convert<float, uint16_t, k::f32_to_f16>(env, info, "f32ToF16"); }
napi_value F16ToF32(napi_env env, napi_callback_info info) { return Convert<uint16_t, float, k::f16_to_f32>(env, info, "f16ToF32"); }
napi_value F32ToBf16(napi_env env, napi_callback_info info) {
  return Convert<float, uint16_t, k::f32_to_bf16>(env, info, "f32ToBf16");
}
napi_value Bf16ToF32(napi_env env, napi_callback_info info) {
  return Convert<uint16_t, float, k::bf16_to_f32>(env, info, "bf16ToF32");
}

// 16-bit wire formats (kernels.h): the wire side is a Uint16Array, the fp32 side a Float32Array of
// the same length, distinct memory; op is 'sum' (0) or 'max' (1). CPU only: the emulated-CUDA addon
// (PSRPC_CUDA_EMU), which reuses this file, has no such kernels and so does not export them (a call
// would be an unresolved symbol); half.ts computes them in TypeScript there.
#ifndef PSRPC_CUDA_EMU
template <typename In, typename Out, void (*Kernel)(const In*, Out*, int64_t)>
napi_value WireConvert(napi_env env, napi_callback_info info, const char* fn) {
  const Args args(env, info, fn);
  const View<In> src = array<In>(args, 0, "src");
  const View<Out> dst = array<Out>(args, 1, "dst");
  same_length(args, src, dst);
  disjoint(args, dst, src);
  Kernel(src.data, dst.data, src.length);
  return undefined(env);
}

int wire_op(const Args& args, size_t i) {
  const double op = args.number(i, "op");
  if (op != k::kWireSum && op != k::kWireMax) args.range("op must be 0 (sum) or 1 (max), got " + number_text(op));
  return static_cast<int>(op);
}

template <typename In, void (*Kernel)(float*, const In*, int64_t, int)>
napi_value WireAcc(napi_env env, napi_callback_info info, const char* fn) {
  const Args args(env, info, fn);
  const View<float> acc = array<float>(args, 0, "acc");
  const View<In> src = array<In>(args, 1, "src");
  const int op = wire_op(args, 2);
  same_length(args, acc, src);
  disjoint(args, acc, src);
  Kernel(acc.data, src.data, acc.length, op);
  return undefined(env);
}

template <void (*Kernel)(float*, int64_t)>
napi_value WireRound(napi_env env, napi_callback_info info, const char* fn) {
  const Args args(env, info, fn);
  const View<float> x = array<float>(args, 0, "x");
  Kernel(x.data, x.length);
  return undefined(env);
}

napi_value WireToBf16(napi_env env, napi_callback_info info) { return WireConvert<float, uint16_t, k::wire_to_bf16>(env, info, "wireToBf16"); }
napi_value WireFromBf16(napi_env env, napi_callback_info info) { return WireConvert<uint16_t, float, k::wire_from_bf16>(env, info, "wireFromBf16"); }
napi_value WireToF16(napi_env env, napi_callback_info info) { return WireConvert<float, uint16_t, k::wire_to_f16>(env, info, "wireToF16"); }
napi_value WireFromF16(napi_env env, napi_callback_info info) { return WireConvert<uint16_t, float, k::wire_from_f16>(env, info, "wireFromF16"); }
napi_value WireAccBf16(napi_env env, napi_callback_info info) { return WireAcc<uint16_t, k::acc_bf16>(env, info, "wireAccBf16"); }
napi_value WireAccF16(napi_env env, napi_callback_info info) { return WireAcc<uint16_t, k::acc_f16>(env, info, "wireAccF16"); }
napi_value WireAccF32(napi_env env, napi_callback_info info) { return WireAcc<float, k::acc_f32>(env, info, "wireAccF32"); }
napi_value WireRoundBf16(napi_env env, napi_callback_info info) { return WireRound<k::round_bf16>(env, info, "wireRoundBf16"); }
napi_value WireRoundF16(napi_env env, napi_callback_info info) { return WireRound<k::round_f16>(env, info, "wireRoundF16"); }
napi_value NonFiniteCount(napi_env env, napi_callback_info info) {
  const Args args(env, info, "nonFiniteCount");
  const View<float> x = array<float>(args, 0, "x");
  return number_value(env, static_cast<double>(k::nonfinite_count(x.data, x.length)));
}
#endif  // PSRPC_CUDA_EMU

// Row gathers (data layer): every index is checked against src before any row is copied.
template <typename In>
void check_gather(const Args& args, const View<In>& src, const View<int32_t>& index, int64_t row_len,
                  const View<float>& dst) {
  if (row_len == 0) args.range("rowLen must be >= 1, got 0");
  const int64_t rows = src.length / row_len;
  const unsigned __int128 needed = static_cast<unsigned __int128>(index.length) * static_cast<unsigned __int128>(row_len);
  at_least_length(args, dst, needed, [&] { return std::to_string(index.length) + " rows of " + std::to_string(row_len); });
  for (int64_t r = 0; r < index.length; r++) {
    const int32_t i = index.data[r];
    if (i < 0 || i >= rows) {
      args.range("index[" + std::to_string(r) + "] is " + std::to_string(i) + ", src has " + std::to_string(rows) +
                 " rows of " + std::to_string(row_len));
    }
  }
  disjoint(args, dst, src);
  disjoint(args, dst, index);
}

napi_value GatherRowsU8(napi_env env, napi_callback_info info) {
  const Args args(env, info, "gatherRowsU8");
  const View<uint8_t> src = array<uint8_t>(args, 0, "src");
  const View<int32_t> index = array<int32_t>(args, 1, "index");
  const int64_t row_len = args.count(2, "rowLen");
  const View<float> lut = array<float>(args, 3, "lut");
  const View<float> dst = array<float>(args, 4, "dst");
  if (lut.length != 256) args.range("lut has " + std::to_string(lut.length) + " elements, needs 256");
  check_gather(args, src, index, row_len, dst);
  disjoint(args, dst, lut);
  psrpc::rows::gather_u8_lut(src.data, index.data, index.length, row_len, lut.data, dst.data);
  return undefined(env);
}

napi_value GatherRowsF32(napi_env env, napi_callback_info info) {
  const Args args(env, info, "gatherRowsF32");
  const View<float> src = array<float>(args, 0, "src");
  const View<int32_t> index = array<int32_t>(args, 1, "index");
  const int64_t row_len = args.count(2, "rowLen");
  const View<float> dst = array<float>(args, 3, "dst");
  check_gather(args, src, index, row_len, dst);
  psrpc::rows::gather_f32(src.data, index.data, index.length, row_len, dst.data);
  return undefined(env);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  struct Entry {
    const char* name;
    napi_callback fn;
  };
  const Entry entries[] = {
      {"simd", Guard<Simd>},
      {"gemm", Guard<Gemm>},
      {"biasAdd", Guard<BiasAdd>},
      {"biasGrad", Guard<BiasGrad>},
      {"reluForward", Guard<ReluForward>},
      {"reluBackward", Guard<ReluBackward>},
      {"logSoftmaxForward", Guard<LogSoftmaxForward>},
      {"logSoftmaxBackward", Guard<LogSoftmaxBackward>},
      {"crossEntropyForward", Guard<CrossEntropyForward>},
      {"crossEntropyBackward", Guard<CrossEntropyBackward>},
      {"nllForward", Guard<NllForward>},
      {"nllBackward", Guard<NllBackward>},
      {"dropoutForward", Guard<DropoutForward>},
      {"dropoutBackward", Guard<DropoutBackward>},
      {"uniformAt", Guard<UniformAt>},
      {"axpy", Guard<Axpy>},
      {"scale", Guard<Scale>},
      {"add", Guard<Add>},
      {"mul", Guard<Mul>},
      {"sum", Guard<Sum>},
      {"sgdUpdate", Guard<SgdUpdate>},
      {"adamUpdate", Guard<AdamUpdate>},
      {"conv2dWorkspace", Guard<Conv2dWorkspace>},
      {"conv2dForward", Guard<Conv2dForward>},
      {"conv2dBackwardInput", Guard<Conv2dBackwardInput>},
      {"conv2dBackwardWeight", Guard<Conv2dBackwardWeight>},
      {"maxPool2dForward", Guard<MaxPool2dForward>},
      {"maxPool2dBackward", Guard<MaxPool2dBackward>},
      {"avgPool2dForward", Guard<AvgPool2dForward>},
      {"avgPool2dBackward", Guard<AvgPool2dBackward>},
      {"batchNormForward", Guard<BatchNormForward>},
      {"batchNormBackward", Guard<BatchNormBackward>},
      {"f32ToF16", Guard<F32ToF16>},
      {"f16ToF32", Guard<F16ToF32>},
      {"f32ToBf16", Guard<F32ToBf16>},
      {"bf16ToF32", Guard<Bf16ToF32>},
#ifndef PSRPC_CUDA_EMU
      {"wireToBf16", Guard<WireToBf16>},
      {"wireFromBf16", Guard<WireFromBf16>},
      {"wireToF16", Guard<WireToF16>},
      {"wireFromF16", Guard<WireFromF16>},
      {"wireAccBf16", Guard<WireAccBf16>},
      {"wireAccF16", Guard<WireAccF16>},
      {"wireAccF32", Guard<WireAccF32>},
      {"wireRoundBf16", Guard<WireRoundBf16>},
      {"wireRoundF16", Guard<WireRoundF16>},
      {"nonFiniteCount", Guard<NonFiniteCount>},
#endif
      {"gatherRowsU8", Guard<GatherRowsU8>},
      {"gatherRowsF32", Guard<GatherRowsF32>},
  };
  for (const Entry& e : entries) {
    napi_value fn = nullptr;
    if (napi_create_function(env, e.name, NAPI_AUTO_LENGTH, e.fn, nullptr, &fn) != napi_ok) {
      throw Napi::Error::New(env, std::string("psrpc: cannot create ") + e.name);
    }
    exports.Set(e.name, Napi::Value(env, fn));
  }
  return exports;
}

}  // namespace

NODE_API_MODULE(psrpc, Init)
