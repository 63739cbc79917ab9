// Checks of the CUDA addon's device-buffer API (native/cuda/binding_cuda.cc), reusable for any
// build of it: the SIMT emulation (test/native/cuda-emu.test.ts) and a real GPU
// (test/native/cuda-build.test.ts, where a device is present). References are computed here
// in double precision from the contract's definitions (native/include/psrpc/kernels.h); the
// convolution, pooling and batch-norm kernels are compared with the CPU addon's on the same inputs.
import test from 'ava';
import type { CudaAddon, CudaDeviceBuffer } from '../../src/tensor/cuda.js';
import { cpuKernels, type Conv2dGeometry, type NativeKernels, type Pool2dGeometry } from '../../src/tensor/native.js';
import { cudaDeviceBackend } from '../../src/tensor/backend-cuda.js';
import { DeviceArray } from '../../src/tensor/device-array.js';

/** Deterministic pseudo-random floats (a small LCG: tests must not depend on Math.random). */
function randoms(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): string | null {
  if (actual.length !== expected.length) return `length ${actual.length} != ${expected.length}`;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) return `element ${i}: ${a} vs expected ${e}`;
  }
  return null;
}

export function deviceSuite(label: string, load: () => CudaAddon): void {
  // Uploads a host array into a fresh device buffer the test frees at the end.
  function upload(cuda: CudaAddon, host: Float32Array | Int32Array | Uint8Array | Uint16Array, extraBytes = 0): CudaDeviceBuffer {
    const buf = cuda.alloc(host.byteLength + extraBytes);
    cuda.upload(buf, host);
    return buf;
  }
  function download(cuda: CudaAddon, buf: CudaDeviceBuffer, n: number): Float32Array {
    const out = new Float32Array(n);
    cuda.download(buf, out);
    return out;
  }

  test(`${label}: probe reports a device and buffers round-trip every element type`, (t) => {
    const cuda = load();
    const probe = cuda.probe();
    t.true(probe.devices >= 1);
    t.is(probe.error, null);
    for (const host of [randoms(1000, 1), new Int32Array([1, -2, 2147483647]), new Uint8Array([0, 255, 7]), new Uint16Array([0x3c00, 0xffff])]) {
      const buf = upload(cuda, host, 8);
      t.is(buf.byteLength, host.byteLength + 8);
      const back = new (host.constructor as new (n: number) => typeof host)(host.length);
      cuda.download(buf, back);
      t.deepEqual(Array.from(back), Array.from(host));
      buf.free();
      t.true(buf.freed);
      buf.free(); // idempotent
    }
  });

  test(`${label}: gemm matches the reference for every transpose pair, alpha, beta and leading dimension`, (t) => {
    const cuda = load();
    const shapes: [number, number, number][] = [[1, 1, 1], [7, 5, 3], [64, 64, 64], [70, 33, 130], [3, 129, 17], [4, 6, 0]];
    for (const [m, n, k] of shapes) {
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          for (const beta of [0, 0.5]) {
            const lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
            const a = randoms((ta ? k : m) * lda, m * 31 + n), b = randoms((tb ? n : k) * ldb, k * 17 + 5);
            // beta == 0: C is write-only, so NaNs there must vanish.
            const c = beta === 0 ? new Float32Array(m * ldc).fill(NaN) : randoms(m * ldc, 99);
            const expected = Float64Array.from(c);
            for (let i = 0; i < m; i++) {
              for (let j = 0; j < n; j++) {
                let s = 0;
                for (let p = 0; p < k; p++) s += a[ta ? p * lda + i : i * lda + p]! * b[tb ? j * ldb + p : p * ldb + j]!;
                expected[i * ldc + j] = 1.5 * s + (beta === 0 ? 0 : beta * c[i * ldc + j]!);
              }
            }
            const da = upload(cuda, a), db = upload(cuda, b), dc = upload(cuda, c);
            cuda.gemm(ta, tb, m, n, k, 1.5, da, lda, db, ldb, beta, dc, ldc);
            const got = download(cuda, dc, m * ldc);
            // Padding columns of C (j >= n) are not part of the product and stay as they were.
            for (let i = 0; i < m; i++) for (let j = n; j < ldc; j++) expected[i * ldc + j] = c[i * ldc + j]!;
            const err = close(Array.from(got, (v) => (Number.isNaN(v) ? 1e30 : v)), Array.from(expected, (v) => (Number.isNaN(v) ? 1e30 : v)), 1e-4);
            t.is(err, null, `gemm ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} m=${m} n=${n} k=${k} beta=${beta}`);
            for (const d of [da, db, dc]) d.free();
          }
        }
      }
    }
  });

  test(`${label}: cross entropy and nll reduce on the device to the mean loss, with their gradients`, (t) => {
    const cuda = load();
    for (const [rows, cols] of [[1, 1], [64, 10], [300, 7], [3, 1000]] as const) {
      const logits = randoms(rows * cols, rows + cols, 4);
      const labels = Int32Array.from({ length: rows }, (_, r) => (r * 7 + 3) % cols);
      const logp = new Float64Array(rows * cols);
      let loss = 0;
      for (let r = 0; r < rows; r++) {
        let max = -Infinity;
        for (let c = 0; c < cols; c++) max = Math.max(max, logits[r * cols + c]!);
        let s = 0;
        for (let c = 0; c < cols; c++) s += Math.exp(logits[r * cols + c]! - max);
        const lse = max + Math.log(s);
        for (let c = 0; c < cols; c++) logp[r * cols + c] = logits[r * cols + c]! - lse;
        loss -= logp[r * cols + labels[r]!]!;
      }
      loss /= rows;
      const dl = upload(cuda, logits), dlab = upload(cuda, labels), dp = cuda.alloc(rows * cols * 4);
      t.true(Math.abs(cuda.crossEntropyForward(dl, dlab, dp, rows, cols) - loss) < 1e-4 * (1 + loss), `ce ${rows}x${cols}`);
      t.is(close(download(cuda, dp, rows * cols), logp, 1e-5), null);
      t.true(Math.abs(cuda.nllForward(dp, dlab, rows, cols) - loss) < 1e-4 * (1 + loss), `nll ${rows}x${cols}`);
      // In place, as the contract allows: logp over the logits' own buffer.
      t.true(Math.abs(cuda.crossEntropyForward(dl, dlab, dl, rows, cols) - loss) < 1e-4 * (1 + loss));
      t.is(close(download(cuda, dl, rows * cols), logp, 1e-5), null);
      const scale = 1 / rows;
      cuda.crossEntropyBackward(dp, dlab, dl, rows, cols, scale);
      const grad = logp.map((v, i) => (Math.exp(v) - (i % cols === labels[Math.floor(i / cols)] ? 1 : 0)) * scale);
      t.is(close(download(cuda, dl, rows * cols), grad, 1e-5), null);
      cuda.nllBackward(dlab, dl, rows, cols, 0.25);
      const nllGrad = logp.map((_, i) => (i % cols === labels[Math.floor(i / cols)] ? -0.25 : 0));
      t.deepEqual(Array.from(download(cuda, dl, rows * cols)), Array.from(nllGrad));
      for (const d of [dl, dlab, dp]) d.free();
    }
  });

  test(`${label}: a label outside [0, cols) is a RangeError naming it, and nothing is written`, (t) => {
    const cuda = load();
    const logits = randoms(12, 3);
    const dl = upload(cuda, logits), dlab = upload(cuda, new Int32Array([0, 4, 1])), dp = upload(cuda, new Float32Array(12).fill(7));
    const err = t.throws(() => cuda.crossEntropyForward(dl, dlab, dp, 3, 4), { instanceOf: RangeError });
    t.regex(err!.message, /labels\[1\] = 4 is outside \[0, 4\)/);
    t.throws(() => cuda.nllForward(dl, dlab, 3, 4), { instanceOf: RangeError });
    t.deepEqual(Array.from(download(cuda, dp, 12)), new Array(12).fill(7));
    for (const d of [dl, dlab, dp]) d.free();
  });

  test(`${label}: log-softmax, relu, bias, elementwise kernels and sum match their definitions`, (t) => {
    const cuda = load();
    const rows = 33, cols = 130, n = rows * cols;
    const x = randoms(n, 11, 3), dy = randoms(n, 12), bias = randoms(cols, 13);
    const dx = upload(cuda, x), ddy = upload(cuda, dy), dout = cuda.alloc(n * 4), dbias = upload(cuda, bias);

    cuda.logSoftmaxForward(dx, dout, rows, cols);
    const y = new Float64Array(n);
    for (let r = 0; r < rows; r++) {
      let max = -Infinity, s = 0;
      for (let c = 0; c < cols; c++) max = Math.max(max, x[r * cols + c]!);
      for (let c = 0; c < cols; c++) s += Math.exp(x[r * cols + c]! - max);
      for (let c = 0; c < cols; c++) y[r * cols + c] = x[r * cols + c]! - max - Math.log(s);
    }
    t.is(close(download(cuda, dout, n), y, 1e-5), null, 'logSoftmaxForward');
    const yf = download(cuda, dout, n);
    cuda.logSoftmaxBackward(dout, ddy, ddy, rows, cols); // in place over dy
    const gx = new Float64Array(n);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += dy[r * cols + c]!;
      for (let c = 0; c < cols; c++) gx[r * cols + c] = dy[r * cols + c]! - Math.exp(yf[r * cols + c]!) * s;
    }
    t.is(close(download(cuda, ddy, n), gx, 1e-4), null, 'logSoftmaxBackward');

    cuda.upload(ddy, dy);
    cuda.reluForward(dx, dout, n);
    t.deepEqual(Array.from(download(cuda, dout, n)), Array.from(x, (v) => Math.max(v, 0)));
    cuda.reluBackward(dx, ddy, dout, n);
    t.deepEqual(Array.from(download(cuda, dout, n)), Array.from(x, (v, i) => (v > 0 ? dy[i]! : 0)));

    cuda.upload(dout, x);
    cuda.biasAdd(dout, dbias, rows, cols);
    t.deepEqual(Array.from(download(cuda, dout, n)), Array.from(x, (v, i) => Math.fround(v + bias[i % cols]!)));
    cuda.biasGrad(ddy, dbias, rows, cols, true);
    const colSums = Array.from(bias, (b, c) => {
      let s = b;
      for (let r = 0; r < rows; r++) s += dy[r * cols + c]!;
      return s;
    });
    t.is(close(download(cuda, dbias, cols), colSums, 1e-5), null, 'biasGrad accumulate');
    cuda.biasGrad(ddy, dbias, rows, cols, false);
    t.is(close(download(cuda, dbias, cols), colSums.map((s, c) => s - bias[c]!), 1e-5), null, 'biasGrad');

    cuda.add(n, dx, ddy, dout);
    t.deepEqual(Array.from(download(cuda, dout, n)), Array.from(x, (v, i) => Math.fround(v + dy[i]!)));
    cuda.mul(n, dx, ddy, dout);
    t.deepEqual(Array.from(download(cuda, dout, n)), Array.from(x, (v, i) => Math.fround(v * dy[i]!)));
    cuda.upload(dout, dy);
    cuda.axpy(n, 0.5, dx, dout);
    t.is(close(download(cuda, dout, n), Array.from(x, (v, i) => dy[i]! + 0.5 * v), 1e-6), null, 'axpy');
    cuda.scale(n, -2, dout);
    t.is(close(download(cuda, dout, n), Array.from(x, (v, i) => -2 * (dy[i]! + 0.5 * v)), 1e-6), null, 'scale');

    const big = randoms(300_001, 21);
    const dbig = upload(cuda, big);
    const expected = big.reduce((s, v) => s + v, 0);
    t.true(Math.abs(cuda.sum(big.length, dbig) - expected) < 1e-6, 'sum');
    t.is(cuda.sum(0, dbig), 0);
    for (const d of [dx, ddy, dout, dbias, dbig]) d.free();
  });

  test(`${label}: dropout keeps exactly the elements whose uniformAt draw is >= p`, (t) => {
    const cuda = load();
    const n = 20_000, p = 0.3, seed = 1234, offset = 2 ** 33 + 5;
    const x = randoms(n, 5);
    const dx = upload(cuda, x), dy = cuda.alloc(n * 4), dmask = cuda.alloc(n);
    cuda.dropoutForward(dx, dy, dmask, n, p, seed, offset);
    const mask = new Uint8Array(n);
    cuda.download(dmask, mask);
    const y = download(cuda, dy, n);
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const keep = cuda.uniformAt(seed, offset + i) >= p;
      if (mask[i] !== (keep ? 1 : 0)) return t.fail(`mask[${i}] = ${mask[i]}, draw says ${keep}`);
      if (Math.abs(y[i]! - (keep ? x[i]! / (1 - p) : 0)) > 1e-6) return t.fail(`y[${i}] = ${y[i]}`);
      kept += mask[i]!;
    }
    t.true(Math.abs(kept / n - (1 - p)) < 0.02);
    cuda.dropoutBackward(dx, dmask, dy, n, p);
    t.is(close(download(cuda, dy, n), Array.from(x, (v, i) => (mask[i] ? v / (1 - p) : 0)), 1e-6), null);
    for (const d of [dx, dy, dmask]) d.free();
  });

  test(`${label}: fused SGD and Adam steps follow the torch.optim formulas`, (t) => {
    const cuda = load();
    const n = 1000;
    const param = randoms(n, 31), grad = randoms(n, 32), buf = randoms(n, 33);
    const dp = upload(cuda, param), dg = upload(cuda, grad), db = upload(cuda, buf);
    cuda.sgdUpdate(dp, dg, db, n, 0.1, 0.9, 0.1, 0.01, true, false);
    const expBuf = new Float64Array(n), expParam = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const g = grad[i]! + 0.01 * param[i]!;
      expBuf[i] = 0.9 * buf[i]! + 0.9 * g;
      expParam[i] = param[i]! - 0.1 * (g + 0.9 * expBuf[i]!);
    }
    t.is(close(download(cuda, db, n), expBuf, 1e-5), null, 'sgd momentum buffer');
    t.is(close(download(cuda, dp, n), expParam, 1e-5), null, 'sgd param');

    for (const decoupled of [false, true]) {
      const m = randoms(n, 41, 0.1), v = Float32Array.from(randoms(n, 42), (x) => Math.abs(x) * 0.01);
      cuda.upload(dp, param);
      const dm = upload(cuda, m), dv = upload(cuda, v);
      const lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.05, step = 3;
      cuda.adamUpdate(dp, dg, dm, dv, n, lr, b1, b2, eps, wd, decoupled, step);
      const em = new Float64Array(n), ev = new Float64Array(n), ep = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        let p = param[i]!, g = grad[i]!;
        if (decoupled) p *= 1 - lr * wd;
        else g += wd * p;
        em[i] = b1 * m[i]! + (1 - b1) * g;
        ev[i] = b2 * v[i]! + (1 - b2) * g * g;
        const denom = Math.sqrt(ev[i]!) / Math.sqrt(1 - b2 ** step) + eps;
        ep[i] = p - (lr / (1 - b1 ** step)) * (em[i]! / denom);
      }
      t.is(close(download(cuda, dm, n), em, 1e-5), null, `adam m (decoupled=${decoupled})`);
      t.is(close(download(cuda, dv, n), ev, 1e-5), null, `adam v (decoupled=${decoupled})`);
      t.is(close(download(cuda, dp, n), ep, 1e-5), null, `adam param (decoupled=${decoupled})`);
      dm.free();
      dv.free();
    }
    for (const d of [dp, dg, db]) d.free();
  });

  test(`${label}: fp16 and bf16 conversions round to nearest even and keep NaN and infinities`, (t) => {
    const cuda = load();
    const x = new Float32Array([0, -0, 1, -2.5, 65504, 65519, 65520, 1e6, 5.960464477539063e-8, 2.9802322387695312e-8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, NaN, Infinity, -Infinity]);
    const n = x.length;
    const dx = upload(cuda, x), dh = cuda.alloc(n * 2), dback = cuda.alloc(n * 4);
    cuda.f32ToF16(dx, dh, n);
    const h = new Uint16Array(n);
    cuda.download(dh, h);
    t.deepEqual(Array.from(h), [0x0000, 0x8000, 0x3c00, 0xc100, 0x7bff, 0x7bff, 0x7c00, 0x7c00, 0x0001, 0x0000, 0x3c00, 0x3c02, 0x7e00, 0x7c00, 0xfc00]);
    cuda.f16ToF32(dh, dback, n);
    const back = download(cuda, dback, n);
    t.deepEqual(Array.from(back.slice(0, 5)), [0, -0, 1, -2.5, 65504]);
    t.true(Number.isNaN(back[12]));
    cuda.f32ToBf16(dx, dh, n);
    cuda.download(dh, h);
    t.deepEqual(Array.from(h.slice(0, 4)), [0x0000, 0x8000, 0x3f80, 0xc020]);
    t.is(h[4], 0x4780); // 65504 rounds up to 65536 in bf16
    t.true((h[12]! & 0x7f80) === 0x7f80 && (h[12]! & 0x7f) !== 0, 'NaN stays NaN');
    cuda.bf16ToF32(dh, dback, n);
    t.deepEqual(Array.from(download(cuda, dback, 4)), [0, -0, 1, -2.5]);
    for (const d of [dx, dh, dback]) d.free();
  });

  test(`${label}: bad arguments are TypeErrors or RangeErrors that name the argument`, (t) => {
    const cuda = load();
    const small = cuda.alloc(16), big = cuda.alloc(64);
    t.throws(() => cuda.reluForward(small, big, 5), { instanceOf: RangeError, message: /reluForward: x holds 16 bytes but 20 are needed/ });
    t.throws(() => cuda.reluForward(new Float32Array(4) as unknown as CudaDeviceBuffer, big, 4), { instanceOf: TypeError, message: /x must be a DeviceBuffer/ });
    t.throws(() => cuda.scale(-1, 1, big), { instanceOf: RangeError, message: /n must be a non-negative integer/ });
    t.throws(() => cuda.scale(1.5, 1, big), { instanceOf: RangeError });
    t.throws(() => cuda.gemm(false, false, 2, 2, 2, 1, big, 1, big, 2, 0, big, 2), { instanceOf: RangeError, message: /lda = 1/ });
    t.throws(() => cuda.dropoutForward(big, big, big, 4, 1, 0, 0), { instanceOf: RangeError, message: /p must be in \[0, 1\)/ });
    t.throws(() => cuda.adamUpdate(big, big, big, big, 4, 1e-3, 0.9, 0.999, 1e-8, 0, false, 0), { instanceOf: RangeError, message: /step is 1-based/ });
    t.throws(() => cuda.sgdUpdate(big, big, null, 4, 0.1, 0.9, 0, 0, false, true), { instanceOf: TypeError, message: /momentumBuf is required/ });
    t.throws(() => cuda.upload(small, new Float32Array(5)), { instanceOf: RangeError });
    t.throws(() => cuda.alloc(-1), { instanceOf: RangeError });
    small.free();
    t.throws(() => cuda.sum(1, small), { message: /freed DeviceBuffer/ });
    big.free();
  });

  cnnSuite(label, load);
}

// ---- convolution, pooling and batch normalisation: the device against the CPU addon ------------

const CONV_SHAPES: { name: string; g: Conv2dGeometry }[] = [
  { name: 'odd sizes, padding on one axis', g: [2, 3, 7, 6, 4, 3, 2, 1, 1, 1, 0, 1, 1, 1] },
  { name: 'groups 2, dilation 2x1, stride 2', g: [2, 4, 9, 8, 6, 3, 3, 2, 2, 1, 1, 2, 1, 2] },
  { name: 'depthwise (groups = c), stride 2x1', g: [1, 4, 6, 5, 4, 3, 3, 2, 1, 1, 1, 1, 1, 4] },
  { name: '1x1, stride 1, no padding (no workspace), groups 2', g: [3, 4, 5, 3, 6, 1, 1, 1, 1, 0, 0, 1, 1, 2] },
  { name: '1x1, stride 2', g: [2, 3, 5, 5, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1] },
  { name: "the cnn's first conv", g: [2, 1, 28, 28, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1] },
  { name: "the cnn's second conv", g: [2, 16, 14, 14, 32, 5, 5, 1, 1, 2, 2, 1, 1, 1] },
];

const POOL_SHAPES: { name: string; g: Pool2dGeometry }[] = [
  { name: 'window 3x2, stride 2x3, padding 1x1', g: [3, 7, 9, 3, 2, 2, 3, 1, 1] },
  { name: 'overlapping 3x3 windows, stride 1, padding 1', g: [2, 5, 6, 3, 3, 1, 1, 1, 1] },
  { name: 'odd input, 2x2, padding 1x0', g: [2, 7, 5, 2, 2, 2, 2, 1, 0] },
  { name: "the cnn's 2x2 pooling", g: [2 * 16, 28, 28, 2, 2, 2, 2, 0, 0] },
];

function convSizes(g: Conv2dGeometry): { x: number; w: number; y: number; direct: boolean; columns: number } {
  const [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups] = g as number[] as [number, number, number, number, number, number, number, number, number, number, number, number, number, number];
  const oh = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1, ow = Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  const direct = kh === 1 && kw === 1 && sh === 1 && sw === 1 && ph === 0 && pw === 0;
  return { x: n * c * h * w, w: oc * (c / groups) * kh * kw, y: n * oc * oh * ow, direct, columns: c * kh * kw * oh * ow };
}

function poolSizes(g: Pool2dGeometry): { x: number; y: number } {
  const [planes, h, w, kh, kw, sh, sw, ph, pw] = g as number[] as [number, number, number, number, number, number, number, number, number];
  return { x: planes * h * w, y: planes * (Math.floor((h + 2 * ph - kh) / sh) + 1) * (Math.floor((w + 2 * pw - kw) / sw) + 1) };
}

/** NaN-aware values for deepEqual. */
const plain = (a: ArrayLike<number>): (number | string)[] => Array.from(a, (v) => (Number.isNaN(v) ? 'NaN' : v));

function cnnSuite(label: string, load: () => CudaAddon): void {
  // The CPU addon is the reference: the device must agree with it on the same inputs.
  const reference = (): NativeKernels => cpuKernels();
  const upload = (cuda: CudaAddon, host: Float32Array | Int32Array): CudaDeviceBuffer => {
    const buf = cuda.alloc(Math.max(host.byteLength, 4));
    cuda.upload(buf, host);
    return buf;
  };
  const download = (cuda: CudaAddon, buf: CudaDeviceBuffer, n: number): Float32Array => {
    const out = new Float32Array(n);
    cuda.download(buf, out);
    return out;
  };

  test(`${label}: conv2d forward and both backward passes match the CPU kernels (groups, dilation, stride, padding, the cnn's shapes)`, (t) => {
    const cuda = load(), cpu = reference();
    for (const [i, { name, g }] of CONV_SHAPES.entries()) {
      const size = convSizes(g), oc = g[4]!;
      t.is(cuda.conv2dWorkspace(g), size.direct ? 0 : size.columns, `${name}: workspace`);
      const x = randoms(size.x, 100 + i), w = randoms(size.w, 200 + i, 0.5), bias = randoms(oc, 300 + i);
      const dy = randoms(size.y, 400 + i), dx0 = randoms(size.x, 500 + i), dw0 = randoms(size.w, 600 + i), db0 = randoms(oc, 700 + i);
      const cpuCol = new Float32Array(cpu.conv2dWorkspace(g));
      const dX = upload(cuda, x), dW = upload(cuda, w), dB = upload(cuda, bias), dDy = upload(cuda, dy);
      const dCol = cuda.alloc(Math.max(4, cuda.conv2dWorkspace(g) * 4));
      const dOut = upload(cuda, new Float32Array(size.y).fill(NaN)), dGx = cuda.alloc(size.x * 4), dGw = cuda.alloc(size.w * 4), dGb = cuda.alloc(oc * 4);

      for (const withBias of [true, false]) {
        const want = new Float32Array(size.y).fill(NaN);
        cpu.conv2dForward(g, x, w, withBias ? bias : null, want, cpuCol);
        cuda.conv2dForward(g, dX, dW, withBias ? dB : null, dOut, dCol);
        t.is(close(download(cuda, dOut, size.y), want, 1e-4), null, `${name}: forward, bias ${withBias}`);
      }
      for (const accumulate of [false, true]) {
        const want = dx0.slice();
        cpu.conv2dBackwardInput(g, dy, w, want, cpuCol, accumulate);
        cuda.upload(dGx, dx0);
        cuda.conv2dBackwardInput(g, dDy, dW, dGx, dCol, accumulate);
        t.is(close(download(cuda, dGx, size.x), want, 1e-4), null, `${name}: backward input, accumulate ${accumulate}`);
      }
      for (const [accW, accB, withBias] of [[false, false, true], [true, true, true], [true, false, false]] as const) {
        const wantW = dw0.slice(), wantB = db0.slice();
        cpu.conv2dBackwardWeight(g, x, dy, wantW, withBias ? wantB : null, cpuCol, accW, accB);
        cuda.upload(dGw, dw0);
        cuda.upload(dGb, db0);
        cuda.conv2dBackwardWeight(g, dX, dDy, dGw, withBias ? dGb : null, dCol, accW, accB);
        const what = `${name}: backward weight, accumulate ${accW}/${accB}, dbias ${withBias}`;
        t.is(close(download(cuda, dGw, size.w), wantW, 1e-4), null, `${what}: dweight`);
        t.is(close(download(cuda, dGb, oc), wantB, 1e-4), null, `${what}: dbias`);
      }
      for (const d of [dX, dW, dB, dDy, dCol, dOut, dGx, dGw, dGb]) d.free();
    }
  });

  test(`${label}: max pooling picks the CPU's values and indices (first maximum on ties, NaN wins) and routes gradients back`, (t) => {
    const cuda = load(), cpu = reference();
    for (const [i, { name, g }] of POOL_SHAPES.entries()) {
      const size = poolSizes(g);
      // Quarter steps make many ties; NaNs (two in a row) and -Infinity are sprinkled in.
      const x = Float32Array.from(randoms(size.x, 800 + i, 2), (v) => Math.round(v * 4) / 4);
      for (const at of [3, 17, 18, 40]) x[at % size.x] = NaN;
      x[7 % size.x] = -Infinity;
      const y = new Float32Array(size.y), indices = new Int32Array(size.y);
      cpu.maxPool2dForward(g, x, y, indices);
      const dX = upload(cuda, x), dY = cuda.alloc(size.y * 4), dI = cuda.alloc(size.y * 4);
      cuda.maxPool2dForward(g, dX, dY, dI);
      const gotIndices = new Int32Array(size.y);
      cuda.download(dI, gotIndices);
      t.deepEqual(Array.from(gotIndices), Array.from(indices), `${name}: indices`);
      t.deepEqual(plain(download(cuda, dY, size.y)), plain(y), `${name}: values`);

      const dy = randoms(size.y, 900 + i), dx0 = randoms(size.x, 950 + i);
      const dDy = upload(cuda, dy), dDx = cuda.alloc(size.x * 4);
      for (const accumulate of [false, true]) {
        const want = dx0.slice();
        cpu.maxPool2dBackward(g, dy, indices, want, accumulate);
        cuda.upload(dDx, dx0);
        cuda.maxPool2dBackward(g, dDy, dI, dDx, accumulate);
        t.is(close(download(cuda, dDx, size.x), want, 1e-5), null, `${name}: backward, accumulate ${accumulate}`);
      }
      // The device gathers: an index naming no position of its window adds nothing anywhere.
      const bad = indices.slice(), dyMasked = dy.slice();
      bad[0] = -1;
      bad[size.y - 1] = g[1]! * g[2]!;
      dyMasked[0] = 0;
      dyMasked[size.y - 1] = 0;
      const want = new Float32Array(size.x);
      cpu.maxPool2dBackward(g, dyMasked, indices, want, false);
      cuda.upload(dI, bad);
      cuda.maxPool2dBackward(g, dDy, dI, dDx, false);
      t.is(close(download(cuda, dDx, size.x), want, 1e-5), null, `${name}: out-of-window indices are ignored`);
      for (const d of [dX, dY, dI, dDy, dDx]) d.free();
    }
  });

  test(`${label}: average pooling matches the CPU with and without count_include_pad, forward and backward`, (t) => {
    const cuda = load(), cpu = reference();
    for (const [i, { name, g }] of POOL_SHAPES.entries()) {
      const size = poolSizes(g);
      const x = randoms(size.x, 1000 + i), dy = randoms(size.y, 1100 + i), dx0 = randoms(size.x, 1200 + i);
      const dX = upload(cuda, x), dY = cuda.alloc(size.y * 4), dDy = upload(cuda, dy), dDx = cuda.alloc(size.x * 4);
      for (const includePad of [true, false]) {
        const y = new Float32Array(size.y);
        cpu.avgPool2dForward(g, x, y, includePad);
        cuda.avgPool2dForward(g, dX, dY, includePad);
        t.is(close(download(cuda, dY, size.y), y, 1e-5), null, `${name}: forward, count_include_pad ${includePad}`);
        for (const accumulate of [false, true]) {
          const want = dx0.slice();
          cpu.avgPool2dBackward(g, dy, want, includePad, accumulate);
          cuda.upload(dDx, dx0);
          cuda.avgPool2dBackward(g, dDy, dDx, includePad, accumulate);
          t.is(close(download(cuda, dDx, size.x), want, 1e-5), null, `${name}: backward, count_include_pad ${includePad}, accumulate ${accumulate}`);
        }
      }
      for (const d of [dX, dY, dDy, dDx]) d.free();
    }
  });

  test(`${label}: batch norm matches the CPU in training and evaluation, running statistics, null gamma/beta and in place`, (t) => {
    const cuda = load(), cpu = reference();
    const shapes: [number, number, number][] = [[2, 3, 5], [4, 16, 49], [1, 2, 1], [3, 5, 1], [2, 4, 300]];
    for (const [i, [n, c, hw]] of shapes.entries()) {
      const total = n * c * hw;
      // Channel means far from 0: a one-pass sum of squares would lose the variance.
      const x = Float32Array.from(randoms(total, 1300 + i, 2), (v, j) => v + 100 * (Math.floor(j / hw) % c));
      const gamma = randoms(c, 1400 + i), beta = randoms(c, 1500 + i), rm0 = randoms(c, 1600 + i);
      const rv0 = Float32Array.from(randoms(c, 1700 + i), (v) => 0.5 + Math.abs(v));
      const dX = upload(cuda, x), dG = upload(cuda, gamma), dBeta = upload(cuda, beta), dRm = upload(cuda, rm0), dRv = upload(cuda, rv0);
      const dY = cuda.alloc(total * 4), dMean = cuda.alloc(c * 4), dInv = cuda.alloc(c * 4);
      const cases = [
        { what: 'training, running stats, gamma/beta', training: true, affine: true, running: true, inPlace: false },
        { what: 'training, no running stats, no gamma/beta', training: true, affine: false, running: false, inPlace: false },
        { what: 'training in place', training: true, affine: true, running: true, inPlace: true },
        { what: 'evaluation', training: false, affine: true, running: true, inPlace: false },
        { what: 'evaluation, no gamma/beta, in place', training: false, affine: false, running: true, inPlace: true },
      ];
      for (const k of cases) {
        const what = `[${n}, ${c}, ${hw}] ${k.what}`;
        const y = k.inPlace ? x.slice() : new Float32Array(total), mean = new Float32Array(c), inv = new Float32Array(c);
        const rm = rm0.slice(), rv = rv0.slice();
        cpu.batchNormForward(k.inPlace ? y : x, y, k.affine ? gamma : null, k.affine ? beta : null, mean, inv,
          k.running ? rm : null, k.running ? rv : null, n, c, hw, k.training, 0.1, 1e-5);
        cuda.upload(dX, x);
        cuda.upload(dRm, rm0);
        cuda.upload(dRv, rv0);
        const out = k.inPlace ? dX : dY;
        cuda.batchNormForward(dX, out, k.affine ? dG : null, k.affine ? dBeta : null, dMean, dInv,
          k.running ? dRm : null, k.running ? dRv : null, n, c, hw, k.training, 0.1, 1e-5);
        t.is(close(download(cuda, out, total), y, 1e-4), null, `${what}: y`);
        t.is(close(download(cuda, dMean, c), mean, 1e-5), null, `${what}: saveMean`);
        t.is(close(download(cuda, dInv, c), inv, 1e-4), null, `${what}: saveInvstd`);
        t.is(close(download(cuda, dRm, c), rm, 1e-5), null, `${what}: runningMean`);
        t.is(close(download(cuda, dRv, c), rv, 1e-4), null, `${what}: runningVar`);
      }

      // The backward pass, from the training forward's statistics.
      const mean = new Float32Array(c), inv = new Float32Array(c);
      cpu.batchNormForward(x, new Float32Array(total), gamma, beta, mean, inv, null, null, n, c, hw, true, 0.1, 1e-5);
      const dy = randoms(total, 1800 + i), dx0 = randoms(total, 1900 + i), dg0 = randoms(c, 2000 + i), db0 = randoms(c, 2100 + i);
      cuda.upload(dX, x);
      cuda.upload(dMean, mean);
      cuda.upload(dInv, inv);
      const dDy = upload(cuda, dy), dDx = cuda.alloc(total * 4), dDg = cuda.alloc(c * 4), dDb = cuda.alloc(c * 4);
      const grads = [
        { what: 'training', training: true, gamma: true, dx: true, dgamma: true, acc: false, inPlace: false },
        { what: 'training, accumulate', training: true, gamma: true, dx: true, dgamma: true, acc: true, inPlace: false },
        { what: 'training, no gamma, dx over dy', training: true, gamma: false, dx: true, dgamma: true, acc: false, inPlace: true },
        { what: 'training, dgamma and dbeta only', training: true, gamma: true, dx: false, dgamma: true, acc: true, inPlace: false },
        { what: 'evaluation, no dgamma', training: false, gamma: true, dx: true, dgamma: false, acc: false, inPlace: false },
        { what: 'evaluation, accumulate, dx over dy', training: false, gamma: true, dx: true, dgamma: true, acc: true, inPlace: true },
      ];
      for (const k of grads) {
        const what = `[${n}, ${c}, ${hw}] backward ${k.what}`;
        const dyHost = dy.slice(), dx = k.inPlace ? dyHost : dx0.slice(), dg = dg0.slice(), db = db0.slice();
        cpu.batchNormBackward(x, dyHost, k.gamma ? gamma : null, mean, inv, k.dx ? dx : null, k.dgamma ? dg : null, db,
          n, c, hw, k.training, k.acc, k.acc, k.acc);
        cuda.upload(dDy, dy);
        cuda.upload(dDx, dx0);
        cuda.upload(dDg, dg0);
        cuda.upload(dDb, db0);
        const outDx = k.inPlace ? dDy : dDx;
        cuda.batchNormBackward(dX, dDy, k.gamma ? dG : null, dMean, dInv, k.dx ? outDx : null, k.dgamma ? dDg : null, dDb,
          n, c, hw, k.training, k.acc, k.acc, k.acc);
        t.is(close(download(cuda, outDx, total), k.dx ? dx : dx0, 1e-4), null, `${what}: dx`);
        t.is(close(download(cuda, dDg, c), dg, 1e-4), null, `${what}: dgamma`);
        t.is(close(download(cuda, dDb, c), db, 1e-4), null, `${what}: dbeta`);
      }
      for (const d of [dX, dG, dBeta, dRm, dRv, dY, dMean, dInv, dDy, dDx, dDg, dDb]) d.free();
    }
  });

  test(`${label}: the cuda backend runs conv, max pooling (int32 indices from allocInt) and batch norm on DeviceArrays`, (t) => {
    const backend = cudaDeviceBackend(load()), cpu = reference();
    const g: Conv2dGeometry = [2, 3, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1];
    const x = randoms(2 * 3 * 36, 2200), w = randoms(4 * 27, 2201), bias = randoms(4, 2202);
    const y = new Float32Array(2 * 4 * 36);
    cpu.conv2dForward(g, x, w, bias, y, new Float32Array(cpu.conv2dWorkspace(g)));
    const out = backend.take(y.length), col = backend.take(Math.max(1, backend.kernels.conv2dWorkspace(g)));
    backend.kernels.conv2dForward(g, backend.fromHost(x), backend.fromHost(w), backend.fromHost(bias), out, col);
    t.is(close(backend.toHost(out), y, 1e-4), null, 'conv2dForward');

    const pg: Pool2dGeometry = [8, 6, 6, 2, 2, 2, 2, 0, 0];
    const indices = backend.allocInt(8 * 9);
    t.true(indices instanceof DeviceArray && indices.dtype === 'int32' && indices.length === 72);
    // Pooled from the device's own conv output: maxima are exact, so values and indices must be equal.
    const convolved = backend.toHost(out);
    const pooled = backend.take(72), wantY = new Float32Array(72), wantI = new Int32Array(72);
    cpu.maxPool2dForward(pg, convolved, wantY, wantI);
    backend.kernels.maxPool2dForward(pg, out, pooled, indices);
    t.deepEqual(Array.from(backend.toHostInt(indices)), Array.from(wantI));
    t.deepEqual(Array.from(backend.toHost(pooled)), Array.from(wantY));

    const mean = new Float32Array(4), inv = new Float32Array(4), normed = new Float32Array(y.length);
    cpu.batchNormForward(convolved, normed, null, null, mean, inv, null, null, 2, 4, 36, true, 0.1, 1e-5);
    const dMean = backend.take(4), dInv = backend.take(4);
    backend.kernels.batchNormForward(out, out, null, null, dMean, dInv, null, null, 2, 4, 36, true, 0.1, 1e-5);
    t.is(close(backend.toHost(out), normed, 1e-4), null, 'batchNormForward in place');
    t.throws(() => backend.kernels.conv2dForward(g, x as never, backend.fromHost(w), null, out, col), { instanceOf: TypeError, message: /x is not device storage/ });
  });

  test(`${label}: bad conv, pooling and batch-norm arguments are errors naming the function and the argument, and write nothing`, (t) => {
    const cuda = load();
    const g: Conv2dGeometry = [1, 4, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1];
    const buf = (n: number, v = 7): CudaDeviceBuffer => upload(cuda, new Float32Array(n).fill(v));
    const x = buf(100), w = buf(72), y = buf(50), col = buf(36 * 25), small = buf(49), tiny = buf(1);
    t.throws(() => cuda.conv2dForward(g.slice(0, 13), x, w, null, y, col), { instanceOf: RangeError, message: /conv2dForward: geometry has 13 elements, needs 14 \[n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups\]/ });
    t.throws(() => cuda.conv2dForward([1, 4, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 3], x, w, null, y, col), { instanceOf: RangeError, message: /conv2dForward: groups=3 must divide c=4 and oc=2/ });
    t.throws(() => cuda.conv2dForward([1, 4, 5, 5, 2, 3, 3, 0, 1, 1, 1, 1, 1, 1], x, w, null, y, col), { instanceOf: RangeError, message: /conv2dForward: geometry\[7\] \(sh\) must be an integer in \[1, 2\^31\), got 0/ });
    t.throws(() => cuda.conv2dForward([1, 4, 5, 5, 2, 3, 3, 1, 1, -1, 1, 1, 1, 1], x, w, null, y, col), { instanceOf: RangeError, message: /geometry\[9\] \(ph\) must be an integer in \[0, 2\^31\), got -1/ });
    t.throws(() => cuda.conv2dForward([1, 4, 2, 2, 2, 5, 5, 1, 1, 0, 0, 1, 1, 1], x, w, null, y, col), { instanceOf: RangeError, message: /conv2dForward: the output is empty: input 2x2 padded by 0x0 is smaller than the dilated kernel 5x5/ });
    t.throws(() => cuda.conv2dWorkspace([1, 4, 5, 5, 2, 3, 3, 1, 1, 1, 1, 0, 1, 1]), { instanceOf: RangeError, message: /conv2dWorkspace: geometry\[11\] \(dh\)/ });
    t.throws(() => cuda.conv2dForward(g, x, w, null, small, col), { instanceOf: RangeError, message: /conv2dForward: y holds 196 bytes but 200 are needed/ });
    t.throws(() => cuda.conv2dForward(g, x, w, tiny, y, col), { instanceOf: RangeError, message: /conv2dForward: bias holds 4 bytes but 8 are needed/ });
    t.throws(() => cuda.conv2dForward(g, x, w, null, y, small), { instanceOf: RangeError, message: /col holds 196 bytes but 3600 are needed/ });
    t.throws(() => cuda.conv2dForward(g, x, w, null, x, col), { instanceOf: RangeError, message: /conv2dForward: y overlaps x; they must be distinct memory/ });
    t.throws(() => cuda.conv2dBackwardInput(g, y, w, col, col, false), { instanceOf: RangeError, message: /col overlaps dx/ });
    t.throws(() => cuda.conv2dBackwardWeight(g, x, y, w, w, col, false, false), { instanceOf: RangeError, message: /dweight overlaps dbias/ });
    t.throws(() => cuda.conv2dBackwardInput(g, y, w, x, col, 1 as never), { instanceOf: TypeError, message: /accumulate must be a boolean/ });
    t.deepEqual(Array.from(download(cuda, y, 50)), new Array(50).fill(7), 'y untouched');
    t.deepEqual(Array.from(download(cuda, x, 100)), new Array(100).fill(7), 'x untouched');

    const pg: Pool2dGeometry = [2, 5, 5, 3, 3, 2, 2, 1, 1];
    t.throws(() => cuda.maxPool2dForward([2, 5, 5, 3, 3, 2, 2, 2, 1], x, y, col), { instanceOf: RangeError, message: /maxPool2dForward: padding 2x1 must be at most half the window 3x3/ });
    t.throws(() => cuda.avgPool2dForward([2, 2, 2, 3, 3, 1, 1, 0, 0], x, y, true), { instanceOf: RangeError, message: /avgPool2dForward: the output is empty/ });
    t.throws(() => cuda.maxPool2dForward(pg, x, y, y), { instanceOf: RangeError, message: /y overlaps indices/ });
    t.throws(() => cuda.maxPool2dBackward(pg, y, col, small, false), { instanceOf: RangeError, message: /maxPool2dBackward: dx holds 196 bytes but 200 are needed/ });
    t.throws(() => cuda.avgPool2dBackward(pg, y, x, 'yes' as never, false), { instanceOf: TypeError, message: /countIncludePad must be a boolean/ });

    t.throws(() => cuda.batchNormForward(x, y, null, null, w, col, null, null, 2, 5, 5, false, 0.1, 1e-5), { instanceOf: TypeError, message: /batchNormForward: runningMean must be a DeviceBuffer in eval mode/ });
    t.throws(() => cuda.batchNormForward(x, y, null, null, w, col, w, null, 2, 5, 5, true, 0.1, 1e-5), { instanceOf: TypeError, message: /runningVar must be a DeviceBuffer when the other running statistic is given/ });
    t.throws(() => cuda.batchNormForward(x, y, null, null, w, w, null, null, 2, 5, 5, true, 0.1, 1e-5), { instanceOf: RangeError, message: /saveMean overlaps saveInvstd/ });
    t.throws(() => cuda.batchNormForward(x, x, null, null, w, col, null, null, 0, 5, 5, true, 0.1, 1e-5), { instanceOf: RangeError, message: /batchNormForward: n, c and hw must be >= 1, got n=0 c=5 hw=5/ });
    t.throws(() => cuda.batchNormForward(x, small, null, null, w, col, null, null, 2, 5, 5, true, 0.1, 1e-5), { instanceOf: RangeError, message: /batchNormForward: y holds 196 bytes but 200 are needed/ });
    t.throws(() => cuda.batchNormForward(x, y, null, null, w, col, null, null, 2, 5, 5, true, NaN, 1e-5), { instanceOf: RangeError, message: /momentum must be finite/ });
    t.throws(() => cuda.batchNormBackward(x, y, null, w, col, x, null, null, 2, 5, 5, true, false, false, false), { instanceOf: RangeError, message: /batchNormBackward: dx overlaps x/ });
    t.deepEqual(Array.from(download(cuda, y, 50)), new Array(50).fill(7), 'y untouched');
    t.deepEqual(Array.from(download(cuda, w, 72)), new Array(72).fill(7), 'saveMean untouched');
    for (const d of [x, w, y, col, small, tiny]) d.free();
  });
}
