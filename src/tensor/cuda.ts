// The CUDA backend's door: detection, the device-buffer addon (psrpc_cuda.node), the SIMT
// emulation builds used by tests, and the --device flag's resolution.
//
// Nothing here touches a GPU at import time. psrpc_cuda.node exists only where nvcc was found
// at build time; it loads on machines without a GPU and reports that through probe(), so
// detection is: addon built, then probe() sees at least one device.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadAddon, packageRoot, type Conv2dGeometry, type NativeKernels, type Pool2dGeometry } from './native.js';

/** Device memory owned by the CUDA addon. Freed by free() or, failing that, by the GC. */
export interface CudaDeviceBuffer {
  /** Size in bytes, as allocated. */
  readonly byteLength: number;
  /** True once free() ran; a freed buffer is refused by every function. */
  readonly freed: boolean;
  /** Releases the device memory now (idempotent). */
  free(): void;
}

/** What the CUDA runtime says about this machine. */
export interface CudaProbe {
  /** Devices the runtime sees; 0 without a GPU or a usable driver. */
  devices: number;
  /** The runtime's error when it could not count devices (for example no driver), else null. */
  error: string | null;
  /** True for the SIMT emulation build, whose one "device" is the host. */
  emulated: boolean;
}

/**
 * The device-buffer API of psrpc_cuda.node (and of its emulated twin). The kernels are those of
 * {@link NativeKernels} with device buffers instead of typed arrays and explicit element counts;
 * every buffer must hold at least the elements the call reads or writes (checked, RangeError).
 * Kernels are queued on the default stream: upload/download and the functions returning a value
 * wait for the work before them.
 */
export interface CudaAddon {
  probe(): CudaProbe;
  /** Allocates `byteLength` bytes of device memory (uninitialised). */
  alloc(byteLength: number): CudaDeviceBuffer;
  /** Copies all of `src` to the start of `dst`. */
  upload(dst: CudaDeviceBuffer, src: ArrayBufferView): void;
  /** Fills all of `dst` from the start of `src`. */
  download(src: CudaDeviceBuffer, dst: ArrayBufferView): void;
  /** Waits for every queued kernel; reports an asynchronous kernel failure as an Error. */
  synchronize(): void;
  gemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
    a: CudaDeviceBuffer, lda: number, b: CudaDeviceBuffer, ldb: number, beta: number, c: CudaDeviceBuffer, ldc: number): void;
  biasAdd(y: CudaDeviceBuffer, bias: CudaDeviceBuffer, rows: number, cols: number): void;
  biasGrad(dy: CudaDeviceBuffer, dbias: CudaDeviceBuffer, rows: number, cols: number, accumulate: boolean): void;
  reluForward(x: CudaDeviceBuffer, y: CudaDeviceBuffer, n: number): void;
  reluBackward(x: CudaDeviceBuffer, dy: CudaDeviceBuffer, dx: CudaDeviceBuffer, n: number): void;
  logSoftmaxForward(x: CudaDeviceBuffer, y: CudaDeviceBuffer, rows: number, cols: number): void;
  logSoftmaxBackward(y: CudaDeviceBuffer, dy: CudaDeviceBuffer, dx: CudaDeviceBuffer, rows: number, cols: number): void;
  /** Labels (int32, on the device) are copied back and range-checked before the kernel runs. */
  crossEntropyForward(logits: CudaDeviceBuffer, labels: CudaDeviceBuffer, logp: CudaDeviceBuffer, rows: number, cols: number): number;
  crossEntropyBackward(logp: CudaDeviceBuffer, labels: CudaDeviceBuffer, dlogits: CudaDeviceBuffer, rows: number, cols: number, scale: number): void;
  nllForward(logp: CudaDeviceBuffer, labels: CudaDeviceBuffer, rows: number, cols: number): number;
  nllBackward(labels: CudaDeviceBuffer, dlogp: CudaDeviceBuffer, rows: number, cols: number, scale: number): void;
  /** mask is n bytes (uint8). seed and offset are non-negative safe integers. */
  dropoutForward(x: CudaDeviceBuffer, y: CudaDeviceBuffer, mask: CudaDeviceBuffer, n: number, p: number, seed: number, offset: number): void;
  dropoutBackward(dy: CudaDeviceBuffer, mask: CudaDeviceBuffer, dx: CudaDeviceBuffer, n: number, p: number): void;
  /** The generator's draw, computed on the host: needs no device. */
  uniformAt(seed: number, index: number): number;
  axpy(n: number, alpha: number, x: CudaDeviceBuffer, y: CudaDeviceBuffer): void;
  scale(n: number, alpha: number, x: CudaDeviceBuffer): void;
  add(n: number, a: CudaDeviceBuffer, b: CudaDeviceBuffer, out: CudaDeviceBuffer): void;
  mul(n: number, a: CudaDeviceBuffer, b: CudaDeviceBuffer, out: CudaDeviceBuffer): void;
  /** Sum accumulated in double on the device. */
  sum(n: number, x: CudaDeviceBuffer): number;
  sgdUpdate(param: CudaDeviceBuffer, grad: CudaDeviceBuffer, momentumBuf: CudaDeviceBuffer | null, n: number, lr: number,
    momentum: number, dampening: number, weightDecay: number, nesterov: boolean, firstStep: boolean): void;
  adamUpdate(param: CudaDeviceBuffer, grad: CudaDeviceBuffer, m: CudaDeviceBuffer, v: CudaDeviceBuffer, n: number, lr: number,
    beta1: number, beta2: number, eps: number, weightDecay: number, decoupled: boolean, step: number): void;
  /** x: n float32, y: n uint16 (and the reverse for the *ToF32 functions). */
  f32ToF16(x: CudaDeviceBuffer, y: CudaDeviceBuffer, n: number): void;
  f16ToF32(x: CudaDeviceBuffer, y: CudaDeviceBuffer, n: number): void;
  f32ToBf16(x: CudaDeviceBuffer, y: CudaDeviceBuffer, n: number): void;
  bf16ToF32(x: CudaDeviceBuffer, y: CudaDeviceBuffer, n: number): void;
  /** Host-side (needs no device): elements of the `col` workspace the conv functions need. */
  // Convolution, pooling and batch norm (native/cuda/binding_cuda.cc): NativeKernels' signatures on
  // device buffers; every size follows from the geometry (or n, c, hw), so no element counts are passed.
  conv2dWorkspace(geometry: Conv2dGeometry): number;
  conv2dForward(geometry: Conv2dGeometry, x: CudaDeviceBuffer, weight: CudaDeviceBuffer, bias: CudaDeviceBuffer | null,
    y: CudaDeviceBuffer, col: CudaDeviceBuffer): void;
  conv2dBackwardInput(geometry: Conv2dGeometry, dy: CudaDeviceBuffer, weight: CudaDeviceBuffer, dx: CudaDeviceBuffer,
    col: CudaDeviceBuffer, accumulate: boolean): void;
  conv2dBackwardWeight(geometry: Conv2dGeometry, x: CudaDeviceBuffer, dy: CudaDeviceBuffer, dweight: CudaDeviceBuffer,
    dbias: CudaDeviceBuffer | null, col: CudaDeviceBuffer, accumulateWeight: boolean, accumulateBias: boolean): void;
  /** indices: int32, one per output. */
  maxPool2dForward(geometry: Pool2dGeometry, x: CudaDeviceBuffer, y: CudaDeviceBuffer, indices: CudaDeviceBuffer): void;
  /** Indices are not copied back to be checked: one outside its window contributes nothing. */
  maxPool2dBackward(geometry: Pool2dGeometry, dy: CudaDeviceBuffer, indices: CudaDeviceBuffer, dx: CudaDeviceBuffer, accumulate: boolean): void;
  avgPool2dForward(geometry: Pool2dGeometry, x: CudaDeviceBuffer, y: CudaDeviceBuffer, countIncludePad: boolean): void;
  avgPool2dBackward(geometry: Pool2dGeometry, dy: CudaDeviceBuffer, dx: CudaDeviceBuffer, countIncludePad: boolean, accumulate: boolean): void;
  batchNormForward(x: CudaDeviceBuffer, y: CudaDeviceBuffer, gamma: CudaDeviceBuffer | null, beta: CudaDeviceBuffer | null,
    saveMean: CudaDeviceBuffer, saveInvstd: CudaDeviceBuffer, runningMean: CudaDeviceBuffer | null, runningVar: CudaDeviceBuffer | null,
    n: number, c: number, hw: number, training: boolean, momentum: number, eps: number): void;
  batchNormBackward(x: CudaDeviceBuffer, dy: CudaDeviceBuffer, gamma: CudaDeviceBuffer | null, saveMean: CudaDeviceBuffer,
    saveInvstd: CudaDeviceBuffer, dx: CudaDeviceBuffer | null, dgamma: CudaDeviceBuffer | null, dbeta: CudaDeviceBuffer | null,
    n: number, c: number, hw: number, training: boolean, accumulateDx: boolean, accumulateDgamma: boolean, accumulateDbeta: boolean): void;
}

/** Why CUDA can or cannot be used here, in one place for cudaAvailable() and resolveDevice(). */
export interface CudaStatus {
  available: boolean;
  /** Devices seen by the runtime (0 when the addon is not built). */
  devices: number;
  /** When not available: a sentence saying why. */
  reason: string | null;
}

const CUDA_ADDON = 'psrpc_cuda';

function addonFile(name: string): string {
  return join(packageRoot(), 'native', 'build', 'Release', `${name}.node`);
}

let status: CudaStatus | undefined;

/** Detects CUDA once per process: built addon + at least one device. Never throws. */
export function cudaStatus(): CudaStatus {
  if (status) return status;
  if (!existsSync(addonFile(CUDA_ADDON))) {
    status = {
      available: false,
      devices: 0,
      reason: `the CUDA addon ${addonFile(CUDA_ADDON)} is not built (nvcc was not found when the native addons were built; install the CUDA toolkit and run \`npm run install\`)`,
    };
    return status;
  }
  try {
    const probe = loadAddon<CudaAddon>(CUDA_ADDON).probe();
    status = probe.devices > 0
      ? { available: true, devices: probe.devices, reason: null }
      : { available: false, devices: 0, reason: `no CUDA device${probe.error ? ` (${probe.error})` : ''}` };
  } catch (err) {
    status = { available: false, devices: 0, reason: `the CUDA addon failed to load: ${(err as Error).message}` };
  }
  return status;
}

/** True when the CUDA addon is built and the runtime sees a device. */
export function cudaAvailable(): boolean {
  return cudaStatus().available;
}

/** The real CUDA addon; throws with the reason when CUDA is not available. */
export function cudaAddon(): CudaAddon {
  const s = cudaStatus();
  if (!s.available) throw new Error(`psrpc: CUDA is not available: ${s.reason}`);
  return loadAddon<CudaAddon>(CUDA_ADDON);
}

/**
 * The CUDA kernels (the same .cu sources) compiled for the SIMT emulation, behind the CPU addon's
 * typed-array interface: every kernel runs here exactly as written for the GPU, thread by thread.
 * For tests; it is far slower than the CPU backend.
 */
export function cudaEmuKernels(): NativeKernels {
  return loadAddon<NativeKernels>('psrpc_cuda_emu');
}

/** The device-buffer addon built over the emulation: tests binding_cuda.cc without a GPU. */
export function cudaEmulatedDevice(): CudaAddon {
  return loadAddon<CudaAddon>('psrpc_cuda_device_emu');
}

export type DeviceFlag = 'cpu' | 'cuda' | 'auto';
export type Device = 'cpu' | 'cuda';

/**
 * Resolves --device: 'auto' is 'cuda' only when {@link cudaAvailable}, else 'cpu'; 'cuda'
 * without CUDA throws an Error saying why and what to use instead.
 */
export function resolveDevice(flag: DeviceFlag): Device {
  switch (flag) {
    case 'cpu':
      return 'cpu';
    case 'auto':
      return cudaAvailable() ? 'cuda' : 'cpu';
    case 'cuda': {
      const s = cudaStatus();
      if (!s.available) throw new Error(`--device cuda: CUDA is not available on this machine: ${s.reason}. Use --device cpu or --device auto.`);
      return 'cuda';
    }
    default:
      throw new RangeError(`--device must be cpu, cuda or auto, got ${JSON.stringify(flag)}`);
  }
}
