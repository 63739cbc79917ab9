// The one door to the native addon: its typed interface and the loader.
//
// Every function works in place on the typed arrays it is given (Float32Array, also views over a
// SharedArrayBuffer) and never copies them. Elementwise functions take their length from the
// arrays, which must agree; shaped functions check that every array is long enough for the shape.
// A bad argument throws a TypeError or RangeError from the addon; nothing is touched in that case.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A 2-D convolution's geometry, kernels.h's Conv2dShape without oh and ow:
 * [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups]. See conv2dOutput in ops/conv-shape.ts.
 */
export type Conv2dGeometry = readonly number[];
/** A 2-D pooling's geometry, kernels.h's Pool2dShape without oh and ow: [planes, h, w, kh, kw, sh, sw, ph, pw]. */
export type Pool2dGeometry = readonly number[];

export interface NativeKernels {
  /** Which vector path the CPU kernels use on this machine: 'avx512', 'avx2' or 'scalar'. */
  simd(): string;
  /** C = alpha * op(A) * op(B) + beta * C (row-major; op(X) = X^T when the flag is set). */
  gemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
    a: Float32Array, lda: number, b: Float32Array, ldb: number, beta: number, c: Float32Array, ldc: number): void;
  /** y[r, c] += bias[c]; y is rows x cols. */
  biasAdd(y: Float32Array, bias: Float32Array, rows: number, cols: number): void;
  /** dbias[c] = sum_r dy[r, c] (+= when accumulate). */
  biasGrad(dy: Float32Array, dbias: Float32Array, rows: number, cols: number, accumulate: boolean): void;
  reluForward(x: Float32Array, y: Float32Array): void;
  /** dx = dy * (x > 0); x may be the forward output. */
  reluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  logSoftmaxForward(x: Float32Array, y: Float32Array, rows: number, cols: number): void;
  logSoftmaxBackward(y: Float32Array, dy: Float32Array, dx: Float32Array, rows: number, cols: number): void;
  /** Fused log-softmax + NLL; writes log-probabilities to logp and returns the mean loss. */
  crossEntropyForward(logits: Float32Array, labels: Int32Array, logp: Float32Array, rows: number, cols: number): number;
  /** dlogits = (exp(logp) - onehot(labels)) * scale. */
  crossEntropyBackward(logp: Float32Array, labels: Int32Array, dlogits: Float32Array, rows: number, cols: number, scale: number): void;
  nllForward(logp: Float32Array, labels: Int32Array, rows: number, cols: number): number;
  nllBackward(labels: Int32Array, dlogp: Float32Array, rows: number, cols: number, scale: number): void;
  /** Inverted dropout with a counter-based generator: element i draws uniformAt(seed, offset + i). */
  dropoutForward(x: Float32Array, y: Float32Array, mask: Uint8Array, p: number, seed: number, offset: number): void;
  dropoutBackward(dy: Float32Array, mask: Uint8Array, dx: Float32Array, p: number): void;
  uniformAt(seed: number, index: number): number;
  /** y += alpha * x */
  axpy(alpha: number, x: Float32Array, y: Float32Array): void;
  /** x *= alpha */
  scale(alpha: number, x: Float32Array): void;
  add(a: Float32Array, b: Float32Array, out: Float32Array): void;
  mul(a: Float32Array, b: Float32Array, out: Float32Array): void;
  sum(x: Float32Array): number;
  /** Fused SGD step with torch.optim.SGD semantics; momentumBuf may be null when momentum is 0. */
  sgdUpdate(param: Float32Array, grad: Float32Array, momentumBuf: Float32Array | null, lr: number,
    momentum: number, dampening: number, weightDecay: number, nesterov: boolean, firstStep: boolean): void;
  /** Fused Adam (AdamW when decoupled) step; step is 1-based. */
  adamUpdate(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, lr: number,
    beta1: number, beta2: number, eps: number, weightDecay: number, decoupled: boolean, step: number): void;
  /** Elements of the `col` workspace the conv kernels need for this geometry on this backend (may be 0). */
  conv2dWorkspace(geometry: Conv2dGeometry): number;
  /** y = conv2d(x, weight) + bias (bias null: none); x [n,c,h,w], weight [oc,c/groups,kh,kw], y [n,oc,oh,ow]. */
  conv2dForward(geometry: Conv2dGeometry, x: Float32Array, weight: Float32Array, bias: Float32Array | null, y: Float32Array, col: Float32Array): void;
  /** dx (= or += when accumulate) = the input gradient of dy [n,oc,oh,ow]. */
  conv2dBackwardInput(geometry: Conv2dGeometry, dy: Float32Array, weight: Float32Array, dx: Float32Array, col: Float32Array, accumulate: boolean): void;
  /** dweight and dbias (null: none), each = or += by its flag. */
  conv2dBackwardWeight(geometry: Conv2dGeometry, x: Float32Array, dy: Float32Array, dweight: Float32Array, dbias: Float32Array | null,
    col: Float32Array, accumulateWeight: boolean, accumulateBias: boolean): void;
  /** Max pooling; indices get the flat in-plane position (iy * w + ix) of each maximum. */
  maxPool2dForward(geometry: Pool2dGeometry, x: Float32Array, y: Float32Array, indices: Int32Array): void;
  maxPool2dBackward(geometry: Pool2dGeometry, dy: Float32Array, indices: Int32Array, dx: Float32Array, accumulate: boolean): void;
  avgPool2dForward(geometry: Pool2dGeometry, x: Float32Array, y: Float32Array, countIncludePad: boolean): void;
  avgPool2dBackward(geometry: Pool2dGeometry, dy: Float32Array, dx: Float32Array, countIncludePad: boolean, accumulate: boolean): void;
  /** torch.nn.BatchNorm2d forward over x [n, c, hw]; see kernels.h batch_norm_forward. */
  batchNormForward(x: Float32Array, y: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, saveMean: Float32Array,
    saveInvstd: Float32Array, runningMean: Float32Array | null, runningVar: Float32Array | null, n: number, c: number, hw: number,
    training: boolean, momentum: number, eps: number): void;
  /** BatchNorm2d backward; see kernels.h batch_norm_backward. Null outputs are skipped. */
  batchNormBackward(x: Float32Array, dy: Float32Array, gamma: Float32Array | null, saveMean: Float32Array, saveInvstd: Float32Array,
    dx: Float32Array | null, dgamma: Float32Array | null, dbeta: Float32Array | null, n: number, c: number, hw: number,
    training: boolean, accumulateDx: boolean, accumulateDgamma: boolean, accumulateDbeta: boolean): void;
  f32ToF16(x: Float32Array, y: Uint16Array): void;
  f16ToF32(x: Uint16Array, y: Float32Array): void;
  f32ToBf16(x: Float32Array, y: Uint16Array): void;
  bf16ToF32(x: Uint16Array, y: Float32Array): void;
  // 16-bit wire formats (kernels.h; src/tensor/half.ts is their face). Optional: the CPU addon has
  // them, the TypeScript reference kernels do not (half.ts computes the same bits itself then).
  // src and dst have the same length and are distinct memory; op is 0 (sum) or 1 (max).
  /** dst = bf16(src), round to nearest even, NaN stays a quiet NaN. */
  wireToBf16?(src: Float32Array, dst: Uint16Array): void;
  wireFromBf16?(src: Uint16Array, dst: Float32Array): void;
  /** dst = fp16(src) (IEEE binary16, nearest even, overflow to inf, subnormals, quiet NaN). */
  wireToF16?(src: Float32Array, dst: Uint16Array): void;
  wireFromF16?(src: Uint16Array, dst: Float32Array): void;
  /** acc = acc + widen(src) (op 0) or max(acc, widen(src)) (op 1; NaN wins), in fp32. */
  wireAccBf16?(acc: Float32Array, src: Uint16Array, op: number): void;
  wireAccF16?(acc: Float32Array, src: Uint16Array, op: number): void;
  wireAccF32?(acc: Float32Array, src: Float32Array, op: number): void;
  /** x = widen(narrow(x)) in place. */
  wireRoundBf16?(x: Float32Array): void;
  wireRoundF16?(x: Float32Array): void;
  /** How many elements of x are inf or NaN. */
  nonFiniteCount?(x: Float32Array): number;
}

const here = dirname(fileURLToPath(import.meta.url));

/** The package root, found by walking up from this file (works from src/ and from dist/src/). */
export function packageRoot(): string {
  let dir = here;
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'native'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`psrpc: cannot find the package root above ${here}`);
    dir = up;
  }
}

const require = createRequire(import.meta.url);
const cache = new Map<string, unknown>();

/** Loads native/build/Release/<name>.node once; a missing build gives an error that says how to rebuild. */
export function loadAddon<T>(name: string): T {
  const hit = cache.get(name);
  if (hit) return hit as T;
  const file = join(packageRoot(), 'native', 'build', 'Release', `${name}.node`);
  if (!existsSync(file)) {
    throw new Error(`psrpc: native addon ${file} is missing; build it with \`npm install\` (or \`npm run install\`) in ${packageRoot()}`);
  }
  const mod = require(file) as T;
  cache.set(name, mod);
  return mod;
}

let cpu: NativeKernels | undefined;

/** The CPU kernels. */
export function cpuKernels(): NativeKernels {
  return (cpu ??= loadAddon<NativeKernels>('psrpc'));
}
