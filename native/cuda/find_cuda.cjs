// Prints the CUDA toolkit root (the folder holding bin/nvcc) for binding.gyp, or nothing when
// there is no nvcc: then only the CPU addon and the emulation builds are made. PSRPC_NO_CUDA=1
// forces the latter; CUDA_HOME / CUDA_PATH, then nvcc on PATH, then /usr/local/cuda are tried.
'use strict';
const { existsSync } = require('node:fs');
const { join, dirname, delimiter } = require('node:path');

function find() {
  if (process.env.PSRPC_NO_CUDA === '1') return '';
  const roots = [process.env.CUDA_HOME, process.env.CUDA_PATH].filter(Boolean);
  for (const dir of (process.env.PATH || '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'nvcc'))) roots.push(dirname(dir));
  }
  roots.push('/usr/local/cuda');
  for (const root of roots) {
    if (existsSync(join(root, 'bin', 'nvcc')) && existsSync(join(root, 'include', 'cuda_runtime_api.h'))) return root;
  }
  return '';
}

process.stdout.write(find());
