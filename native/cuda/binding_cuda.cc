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
#include <string>
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

// Every function but probe and uniformAt needs a device: the check runs first so that a machine
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
  return exports;
}

}  // namespace

NODE_API_MODULE(NODE_GYP_MODULE_NAME, Init)
