// The argument layer of the CPU addon's N-API surface (binding.cc): typed-array views checked
// in place, messages that name the function, the argument and the value, and the Guard that turns
// an ArgumentError into a JS TypeError / RangeError at the boundary. Included by binding.cc only.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>

namespace psrpc {
namespace napi {

constexpr double kMaxSafeInteger = 9007199254740992.0;  // 2^53: the largest integer a JS number holds exactly

// ---- error messages ------------------------------------------------------------------------

// A bad argument, unwound to the N-API boundary (Guard) and thrown there as a JS TypeError or
// RangeError: nothing in JS is created until the message is known to be needed.
struct ArgumentError {
  bool type_error;
  std::string message;
};

[[noreturn]] void throw_type(napi_env, const std::string& message) { throw ArgumentError{true, message}; }

[[noreturn]] void throw_range(napi_env, const std::string& message) { throw ArgumentError{false, message}; }

inline std::string number_text(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == std::floor(v) && std::fabs(v) < 1e18) return std::to_string(static_cast<long long>(v));
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

inline std::string u128_text(unsigned __int128 v) {
  if (v == 0) return "0";
  std::string s;
  while (v > 0) {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return s;
}

inline const char* typed_array_name(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "typed array";
  }
}

// What a wrong argument was, for the message: "a Float64Array", "a number (3)", "undefined".
inline std::string describe(napi_env env, napi_value v) {
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  if (is_typed) {
    napi_typedarray_type t;
    size_t len = 0;
    napi_get_typedarray_info(env, v, &t, &len, nullptr, nullptr, nullptr);
    return std::string("a ") + typed_array_name(t);
  }
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok) return "an unknown value";
  switch (type) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: {
      double d = 0;
      napi_get_value_double(env, v, &d);
      return "a number (" + number_text(d) + ")";
    }
    case napi_string: return "a string";
    case napi_bigint: return "a bigint";
    case napi_function: return "a function";
    default: {
      bool is_array = false;
      napi_is_array(env, v, &is_array);
      return is_array ? "an Array" : "an object";
    }
  }
}

// ---- arguments -----------------------------------------------------------------------------

// One call's arguments, with the function name every message starts with. Read straight from
// napi_get_cb_info into a stack array (Napi::CallbackInfo allocates for more than six arguments),
// missing ones reading as undefined.
class Args {
 public:
  static constexpr size_t kMax = 16;

  Args(napi_env env, napi_callback_info info, const char* fn) : env_(env), fn_(fn) {
    size_t argc = kMax;
    napi_get_cb_info(env, info, &argc, argv_, nullptr, nullptr);  // fills the rest with undefined
  }

  napi_env env() const { return env_; }
  std::string prefix(const char* name) const { return std::string(fn_) + ": " + name; }
  [[noreturn]] void range(const std::string& what) const { throw_range(env_, std::string(fn_) + ": " + what); }

  double number(size_t i, const char* name) const {
    napi_value v = argv_[i];
    double d = 0;
    if (napi_get_value_double(env_, v, &d) != napi_ok) {
      throw_type(env_, prefix(name) + " must be a number, got " + describe(env_, v));
    }
    return d;
  }

  double finite(size_t i, const char* name) const {
    const double d = number(i, name);
    if (!std::isfinite(d)) range(std::string(name) + " must be a finite number, got " + number_text(d));
    return d;
  }

  // A finite number >= lo (lr, weight decay, eps, momentum).
  double at_least(size_t i, const char* name, double lo) const {
    const double d = finite(i, name);
    if (d < lo) range(std::string(name) + " must be >= " + number_text(lo) + ", got " + number_text(d));
    return d;
  }

  // A number in [0, 1): dropout probability, Adam betas.
  double unit(size_t i, const char* name) const {
    const double d = number(i, name);
    if (!(d >= 0.0 && d < 1.0)) range(std::string(name) + " must be in [0, 1), got " + number_text(d));
    return d;
  }

  // A non-negative integer that a JS number holds exactly (sizes, leading dimensions, seeds).
  int64_t count(size_t i, const char* name) const {
    const double d = number(i, name);
    if (!(d >= 0.0) || d != std::floor(d) || d > kMaxSafeInteger) {
      range(std::string(name) + " must be an integer in [0, 2^53], got " + number_text(d));
    }
    return static_cast<int64_t>(d);
  }

  bool boolean(size_t i, const char* name) const {
    napi_value v = argv_[i];
    bool b = false;
    if (napi_get_value_bool(env_, v, &b) != napi_ok) {
      throw_type(env_, prefix(name) + " must be a boolean, got " + describe(env_, v));
    }
    return b;
  }

  bool is_nullish(size_t i) const {
    napi_valuetype type;
    napi_typeof(env_, argv_[i], &type);
    return type == napi_null || type == napi_undefined;
  }

  napi_value raw(size_t i) const { return argv_[i]; }

 private:
  napi_env env_;
  const char* fn_;
  napi_value argv_[kMax];
};

template <typename T> struct ArrayKind;
template <> struct ArrayKind<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <> struct ArrayKind<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};
template <> struct ArrayKind<uint8_t> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* name = "Uint8Array";
};
template <> struct ArrayKind<uint16_t> {
  static constexpr napi_typedarray_type type = napi_uint16_array;
  static constexpr const char* name = "Uint16Array";
};

// A typed array argument, in place: its first element (byteOffset applied) and its length.
template <typename T>
struct View {
  T* data = nullptr;
  int64_t length = 0;
  const char* name = "";

  uintptr_t begin() const { return reinterpret_cast<uintptr_t>(data); }
  uintptr_t end() const { return begin() + static_cast<uintptr_t>(length) * sizeof(T); }
};

template <typename T>
View<T> array(const Args& args, size_t i, const char* name) {
  napi_env env = args.env();
  napi_value v = args.raw(i);
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  // Fails (napi_invalid_arg) for anything that is not a typed array: one call instead of two.
  const bool is_typed = napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) == napi_ok;
  if (!is_typed || type != ArrayKind<T>::type) {
    throw_type(env, args.prefix(name) + " must be a " + ArrayKind<T>::name + ", got " + describe(env, v));
  }
  View<T> view;
  view.data = static_cast<T*>(data);
  view.length = static_cast<int64_t>(length);
  view.name = name;
  return view;
}

// An optional typed array argument: null or undefined gives an empty view (data == nullptr).
template <typename T>
View<T> optional_array(const Args& args, size_t i, const char* name) {
  if (args.is_nullish(i)) {
    View<T> none;
    none.name = name;
    return none;
  }
  return array<T>(args, i, name);
}

// Elementwise arrays must have the same length.
template <typename T, typename U>
void same_length(const Args& args, const View<T>& a, const View<U>& b) {
  if (a.length != b.length) {
    args.range(std::string(b.name) + " has " + std::to_string(b.length) + " elements, " + a.name + " has " +
               std::to_string(a.length) + "; they must match");
  }
}

// A shaped array must hold at least `needed` elements; shape() says where the need comes from (a
// callable, so that the message is only built when it is thrown: no allocation on the hot path).
template <typename T, typename Shape>
void at_least_length(const Args& args, const View<T>& a, unsigned __int128 needed, const Shape& shape) {
  if (static_cast<unsigned __int128>(a.length) < needed) {
    args.range(std::string(a.name) + " has " + std::to_string(a.length) + " elements, needs at least " +
               u128_text(needed) + " for " + shape());
  }
}

template <typename T, typename U>
bool overlap(const View<T>& a, const View<U>& b) {
  return a.length > 0 && b.length > 0 && a.begin() < b.end() && b.begin() < a.end();
}

// An output may be the very same array as an input (in place) but must not partly overlap it:
// the kernels read element i before writing element i, nothing more.
template <typename T, typename U>
void same_or_disjoint(const Args& args, const View<T>& out, const View<U>& in) {
  if (overlap(out, in) && !(out.begin() == in.begin() && out.length == in.length)) {
    args.range(std::string(out.name) + " partly overlaps " + in.name +
               " (in place means the very same elements, not a shifted view)");
  }
}

template <typename T, typename U>
void disjoint(const Args& args, const View<T>& out, const View<U>& in) {
  if (overlap(out, in)) args.range(std::string(out.name) + " overlaps " + in.name + "; they must be distinct memory");
}

inline std::string rows_cols(int64_t rows, int64_t cols) {
  return "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols);
}

inline unsigned __int128 product(int64_t a, int64_t b) {
  return static_cast<unsigned __int128>(a) * static_cast<unsigned __int128>(b);
}

// Every label in [0, cols), checked before the kernel indexes with it.
inline void check_labels(const Args& args, const View<int32_t>& labels, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t label = labels.data[r];
    if (label < 0 || label >= cols) {
      args.range("labels[" + std::to_string(r) + "] = " + std::to_string(label) + " is outside [0, " +
                 std::to_string(cols) + ")");
    }
  }
}

// A geometry argument: an Array or a typed array of exactly `count` integers, each in [lo, 2^31)
// (lo[j] per field: 1 for counts, strides and dilations, 0 for paddings), named by `fields` in the
// messages. The 2^31 bound keeps every size the kernels derive from them (products of at most two
// fields plus small sums) inside int64 before the lengths are checked in 128 bits.
inline void integer_list(const Args& args, size_t i, const char* name, const char* const* fields, const int* lo,
                         size_t count, int64_t* out) {
  napi_env env = args.env();
  napi_value v = args.raw(i);
  bool is_array = false, is_typed = false;
  napi_is_array(env, v, &is_array);
  napi_is_typedarray(env, v, &is_typed);
  if (!is_array && !is_typed) {
    throw_type(env, args.prefix(name) + " must be an Array or typed array of " + std::to_string(count) +
                        " integers, got " + describe(env, v));
  }
  uint32_t length = 0;
  if (is_array) {
    napi_get_array_length(env, v, &length);
  } else {
    size_t n = 0;
    napi_typedarray_type t;
    napi_get_typedarray_info(env, v, &t, &n, nullptr, nullptr, nullptr);
    if (t == napi_bigint64_array || t == napi_biguint64_array) {
      throw_type(env, args.prefix(name) + " must hold numbers, got " + describe(env, v));
    }
    length = static_cast<uint32_t>(n);
  }
  if (length != count) {
    args.range(std::string(name) + " has " + std::to_string(length) + " elements, needs " + std::to_string(count) +
               " [" + [&] {
                 std::string s;
                 for (size_t j = 0; j < count; ++j) s += (j ? ", " : "") + std::string(fields[j]);
                 return s;
               }() + "]");
  }
  for (size_t j = 0; j < count; ++j) {
    napi_value e = nullptr;
    napi_get_element(env, v, static_cast<uint32_t>(j), &e);
    double d = 0;
    // Built only when thrown: no allocation on the hot path.
    const auto what = [&] { return std::string(name) + "[" + std::to_string(j) + "] (" + fields[j] + ")"; };
    if (napi_get_value_double(env, e, &d) != napi_ok) {
      throw_type(env, args.prefix(what().c_str()) + " must be a number, got " + describe(env, e));
    }
    if (!(d >= lo[j]) || d != std::floor(d) || d >= 2147483648.0) {
      args.range(what() + " must be an integer in [" + std::to_string(lo[j]) + ", 2^31), got " + number_text(d));
    }
    out[j] = static_cast<int64_t>(d);
  }
}

// ---- the functions -------------------------------------------------------------------------

inline napi_value undefined(napi_env env) {
  napi_value out = nullptr;
  napi_get_undefined(env, &out);
  return out;
}

inline napi_value number_value(napi_env env, double v) {
  napi_value out = nullptr;
  napi_create_double(env, v, &out);
  return out;
}

// The boundary: argument errors become JS TypeError / RangeError, nothing else escapes to N-API.
template <napi_value (*F)(napi_env, napi_callback_info)>
napi_value Guard(napi_env env, napi_callback_info info) {
  try {
    return F(env, info);
  } catch (const ArgumentError& e) {
    if (e.type_error) {
      napi_throw_type_error(env, nullptr, e.message.c_str());
    } else {
      napi_throw_range_error(env, nullptr, e.message.c_str());
    }
  } catch (const std::exception& e) {
    napi_throw_error(env, nullptr, e.what());
  }
  return nullptr;
}

}  // namespace napi
}  // namespace psrpc
