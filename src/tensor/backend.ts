// Backends: the objects that ops call to run kernels, one per device.
//
// Op code never imports the addon. It asks `backendOf(tensor)` for the backend of the tensor's
// device and calls the kernel contract (native/include/psrpc/kernels.h, typed in native.ts) on
// it, as TensorFlow.js ops call their registered backend. A CUDA backend registers itself under
// 'cuda' with the same contract; no op changes.
//
// Storage today is host memory (typed arrays), which every CPU-side implementation of the
// contract shares: the native addon, the TypeScript kernels, and the CUDA kernels compiled for
// SIMT emulation (test/tensor/backend.test.ts trains on each). Device-resident tensors are the
// next step: their storage would be the CUDA addon's device buffers (cuda.ts), allocated and
// read back through the backend (the pool and `.data` would go through it too).
import { cpuKernels, type NativeKernels } from './native.js';
import { jsKernels } from './backend-js.js';

/** Where a tensor's storage lives. */
export type Device = 'cpu' | 'cuda';

/** A device's implementation of the kernel contract. */
export interface Backend {
  readonly device: Device;
  /** What implements the kernels, for logs and benchmarks (e.g. 'native:avx512', 'js'). */
  readonly name: string;
  readonly kernels: NativeKernels;
}

const registry = new Map<Device, Backend>();

/**
 * Makes `backend` serve `device` from now on. The default 'cpu' backend is the native addon
 * (or the pure TypeScript kernels when `PSRPC_KERNELS=js` is set, for debugging).
 */
export function setBackend(backend: Backend): void {
  registry.set(backend.device, backend);
}

/** The backend serving `device`; throws when none is registered (e.g. 'cuda' without a GPU). */
export function getBackend(device: Device): Backend {
  const hit = registry.get(device);
  if (hit) return hit;
  if (device === 'cpu') {
    const backend = process.env.PSRPC_KERNELS === 'js' ? jsBackend() : nativeCpuBackend();
    registry.set('cpu', backend);
    return backend;
  }
  throw new Error(`psrpc: no backend is registered for device '${device}'`);
}

/** The native CPU kernels (native/build/Release/psrpc.node). */
export function nativeCpuBackend(): Backend {
  const kernels = cpuKernels();
  return { device: 'cpu', name: `native:${kernels.simd()}`, kernels };
}

/** The pure TypeScript reference kernels on the CPU: slow, dependency-free. */
export function jsBackend(): Backend {
  return { device: 'cpu', name: 'js', kernels: jsKernels() };
}
