// N-API surface of the CUDA addon (psrpc_cuda.node): device buffers and the kernel contract on
// them. Like native/binding.cc it only checks and converts arguments, then calls the contract;
// the difference is that tensors live in device memory, held by DeviceBuffer objects.
//
// Loading the addon never touches the GPU: the CUDA runtime is first called by probe() or by
// the first function that needs a device, so a machine without a device (or without a driver)
// can load it and ask. The same file builds against the SIMT emulation (psrpc_cuda_device_emu),
// which is how this layer is tested on machines without a GPU.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#if defined(PSRPC_CUDA_EMU)
#include "emu/cuda_emu.h"
#else
#include <cuda_runtime_api.h>
#endif

#include "psrpc/kernels.h"

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

// ---- device presence -------------------------------------------------------------------------

struct DeviceProbe {
  bool done = false;
  int devices = 0;
  std::string error;  // empty when the runtime answered
};

DeviceProbe& probe_state() {
  static DeviceProbe probe;
  if (!probe.done) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      probe.devices = 0;
      probe.error = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
      cudaGetLastError();  // clear it: it is reported through probe(), not through the next call
    } else {
      probe.devices = count;
    }
    probe.done = true;
  }
  return probe;
}

void require_device(Napi::Env env) {
  const DeviceProbe& p = probe_state();
  if (p.devices > 0) return;
  std::string message = "psrpc cuda: no CUDA device";
  if (!p.error.empty()) message += " (" + p.error + ")";
  throw Napi::Error::New(env, message);
}

void check_cuda(Napi::Env env, const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw Napi::Error::New(env, std::string("psrpc cuda: ") + what + " failed: " + cudaGetErrorName(e) + ": " +
                                    cudaGetErrorString(e));
}

int64_t count_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name);

// ---- DeviceBuffer ----------------------------------------------------------------------------

class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DeviceBuffer",
                       {InstanceAccessor<&DeviceBuffer::ByteLength>("byteLength"),
                        InstanceAccessor<&DeviceBuffer::Freed>("freed"), InstanceMethod<&DeviceBuffer::Free>("free")});
  }

  // new DeviceBuffer(byteLength), also reached through alloc(byteLength).
  explicit DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
    Napi::Env env = info.Env();
    bytes_ = static_cast<size_t>(count_arg(info, 0, "DeviceBuffer", "byteLength"));
    require_device(env);
    void* p = nullptr;
    if (cudaMalloc(&p, bytes_ == 0 ? 1 : bytes_) != cudaSuccess) {
      const cudaError_t e = cudaGetLastError();
      throw Napi::Error::New(env, "psrpc cuda: cannot allocate " + std::to_string(bytes_) +
                                      " bytes of device memory: " + cudaGetErrorString(e));
    }
    ptr_ = p;
  }

  ~DeviceBuffer() override { release(); }

  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void release() {
    // A failed free (e.g. from a finalizer while the runtime shuts down) must not linger as the
    // pending error that the next, unrelated kernel call would report.
    if (ptr_ && cudaFree(ptr_) != cudaSuccess) cudaGetLastError();
    ptr_ = nullptr;
  }
  Napi::Value ByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(bytes_)); }
  Napi::Value Freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), ptr_ == nullptr); }
  Napi::Value Free(const Napi::CallbackInfo& info) {
    release();
    return info.Env().Undefined();
  }

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

struct Instance {
  Napi::FunctionReference buffer_class;
};

// ---- argument checks -------------------------------------------------------------------------

std::string arg_name(const char* fn, const char* name) { return std::string(fn) + ": " + name; }

int64_t count_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), arg_name(fn, name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > kMaxSafeInteger || std::floor(d) != d)
    throw Napi::RangeError::New(info.Env(),
                                arg_name(fn, name) + " must be a non-negative integer, got " + std::to_string(d));
  return static_cast<int64_t>(d);
}

float float_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), arg_name(fn, name) + " must be a number");
  return static_cast<float>(v.As<Napi::Number>().DoubleValue());
}

float finite_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  const float f = float_arg(info, i, fn, name);
  if (!std::isfinite(f))
    throw Napi::RangeError::New(info.Env(), arg_name(fn, name) + " must be finite, got " + std::to_string(f));
  return f;
}

bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsBoolean()) throw Napi::TypeError::New(info.Env(), arg_name(fn, name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

int64_t product(Napi::Env env, int64_t a, int64_t b, const char* fn) {
  int64_t out;
  if (__builtin_mul_overflow(a, b, &out) || double(out) > kMaxSafeInteger)
    throw Napi::RangeError::New(env, std::string(fn) + ": shape " + std::to_string(a) + " x " + std::to_string(b) +
                                         " is too large");
  return out;
}

DeviceBuffer* buffer_of(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  Napi::Env env = info.Env();
  const Napi::Value v = info[i];
  Instance* inst = env.GetInstanceData<Instance>();
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(inst->buffer_class.Value()))
    throw Napi::TypeError::New(env, arg_name(fn, name) + " must be a DeviceBuffer");
  DeviceBuffer* b = DeviceBuffer::Unwrap(v.As<Napi::Object>());
  if (!b->ptr()) throw Napi::Error::New(env, arg_name(fn, name) + " is a freed DeviceBuffer");
  return b;
}

// A device pointer to `elements` elements of `elem_bytes` each, after checking the buffer holds them.
template <typename T>
T* device_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int64_t elements) {
  DeviceBuffer* b = buffer_of(info, i, fn, name);
  const double need = double(elements) * double(sizeof(T));
  if (need > double(b->bytes()))
    throw Napi::RangeError::New(info.Env(), arg_name(fn, name) + " holds " + std::to_string(b->bytes()) +
                                                " bytes but " + std::to_string(int64_t(need)) + " are needed");
  return static_cast<T*>(b->ptr());
}

// Labels live on the device; the contract wants them checked before the call, so they are
// copied back (rows x 4 bytes, into a per-thread buffer reused across calls) and checked.
void check_labels(Napi::Env env, const int32_t* labels, int64_t rows, int64_t cols, const char* fn) {
  static thread_local std::vector<int32_t> host;
  host.resize(static_cast<size_t>(rows));
  if (rows > 0 && cudaMemcpy(host.data(), labels, sizeof(int32_t) * size_t(rows), cudaMemcpyDeviceToHost) != cudaSuccess)
    check_cuda(env, fn);
  for (int64_t r = 0; r < rows; ++r) {
    if (host[r] < 0 || host[r] >= cols)
      throw Napi::RangeError::New(env, std::string(fn) + ": labels[" + std::to_string(r) + "] = " +
                                           std::to_string(host[r]) + " is outside [0, " + std::to_string(cols) + ")");
  }
}

// Elements a row-major matrix of `rows` x `cols` with leading dimension ld spans.
int64_t matrix_span(Napi::Env env, int64_t rows, int64_t cols, int64_t ld, const char* fn, const char* name) {
  if (ld < (cols > 1 ? cols : 1))
    throw Napi::RangeError::New(env, std::string(fn) + ": " + name + " = " + std::to_string(ld) +
                                         " is smaller than the row length " + std::to_string(cols));
  if (rows == 0 || cols == 0) return 0;
  return product(env, rows - 1, ld, fn) + cols;
}

void expect_args(const Napi::CallbackInfo& info, size_t n, const char* fn) {
  if (info.Length() < n)
    throw Napi::TypeError::New(info.Env(), std::string(fn) + " expects " + std::to_string(n) + " arguments, got " +
                                               std::to_string(info.Length()));
}

// ---- functions ---------------------------------------------------------------------------------

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const DeviceProbe& p = probe_state();
  Napi::Object out = Napi::Object::New(env);
  out.Set("devices", double(p.devices));
  out.Set("error", p.error.empty() ? env.Null() : Napi::String::New(env, p.error));
#if defined(PSRPC_CUDA_EMU)
  out.Set("emulated", true);
#else
  out.Set("emulated", false);
#endif
  return out;
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "alloc");
  const int64_t bytes = count_arg(info, 0, "alloc", "byteLength");
  Instance* inst = info.Env().GetInstanceData<Instance>();
  return inst->buffer_class.New({Napi::Number::New(info.Env(), double(bytes))});
}

// upload(dst, src): copies all of the typed array src to the start of dst.
Napi::Value Upload(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "upload");
  Napi::Env env = info.Env();
  DeviceBuffer* dst = buffer_of(info, 0, "upload", "dst");
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "upload: src must be a typed array");
  Napi::TypedArray src = info[1].As<Napi::TypedArray>();
  const size_t bytes = src.ByteLength();
  if (bytes > dst->bytes())
    throw Napi::RangeError::New(env, "upload: src has " + std::to_string(bytes) + " bytes but dst holds " +
                                         std::to_string(dst->bytes()));
  const uint8_t* host = static_cast<const uint8_t*>(src.ArrayBuffer().Data()) + src.ByteOffset();
  cudaMemcpy(dst->ptr(), host, bytes, cudaMemcpyHostToDevice);
  check_cuda(env, "upload");
  return env.Undefined();
}

// download(src, dst): fills all of the typed array dst from the start of src.
Napi::Value Download(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "download");
  Napi::Env env = info.Env();
  DeviceBuffer* src = buffer_of(info, 0, "download", "src");
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "download: dst must be a typed array");
  Napi::TypedArray dst = info[1].As<Napi::TypedArray>();
  const size_t bytes = dst.ByteLength();
  if (bytes > src->bytes())
    throw Napi::RangeError::New(env, "download: dst has " + std::to_string(bytes) + " bytes but src holds " +
                                         std::to_string(src->bytes()));
  uint8_t* host = static_cast<uint8_t*>(dst.ArrayBuffer().Data()) + dst.ByteOffset();
  cudaMemcpy(host, src->ptr(), bytes, cudaMemcpyDeviceToHost);
  check_cuda(env, "download");
  return env.Undefined();
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  require_device(info.Env());
  cudaDeviceSynchronize();
  check_cuda(info.Env(), "synchronize");
  return info.Env().Undefined();
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  const char* fn = "gemm";
  expect_args(info, 13, fn);
  Napi::Env env = info.Env();
  const bool ta = bool_arg(info, 0, fn, "transA"), tb = bool_arg(info, 1, fn, "transB");
  const int64_t m = count_arg(info, 2, fn, "m"), n = count_arg(info, 3, fn, "n"), k = count_arg(info, 4, fn, "k");
  const float alpha = float_arg(info, 5, fn, "alpha");
  const int64_t lda = count_arg(info, 7, fn, "lda"), ldb = count_arg(info, 9, fn, "ldb");
  const float beta = float_arg(info, 10, fn, "beta");
  const int64_t ldc = count_arg(info, 12, fn, "ldc");
  const int64_t span_a = ta ? matrix_span(env, k, m, lda, fn, "lda") : matrix_span(env, m, k, lda, fn, "lda");
  const int64_t span_b = tb ? matrix_span(env, n, k, ldb, fn, "ldb") : matrix_span(env, k, n, ldb, fn, "ldb");
  const int64_t span_c = matrix_span(env, m, n, ldc, fn, "ldc");
  const float* a = device_arg<float>(info, 6, fn, "a", span_a);
  const float* b = device_arg<float>(info, 8, fn, "b", span_b);
  float* c = device_arg<float>(info, 11, fn, "c", span_c);
  psrpc::kernels::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  check_cuda(env, fn);
  return env.Undefined();
}

Napi::Value BiasAdd(const Napi::CallbackInfo& info) {
  const char* fn = "biasAdd";
  expect_args(info, 4, fn);
  const int64_t rows = count_arg(info, 2, fn, "rows"), cols = count_arg(info, 3, fn, "cols");
  float* y = device_arg<float>(info, 0, fn, "y", product(info.Env(), rows, cols, fn));
  const float* bias = device_arg<float>(info, 1, fn, "bias", cols);
  psrpc::kernels::bias_add(y, bias, rows, cols);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

Napi::Value BiasGrad(const Napi::CallbackInfo& info) {
  const char* fn = "biasGrad";
  expect_args(info, 5, fn);
  const int64_t rows = count_arg(info, 2, fn, "rows"), cols = count_arg(info, 3, fn, "cols");
  const bool accumulate = bool_arg(info, 4, fn, "accumulate");
  const float* dy = device_arg<float>(info, 0, fn, "dy", product(info.Env(), rows, cols, fn));
  float* dbias = device_arg<float>(info, 1, fn, "dbias", cols);
  psrpc::kernels::bias_grad(dy, dbias, rows, cols, accumulate);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

// Functions of the shape f(in..., out..., n).
template <void (*Kernel)(const float*, float*, int64_t)>
Napi::Value Unary(const Napi::CallbackInfo& info, const char* fn) {
  expect_args(info, 3, fn);
  const int64_t n = count_arg(info, 2, fn, "n");
  const float* x = device_arg<float>(info, 0, fn, "x", n);
  float* y = device_arg<float>(info, 1, fn, "y", n);
  Kernel(x, y, n);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

Napi::Value ReluForward(const Napi::CallbackInfo& info) {
  return Unary<psrpc::kernels::relu_forward>(info, "reluForward");
}

Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  const char* fn = "reluBackward";
  expect_args(info, 4, fn);
  const int64_t n = count_arg(info, 3, fn, "n");
  const float* x = device_arg<float>(info, 0, fn, "x", n);
  const float* dy = device_arg<float>(info, 1, fn, "dy", n);
  float* dx = device_arg<float>(info, 2, fn, "dx", n);
  psrpc::kernels::relu_backward(x, dy, dx, n);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

Napi::Value LogSoftmaxForward(const Napi::CallbackInfo& info) {
  const char* fn = "logSoftmaxForward";
  expect_args(info, 4, fn);
  const int64_t rows = count_arg(info, 2, fn, "rows"), cols = count_arg(info, 3, fn, "cols");
  const int64_t n = product(info.Env(), rows, cols, fn);
  const float* x = device_arg<float>(info, 0, fn, "x", n);
  float* y = device_arg<float>(info, 1, fn, "y", n);
  psrpc::kernels::log_softmax_forward(x, y, rows, cols);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

Napi::Value LogSoftmaxBackward(const Napi::CallbackInfo& info) {
  const char* fn = "logSoftmaxBackward";
  expect_args(info, 5, fn);
  const int64_t rows = count_arg(info, 3, fn, "rows"), cols = count_arg(info, 4, fn, "cols");
  const int64_t n = product(info.Env(), rows, cols, fn);
  const float* y = device_arg<float>(info, 0, fn, "y", n);
  const float* dy = device_arg<float>(info, 1, fn, "dy", n);
  float* dx = device_arg<float>(info, 2, fn, "dx", n);
  psrpc::kernels::log_softmax_backward(y, dy, dx, rows, cols);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  const char* fn = "crossEntropyForward";
  expect_args(info, 5, fn);
  Napi::Env env = info.Env();
  const int64_t rows = count_arg(info, 3, fn, "rows"), cols = count_arg(info, 4, fn, "cols");
  const int64_t n = product(env, rows, cols, fn);
  const float* logits = device_arg<float>(info, 0, fn, "logits", n);
  const int32_t* labels = device_arg<int32_t>(info, 1, fn, "labels", rows);
  float* logp = device_arg<float>(info, 2, fn, "logp", n);
  check_labels(env, labels, rows, cols, fn);
  const float loss = psrpc::kernels::cross_entropy_forward(logits, labels, logp, rows, cols);
  check_cuda(env, fn);
  return Napi::Number::New(env, loss);
}

Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  const char* fn = "crossEntropyBackward";
  expect_args(info, 6, fn);
  Napi::Env env = info.Env();
  const int64_t rows = count_arg(info, 3, fn, "rows"), cols = count_arg(info, 4, fn, "cols");
  const float scale = float_arg(info, 5, fn, "scale");
  const int64_t n = product(env, rows, cols, fn);
  const float* logp = device_arg<float>(info, 0, fn, "logp", n);
  const int32_t* labels = device_arg<int32_t>(info, 1, fn, "labels", rows);
  float* dlogits = device_arg<float>(info, 2, fn, "dlogits", n);
  check_labels(env, labels, rows, cols, fn);
  psrpc::kernels::cross_entropy_backward(logp, labels, dlogits, rows, cols, scale);
  check_cuda(env, fn);
  return env.Undefined();
}

Napi::Value NllForward(const Napi::CallbackInfo& info) {
  const char* fn = "nllForward";
  expect_args(info, 4, fn);
  Napi::Env env = info.Env();
  const int64_t rows = count_arg(info, 2, fn, "rows"), cols = count_arg(info, 3, fn, "cols");
  const float* logp = device_arg<float>(info, 0, fn, "logp", product(env, rows, cols, fn));
  const int32_t* labels = device_arg<int32_t>(info, 1, fn, "labels", rows);
  check_labels(env, labels, rows, cols, fn);
  const float loss = psrpc::kernels::nll_forward(logp, labels, rows, cols);
  check_cuda(env, fn);
  return Napi::Number::New(env, loss);
}

Napi::Value NllBackward(const Napi::CallbackInfo& info) {
  const char* fn = "nllBackward";
  expect_args(info, 5, fn);
  Napi::Env env = info.Env();
  const int64_t rows = count_arg(info, 2, fn, "rows"), cols = count_arg(info, 3, fn, "cols");
  const float scale = float_arg(info, 4, fn, "scale");
  const int32_t* labels = device_arg<int32_t>(info, 0, fn, "labels", rows);
  float* dlogp = device_arg<float>(info, 1, fn, "dlogp", product(env, rows, cols, fn));
  check_labels(env, labels, rows, cols, fn);
  psrpc::kernels::nll_backward(labels, dlogp, rows, cols, scale);
  check_cuda(env, fn);
  return env.Undefined();
}

float probability_arg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const float p = float_arg(info, i, fn, "p");
  if (!(p >= 0.0f && p < 1.0f))
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": p must be in [0, 1), got " + std::to_string(p));
  return p;
}

Napi::Value DropoutForward(const Napi::CallbackInfo& info) {
  const char* fn = "dropoutForward";
  expect_args(info, 7, fn);
  const int64_t n = count_arg(info, 3, fn, "n");
  const float p = probability_arg(info, 4, fn);
  const uint64_t seed = uint64_t(count_arg(info, 5, fn, "seed"));
  const uint64_t offset = uint64_t(count_arg(info, 6, fn, "offset"));
  const float* x = device_arg<float>(info, 0, fn, "x", n);
  float* y = device_arg<float>(info, 1, fn, "y", n);
  uint8_t* mask = device_arg<uint8_t>(info, 2, fn, "mask", n);
  psrpc::kernels::dropout_forward(x, y, mask, n, p, seed, offset);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

Napi::Value DropoutBackward(const Napi::CallbackInfo& info) {
  const char* fn = "dropoutBackward";
  expect_args(info, 5, fn);
  const int64_t n = count_arg(info, 3, fn, "n");
  const float p = probability_arg(info, 4, fn);
  const float* dy = device_arg<float>(info, 0, fn, "dy", n);
  const uint8_t* mask = device_arg<uint8_t>(info, 1, fn, "mask", n);
  float* dx = device_arg<float>(info, 2, fn, "dx", n);
  psrpc::kernels::dropout_backward(dy, mask, dx, n, p);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

// Host-side: needs no device, so tests can compare it with the CPU addon anywhere.
Napi::Value UniformAt(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "uniformAt");
  const uint64_t seed = uint64_t(count_arg(info, 0, "uniformAt", "seed"));
  const uint64_t index = uint64_t(count_arg(info, 1, "uniformAt", "index"));
  return Napi::Number::New(info.Env(), psrpc::kernels::uniform_at(seed, index));
}

Napi::Value Axpy(const Napi::CallbackInfo& info) {
  const char* fn = "axpy";
  expect_args(info, 4, fn);
  const int64_t n = count_arg(info, 0, fn, "n");
  const float alpha = float_arg(info, 1, fn, "alpha");
  const float* x = device_arg<float>(info, 2, fn, "x", n);
  float* y = device_arg<float>(info, 3, fn, "y", n);
  psrpc::kernels::axpy(n, alpha, x, y);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

Napi::Value Scale(const Napi::CallbackInfo& info) {
  const char* fn = "scale";
  expect_args(info, 3, fn);
  const int64_t n = count_arg(info, 0, fn, "n");
  const float alpha = float_arg(info, 1, fn, "alpha");
  float* x = device_arg<float>(info, 2, fn, "x", n);
  psrpc::kernels::scale(n, alpha, x);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}

template <void (*Kernel)(int64_t, const float*, const float*, float*)>
Napi::Value Binary(const Napi::CallbackInfo& info, const char* fn) {
  expect_args(info, 4, fn);
  const int64_t n = count_arg(info, 0, fn, "n");
  const float* a = device_arg<float>(info, 1, fn, "a", n);
  const float* b = device_arg<float>(info, 2, fn, "b", n);
  float* out = device_arg<float>(info, 3, fn, "out", n);
  Kernel(n, a, b, out);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}
Napi::Value Add(const Napi::CallbackInfo& info) { return Binary<psrpc::kernels::add>(info, "add"); }
Napi::Value Mul(const Napi::CallbackInfo& info) { return Binary<psrpc::kernels::mul>(info, "mul"); }

Napi::Value Sum(const Napi::CallbackInfo& info) {
  const char* fn = "sum";
  expect_args(info, 2, fn);
  const int64_t n = count_arg(info, 0, fn, "n");
  const float* x = device_arg<float>(info, 1, fn, "x", n);
  const double total = psrpc::kernels::sum(n, x);
  check_cuda(info.Env(), fn);
  return Napi::Number::New(info.Env(), total);
}

Napi::Value SgdUpdate(const Napi::CallbackInfo& info) {
  const char* fn = "sgdUpdate";
  expect_args(info, 10, fn);
  Napi::Env env = info.Env();
  const int64_t n = count_arg(info, 3, fn, "n");
  const float lr = finite_arg(info, 4, fn, "lr"), momentum = finite_arg(info, 5, fn, "momentum");
  const float dampening = finite_arg(info, 6, fn, "dampening"), weight_decay = finite_arg(info, 7, fn, "weightDecay");
  const bool nesterov = bool_arg(info, 8, fn, "nesterov"), first_step = bool_arg(info, 9, fn, "firstStep");
  float* param = device_arg<float>(info, 0, fn, "param", n);
  const float* grad = device_arg<float>(info, 1, fn, "grad", n);
  float* buf = nullptr;
  if (!info[2].IsNull() && !info[2].IsUndefined()) buf = device_arg<float>(info, 2, fn, "momentumBuf", n);
  if (momentum != 0.0f && !buf)
    throw Napi::TypeError::New(env, "sgdUpdate: momentumBuf is required when momentum is " + std::to_string(momentum));
  psrpc::kernels::sgd_update(param, grad, buf, n, lr, momentum, dampening, weight_decay, nesterov, first_step);
  check_cuda(env, fn);
  return env.Undefined();
}

Napi::Value AdamUpdate(const Napi::CallbackInfo& info) {
  const char* fn = "adamUpdate";
  expect_args(info, 12, fn);
  Napi::Env env = info.Env();
  const int64_t n = count_arg(info, 4, fn, "n");
  const float lr = finite_arg(info, 5, fn, "lr");
  const float beta1 = finite_arg(info, 6, fn, "beta1"), beta2 = finite_arg(info, 7, fn, "beta2");
  const float eps = finite_arg(info, 8, fn, "eps"), weight_decay = finite_arg(info, 9, fn, "weightDecay");
  const bool decoupled = bool_arg(info, 10, fn, "decoupled");
  const int64_t step = count_arg(info, 11, fn, "step");
  if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
    throw Napi::RangeError::New(env, "adamUpdate: beta1 and beta2 must be in [0, 1), got " + std::to_string(beta1) +
                                         " and " + std::to_string(beta2));
  if (step < 1) throw Napi::RangeError::New(env, "adamUpdate: step is 1-based, got " + std::to_string(step));
  float* param = device_arg<float>(info, 0, fn, "param", n);
  const float* grad = device_arg<float>(info, 1, fn, "grad", n);
  float* m = device_arg<float>(info, 2, fn, "m", n);
  float* v = device_arg<float>(info, 3, fn, "v", n);
  psrpc::kernels::adam_update(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, decoupled, step);
  check_cuda(env, fn);
  return env.Undefined();
}

template <typename In, typename Out, void (*Kernel)(const In*, Out*, int64_t)>
Napi::Value Convert(const Napi::CallbackInfo& info, const char* fn) {
  expect_args(info, 3, fn);
  const int64_t n = count_arg(info, 2, fn, "n");
  const In* x = device_arg<In>(info, 0, fn, "x", n);
  Out* y = device_arg<Out>(info, 1, fn, "y", n);
  Kernel(x, y, n);
  check_cuda(info.Env(), fn);
  return info.Env().Undefined();
}
Napi::Value F32ToF16(const Napi::CallbackInfo& info) {
  return Convert<float, uint16_t, psrpc::kernels::f32_to_f16>(info, "f32ToF16");
}
Napi::Value F16ToF32(const Napi::CallbackInfo& info) {
  return Convert<uint16_t, float, psrpc::kernels::f16_to_f32>(info, "f16ToF32");
}
Napi::Value F32ToBf16(const Napi::CallbackInfo& info) {
  return Convert<float, uint16_t, psrpc::kernels::f32_to_bf16>(info, "f32ToBf16");
}
Napi::Value Bf16ToF32(const Napi::CallbackInfo& info) {
  return Convert<uint16_t, float, psrpc::kernels::bf16_to_f32>(info, "bf16ToF32");
}

// ---- convolution, pooling, batch normalisation -------------------------------------------------
//
// Geometries arrive as arrays of non-negative integers (Conv2dGeometry / Pool2dGeometry in
// src/tensor/native.ts) and are checked whole, with the sizes they imply, before any buffer is
// looked at. A DeviceBuffer argument is always a whole buffer, so two arguments overlap exactly
// when they are the same buffer.

constexpr const char* kConvNames[] = {"n", "c", "h", "w", "oc", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "groups"};
constexpr const char* kPoolNames[] = {"planes", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw"};

// The geometry at argument i, worded and bounded as the CPU binding's (napi_args.h integer_list):
// an Array or typed array of exactly `count` integers, each in [lo, 2^31) with lo 0 for the two
// paddings (from index paddings_from) and 1 for everything else.
void geometry_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* const* names, uint32_t count,
                  uint32_t paddings_from, int64_t* out) {
  Napi::Env env = info.Env();
  const Napi::Value v = info[i];
  // Messages are built only when thrown: nothing is allocated on the hot path.
  const auto prefix = [&] { return std::string(fn) + ": geometry"; };
  if (!v.IsArray() && !v.IsTypedArray())
    throw Napi::TypeError::New(env, prefix() + " must be an Array or typed array of " + std::to_string(count) + " integers");
  const Napi::Object list = v.As<Napi::Object>();
  const uint32_t length = v.IsArray() ? v.As<Napi::Array>().Length() : uint32_t(v.As<Napi::TypedArray>().ElementLength());
  if (length != count) {
    std::string fields;
    for (uint32_t k = 0; k < count; ++k) fields += (k ? ", " : "") + std::string(names[k]);
    throw Napi::RangeError::New(env, prefix() + " has " + std::to_string(length) + " elements, needs " +
                                         std::to_string(count) + " [" + fields + "]");
  }
  for (uint32_t k = 0; k < count; ++k) {
    const Napi::Value e = list.Get(k);
    const auto what = [&] { return prefix() + "[" + std::to_string(k) + "] (" + names[k] + ")"; };
    if (!e.IsNumber()) throw Napi::TypeError::New(env, what() + " must be a number");
    const double d = e.As<Napi::Number>().DoubleValue();
    const int lo = k == paddings_from || k == paddings_from + 1 ? 0 : 1;
    if (!(d >= lo) || std::floor(d) != d || d >= 2147483648.0)
      throw Napi::RangeError::New(env, what() + " must be an integer in [" + std::to_string(lo) + ", 2^31), got " +
                                           (std::floor(d) == d && std::fabs(d) < 1e18 ? std::to_string(int64_t(d))
                                                                                     : std::to_string(d)));
    out[k] = static_cast<int64_t>(d);
  }
}

std::string dims(int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); }

struct ConvArgs {
  psrpc::kernels::Conv2dShape s;
  int64_t x, weight, y, col;  // elements each buffer must hold
};

ConvArgs conv_args(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  int64_t g[14];
  geometry_arg(info, 0, fn, kConvNames, 14, 9, g);
  ConvArgs a;
  a.s = {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], 0, 0};
  const psrpc::kernels::Conv2dShape& s = a.s;
  if (s.c % s.groups != 0 || s.oc % s.groups != 0)
    throw Napi::RangeError::New(env, std::string(fn) + ": groups=" + std::to_string(s.groups) + " must divide c=" +
                                         std::to_string(s.c) + " and oc=" + std::to_string(s.oc));
  if (!psrpc::kernels::conv2d_output(a.s))
    throw Napi::RangeError::New(env, std::string(fn) + ": the output is empty: input " + dims(s.h, s.w) +
                                         " padded by " + dims(s.ph, s.pw) + " is smaller than the dilated kernel " +
                                         dims(s.dh * (s.kh - 1) + 1, s.dw * (s.kw - 1) + 1));
  a.x = product(env, product(env, s.n, s.c, fn), product(env, s.h, s.w, fn), fn);
  const int64_t taps = product(env, s.c / s.groups, product(env, s.kh, s.kw, fn), fn);
  a.weight = product(env, s.oc, taps, fn);
  const int64_t plane = product(env, s.oh, s.ow, fn);
  a.y = product(env, product(env, s.n, s.oc, fn), plane, fn);
  // The workspace formula multiplies these; checked here so it cannot overflow.
  product(env, product(env, s.c, product(env, s.kh, s.kw, fn), fn), plane, fn);
  a.col = psrpc::kernels::conv2d_workspace(s);
  return a;
}

struct PoolArgs {
  psrpc::kernels::Pool2dShape s;
  int64_t x, y;
};

PoolArgs pool_args(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  int64_t g[9];
  geometry_arg(info, 0, fn, kPoolNames, 9, 7, g);
  PoolArgs a;
  a.s = {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], 0, 0};
  const psrpc::kernels::Pool2dShape& s = a.s;
  if (2 * s.ph > s.kh || 2 * s.pw > s.kw)
    throw Napi::RangeError::New(env, std::string(fn) + ": padding " + dims(s.ph, s.pw) + " must be at most half the window " +
                                         dims(s.kh, s.kw));
  // Max pooling's indices are int32 positions within a plane; the CPU binding bounds every pooling so.
  if (s.h * s.w > 2147483647)
    throw Napi::RangeError::New(env, std::string(fn) + ": planes of " + dims(s.h, s.w) +
                                         " exceed the 2^31 - 1 positions an Int32 index holds");
  if (!psrpc::kernels::pool2d_output(a.s))
    throw Napi::RangeError::New(env, std::string(fn) + ": the output is empty: input " + dims(s.h, s.w) +
                                         " padded by " + dims(s.ph, s.pw) + " is smaller than the window " +
                                         dims(s.kh, s.kw));
  const int64_t plane = product(env, s.h, s.w, fn);
  a.x = product(env, s.planes, plane, fn);
  a.y = product(env, s.planes, product(env, s.oh, s.ow, fn), fn);
  return a;
}

// A buffer argument that may be null or undefined (an absent bias, gamma, ...).
template <typename T>
T* optional_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int64_t elements) {
  if (info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return device_arg<T>(info, i, fn, name, elements);
}

// out must not be any of the inputs (null pointers never clash).
void distinct(Napi::Env env, const char* fn, const char* out_name, const void* out,
              std::initializer_list<std::pair<const char*, const void*>> others) {
  if (!out) return;
  for (const auto& [name, p] : others)
    if (p == out)
      throw Napi::RangeError::New(env, std::string(fn) + ": " + out_name + " overlaps " + name +
                                           "; they must be distinct memory");
}

// conv2dWorkspace(geometry): host-side, like the CPU addon's; needs no device.
Napi::Value Conv2dWorkspace(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "conv2dWorkspace");
  return Napi::Number::New(info.Env(), double(conv_args(info, "conv2dWorkspace").col));
}

Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  const char* fn = "conv2dForward";
  expect_args(info, 6, fn);
  Napi::Env env = info.Env();
  const ConvArgs a = conv_args(info, fn);
  const float* x = device_arg<float>(info, 1, fn, "x", a.x);
  const float* w = device_arg<float>(info, 2, fn, "weight", a.weight);
  const float* bias = optional_arg<float>(info, 3, fn, "bias", a.s.oc);
  float* y = device_arg<float>(info, 4, fn, "y", a.y);
  float* col = device_arg<float>(info, 5, fn, "col", a.col);
  distinct(env, fn, "y", y, {{"x", x}, {"weight", w}, {"bias", bias}});
  if (a.col > 0) distinct(env, fn, "col", col, {{"x", x}, {"weight", w}, {"bias", bias}, {"y", y}});
  psrpc::kernels::conv2d_forward(a.s, x, w, bias, y, col);
  check_cuda(env, fn);
  return env.Undefined();
}

Napi::Value Conv2dBackwardInput(const Napi::CallbackInfo& info) {
  const char* fn = "conv2dBackwardInput";
  expect_args(info, 6, fn);
  Napi::Env env = info.Env();
  const ConvArgs a = conv_args(info, fn);
  const float* dy = device_arg<float>(info, 1, fn, "dy", a.y);
  const float* w = device_arg<float>(info, 2, fn, "weight", a.weight);
  float* dx = device_arg<float>(info, 3, fn, "dx", a.x);
  float* col = device_arg<float>(info, 4, fn, "col", a.col);
  const bool accumulate = bool_arg(info, 5, fn, "accumulate");
  distinct(env, fn, "dx", dx, {{"dy", dy}, {"weight", w}});
  if (a.col > 0) distinct(env, fn, "col", col, {{"dy", dy}, {"weight", w}, {"dx", dx}});
  psrpc::kernels::conv2d_backward_input(a.s, dy, w, dx, col, accumulate);
  check_cuda(env, fn);
  return env.Undefined();
}

Napi::Value Conv2dBackwardWeight(const Napi::CallbackInfo& info) {
  const char* fn = "conv2dBackwardWeight";
  expect_args(info, 8, fn);
  Napi::Env env = info.Env();
  const ConvArgs a = conv_args(info, fn);
  const float* x = device_arg<float>(info, 1, fn, "x", a.x);
  const float* dy = device_arg<float>(info, 2, fn, "dy", a.y);
  float* dw = device_arg<float>(info, 3, fn, "dweight", a.weight);
  float* dbias = optional_arg<float>(info, 4, fn, "dbias", a.s.oc);
  float* col = device_arg<float>(info, 5, fn, "col", a.col);
  const bool acc_w = bool_arg(info, 6, fn, "accumulateWeight"), acc_b = bool_arg(info, 7, fn, "accumulateBias");
  distinct(env, fn, "dweight", dw, {{"x", x}, {"dy", dy}, {"dbias", dbias}});
  distinct(env, fn, "dbias", dbias, {{"x", x}, {"dy", dy}});
  if (a.col > 0) distinct(env, fn, "col", col, {{"x", x}, {"dy", dy}, {"dweight", dw}, {"dbias", dbias}});
  psrpc::kernels::conv2d_backward_weight(a.s, x, dy, dw, dbias, col, acc_w, acc_b);
  check_cuda(env, fn);
  return env.Undefined();
}

Napi::Value MaxPool2dForward(const Napi::CallbackInfo& info) {
  const char* fn = "maxPool2dForward";
  expect_args(info, 4, fn);
  Napi::Env env = info.Env();
  const PoolArgs a = pool_args(info, fn);
  const float* x = device_arg<float>(info, 1, fn, "x", a.x);
  float* y = device_arg<float>(info, 2, fn, "y", a.y);
  int32_t* indices = device_arg<int32_t>(info, 3, fn, "indices", a.y);
  distinct(env, fn, "y", y, {{"x", x}, {"indices", indices}});
  distinct(env, fn, "indices", indices, {{"x", x}});
  psrpc::kernels::max_pool2d_forward(a.s, x, y, indices);
  check_cuda(env, fn);
  return env.Undefined();
}

// The indices stay on the device unchecked (copying them back would cost a round trip per call):
// the backward pass gathers, so an index outside its window contributes nothing and writes nowhere.
Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info) {
  const char* fn = "maxPool2dBackward";
  expect_args(info, 5, fn);
  Napi::Env env = info.Env();
  const PoolArgs a = pool_args(info, fn);
  const float* dy = device_arg<float>(info, 1, fn, "dy", a.y);
  const int32_t* indices = device_arg<int32_t>(info, 2, fn, "indices", a.y);
  float* dx = device_arg<float>(info, 3, fn, "dx", a.x);
  const bool accumulate = bool_arg(info, 4, fn, "accumulate");
  distinct(env, fn, "dx", dx, {{"dy", dy}, {"indices", indices}});
  psrpc::kernels::max_pool2d_backward(a.s, dy, indices, dx, accumulate);
  check_cuda(env, fn);
  return env.Undefined();
}

Napi::Value AvgPool2dForward(const Napi::CallbackInfo& info) {
  const char* fn = "avgPool2dForward";
  expect_args(info, 4, fn);
  Napi::Env env = info.Env();
  const PoolArgs a = pool_args(info, fn);
  const float* x = device_arg<float>(info, 1, fn, "x", a.x);
  float* y = device_arg<float>(info, 2, fn, "y", a.y);
  const bool include_pad = bool_arg(info, 3, fn, "countIncludePad");
  distinct(env, fn, "y", y, {{"x", x}});
  psrpc::kernels::avg_pool2d_forward(a.s, x, y, include_pad);
  check_cuda(env, fn);
  return env.Undefined();
}

Napi::Value AvgPool2dBackward(const Napi::CallbackInfo& info) {
  const char* fn = "avgPool2dBackward";
  expect_args(info, 5, fn);
  Napi::Env env = info.Env();
  const PoolArgs a = pool_args(info, fn);
  const float* dy = device_arg<float>(info, 1, fn, "dy", a.y);
  float* dx = device_arg<float>(info, 2, fn, "dx", a.x);
  const bool include_pad = bool_arg(info, 3, fn, "countIncludePad"), accumulate = bool_arg(info, 4, fn, "accumulate");
  distinct(env, fn, "dx", dx, {{"dy", dy}});
  psrpc::kernels::avg_pool2d_backward(a.s, dy, dx, include_pad, accumulate);
  check_cuda(env, fn);
  return env.Undefined();
}

// n, c, hw of a batch norm call (arguments first..first+2), each >= 1; returns the elements of x.
int64_t norm_dims(const Napi::CallbackInfo& info, size_t first, const char* fn, int64_t* n, int64_t* c, int64_t* hw) {
  *n = count_arg(info, first, fn, "n");
  *c = count_arg(info, first + 1, fn, "c");
  *hw = count_arg(info, first + 2, fn, "hw");
  if (*n < 1 || *c < 1 || *hw < 1)
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": n, c and hw must be >= 1, got n=" + std::to_string(*n) +
                                                " c=" + std::to_string(*c) + " hw=" + std::to_string(*hw));
  return product(info.Env(), product(info.Env(), *n, *c, fn), *hw, fn);
}

Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  const char* fn = "batchNormForward";
  expect_args(info, 14, fn);
  Napi::Env env = info.Env();
  int64_t n, c, hw;
  const int64_t elements = norm_dims(info, 8, fn, &n, &c, &hw);
  const bool training = bool_arg(info, 11, fn, "training");
  const float momentum = finite_arg(info, 12, fn, "momentum"), eps = finite_arg(info, 13, fn, "eps");
  if (!(eps >= 0.0f)) throw Napi::RangeError::New(env, std::string(fn) + ": eps must be >= 0, got " + std::to_string(eps));
  const float* x = device_arg<float>(info, 0, fn, "x", elements);
  float* y = device_arg<float>(info, 1, fn, "y", elements);
  const float* gamma = optional_arg<float>(info, 2, fn, "gamma", c);
  const float* beta = optional_arg<float>(info, 3, fn, "beta", c);
  float* mean = device_arg<float>(info, 4, fn, "saveMean", c);
  float* invstd = device_arg<float>(info, 5, fn, "saveInvstd", c);
  float* rmean = optional_arg<float>(info, 6, fn, "runningMean", c);
  float* rvar = optional_arg<float>(info, 7, fn, "runningVar", c);
  if (!rmean != !rvar || (!training && !rmean))
    throw Napi::TypeError::New(env, std::string(fn) + ": " + (rmean ? "runningVar" : "runningMean") +
                                        " must be a DeviceBuffer " +
                                        (training ? "when the other running statistic is given" : "in eval mode"));
  // y may be x itself (in place); every other output is distinct from everything else.
  distinct(env, fn, "y", y, {{"gamma", gamma}, {"beta", beta}, {"saveMean", mean}, {"saveInvstd", invstd},
                             {"runningMean", rmean}, {"runningVar", rvar}});
  distinct(env, fn, "saveMean", mean, {{"x", x}, {"gamma", gamma}, {"beta", beta}, {"saveInvstd", invstd},
                                       {"runningMean", rmean}, {"runningVar", rvar}});
  distinct(env, fn, "saveInvstd", invstd, {{"x", x}, {"gamma", gamma}, {"beta", beta}, {"runningMean", rmean},
                                           {"runningVar", rvar}});
  distinct(env, fn, "runningMean", rmean, {{"x", x}, {"gamma", gamma}, {"beta", beta}, {"runningVar", rvar}});
  distinct(env, fn, "runningVar", rvar, {{"x", x}, {"gamma", gamma}, {"beta", beta}});
  psrpc::kernels::batch_norm_forward(x, y, gamma, beta, mean, invstd, rmean, rvar, n, c, hw, training, momentum, eps);
  check_cuda(env, fn);
  return env.Undefined();
}

Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  const char* fn = "batchNormBackward";
  expect_args(info, 15, fn);
  Napi::Env env = info.Env();
  int64_t n, c, hw;
  const int64_t elements = norm_dims(info, 8, fn, &n, &c, &hw);
  const bool training = bool_arg(info, 11, fn, "training");
  const bool acc_dx = bool_arg(info, 12, fn, "accumulateDx"), acc_dgamma = bool_arg(info, 13, fn, "accumulateDgamma");
  const bool acc_dbeta = bool_arg(info, 14, fn, "accumulateDbeta");
  const float* x = device_arg<float>(info, 0, fn, "x", elements);
  const float* dy = device_arg<float>(info, 1, fn, "dy", elements);
  const float* gamma = optional_arg<float>(info, 2, fn, "gamma", c);
  const float* mean = device_arg<float>(info, 3, fn, "saveMean", c);
  const float* invstd = device_arg<float>(info, 4, fn, "saveInvstd", c);
  float* dx = optional_arg<float>(info, 5, fn, "dx", elements);
  float* dgamma = optional_arg<float>(info, 6, fn, "dgamma", c);
  float* dbeta = optional_arg<float>(info, 7, fn, "dbeta", c);
  // dx may be dy itself (in place); the other outputs are distinct from everything.
  distinct(env, fn, "dx", dx, {{"x", x}, {"gamma", gamma}, {"saveMean", mean}, {"saveInvstd", invstd},
                               {"dgamma", dgamma}, {"dbeta", dbeta}});
  distinct(env, fn, "dgamma", dgamma, {{"x", x}, {"dy", dy}, {"gamma", gamma}, {"saveMean", mean},
                                       {"saveInvstd", invstd}, {"dbeta", dbeta}});
  distinct(env, fn, "dbeta", dbeta, {{"x", x}, {"dy", dy}, {"gamma", gamma}, {"saveMean", mean}, {"saveInvstd", invstd}});
  psrpc::kernels::batch_norm_backward(x, dy, gamma, mean, invstd, dx, dgamma, dbeta, n, c, hw, training, acc_dx,
                                      acc_dgamma, acc_dbeta);
  check_cuda(env, fn);
  return env.Undefined();
}

// Every function but probe, uniformAt and conv2dWorkspace needs a device: the check runs first so that a machine
// without one gets "no CUDA device" rather than a runtime error from deep inside.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value OnDevice(const Napi::CallbackInfo& info) {
  require_device(info.Env());
  return F(info);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Instance* inst = new Instance();
  inst->buffer_class = Napi::Persistent(DeviceBuffer::Define(env));
  env.SetInstanceData(inst);
  exports.Set("DeviceBuffer", inst->buffer_class.Value());
  exports.Set("probe", Napi::Function::New<Probe>(env, "probe"));
  exports.Set("uniformAt", Napi::Function::New<UniformAt>(env, "uniformAt"));
  exports.Set("alloc", Napi::Function::New<Alloc>(env, "alloc"));
  exports.Set("upload", Napi::Function::New<OnDevice<Upload>>(env, "upload"));
  exports.Set("download", Napi::Function::New<OnDevice<Download>>(env, "download"));
  exports.Set("synchronize", Napi::Function::New<Synchronize>(env, "synchronize"));
  exports.Set("gemm", Napi::Function::New<OnDevice<Gemm>>(env, "gemm"));
  exports.Set("biasAdd", Napi::Function::New<OnDevice<BiasAdd>>(env, "biasAdd"));
  exports.Set("biasGrad", Napi::Function::New<OnDevice<BiasGrad>>(env, "biasGrad"));
  exports.Set("reluForward", Napi::Function::New<OnDevice<ReluForward>>(env, "reluForward"));
  exports.Set("reluBackward", Napi::Function::New<OnDevice<ReluBackward>>(env, "reluBackward"));
  exports.Set("logSoftmaxForward", Napi::Function::New<OnDevice<LogSoftmaxForward>>(env, "logSoftmaxForward"));
  exports.Set("logSoftmaxBackward", Napi::Function::New<OnDevice<LogSoftmaxBackward>>(env, "logSoftmaxBackward"));
  exports.Set("crossEntropyForward", Napi::Function::New<OnDevice<CrossEntropyForward>>(env, "crossEntropyForward"));
  exports.Set("crossEntropyBackward",
              Napi::Function::New<OnDevice<CrossEntropyBackward>>(env, "crossEntropyBackward"));
  exports.Set("nllForward", Napi::Function::New<OnDevice<NllForward>>(env, "nllForward"));
  exports.Set("nllBackward", Napi::Function::New<OnDevice<NllBackward>>(env, "nllBackward"));
  exports.Set("dropoutForward", Napi::Function::New<OnDevice<DropoutForward>>(env, "dropoutForward"));
  exports.Set("dropoutBackward", Napi::Function::New<OnDevice<DropoutBackward>>(env, "dropoutBackward"));
  exports.Set("axpy", Napi::Function::New<OnDevice<Axpy>>(env, "axpy"));
  exports.Set("scale", Napi::Function::New<OnDevice<Scale>>(env, "scale"));
  exports.Set("add", Napi::Function::New<OnDevice<Add>>(env, "add"));
  exports.Set("mul", Napi::Function::New<OnDevice<Mul>>(env, "mul"));
  exports.Set("sum", Napi::Function::New<OnDevice<Sum>>(env, "sum"));
  exports.Set("sgdUpdate", Napi::Function::New<OnDevice<SgdUpdate>>(env, "sgdUpdate"));
  exports.Set("adamUpdate", Napi::Function::New<OnDevice<AdamUpdate>>(env, "adamUpdate"));
  exports.Set("f32ToF16", Napi::Function::New<OnDevice<F32ToF16>>(env, "f32ToF16"));
  exports.Set("f16ToF32", Napi::Function::New<OnDevice<F16ToF32>>(env, "f16ToF32"));
  exports.Set("f32ToBf16", Napi::Function::New<OnDevice<F32ToBf16>>(env, "f32ToBf16"));
  exports.Set("bf16ToF32", Napi::Function::New<OnDevice<Bf16ToF32>>(env, "bf16ToF32"));
  exports.Set("conv2dWorkspace", Napi::Function::New<Conv2dWorkspace>(env, "conv2dWorkspace"));
  exports.Set("conv2dForward", Napi::Function::New<OnDevice<Conv2dForward>>(env, "conv2dForward"));
  exports.Set("conv2dBackwardInput", Napi::Function::New<OnDevice<Conv2dBackwardInput>>(env, "conv2dBackwardInput"));
  exports.Set("conv2dBackwardWeight",
              Napi::Function::New<OnDevice<Conv2dBackwardWeight>>(env, "conv2dBackwardWeight"));
  exports.Set("maxPool2dForward", Napi::Function::New<OnDevice<MaxPool2dForward>>(env, "maxPool2dForward"));
  exports.Set("maxPool2dBackward", Napi::Function::New<OnDevice<MaxPool2dBackward>>(env, "maxPool2dBackward"));
  exports.Set("avgPool2dForward", Napi::Function::New<OnDevice<AvgPool2dForward>>(env, "avgPool2dForward"));
  exports.Set("avgPool2dBackward", Napi::Function::New<OnDevice<AvgPool2dBackward>>(env, "avgPool2dBackward"));
  exports.Set("batchNormForward", Napi::Function::New<OnDevice<BatchNormForward>>(env, "batchNormForward"));
  exports.Set("batchNormBackward", Napi::Function::New<OnDevice<BatchNormBackward>>(env, "batchNormBackward"));
  return exports;
}

}  // namespace

NODE_API_MODULE(NODE_GYP_MODULE_NAME, Init)
