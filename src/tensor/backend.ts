// Backends: the objects that ops call to run kernels and manage storage, one per device.
//
// Op code never imports the addon and never branches on the device. It asks `getBackend(device)`
// for the backend of its inputs' device and calls the kernel contract
// (native/include/psrpc/kernels.h) and the storage functions (take/recycle from the backend's
// pool, copy, fill, transfers) on it, as TensorFlow.js ops call their registered backend.
//
// A backend is generic over its storage: the CPU backends work on typed arrays (the native
// addon, the TypeScript kernels, the CUDA kernels compiled for SIMT emulation), the 'cuda'
// backend (backend-cuda.ts) on DeviceArrays in device memory. The registry hands out backends
// typed over the union of storages; a tensor's storage always matches its device's backend.
import { cpuKernels, type Conv2dGeometry, type NativeKernels, type Pool2dGeometry } from './native.js';
import { jsKernels } from './backend-js.js';
import type { DeviceArray } from './device-array.js';
import { hostPool } from './pool.js';

/** Where a tensor's storage lives. */
export type Device = 'cpu' | 'cuda';

/** Storage of float32 elements on some device. */
export type FloatStorage = Float32Array | DeviceArray;
/** Storage of int32 elements (labels) on some device. */
export type IntStorage = Int32Array | DeviceArray;
/** Storage of bytes (dropout masks) on some device. */
export type MaskStorage = Uint8Array | DeviceArray;

/**
 * The kernel contract over a storage type: {@link NativeKernels}' functions with F for float32
 * arrays, I for int32 and M for byte arrays. Lengths of elementwise calls come from the storages.
 */
export interface Kernels<F, I, M> {
  gemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number, a: F, lda: number, b: F, ldb: number, beta: number, c: F, ldc: number): void;
  biasAdd(y: F, bias: F, rows: number, cols: number): void;
  biasGrad(dy: F, dbias: F, rows: number, cols: number, accumulate: boolean): void;
  reluForward(x: F, y: F): void;
  reluBackward(x: F, dy: F, dx: F): void;
  logSoftmaxForward(x: F, y: F, rows: number, cols: number): void;
  logSoftmaxBackward(y: F, dy: F, dx: F, rows: number, cols: number): void;
  crossEntropyForward(logits: F, labels: I, logp: F, rows: number, cols: number): number;
  crossEntropyBackward(logp: F, labels: I, dlogits: F, rows: number, cols: number, scale: number): void;
  nllForward(logp: F, labels: I, rows: number, cols: number): number;
  nllBackward(labels: I, dlogp: F, rows: number, cols: number, scale: number): void;
  dropoutForward(x: F, y: F, mask: M, p: number, seed: number, offset: number): void;
  dropoutBackward(dy: F, mask: M, dx: F, p: number): void;
  axpy(alpha: number, x: F, y: F): void;
  scale(alpha: number, x: F): void;
  add(a: F, b: F, out: F): void;
  mul(a: F, b: F, out: F): void;
  sum(x: F): number;
  /** The dropout generator's draw, computed on the host. */
  uniformAt(seed: number, index: number): number;
  sgdUpdate(param: F, grad: F, momentumBuf: F | null, lr: number, momentum: number, dampening: number, weightDecay: number, nesterov: boolean, firstStep: boolean): void;
  adamUpdate(param: F, grad: F, m: F, v: F, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, decoupled: boolean, step: number): void;
  conv2dWorkspace(geometry: Conv2dGeometry): number;
  conv2dForward(geometry: Conv2dGeometry, x: F, weight: F, bias: F | null, y: F, col: F): void;
  conv2dBackwardInput(geometry: Conv2dGeometry, dy: F, weight: F, dx: F, col: F, accumulate: boolean): void;
  conv2dBackwardWeight(geometry: Conv2dGeometry, x: F, dy: F, dweight: F, dbias: F | null, col: F, accumulateWeight: boolean, accumulateBias: boolean): void;
  maxPool2dForward(geometry: Pool2dGeometry, x: F, y: F, indices: I): void;
  maxPool2dBackward(geometry: Pool2dGeometry, dy: F, indices: I, dx: F, accumulate: boolean): void;
  avgPool2dForward(geometry: Pool2dGeometry, x: F, y: F, countIncludePad: boolean): void;
  avgPool2dBackward(geometry: Pool2dGeometry, dy: F, dx: F, countIncludePad: boolean, accumulate: boolean): void;
  batchNormForward(x: F, y: F, gamma: F | null, beta: F | null, saveMean: F, saveInvstd: F, runningMean: F | null, runningVar: F | null,
    n: number, c: number, hw: number, training: boolean, momentum: number, eps: number): void;
  batchNormBackward(x: F, dy: F, gamma: F | null, saveMean: F, saveInvstd: F, dx: F | null, dgamma: F | null, dbeta: F | null,
    n: number, c: number, hw: number, training: boolean, accumulateDx: boolean, accumulateDgamma: boolean, accumulateDbeta: boolean): void;
}

/** A device's implementation of the kernel contract and of its storage. */
export interface Backend<F = FloatStorage, I = IntStorage, M = MaskStorage> {
  readonly device: Device;
  /** What implements the kernels, for logs and benchmarks (e.g. 'native:avx512', 'js', 'cuda'). */
  readonly name: string;
  readonly kernels: Kernels<F, I, M>;
  /** An empty float storage: what a released activation points to, so a stray use fails a length check. */
  readonly empty: F;
  /** A pooled float buffer of n elements, contents undefined. */
  take(n: number): F;
  /** Gives back a buffer `take` issued; anything else is ignored. */
  recycle(buf: F): void;
  /** Whether `buf` came from `take` and is still handed out. */
  isPooled(buf: F): boolean;
  /** Drops the pool's free buffers. */
  clearPool(): void;
  /** n float32 zeros. */
  zeros(n: number): F;
  /** n uninitialised bytes (dropout masks). */
  allocMask(n: number): M;
  /** n int32 elements, contents undefined (max-pooling indices). */
  allocInt(n: number): I;
  /** dst[i] = value. */
  fill(dst: F, value: number): void;
  /** dst[i] += value. */
  addScalar(dst: F, value: number): void;
  /** The first element (a one-element read; downloads from a device). */
  first(src: F): number;
  /** dst[i] = src[i] (same lengths). */
  copy(src: F, dst: F): void;
  /** A new storage holding a copy of `host`. */
  fromHost(host: Float32Array): F;
  fromHostInt(host: Int32Array): I;
  /** Writes `host` (same length) into `dst`. */
  upload(dst: F, host: Float32Array): void;
  /** A host copy of the elements (a fresh array). */
  toHost(src: F): Float32Array;
  toHostInt(src: I): Int32Array;
}

/** What `setBackend` also accepts: kernels over host memory, the storage functions filled in. */
export interface HostKernels {
  readonly device: 'cpu';
  readonly name: string;
  readonly kernels: NativeKernels;
}

const registry = new Map<Device, Backend>();
/** registry.get('cpu'), kept apart: ops ask for it several times per op on the hot path. */
let cpuBackend: Backend | undefined;
/** Makes the backend of a device that has none yet (e.g. 'cuda' when a GPU is present). */
const factories = new Map<Device, () => Backend>();

/**
 * Makes `backend` serve its device from now on. The default 'cpu' backend is the native addon
 * (or the pure TypeScript kernels when `PSRPC_KERNELS=js` is set, for debugging); 'cuda' is the
 * CUDA addon when a device is present, and tests register the SIMT-emulated device addon
 * (`setBackend(cudaDeviceBackend(cudaEmulatedDevice()))`).
 */
export function setBackend(backend: Backend | HostKernels): void {
  const full = 'take' in backend ? backend : hostBackend(backend.name, backend.kernels);
  registry.set(full.device, full);
  if (full.device === 'cpu') cpuBackend = full;
}

/** Whether a backend serves `device` already (registered by hand, or built on an earlier use). */
export function hasBackend(device: Device): boolean {
  return registry.has(device);
}

/** Forgets the backend registered for `device` (the default comes back on next use). */
export function resetBackend(device: Device): void {
  registry.delete(device);
  if (device === 'cpu') cpuBackend = undefined;
}

/** Registers how to build `device`'s backend on first use (backend-cuda.ts does it for 'cuda'). @internal */
export function registerBackendFactory(device: Device, make: () => Backend): void {
  factories.set(device, make);
}

/** The backend serving `device`; throws when none is registered (e.g. 'cuda' without a GPU). */
export function getBackend(device: Device): Backend {
  if (device === 'cpu') {
    if (cpuBackend !== undefined) return cpuBackend;
    cpuBackend = registry.get('cpu') ?? (process.env.PSRPC_KERNELS === 'js' ? jsBackend() : nativeCpuBackend());
    registry.set('cpu', cpuBackend);
    return cpuBackend;
  }
  const hit = registry.get(device);
  if (hit) return hit;
  const make = factories.get(device);
  if (make) {
    const backend = make();
    registry.set(device, backend);
    return backend;
  }
  throw new Error(`psrpc: no backend is registered for device '${device}'`);
}

/**
 * A backend over host memory with `kernels`: typed-array storage from the shared host pool.
 * Typed `Backend` (over every storage) because it serves the registry; its storages are typed arrays.
 */
export function hostBackend(name: string, kernels: NativeKernels): Backend {
  const b: Backend<Float32Array, Int32Array, Uint8Array> = {
    device: 'cpu',
    name,
    kernels,
    empty: new Float32Array(0),
    take: (n) => hostPool.take(n),
    recycle: (buf) => hostPool.recycle(buf),
    isPooled: (buf) => hostPool.isPooled(buf),
    clearPool: () => hostPool.clear(),
    zeros: (n) => new Float32Array(n),
    allocMask: (n) => new Uint8Array(n),
    allocInt: (n) => new Int32Array(n),
    fill: (dst, value) => void dst.fill(value),
    addScalar: (dst, value) => {
      for (let i = 0; i < dst.length; i++) dst[i]! += value;
    },
    first: (src) => src[0]!,
    copy: (src, dst) => dst.set(src),
    fromHost: (host) => host.slice(),
    fromHostInt: (host) => host.slice(),
    upload: (dst, host) => dst.set(host),
    toHost: (src) => src.slice(),
    toHostInt: (src) => src.slice(),
  };
  return b;
}

/** The native CPU kernels (native/build/Release/psrpc.node). */
export function nativeCpuBackend(): Backend {
  const kernels = cpuKernels();
  return hostBackend(`native:${kernels.simd()}`, kernels);
}

/** The pure TypeScript reference kernels on the CPU: slow, dependency-free. */
export function jsBackend(): Backend {
  return hostBackend('js', jsKernels());
}
