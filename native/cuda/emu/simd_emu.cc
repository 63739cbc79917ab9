// The emulation addon reuses the CPU addon's binding (../binding.cc), whose simd() reports the
// CPU kernels' vector path. Here the kernels are the CUDA ones run by the SIMT emulator, so the
// two functions it calls answer that instead of probing the CPU.
#include "../../cpu/simd.h"

namespace psrpc {
namespace cpu {

SimdLevel simd_level() { return SimdLevel::kScalar; }

const char* simd_name(SimdLevel) { return "cuda-emu"; }

}  // namespace cpu
}  // namespace psrpc
