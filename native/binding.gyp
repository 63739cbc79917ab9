# Builds the CPU addon (always) and, through cuda/cuda.gypi, the CUDA targets (real CUDA objects when
# nvcc is found; the SIMT-emulation build of the same .cu sources on every machine, for tests).
{
  "target_defaults": {
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "cflags_cc": ["-std=c++17", "-O3", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "include"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"]
  },
  "targets": [
    {
      "target_name": "psrpc_transport",
      "sources": ["transport/transport.cc", "transport/binding.cc"],
      "cflags": ["-pthread"],
      "ldflags": ["-pthread"]
    },
    {
      "target_name": "psrpc",
      "sources": ["binding.cc", "<!@(node -p \"require('fs').readdirSync('cpu').filter(f => f.endsWith('.cc')).map(f => 'cpu/' + f).join(' ')\")"]
    }
  ],
  "includes": ["cuda/cuda.gypi"]
}
