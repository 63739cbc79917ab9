// Checks of the CUDA addon's device-buffer API (native/cuda/binding_cuda.cc), reusable for any
// build of it: the SIMT emulation (test/native/cuda-emu.test.ts) and a real GPU
// (test/native/cuda-build.test.ts, where a device is present). References are computed here
// in double precision from the contract's definitions (native/include/psrpc/kernels.h).
import test from 'ava';
import type { CudaAddon, CudaDeviceBuffer } from '../../src/tensor/cuda.js';

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
}
