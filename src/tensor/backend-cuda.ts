// The 'cuda' backend: tensors whose storage is device memory, run by the CUDA addon's
// device-buffer API (cuda.ts). Values cross to the host only when read: `toHost` (`.item()`,
// `.toArray()`, `.cpu()`, metrics), the one-double results of the reductions (loss, sum) and
// `first` (the one-element upstream gradient a loss's backward scales by). Host labels and
// constants are uploaded.
//
// `cudaDeviceBackend(addon)` works over any build of that API: the real psrpc_cuda.node, or
// psrpc_cuda_device_emu.node, which runs the same CUDA kernels in SIMT emulation on host memory
// so that tests exercise the whole device path without a GPU. The addon has no fill or
// device-to-device copy, so both are built from kernels: a GEMM with k = 0 and beta = 0 writes
// zeros (it never reads C), a one-column bias add adds a constant, and axpy into zeros copies.
import { registerBackendFactory, type Backend, type Kernels } from './backend.js';
import { cudaAddon, cudaAvailable, type CudaAddon, type CudaDeviceBuffer } from './cuda.js';
import type { Conv2dGeometry, Pool2dGeometry } from './native.js';
import { DeviceArray, type DeviceElement } from './device-array.js';
import { BufferPool } from './pool.js';

type D = DeviceArray;

/** The backend for device 'cuda' over `addon` (the real one, or the emulated device). */
export function cudaDeviceBackend(addon: CudaAddon, name = addon.probe().emulated ? 'cuda:emulated' : 'cuda'): Backend<D, D, D> {
  const alloc = (n: number, dtype: DeviceElement): D => new DeviceArray(addon.alloc(n * DeviceArray.bytesPer(dtype)), n, dtype, 'cuda');
  const pool = new BufferPool<D>((n) => alloc(n, 'float32'), (b) => b.buffer.free());
  const nothing = alloc(0, 'float32');
  const scalars = new Map<number, D>();
  /** A one-element device buffer holding `v` (cached: fills use a few constants). */
  const constant = (v: number): D => {
    let c = scalars.get(v);
    if (c === undefined) {
      c = alloc(1, 'float32');
      addon.upload(c.buffer, Float32Array.of(v));
      if (scalars.size < 64) scalars.set(v, c);
    }
    return c;
  };
  const zero = (dst: D): void => {
    if (dst.length > 0) addon.gemm(false, false, 1, dst.length, 0, 1, nothing.buffer, 1, nothing.buffer, dst.length, 0, dst.buffer, dst.length);
  };
  const f32 = (x: D, what: string): D['buffer'] => {
    if (!(x instanceof DeviceArray)) throw new TypeError(`cuda backend: ${what} is not device storage (got ${Object.prototype.toString.call(x)}); move the tensor with .to('cuda')`);
    return x.buffer;
  };
  const opt = (x: D | null, what: string): D['buffer'] | null => (x === null ? null : f32(x, what));
  const kernels: Kernels<D, D, D> = {
    gemm: (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => addon.gemm(ta, tb, m, n, k, alpha, f32(a, 'a'), lda, f32(b, 'b'), ldb, beta, f32(c, 'c'), ldc),
    biasAdd: (y, bias, rows, cols) => addon.biasAdd(f32(y, 'y'), f32(bias, 'bias'), rows, cols),
    biasGrad: (dy, dbias, rows, cols, acc) => addon.biasGrad(f32(dy, 'dy'), f32(dbias, 'dbias'), rows, cols, acc),
    reluForward: (x, y) => addon.reluForward(f32(x, 'x'), f32(y, 'y'), x.length),
    reluBackward: (x, dy, dx) => addon.reluBackward(f32(x, 'x'), f32(dy, 'dy'), f32(dx, 'dx'), x.length),
    logSoftmaxForward: (x, y, rows, cols) => addon.logSoftmaxForward(f32(x, 'x'), f32(y, 'y'), rows, cols),
    logSoftmaxBackward: (y, dy, dx, rows, cols) => addon.logSoftmaxBackward(f32(y, 'y'), f32(dy, 'dy'), f32(dx, 'dx'), rows, cols),
    crossEntropyForward: (logits, labels, logp, rows, cols) => addon.crossEntropyForward(f32(logits, 'logits'), f32(labels, 'labels'), f32(logp, 'logp'), rows, cols),
    crossEntropyBackward: (logp, labels, d, rows, cols, s) => addon.crossEntropyBackward(f32(logp, 'logp'), f32(labels, 'labels'), f32(d, 'dlogits'), rows, cols, s),
    nllForward: (logp, labels, rows, cols) => addon.nllForward(f32(logp, 'logp'), f32(labels, 'labels'), rows, cols),
    nllBackward: (labels, d, rows, cols, s) => addon.nllBackward(f32(labels, 'labels'), f32(d, 'dlogp'), rows, cols, s),
    dropoutForward: (x, y, mask, p, seed, offset) => addon.dropoutForward(f32(x, 'x'), f32(y, 'y'), f32(mask, 'mask'), x.length, p, seed, offset),
    dropoutBackward: (dy, mask, dx, p) => addon.dropoutBackward(f32(dy, 'dy'), f32(mask, 'mask'), f32(dx, 'dx'), dy.length, p),
    axpy: (alpha, x, y) => addon.axpy(x.length, alpha, f32(x, 'x'), f32(y, 'y')),
    scale: (alpha, x) => addon.scale(x.length, alpha, f32(x, 'x')),
    add: (a, b, out) => addon.add(a.length, f32(a, 'a'), f32(b, 'b'), f32(out, 'out')),
    mul: (a, b, out) => addon.mul(a.length, f32(a, 'a'), f32(b, 'b'), f32(out, 'out')),
    sum: (x) => addon.sum(x.length, f32(x, 'x')),
    uniformAt: (seed, index) => addon.uniformAt(seed, index),
    sgdUpdate: (param, grad, buf, lr, momentum, dampening, wd, nesterov, first) =>
      addon.sgdUpdate(f32(param, 'param'), f32(grad, 'grad'), buf === null ? null : f32(buf, 'momentumBuf'), param.length, lr, momentum, dampening, wd, nesterov, first),
    adamUpdate: (param, grad, m, v, lr, b1, b2, eps, wd, decoupled, step) =>
      addon.adamUpdate(f32(param, 'param'), f32(grad, 'grad'), f32(m, 'm'), f32(v, 'v'), param.length, lr, b1, b2, eps, wd, decoupled, step),
    conv2dWorkspace: (geometry) => addon.conv2dWorkspace(geometry),
    conv2dForward: (geometry, x, weight, bias, y, col) =>
      addon.conv2dForward(geometry, f32(x, 'x'), f32(weight, 'weight'), opt(bias, 'bias'), f32(y, 'y'), f32(col, 'col')),
    conv2dBackwardInput: (geometry, dy, weight, dx, col, acc) =>
      addon.conv2dBackwardInput(geometry, f32(dy, 'dy'), f32(weight, 'weight'), f32(dx, 'dx'), f32(col, 'col'), acc),
    conv2dBackwardWeight: (geometry, x, dy, dweight, dbias, col, accW, accB) =>
      addon.conv2dBackwardWeight(geometry, f32(x, 'x'), f32(dy, 'dy'), f32(dweight, 'dweight'), opt(dbias, 'dbias'), f32(col, 'col'), accW, accB),
    maxPool2dForward: (geometry, x, y, indices) => addon.maxPool2dForward(geometry, f32(x, 'x'), f32(y, 'y'), f32(indices, 'indices')),
    maxPool2dBackward: (geometry, dy, indices, dx, acc) => addon.maxPool2dBackward(geometry, f32(dy, 'dy'), f32(indices, 'indices'), f32(dx, 'dx'), acc),
    avgPool2dForward: (geometry, x, y, includePad) => addon.avgPool2dForward(geometry, f32(x, 'x'), f32(y, 'y'), includePad),
    avgPool2dBackward: (geometry, dy, dx, includePad, acc) => addon.avgPool2dBackward(geometry, f32(dy, 'dy'), f32(dx, 'dx'), includePad, acc),
    batchNormForward: (x, y, gamma, beta, mean, invstd, rmean, rvar, n, c, hw, training, momentum, eps) =>
      addon.batchNormForward(f32(x, 'x'), f32(y, 'y'), opt(gamma, 'gamma'), opt(beta, 'beta'), f32(mean, 'saveMean'), f32(invstd, 'saveInvstd'),
        opt(rmean, 'runningMean'), opt(rvar, 'runningVar'), n, c, hw, training, momentum, eps),
    batchNormBackward: (x, dy, gamma, mean, invstd, dx, dgamma, dbeta, n, c, hw, training, accDx, accDgamma, accDbeta) =>
      addon.batchNormBackward(f32(x, 'x'), f32(dy, 'dy'), opt(gamma, 'gamma'), f32(mean, 'saveMean'), f32(invstd, 'saveInvstd'),
        opt(dx, 'dx'), opt(dgamma, 'dgamma'), opt(dbeta, 'dbeta'), n, c, hw, training, accDx, accDgamma, accDbeta),
  };
  const checkLength = (op: string, a: number, b: number): void => {
    if (a !== b) throw new RangeError(`cuda backend: ${op}: lengths differ (${a} vs ${b})`);
  };
  return {
    device: 'cuda',
    name,
    kernels,
    empty: nothing,
    take: (n) => pool.take(n),
    recycle: (buf) => pool.recycle(buf),
    isPooled: (buf) => pool.isPooled(buf),
    clearPool: () => pool.clear(),
    zeros(n) {
      const d = alloc(n, 'float32');
      zero(d);
      return d;
    },
    allocMask: (n) => alloc(n, 'uint8'),
    allocInt: (n) => alloc(n, 'int32'),
    fill(dst, value) {
      f32(dst, 'dst');
      zero(dst);
      if (value !== 0 && dst.length > 0) addon.biasAdd(dst.buffer, constant(value).buffer, dst.length, 1);
    },
    addScalar(dst, value) {
      if (value !== 0 && dst.length > 0) addon.biasAdd(f32(dst, 'dst'), constant(value).buffer, dst.length, 1);
    },
    first(src) {
      const out = new Float32Array(1);
      addon.download(f32(src, 'src'), out);
      return out[0]!;
    },
    copy(src, dst) {
      checkLength('copy', src.length, dst.length);
      if (src === dst) return;
      zero(dst);
      if (dst.length > 0) addon.axpy(dst.length, 1, f32(src, 'src'), dst.buffer);
    },
    fromHost(host) {
      const d = alloc(host.length, 'float32');
      addon.upload(d.buffer, host);
      return d;
    },
    fromHostInt(host) {
      const d = alloc(host.length, 'int32');
      addon.upload(d.buffer, host);
      return d;
    },
    upload(dst, host) {
      checkLength('upload', host.length, dst.length);
      addon.upload(f32(dst, 'dst'), host);
    },
    toHost(src) {
      const out = new Float32Array(src.length);
      if (src.length > 0) addon.download(f32(src, 'src'), out);
      return out;
    },
    toHostInt(src) {
      const out = new Int32Array(src.length);
      if (src.length > 0) addon.download(f32(src, 'src'), out);
      return out;
    },
  };
}

// Where a GPU is present, 'cuda' is served by the real addon on first use.
registerBackendFactory('cuda', () => {
  if (!cudaAvailable()) cudaAddon(); // throws, saying why CUDA is not available
  return cudaDeviceBackend(cudaAddon(), 'cuda');
});
