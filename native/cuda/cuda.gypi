# CUDA targets, included by ../binding.gyp. Paths here are relative to this folder.
#   psrpc_cuda_emu         always: ../binding.cc (the typed-array N-API layer of the CPU addon)
#                          over the .cu kernels compiled by g++ against the SIMT emulation.
#   psrpc_cuda_device_emu  always: binding_cuda.cc (the device-buffer N-API layer) over the same
#                          emulated kernels, so that layer is tested without a GPU too.
#   psrpc_cuda             only when nvcc is found (find_cuda.cjs): binding_cuda.cc over the .cu
#                          kernels compiled by nvcc for sm_80 and sm_90 plus compute_90 PTX,
#                          linked with the static CUDA runtime. It loads on machines without a
#                          GPU; probe() then reports no device.
{
  "variables": {
    # Commands run in the folder of binding.gyp.
    "psrpc_cuda_home%": "<!(node cuda/find_cuda.cjs)"
  },
  "targets": [
    {
      "target_name": "psrpc_cuda_emu",
      "sources": ["../binding.cc", "../cpu/rows_gather.cc", "emu/kernels_emu.cc", "emu/cuda_emu.cc", "emu/simd_emu.cc"],
      "include_dirs": ["."],
      "defines": ["PSRPC_CUDA_EMU"]
    },
    {
      "target_name": "psrpc_cuda_device_emu",
      "sources": ["binding_cuda.cc", "emu/kernels_emu.cc", "emu/cuda_emu.cc"],
      "include_dirs": ["."],
      "defines": ["PSRPC_CUDA_EMU"]
    }
  ],
  "conditions": [
    ["psrpc_cuda_home!=''", {
      "targets": [
        {
          "target_name": "psrpc_cuda",
          "sources": ["binding_cuda.cc", "gemm.cu", "elementwise.cu", "reduce.cu", "rows.cu", "random.cu", "optim.cu",
                      "convert.cu", "conv.cu", "pool.cu", "norm.cu"],
          "include_dirs": [".", "<(psrpc_cuda_home)/include"],
          "rules": [
            {
              "rule_name": "nvcc",
              "extension": "cu",
              "inputs": ["cuda_compat.h", "block_reduce.cuh", "../include/psrpc/kernels.h", "../include/psrpc/philox.h"],
              "outputs": ["<(INTERMEDIATE_DIR)/<(RULE_INPUT_ROOT).o"],
              "action": [
                "<(psrpc_cuda_home)/bin/nvcc", "-std=c++17", "-O3", "-Xcompiler", "-fPIC,-fvisibility=hidden",
                "-gencode", "arch=compute_80,code=sm_80",
                "-gencode", "arch=compute_90,code=sm_90",
                "-gencode", "arch=compute_90,code=compute_90",
                "-I<(module_root_dir)/include", "-I<(module_root_dir)/cuda",
                "-c", "<(RULE_INPUT_PATH)", "-o", "<@(_outputs)"
              ],
              "process_outputs_as_sources": 1,
              "message": "nvcc <(RULE_INPUT_PATH)"
            }
          ],
          "libraries": ["-L<(psrpc_cuda_home)/lib64", "-lcudart_static", "-ldl", "-lrt", "-lpthread"]
        }
      ]
    }]
  ]
}
