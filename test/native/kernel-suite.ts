// The conformance suite of the kernel contract, shared by every backend.
//
// kernelSuite(label, load) registers ava tests that check each NativeKernels function of one backend
// against the TypeScript references in reference.ts: random data on odd shapes, in-place aliasing
// where the contract allows it, views with a byteOffset over SharedArrayBuffers, and the error cases
// (each bad argument throws the right error type and leaves the outputs untouched). It only talks to
// the interface, so the CPU addon and the CUDA emulation build run the very same checks.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import type { NativeKernels } from '../../src/tensor/native.js';
import * as ref from './reference.js';

const EPS32 = 2 ** -23;

/** Small deterministic generator (mulberry32), so a failure can be replayed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomArray(n: number, random: () => number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * random();
  return out;
}

/** A Float32Array view at a byteOffset inside a larger SharedArrayBuffer, guards on both sides. */
function sharedView(n: number, guard = 5): Float32Array {
  const buffer = new SharedArrayBuffer((n + 2 * guard) * 4);
  new Float32Array(buffer).fill(1234.5);
  return new Float32Array(buffer, guard * 4, n);
}

function guardsIntact(view: Float32Array, guard = 5): boolean {
  const all = new Float32Array(view.buffer);
  for (let i = 0; i < guard; i++) {
    if (all[i] !== 1234.5 || all[all.length - 1 - i] !== 1234.5) return false;
  }
  return true;
}

/**
 * Asserts |actual - expected| <= tol * scale elementwise and reports the first failure with its
 * index; scale defaults to max(1, |expected|) (relative error, absolute near zero).
 */
function close(t: ExecutionContext, actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number,
  what: string, scale?: ArrayLike<number>): void {
  t.is(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    const s = scale ? scale[i] : Math.max(1, Math.abs(e));
    if (!(Math.abs(a - e) <= tol * s) && a !== e) {
      t.fail(`${what}: element ${i} is ${a}, expected ${e} (tolerance ${tol * s})`);
      return;
    }
  }
  t.pass();
}

function expectThrows(t: ExecutionContext, fn: () => unknown, type: typeof TypeError | typeof RangeError,
  what: string): void {
  const error = t.throws(fn, { instanceOf: type }, what);
  if (error) t.true(error.message.length > 10, `${what}: message "${error.message}"`);
}

/** Registers the conformance tests of one backend. */
export function kernelSuite(label: string, load: () => NativeKernels): void {
  const name = (s: string): string => `${label}: ${s}`;

  test(name('simd() names the vector path'), (t) => {
    t.true(['avx512', 'avx2', 'scalar', 'cuda'].includes(load().simd()) || load().simd().length > 0);
  });

  // ---- gemm ----------------------------------------------------------------------------------

  const gemmShapes: Array<[number, number, number]> = [
    [1, 1, 1], [1, 784, 1], [3, 17, 63], [65, 127, 3], [17, 63, 65], [64, 64, 784], [64, 10, 64],
    [10, 64, 64], [64, 784, 64], [64, 64, 10], [127, 65, 17], [784, 3, 17], [5, 1, 127], [33, 47, 129],
  ];

  function checkGemm(t: ExecutionContext, k: NativeKernels, transA: boolean, transB: boolean, m: number, n: number,
    kk: number, alpha: number, beta: number, pad: number, seed: number): void {
    const random = rng(seed);
    const lda = (transA ? m : kk) + pad, ldb = (transB ? kk : n) + pad, ldc = n + pad;
    const a = randomArray((transA ? kk : m) * lda, random);
    const b = randomArray((transB ? n : kk) * ldb, random);
    const c = randomArray(m * ldc, random);
    if (beta === 0) c.fill(NaN);  // beta == 0 must not read C
    const c0 = Float32Array.from(c);
    const expected = ref.gemm(transA, transB, m, n, kk, alpha, a, lda, b, ldb, beta, c0, ldc);
    const magnitude = ref.gemmMagnitude(transA, transB, m, n, kk, alpha, a, lda, b, ldb, beta, c0, ldc);
    k.gemm(transA, transB, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc);
    const actual = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) actual[i * n + j] = c[i * ldc + j];
    const tol = 8 * EPS32 * (Math.sqrt(kk) + 2);
    const scale = Float64Array.from(magnitude, (v) => Math.max(v, 1e-30));
    close(t, actual, expected, tol, `gemm ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} m=${m} n=${n} k=${kk} ` +
      `alpha=${alpha} beta=${beta} pad=${pad}`, scale);
    // The padding between rows of C is not part of C and must stay as it was.
    for (let i = 0; i < m; i++) {
      for (let j = n; j < ldc; j++) {
        if (!Object.is(c[i * ldc + j], c0[i * ldc + j])) {
          t.fail(`gemm wrote C's padding at row ${i} column ${j}`);
          return;
        }
      }
    }
  }

  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    const tag = `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`;
    test(name(`gemm ${tag} matches a double reference on odd shapes`), (t) => {
      const k = load();
      let seed = 1;
      for (const [m, n, kk] of gemmShapes) checkGemm(t, k, transA, transB, m, n, kk, 1, 0, 0, seed++);
    });
    test(name(`gemm ${tag} with alpha, beta and leading dimensions wider than the rows`), (t) => {
      const k = load();
      let seed = 100;
      const cases: Array<[number, number]> = [[0.5, 1], [-2, 0.25], [1, -1], [1.5, 0], [0.75, 1]];
      for (const [m, n, kk] of [[3, 17, 63], [65, 33, 17], [64, 10, 64], [17, 129, 31]] as const) {
        for (const [alpha, beta] of cases) checkGemm(t, k, transA, transB, m, n, kk, alpha, beta, 3, seed++);
      }
    });
  }

  test(name('gemm on larger blocked shapes'), (t) => {
    const k = load();
    checkGemm(t, k, false, false, 200, 300, 400, 1, 0, 0, 7);
    checkGemm(t, k, true, true, 131, 257, 520, 0.5, 1, 2, 8);
    checkGemm(t, k, false, true, 97, 161, 1100, 1, 0.5, 1, 9);
    checkGemm(t, k, true, false, 150, 70, 700, -1, 0, 5, 10);
  });

  test(name('gemm with k = 0 scales C by beta, and beta = 0 writes zeros over NaN'), (t) => {
    const k = load();
    const c = new Float32Array([1, 2, 3, 4]);
    k.gemm(false, false, 2, 2, 0, 1, new Float32Array(0), 1, new Float32Array(0), 2, 0.5, c, 2);
    t.deepEqual(Array.from(c), [0.5, 1, 1.5, 2]);
    c.fill(NaN);
    k.gemm(false, false, 2, 2, 0, 1, new Float32Array(0), 1, new Float32Array(0), 2, 0, c, 2);
    t.deepEqual(Array.from(c), [0, 0, 0, 0]);
  });

  test(name('gemm works on views with a byteOffset over SharedArrayBuffers'), (t) => {
    const k = load();
    const random = rng(42);
    const m = 9, n = 13, kk = 21;
    const a = sharedView(m * kk), b = sharedView(kk * n), c = sharedView(m * n);
    a.set(randomArray(m * kk, random));
    b.set(randomArray(kk * n, random));
    k.gemm(false, false, m, n, kk, 1, a, kk, b, n, 0, c, n);
    const expected = ref.gemm(false, false, m, n, kk, 1, a, kk, b, n, 0, c, n);
    close(t, c, expected, 1e-5, 'gemm on shared views');
    t.true(guardsIntact(c), 'gemm wrote outside its view of C');
  });

  test(name('gemm rejects bad arguments and leaves C untouched'), (t) => {
    const k = load();
    const a = new Float32Array(12), b = new Float32Array(12), c = new Float32Array(9).fill(7);
    const call = (over: Partial<Record<string, unknown>>) => () => {
      const args = { transA: false, transB: false, m: 3, n: 3, k: 4, alpha: 1, a, lda: 4, b, ldb: 3, beta: 0, c, ldc: 3,
        ...over };
      (k.gemm as (...x: unknown[]) => void)(args.transA, args.transB, args.m, args.n, args.k, args.alpha, args.a,
        args.lda, args.b, args.ldb, args.beta, args.c, args.ldc);
    };
    expectThrows(t, call({ a: new Float64Array(12) }), TypeError, 'a as Float64Array');
    expectThrows(t, call({ b: [1, 2, 3] }), TypeError, 'b as Array');
    expectThrows(t, call({ c: null }), TypeError, 'c null');
    expectThrows(t, call({ transA: 1 }), TypeError, 'transA as number');
    expectThrows(t, call({ m: '3' }), TypeError, 'm as string');
    expectThrows(t, call({ m: -1 }), RangeError, 'negative m');
    expectThrows(t, call({ n: 2.5 }), RangeError, 'fractional n');
    expectThrows(t, call({ lda: 3 }), RangeError, 'lda too small');
    expectThrows(t, call({ ldb: 2 }), RangeError, 'ldb too small');
    expectThrows(t, call({ ldc: 2 }), RangeError, 'ldc too small');
    expectThrows(t, call({ k: 5 }), RangeError, 'a too short for k');
    expectThrows(t, call({ m: 4 }), RangeError, 'c too short for m');
    expectThrows(t, call({ a: new Float32Array(11) }), RangeError, 'a too short');
    expectThrows(t, call({ transA: true }), RangeError, 'a too short for transA (stored k x m)');
    t.deepEqual(Array.from(c), new Array(9).fill(7), 'C untouched');
    const error = t.throws(call({ m: 1, n: 1, k: 784, lda: 784, a: new Float32Array(100), b: new Float32Array(784) }));
    t.regex(error?.message ?? '', /a has 100 elements, needs at least 784/);
  });

  // ---- bias ----------------------------------------------------------------------------------

  test(name('biasAdd and biasGrad match the reference'), (t) => {
    const k = load();
    const random = rng(3);
    for (const [rows, cols] of [[1, 1], [3, 17], [64, 64], [65, 10], [7, 784], [0, 5]] as const) {
      const y = randomArray(rows * cols, random), bias = randomArray(cols, random);
      const expected = ref.biasAdd(y, bias, rows, cols);
      k.biasAdd(y, bias, rows, cols);
      close(t, y, expected, EPS32, `biasAdd ${rows}x${cols}`);
      const dy = randomArray(rows * cols, random);
      const dbias = new Float32Array(cols).fill(NaN);
      k.biasGrad(dy, dbias, rows, cols, false);
      close(t, dbias, ref.biasGrad(dy, rows, cols), 4 * EPS32 * (rows + 1), `biasGrad ${rows}x${cols}`);
      const before = Float32Array.from(dbias);
      k.biasGrad(dy, dbias, rows, cols, true);
      close(t, dbias, ref.biasGrad(dy, rows, cols, before), 4 * EPS32 * (rows + 1), `biasGrad accumulate`);
    }
  });

  test(name('biasAdd and biasGrad reject bad shapes'), (t) => {
    const k = load();
    const y = new Float32Array(6).fill(2), bias = new Float32Array(3).fill(1);
    expectThrows(t, () => k.biasAdd(y, bias, 3, 3), RangeError, 'y too short');
    expectThrows(t, () => k.biasAdd(y, bias, 1, 6), RangeError, 'bias too short');
    expectThrows(t, () => k.biasAdd(y, bias, -1, 3), RangeError, 'negative rows');
    expectThrows(t, () => k.biasAdd(y, new Int32Array(3) as unknown as Float32Array, 2, 3), TypeError, 'bias type');
    expectThrows(t, () => k.biasGrad(y, bias, 2, 4, false), RangeError, 'dbias too short');
    expectThrows(t, () => k.biasGrad(y, bias, 2, 3, 1 as unknown as boolean), TypeError, 'accumulate type');
    t.deepEqual(Array.from(y), [2, 2, 2, 2, 2, 2]);
    t.deepEqual(Array.from(bias), [1, 1, 1]);
  });

  // ---- relu ----------------------------------------------------------------------------------

  test(name('relu forward and backward, also in place'), (t) => {
    const k = load();
    const random = rng(4);
    for (const n of [0, 1, 3, 17, 63, 65, 127, 784, 1000]) {
      const x = randomArray(n, random);
      const y = new Float32Array(n);
      k.reluForward(x, y);
      t.deepEqual(Array.from(y), Array.from(ref.reluForward(x)), `reluForward n=${n}`);
      const dy = randomArray(n, random), dx = new Float32Array(n);
      k.reluBackward(x, dy, dx);
      t.deepEqual(Array.from(dx), Array.from(ref.reluBackward(x, dy)), `reluBackward n=${n}`);
      const expectedInPlace = ref.reluBackward(y, dy);
      k.reluBackward(y, dy, dy);
      t.deepEqual(Array.from(dy), Array.from(expectedInPlace), `reluBackward in place n=${n}`);
      k.reluForward(x, x);
      t.deepEqual(Array.from(x), Array.from(y), `reluForward in place n=${n}`);
    }
  });

  test(name('relu rejects mismatched lengths and wrong types'), (t) => {
    const k = load();
    const y = new Float32Array(4).fill(9);
    expectThrows(t, () => k.reluForward(new Float32Array(5), y), RangeError, 'length mismatch');
    expectThrows(t, () => k.reluForward(new Float64Array(4) as unknown as Float32Array, y), TypeError, 'x type');
    expectThrows(t, () => k.reluBackward(new Float32Array(4), new Float32Array(3), y), RangeError, 'dy length');
    expectThrows(t, () => k.reluBackward(new Float32Array(4), new Float32Array(4), undefined as unknown as Float32Array),
      TypeError, 'dx missing');
    t.deepEqual(Array.from(y), [9, 9, 9, 9]);
  });

  test(name('elementwise kernels work on SharedArrayBuffer views with a byteOffset'), (t) => {
    const k = load();
    const random = rng(5);
    const x = sharedView(37), y = sharedView(37);
    x.set(randomArray(37, random));
    k.reluForward(x, y);
    t.deepEqual(Array.from(y), Array.from(ref.reluForward(x)));
    const before = Array.from(y);
    k.add(x, y, y);
    close(t, y, before.map((v, i) => v + x[i]), EPS32, 'add on shared views');
    t.true(guardsIntact(x) && guardsIntact(y));
  });

  // ---- log-softmax, cross entropy, nll -------------------------------------------------------

  const rowShapes: Array<[number, number]> = [[1, 1], [1, 10], [3, 17], [64, 10], [17, 63], [5, 784], [0, 10]];

  test(name('logSoftmax forward and backward, also in place'), (t) => {
    const k = load();
    const random = rng(6);
    for (const [rows, cols] of rowShapes) {
      const x = randomArray(rows * cols, random, -8, 8);
      const y = new Float32Array(rows * cols);
      k.logSoftmaxForward(x, y, rows, cols);
      const expected = ref.logSoftmaxForward(x, rows, cols);
      close(t, y, expected, 1e-5, `logSoftmaxForward ${rows}x${cols}`);
      const dy = randomArray(rows * cols, random);
      const dx = new Float32Array(rows * cols);
      k.logSoftmaxBackward(y, dy, dx, rows, cols);
      const expectedBack = ref.logSoftmaxBackward(y, dy, rows, cols);
      close(t, dx, expectedBack, 1e-5 * Math.sqrt(cols + 1), `logSoftmaxBackward ${rows}x${cols}`);
      k.logSoftmaxBackward(y, dy, dy, rows, cols);
      close(t, dy, expectedBack, 1e-5 * Math.sqrt(cols + 1), `logSoftmaxBackward in place`);
      k.logSoftmaxForward(x, x, rows, cols);
      close(t, x, expected, 1e-5, `logSoftmaxForward in place`);
    }
  });

  test(name('logSoftmax is stable for large logits'), (t) => {
    const k = load();
    const x = new Float32Array([1000, 1001, 1002, -1000, -1001, -1002]);
    const y = new Float32Array(6);
    k.logSoftmaxForward(x, y, 2, 3);
    // x - logsumexp(x) cancels: the float result is only as good as an ulp of |x|.
    close(t, y, ref.logSoftmaxForward(x, 2, 3), 2 * EPS32, 'large logits', Array.from(x, (v) => Math.abs(v) + 1));
    t.true(y.every(Number.isFinite), 'no overflow to NaN or infinity');
  });

  function labelsFor(rows: number, cols: number, random: () => number): Int32Array {
    return Int32Array.from({ length: rows }, () => Math.floor(random() * cols));
  }

  test(name('crossEntropy forward and backward, also in place'), (t) => {
    const k = load();
    const random = rng(7);
    for (const [rows, cols] of rowShapes.filter(([r]) => r > 0)) {
      const logits = randomArray(rows * cols, random, -5, 5);
      const labels = labelsFor(rows, cols, random);
      const logp = new Float32Array(rows * cols);
      const loss = k.crossEntropyForward(logits, labels, logp, rows, cols);
      const expected = ref.crossEntropyForward(logits, labels, rows, cols);
      close(t, logp, expected.logp, 1e-5, `crossEntropyForward logp ${rows}x${cols}`);
      close(t, [loss], [expected.loss], 1e-5, `crossEntropyForward loss ${rows}x${cols}`);
      const scale = 1 / rows;
      const dlogits = new Float32Array(rows * cols);
      k.crossEntropyBackward(logp, labels, dlogits, rows, cols, scale);
      const expectedBack = ref.crossEntropyBackward(logp, labels, rows, cols, scale);
      close(t, dlogits, expectedBack, 1e-6, `crossEntropyBackward ${rows}x${cols}`);
      k.crossEntropyBackward(logp, labels, logp, rows, cols, scale);
      close(t, logp, expectedBack, 1e-6, 'crossEntropyBackward in place');
      const loss2 = k.crossEntropyForward(logits, labels, logits, rows, cols);
      t.is(loss2, loss, 'crossEntropyForward in place gives the same loss');
      close(t, logits, expected.logp, 1e-5, 'crossEntropyForward in place');
    }
  });

  test(name('nll forward and backward'), (t) => {
    const k = load();
    const random = rng(8);
    for (const [rows, cols] of rowShapes.filter(([r]) => r > 0)) {
      const logp = randomArray(rows * cols, random, -6, 0);
      const labels = labelsFor(rows, cols, random);
      close(t, [k.nllForward(logp, labels, rows, cols)], [ref.nllForward(logp, labels, rows, cols)], 1e-6,
        `nllForward ${rows}x${cols}`);
      const dlogp = randomArray(rows * cols, random);
      k.nllBackward(labels, dlogp, rows, cols, 0.25);
      t.deepEqual(Array.from(dlogp), Array.from(ref.nllBackward(labels, rows, cols, 0.25)), `nllBackward ${rows}x${cols}`);
    }
  });

  test(name('labels outside [0, cols) are rejected before anything is written'), (t) => {
    const k = load();
    const logits = new Float32Array(6).fill(0.5), logp = new Float32Array(6).fill(3);
    for (const bad of [[0, 3], [-1, 0], [2, 2147483647]]) {
      const labels = new Int32Array(bad);
      expectThrows(t, () => k.crossEntropyForward(logits, labels, logp, 2, 3), RangeError, `ce forward ${bad}`);
      expectThrows(t, () => k.crossEntropyBackward(logits, labels, logp, 2, 3, 1), RangeError, `ce backward ${bad}`);
      expectThrows(t, () => k.nllForward(logits, labels, 2, 3), RangeError, `nll forward ${bad}`);
      expectThrows(t, () => k.nllBackward(labels, logp, 2, 3, 1), RangeError, `nll backward ${bad}`);
    }
    expectThrows(t, () => k.crossEntropyForward(logits, new Int32Array(1), logp, 2, 3), RangeError, 'labels too short');
    expectThrows(t, () => k.crossEntropyForward(logits, new Float32Array(2) as unknown as Int32Array, logp, 2, 3),
      TypeError, 'labels type');
    expectThrows(t, () => k.logSoftmaxForward(logits, logp, 3, 3), RangeError, 'logSoftmax too short');
    expectThrows(t, () => k.logSoftmaxBackward(logits, logits, logp, 2, 4), RangeError, 'logSoftmax backward too short');
    t.deepEqual(Array.from(logp), [3, 3, 3, 3, 3, 3]);
  });

  // ---- dropout -------------------------------------------------------------------------------

  test(name('uniformAt is Philox4x32-10 and lies in [0, 1)'), (t) => {
    const k = load();
    for (const seed of [0, 1, 12345, 2 ** 32 + 7, 2 ** 53 - 1]) {
      for (const index of [0, 1, 2, 1000, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3]) {
        const u = k.uniformAt(seed, index);
        t.true(u >= 0 && u < 1, `uniformAt(${seed}, ${index}) = ${u}`);
        t.is(u, ref.uniformAt(seed, index), `uniformAt(${seed}, ${index})`);
      }
    }
  });

  test(name('dropout keeps about 1 - p, follows uniformAt, and repeats for the same seed and offset'), (t) => {
    const k = load();
    const random = rng(9);
    const n = 100_003;
    const x = randomArray(n, random);
    for (const p of [0, 0.1, 0.5, 0.9]) {
      const y = new Float32Array(n), mask = new Uint8Array(n);
      k.dropoutForward(x, y, mask, p, 77, 1000);
      let kept = 0;
      for (let i = 0; i < n; i++) kept += mask[i];
      const sigma = Math.sqrt((p * (1 - p)) / n);
      t.true(Math.abs(kept / n - (1 - p)) <= 6 * sigma + 1e-9, `p=${p}: kept ${kept / n}`);
      const expected = ref.dropoutForward(x, p, 77, 1000);
      t.deepEqual(mask, expected.mask, `p=${p}: mask follows uniformAt`);
      close(t, y, expected.y, 2 * EPS32, `p=${p}: y = x / (1 - p) where kept`);
      const y2 = new Float32Array(n), mask2 = new Uint8Array(n);
      k.dropoutForward(x, y2, mask2, p, 77, 1000);
      t.deepEqual(mask2, mask, 'same seed and offset, same mask');
      // A slice drawn at offset + s is the same as the matching part of the whole draw.
      const part = x.subarray(500, 900), partY = new Float32Array(400), partMask = new Uint8Array(400);
      k.dropoutForward(part, partY, partMask, p, 77, 1500);
      t.deepEqual(partMask, mask.subarray(500, 900), 'offset addresses the counter');
      if (p > 0) {
        const other = new Uint8Array(n);
        k.dropoutForward(x, new Float32Array(n), other, p, 78, 1000);
        t.notDeepEqual(other, mask, 'another seed, another mask');
      }
      const dy = randomArray(n, random), dx = new Float32Array(n);
      k.dropoutBackward(dy, mask, dx, p);
      const expectedBack = ref.dropoutBackward(dy, mask, p);
      close(t, dx, expectedBack, 2 * EPS32, `p=${p}: dropoutBackward`);
      k.dropoutBackward(dy, mask, dy, p);
      close(t, dy, expectedBack, 2 * EPS32, `p=${p}: dropoutBackward in place`);
      const inPlace = Float32Array.from(x);
      k.dropoutForward(inPlace, inPlace, new Uint8Array(n), p, 77, 1000);
      t.deepEqual(inPlace, y, `p=${p}: dropoutForward in place`);
    }
  });

  test(name('dropout rejects p outside [0, 1), bad seeds and mismatched lengths'), (t) => {
    const k = load();
    const x = new Float32Array(8).fill(1), y = new Float32Array(8).fill(5), mask = new Uint8Array(8).fill(3);
    for (const p of [1, -0.1, 1.5, NaN]) {
      expectThrows(t, () => k.dropoutForward(x, y, mask, p, 1, 0), RangeError, `p=${p}`);
      expectThrows(t, () => k.dropoutBackward(x, mask, y, p), RangeError, `backward p=${p}`);
    }
    expectThrows(t, () => k.dropoutForward(x, y, mask, 0.5, -1, 0), RangeError, 'negative seed');
    expectThrows(t, () => k.dropoutForward(x, y, mask, 0.5, 1.5, 0), RangeError, 'fractional seed');
    expectThrows(t, () => k.dropoutForward(x, y, mask, 0.5, 1, 2 ** 54), RangeError, 'offset beyond 2^53');
    expectThrows(t, () => k.dropoutForward(x, y, new Uint8Array(7), 0.5, 1, 0), RangeError, 'mask length');
    expectThrows(t, () => k.dropoutForward(x, y, new Int8Array(8) as unknown as Uint8Array, 0.5, 1, 0), TypeError,
      'mask type');
    expectThrows(t, () => k.dropoutForward(x, y, mask, 0.5, 1n as unknown as number, 0), TypeError, 'bigint seed');
    expectThrows(t, () => k.uniformAt(-1, 0), RangeError, 'uniformAt negative seed');
    t.deepEqual(Array.from(y), new Array(8).fill(5));
    t.deepEqual(Array.from(mask), new Array(8).fill(3));
  });

  // ---- arithmetic ----------------------------------------------------------------------------

  test(name('axpy, scale, add, mul and sum'), (t) => {
    const k = load();
    const random = rng(10);
    for (const n of [0, 1, 3, 17, 63, 65, 127, 784, 5000]) {
      const x = randomArray(n, random), y = randomArray(n, random);
      const expectedAxpy = Array.from(y, (v, i) => v + 0.3 * x[i]);
      const magnitude = Array.from(y, (v, i) => Math.abs(v) + Math.abs(0.3 * x[i]) + 1e-30);
      k.axpy(0.3, x, y);
      close(t, y, expectedAxpy, 2 * EPS32, `axpy n=${n}`, magnitude);
      const expectedScale = Array.from(x, (v) => Math.fround(v * Math.fround(-1.7)));
      const xs = Float32Array.from(x);
      k.scale(-1.7, xs);
      t.deepEqual(Array.from(xs), expectedScale, `scale n=${n}`);
      const out = new Float32Array(n);
      k.add(x, y, out);
      t.deepEqual(Array.from(out), Array.from(x, (v, i) => Math.fround(v + y[i])), `add n=${n}`);
      k.mul(x, y, out);
      t.deepEqual(Array.from(out), Array.from(x, (v, i) => Math.fround(v * y[i])), `mul n=${n}`);
      const a = Float32Array.from(x);
      k.mul(a, y, a);
      t.deepEqual(Array.from(a), Array.from(out), `mul in place n=${n}`);
      const b = Float32Array.from(y);
      k.add(x, b, b);
      t.deepEqual(Array.from(b), Array.from(x, (v, i) => Math.fround(v + y[i])), `add in place n=${n}`);
      const total = k.sum(x);
      const absTotal = ref.sum(Array.from(x, Math.abs));
      t.true(Math.abs(total - ref.sum(x)) <= 1e-12 * (absTotal + 1), `sum n=${n}: ${total} vs ${ref.sum(x)}`);
    }
  });

  test(name('arithmetic rejects mismatched lengths and wrong types'), (t) => {
    const k = load();
    const out = new Float32Array(4).fill(6);
    expectThrows(t, () => k.add(new Float32Array(4), new Float32Array(3), out), RangeError, 'add b length');
    expectThrows(t, () => k.mul(new Float32Array(4), new Float32Array(4), new Float32Array(5)), RangeError, 'mul out');
    expectThrows(t, () => k.axpy(1, new Float32Array(3), out), RangeError, 'axpy length');
    expectThrows(t, () => k.axpy('1' as unknown as number, new Float32Array(4), out), TypeError, 'axpy alpha type');
    expectThrows(t, () => k.scale(2, [1, 2] as unknown as Float32Array), TypeError, 'scale x type');
    expectThrows(t, () => k.sum(new Uint8Array(3) as unknown as Float32Array), TypeError, 'sum x type');
    t.deepEqual(Array.from(out), [6, 6, 6, 6]);
  });

  // ---- optimizers ----------------------------------------------------------------------------

  const sgdCases: ref.SgdOptions[] = [
    { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false },
    { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false },
    { lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 1e-3, nesterov: false },
    { lr: 0.01, momentum: 0.8, dampening: 0, weightDecay: 1e-2, nesterov: true },
    { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0.05, nesterov: false },
  ];

  test(name('sgdUpdate follows torch.optim.SGD over several steps'), (t) => {
    const k = load();
    const random = rng(11);
    for (const o of sgdCases) {
      for (const n of [1, 17, 65, 1000]) {
        const param = randomArray(n, random), buf = new Float32Array(n);
        const refParam = Float64Array.from(param), refBuf = new Float64Array(n);
        for (let step = 0; step < 5; step++) {
          const grad = randomArray(n, random);
          k.sgdUpdate(param, grad, o.momentum !== 0 ? buf : null, o.lr, o.momentum, o.dampening, o.weightDecay,
            o.nesterov, step === 0);
          ref.sgdStep(refParam, grad, refBuf, step === 0, o);
        }
        close(t, param, refParam, 2e-6, `sgd ${JSON.stringify(o)} n=${n}: param`);
        if (o.momentum !== 0) close(t, buf, refBuf, 2e-6, `sgd n=${n}: momentum buffer`);
      }
    }
  });

  const adamCases: ref.AdamOptions[] = [
    { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false },
    { lr: 1e-2, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1, decoupled: false },
    { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled: true },
    { lr: 0.1, beta1: 0, beta2: 0.5, eps: 1e-3, weightDecay: 0, decoupled: true },
  ];

  test(name('adamUpdate follows torch.optim.Adam and AdamW over several steps'), (t) => {
    const k = load();
    const random = rng(12);
    for (const o of adamCases) {
      for (const n of [1, 17, 65, 1000]) {
        const param = randomArray(n, random), m = new Float32Array(n), v = new Float32Array(n);
        const refParam = Float64Array.from(param), refM = new Float64Array(n), refV = new Float64Array(n);
        for (let step = 1; step <= 6; step++) {
          const grad = randomArray(n, random);
          k.adamUpdate(param, grad, m, v, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.decoupled, step);
          ref.adamStep(refParam, grad, refM, refV, step, o);
        }
        close(t, param, refParam, 1e-5, `adam ${JSON.stringify(o)} n=${n}: param`);
        close(t, m, refM, 1e-5, `adam n=${n}: m`);
        close(t, v, refV, 1e-5, `adam n=${n}: v`);
      }
    }
  });

  test(name('optimizers reject bad buffers and hyper-parameters and leave the parameters untouched'), (t) => {
    const k = load();
    const param = new Float32Array(4).fill(1), grad = new Float32Array(4).fill(0.5);
    expectThrows(t, () => k.sgdUpdate(param, grad, null, 0.1, 0.9, 0, 0, false, true), TypeError, 'momentum without buffer');
    expectThrows(t, () => k.sgdUpdate(param, new Float32Array(3), null, 0.1, 0, 0, 0, false, true), RangeError,
      'grad length');
    expectThrows(t, () => k.sgdUpdate(param, grad, new Float32Array(5), 0.1, 0.9, 0, 0, false, true), RangeError,
      'buffer length');
    expectThrows(t, () => k.sgdUpdate(param, grad, null, -0.1, 0, 0, 0, false, true), RangeError, 'negative lr');
    const m = new Float32Array(4), v = new Float32Array(4);
    expectThrows(t, () => k.adamUpdate(param, grad, m, v, 0.1, 0.9, 0.999, 1e-8, 0, false, 0), RangeError, 'step 0');
    expectThrows(t, () => k.adamUpdate(param, grad, m, v, 0.1, 1, 0.999, 1e-8, 0, false, 1), RangeError, 'beta1 = 1');
    expectThrows(t, () => k.adamUpdate(param, grad, m, new Float32Array(3), 0.1, 0.9, 0.999, 1e-8, 0, false, 1),
      RangeError, 'v length');
    expectThrows(t, () => k.adamUpdate(param, grad, m, v as unknown as Float32Array, 0.1, 0.9, 0.999, 1e-8, 0,
      'yes' as unknown as boolean, 1), TypeError, 'decoupled type');
    t.deepEqual(Array.from(param), [1, 1, 1, 1]);
    t.deepEqual(Array.from(m), [0, 0, 0, 0]);
  });

  // ---- conversions ---------------------------------------------------------------------------

  /** Float32 values that exercise rounding: ties, subnormals, overflow, infinities, NaN. */
  function conversionInputs(random: () => number): Float32Array {
    const special = [0, -0, 1, -1, 65504, 65519.99, 65520, 65536, 1e10, -1e10, Infinity, -Infinity, NaN,
      2 ** -14, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0001, 3 * 2 ** -26, 2 ** -26, 1e-8, 1 + 2 ** -11, 1 + 3 * 2 ** -11,
      1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, 3.4e38, -3.4e38, 1e-40, -1e-45, 1.17549435e-38,
      2047 * 2 ** -24, 1023.5 * 2 ** -24, 0.1, 1 / 3];
    const out = new Float32Array(special.length + 4000);
    out.set(special);
    const bits = new Uint32Array(out.buffer);
    for (let i = special.length; i < out.length; i++) {
      // Random float32 bit patterns cover every exponent; scaled normals cover the fp16 range densely.
      if (i % 2) bits[i] = Math.floor(random() * 4294967296);
      else out[i] = (random() * 2 - 1) * 2 ** Math.floor(random() * 40 - 26);
    }
    return out;
  }

  const isF16NaN = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
  const isBf16NaN = (h: number): boolean => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

  test(name('f32ToF16 and f16ToF32 round to nearest even with subnormals, overflow and NaN'), (t) => {
    const k = load();
    const x = conversionInputs(rng(13));
    const h = new Uint16Array(x.length);
    k.f32ToF16(x, h);
    for (let i = 0; i < x.length; i++) {
      if (Number.isNaN(x[i])) {
        t.true(isF16NaN(h[i]), `f32ToF16(NaN) = 0x${h[i].toString(16)}`);
        continue;
      }
      const expected = ref.f32ToF16(x[i]);
      if (h[i] !== expected) {
        t.fail(`f32ToF16(${x[i]}) = 0x${h[i].toString(16)}, expected 0x${expected.toString(16)}`);
        return;
      }
    }
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = new Float32Array(65536);
    k.f16ToF32(all, back);
    for (let i = 0; i < 65536; i++) {
      const expected = ref.f16ToF32(i);
      if (!(Object.is(back[i], expected) || (Number.isNaN(expected) && Number.isNaN(back[i])))) {
        t.fail(`f16ToF32(0x${i.toString(16)}) = ${back[i]}, expected ${expected}`);
        return;
      }
    }
    const roundTrip = new Uint16Array(65536);
    k.f32ToF16(back, roundTrip);
    for (let i = 0; i < 65536; i++) {
      if (roundTrip[i] !== i && !(isF16NaN(i) && isF16NaN(roundTrip[i]))) {
        t.fail(`fp16 0x${i.toString(16)} does not survive a round trip (0x${roundTrip[i].toString(16)})`);
        return;
      }
    }
    t.pass();
  });

  test(name('f32ToBf16 and bf16ToF32 round to nearest even and keep NaN'), (t) => {
    const k = load();
    const x = conversionInputs(rng(14));
    const h = new Uint16Array(x.length);
    k.f32ToBf16(x, h);
    for (let i = 0; i < x.length; i++) {
      if (Number.isNaN(x[i])) {
        t.true(isBf16NaN(h[i]), `f32ToBf16(NaN) = 0x${h[i].toString(16)}`);
        continue;
      }
      const expected = ref.f32ToBf16(x[i]);
      if (h[i] !== expected) {
        t.fail(`f32ToBf16(${x[i]}) = 0x${h[i].toString(16)}, expected 0x${expected.toString(16)}`);
        return;
      }
    }
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = new Float32Array(65536);
    k.bf16ToF32(all, back);
    for (let i = 0; i < 65536; i++) {
      const expected = ref.bf16ToF32(i);
      if (!(Object.is(back[i], expected) || (Number.isNaN(expected) && Number.isNaN(back[i])))) {
        t.fail(`bf16ToF32(0x${i.toString(16)}) = ${back[i]}, expected ${expected}`);
        return;
      }
    }
    t.pass();
  });

  test(name('conversions reject wrong types and lengths'), (t) => {
    const k = load();
    const y = new Uint16Array(4).fill(9);
    expectThrows(t, () => k.f32ToF16(new Float32Array(5), y), RangeError, 'f32ToF16 length');
    expectThrows(t, () => k.f32ToF16(new Float32Array(4), new Int16Array(4) as unknown as Uint16Array), TypeError,
      'f32ToF16 y type');
    expectThrows(t, () => k.f16ToF32(new Float32Array(4) as unknown as Uint16Array, new Float32Array(4)), TypeError,
      'f16ToF32 x type');
    expectThrows(t, () => k.f32ToBf16(new Float32Array(3), y), RangeError, 'f32ToBf16 length');
    expectThrows(t, () => k.bf16ToF32(y, new Float32Array(2)), RangeError, 'bf16ToF32 length');
    t.deepEqual(Array.from(y), [9, 9, 9, 9]);
  });

  // ---- convolution ---------------------------------------------------------------------------

  // [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups]
  const convShapes: Array<[string, number[]]> = [
    ['3x3 padding 1', [2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1]],
    ['3x2 stride 2, groups 2', [2, 4, 9, 8, 6, 3, 2, 2, 2, 1, 0, 1, 1, 2]],
    ['dilation 2, groups 3, stride 1x2', [1, 6, 10, 11, 3, 3, 3, 1, 2, 2, 1, 2, 2, 3]],
    ['2x3 stride 3x1, dilation 1x2, padding 0x2', [2, 2, 5, 6, 2, 2, 3, 3, 1, 0, 2, 1, 2, 1]],
    ['1x1 (columns are x itself)', [3, 5, 6, 7, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1]],
    ['1x1 groups 4', [2, 4, 5, 5, 8, 1, 1, 1, 1, 0, 0, 1, 1, 4]],
    ['1x1 stride 2', [2, 3, 8, 8, 5, 1, 1, 2, 2, 0, 0, 1, 1, 1]],
    ['1x1 padding 1', [1, 2, 3, 4, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
    ['5x5 over 4x4 padding 2', [1, 2, 4, 4, 3, 5, 5, 1, 1, 2, 2, 1, 1, 1]],
    ['one output pixel', [2, 1, 3, 3, 2, 3, 3, 1, 1, 0, 0, 1, 1, 1]],
    ['depthwise 3x3 stride 2', [2, 4, 7, 7, 4, 3, 3, 2, 2, 1, 1, 1, 1, 4]],
    ['2x33 kernel over 40 columns (several vector passes per row)', [1, 2, 3, 40, 2, 2, 33, 1, 1, 1, 16, 1, 1, 1]],
    ['cnn conv1 (batch 2)', [2, 1, 28, 28, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1]],
    ['cnn conv2 (batch 2)', [2, 16, 14, 14, 32, 5, 5, 1, 1, 2, 2, 1, 1, 1]],
  ];

  const convTol = (g: readonly number[]): number => 8 * EPS32 * (Math.sqrt((g[1]! / g[13]!) * g[5]! * g[6]!) + 2);
  const magnitudeScale = (m: ArrayLike<number>): Float64Array => Float64Array.from(m, (v) => Math.max(v, 1e-30));

  function convArrays(g: readonly number[], random: () => number) {
    const s = ref.convShape(g);
    return {
      s,
      x: randomArray(s.n * s.c * s.h * s.w, random),
      weight: randomArray(s.oc * (s.c / s.groups) * s.kh * s.kw, random),
      bias: randomArray(s.oc, random),
      dy: randomArray(s.n * s.oc * s.oh * s.ow, random),
    };
  }

  test(name('conv2dWorkspace is a whole number of elements, the same for the same geometry'), (t) => {
    const k = load();
    for (const [, g] of convShapes) {
      const ws = k.conv2dWorkspace(g);
      t.true(Number.isSafeInteger(ws) && ws >= 0, `${g}: ${ws}`);
      t.is(k.conv2dWorkspace(Int32Array.from(g) as unknown as number[]), ws, 'a typed-array geometry reads the same');
    }
  });

  test(name('conv2dForward matches a direct convolution, with and without bias'), (t) => {
    const k = load();
    let seed = 200;
    for (const [what, g] of convShapes) {
      const { s, x, weight, bias } = convArrays(g, rng(seed++));
      const col = new Float32Array(k.conv2dWorkspace(g)).fill(NaN);  // scratch: its contents must not matter
      for (const b of [bias, null]) {
        const y = new Float32Array(s.n * s.oc * s.oh * s.ow).fill(NaN);  // overwritten, never read
        k.conv2dForward(g, x, weight, b, y, col);
        const expected = ref.conv2dForward(g, x, weight, b);
        close(t, y, expected.y, convTol(g), `conv2dForward ${what}${b ? '' : ' no bias'}`, magnitudeScale(expected.magnitude));
      }
    }
  });

  test(name('conv2dBackwardInput matches the reference, written or accumulated'), (t) => {
    const k = load();
    let seed = 300;
    for (const [what, g] of convShapes) {
      const { s, weight, dy } = convArrays(g, rng(seed++));
      const col = new Float32Array(k.conv2dWorkspace(g)).fill(NaN);
      const expected = ref.conv2dBackwardInput(g, dy, weight);
      const dx = new Float32Array(s.n * s.c * s.h * s.w).fill(NaN);
      k.conv2dBackwardInput(g, dy, weight, dx, col, false);
      const scale = magnitudeScale(expected.magnitude.map((v) => v + 1e-6));
      close(t, dx, expected.dx, convTol(g), `conv2dBackwardInput ${what}`, scale);
      const before = randomArray(dx.length, rng(seed++));
      dx.set(before);
      k.conv2dBackwardInput(g, dy, weight, dx, col, true);
      close(t, dx, expected.dx.map((v, i) => v + before[i]!), convTol(g), `conv2dBackwardInput ${what} accumulate`,
        scale.map((v, i) => v + Math.abs(before[i]!)));
    }
  });

  test(name('conv2dBackwardWeight matches the reference, each output written or accumulated by its flag'), (t) => {
    const k = load();
    let seed = 400;
    for (const [what, g] of convShapes) {
      const { s, x, dy } = convArrays(g, rng(seed++));
      const col = new Float32Array(k.conv2dWorkspace(g)).fill(NaN);
      const expected = ref.conv2dBackwardWeight(g, x, dy);
      const kTol = 8 * EPS32 * (Math.sqrt(s.n * s.oh * s.ow) + 2);
      const dweight = new Float32Array(expected.dweight.length).fill(NaN), dbias = new Float32Array(s.oc).fill(NaN);
      k.conv2dBackwardWeight(g, x, dy, dweight, dbias, col, false, false);
      close(t, dweight, expected.dweight, kTol, `conv2dBackwardWeight ${what}: dweight`, magnitudeScale(expected.magnitude));
      close(t, dbias, expected.dbias, kTol, `conv2dBackwardWeight ${what}: dbias`, magnitudeScale(expected.biasMagnitude));
      const w0 = randomArray(dweight.length, rng(seed++)), b0 = randomArray(s.oc, rng(seed++));
      dweight.set(w0);
      dbias.set(b0);
      k.conv2dBackwardWeight(g, x, dy, dweight, dbias, col, true, false);
      close(t, dweight, expected.dweight.map((v, i) => v + w0[i]!), kTol, `${what}: dweight accumulated`,
        expected.magnitude.map((v, i) => v + Math.abs(w0[i]!)));
      close(t, dbias, expected.dbias, kTol, `${what}: dbias written`, magnitudeScale(expected.biasMagnitude));
      dweight.set(w0);
      dbias.set(b0);
      k.conv2dBackwardWeight(g, x, dy, dweight, dbias, col, false, true);
      close(t, dweight, expected.dweight, kTol, `${what}: dweight written`, magnitudeScale(expected.magnitude));
      close(t, dbias, expected.dbias.map((v, i) => v + b0[i]!), kTol, `${what}: dbias accumulated`,
        expected.biasMagnitude.map((v, i) => v + Math.abs(b0[i]!)));
      dweight.fill(NaN);
      k.conv2dBackwardWeight(g, x, dy, dweight, null, col, false, true);
      close(t, dweight, expected.dweight, kTol, `${what}: dweight with dbias null`, magnitudeScale(expected.magnitude));
    }
  });

  test(name('conv2d backward kernels agree with central differences of the forward'), (t) => {
    const k = load();
    // Tiny shapes; the loss is sum(y * r), whose gradient is the backward of dy = r. The differences
    // are taken of the double reference forward, so the float kernels are checked against the
    // forward's own derivative, not against the reference backward.
    for (const g of [[1, 2, 4, 5, 2, 3, 2, 2, 1, 1, 1, 1, 2, 2], [2, 1, 3, 3, 2, 2, 2, 1, 1, 1, 0, 1, 1, 1]]) {
      const { s, x, weight, bias, dy: r } = convArrays(g, rng(500));
      const loss = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>): number =>
        ref.conv2dForward(g, xx, ww, bb).y.reduce((acc, v, i) => acc + v * r[i]!, 0);
      const h = 1e-3;
      const fd = (base: Float32Array, at: number, f: (v: Float64Array) => number): number => {
        const plus = Float64Array.from(base), minus = Float64Array.from(base);
        plus[at]! += h;
        minus[at]! -= h;
        return (f(plus) - f(minus)) / (2 * h);
      };
      const col = new Float32Array(k.conv2dWorkspace(g));
      const dx = new Float32Array(x.length), dweight = new Float32Array(weight.length), dbias = new Float32Array(s.oc);
      k.conv2dBackwardInput(g, r, weight, dx, col, false);
      k.conv2dBackwardWeight(g, x, r, dweight, dbias, col, false, false);
      close(t, dx, Array.from(x, (_, i) => fd(x, i, (v) => loss(v, weight, bias))), 1e-4, `dx by differences ${g}`);
      close(t, dweight, Array.from(weight, (_, i) => fd(weight, i, (v) => loss(x, v, bias))), 1e-4, `dweight by differences ${g}`);
      close(t, dbias, Array.from(bias, (_, i) => fd(bias, i, (v) => loss(x, weight, v))), 1e-4, `dbias by differences ${g}`);
    }
  });

  test(name('conv2d kernels work on views with a byteOffset over SharedArrayBuffers'), (t) => {
    const k = load();
    const g = [2, 4, 6, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2];
    const { s, x: x0, weight: w0, bias: b0, dy: dy0 } = convArrays(g, rng(600));
    const x = sharedView(x0.length), weight = sharedView(w0.length), bias = sharedView(b0.length), dy = sharedView(dy0.length);
    x.set(x0); weight.set(w0); bias.set(b0); dy.set(dy0);
    const y = sharedView(s.n * s.oc * s.oh * s.ow), col = sharedView(k.conv2dWorkspace(g));
    const dx = sharedView(x.length), dweight = sharedView(weight.length), dbias = sharedView(s.oc);
    k.conv2dForward(g, x, weight, bias, y, col);
    const fwd = ref.conv2dForward(g, x0, w0, b0);
    close(t, y, fwd.y, convTol(g), 'forward on shared views', magnitudeScale(fwd.magnitude));
    k.conv2dBackwardInput(g, dy, weight, dx, col, false);
    const bi = ref.conv2dBackwardInput(g, dy0, w0);
    close(t, dx, bi.dx, convTol(g), 'input grad on shared views', magnitudeScale(bi.magnitude.map((v) => v + 1e-6)));
    k.conv2dBackwardWeight(g, x, dy, dweight, dbias, col, false, false);
    const bw = ref.conv2dBackwardWeight(g, x0, dy0);
    close(t, dweight, bw.dweight, 1e-5, 'weight grad on shared views', magnitudeScale(bw.magnitude));
    close(t, dbias, bw.dbias, 1e-5, 'bias grad on shared views', magnitudeScale(bw.biasMagnitude));
    for (const v of [x, weight, bias, dy, y, col, dx, dweight, dbias]) t.true(guardsIntact(v), 'wrote outside a view');
  });

  test(name('conv2d kernels reject bad geometries and arrays and leave the outputs untouched'), (t) => {
    const k = load();
    const g = [2, 4, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2];
    const s = ref.convShape(g);
    const x = new Float32Array(s.n * s.c * s.h * s.w).fill(1), weight = new Float32Array(s.oc * 2 * 9).fill(1);
    const bias = new Float32Array(s.oc).fill(1), dy = new Float32Array(s.n * s.oc * s.oh * s.ow).fill(1);
    const y = new Float32Array(dy.length).fill(7), col = new Float32Array(k.conv2dWorkspace(g)).fill(7);
    const dx = new Float32Array(x.length).fill(7), dweight = new Float32Array(weight.length).fill(7), dbias = new Float32Array(s.oc).fill(7);
    const with_ = (j: number, v: number): number[] => g.map((e, i) => (i === j ? v : e));
    const badGeometries: Array<[string, unknown, typeof TypeError]> = [
      ['13 fields', g.slice(0, 13), RangeError],
      ['15 fields', [...g, 1], RangeError],
      ['not a list', 14, TypeError],
      ['null', null, TypeError],
      ['a string field', g.map((e, i) => (i === 3 ? '5' : e)), TypeError],
      ['n = 0', with_(0, 0), RangeError],
      ['kh = 0', with_(5, 0), RangeError],
      ['stride 0', with_(7, 0), RangeError],
      ['dilation 0', with_(12, 0), RangeError],
      ['negative padding', with_(9, -1), RangeError],
      ['fractional width', with_(3, 5.5), RangeError],
      ['NaN channel count', with_(1, NaN), RangeError],
      ['2^31 rows', with_(2, 2 ** 31), RangeError],
      ['groups not dividing c', with_(13, 3), RangeError],
      ['groups not dividing oc', with_(4, 5), RangeError],
      ['kernel larger than the padded input', with_(5, 8), RangeError],
      ['dilated kernel larger than the padded input', with_(11, 4), RangeError],
    ];
    for (const [what, bad, type] of badGeometries) {
      const geometry = bad as number[];
      expectThrows(t, () => k.conv2dWorkspace(geometry), type, `workspace: ${what}`);
      expectThrows(t, () => k.conv2dForward(geometry, x, weight, bias, y, col), type, `forward: ${what}`);
      expectThrows(t, () => k.conv2dBackwardInput(geometry, dy, weight, dx, col, false), type, `input grad: ${what}`);
      expectThrows(t, () => k.conv2dBackwardWeight(geometry, x, dy, dweight, dbias, col, false, false), type, `weight grad: ${what}`);
    }
    const short = (a: Float32Array): Float32Array => a.subarray(0, a.length - 1);
    const f64 = new Float64Array(x.length) as unknown as Float32Array;
    expectThrows(t, () => k.conv2dForward(g, short(x), weight, bias, y, col), RangeError, 'forward: x short');
    expectThrows(t, () => k.conv2dForward(g, x, short(weight), bias, y, col), RangeError, 'forward: weight short');
    expectThrows(t, () => k.conv2dForward(g, x, weight, short(bias), y, col), RangeError, 'forward: bias short');
    expectThrows(t, () => k.conv2dForward(g, x, weight, bias, short(y), col), RangeError, 'forward: y short');
    if (col.length > 0) expectThrows(t, () => k.conv2dForward(g, x, weight, bias, y, short(col)), RangeError, 'forward: col short');
    expectThrows(t, () => k.conv2dForward(g, f64, weight, bias, y, col), TypeError, 'forward: x Float64Array');
    expectThrows(t, () => k.conv2dForward(g, x, weight, [1, 2] as unknown as Float32Array, y, col), TypeError, 'forward: bias Array');
    expectThrows(t, () => k.conv2dForward(g, x, weight, bias, y, undefined as unknown as Float32Array), TypeError, 'forward: col missing');
    const shared = new Float32Array(x.length + y.length);
    expectThrows(t, () => k.conv2dForward(g, shared.subarray(0, x.length), weight, bias, shared.subarray(x.length - 1), col),
      RangeError, 'forward: y overlaps x');
    if (col.length > 0) expectThrows(t, () => k.conv2dForward(g, x, weight, bias, y, y), RangeError, 'forward: col is y');
    expectThrows(t, () => k.conv2dBackwardInput(g, short(dy), weight, dx, col, false), RangeError, 'input grad: dy short');
    expectThrows(t, () => k.conv2dBackwardInput(g, dy, weight, short(dx), col, false), RangeError, 'input grad: dx short');
    expectThrows(t, () => k.conv2dBackwardInput(g, dy, weight, dx, col, 0 as unknown as boolean), TypeError, 'input grad: accumulate');
    expectThrows(t, () => k.conv2dBackwardInput(g, dy, weight, weight, col, false), RangeError, 'input grad: dx is weight');
    expectThrows(t, () => k.conv2dBackwardWeight(g, x, dy, short(dweight), dbias, col, false, false), RangeError, 'weight grad: dweight short');
    expectThrows(t, () => k.conv2dBackwardWeight(g, x, dy, dweight, short(dbias), col, false, false), RangeError, 'weight grad: dbias short');
    expectThrows(t, () => k.conv2dBackwardWeight(g, x, short(dy), dweight, dbias, col, false, false), RangeError, 'weight grad: dy short');
    expectThrows(t, () => k.conv2dBackwardWeight(g, x, dy, dweight, dweight, col, false, false), RangeError, 'weight grad: dbias is dweight');
    expectThrows(t, () => k.conv2dBackwardWeight(g, x, dy, dweight, dbias, col, false, 'no' as unknown as boolean), TypeError,
      'weight grad: accumulateBias');
    for (const [what, a] of [['y', y], ['dx', dx], ['dweight', dweight], ['dbias', dbias]] as const) {
      t.true(a.every((v) => v === 7), `${what} untouched`);
    }
  });

  // ---- pooling -------------------------------------------------------------------------------

  // [planes, h, w, kh, kw, sh, sw, ph, pw]
  const poolShapes: Array<[string, number[]]> = [
    ['2x2 (the cnn\'s)', [6, 8, 8, 2, 2, 2, 2, 0, 0]],
    ['2x2 over odd sizes', [3, 7, 9, 2, 2, 2, 2, 0, 0]],
    ['2 wide, 3 tall, stride 1x2, padding 1x0', [4, 6, 7, 3, 2, 1, 2, 1, 0]],
    ['3x3 stride 2 padding 1', [5, 9, 10, 3, 3, 2, 2, 1, 1]],
    ['3x3 stride 1 (overlapping)', [2, 5, 6, 3, 3, 1, 1, 0, 0]],
    ['2x3 stride 1x3 padding 1x1', [3, 5, 8, 2, 3, 1, 3, 1, 1]],
    ['1x1', [2, 3, 4, 1, 1, 1, 1, 0, 0]],
    ['window the size of the plane', [4, 5, 4, 5, 4, 1, 1, 0, 0]],
    ['cnn pool1 (batch 2)', [32, 28, 28, 2, 2, 2, 2, 0, 0]],
  ];

  test(name('maxPool2d forward and backward match the reference, indices included'), (t) => {
    const k = load();
    let seed = 700;
    for (const [what, g] of poolShapes) {
      const s = ref.poolShape(g), random = rng(seed++);
      // Few distinct values, so ties are common and the first position must win.
      const x = Float32Array.from({ length: s.planes * s.h * s.w }, () => Math.floor(random() * 6) - 3);
      const y = new Float32Array(s.planes * s.oh * s.ow).fill(NaN), indices = new Int32Array(y.length).fill(-5);
      k.maxPool2dForward(g, x, y, indices);
      const expected = ref.maxPool2dForward(g, x);
      t.deepEqual(Array.from(y), Array.from(expected.y), `maxPool2dForward ${what}: y`);
      t.deepEqual(Array.from(indices), Array.from(expected.indices), `maxPool2dForward ${what}: indices`);
      const dy = randomArray(y.length, random);
      const dx = new Float32Array(x.length).fill(NaN);
      k.maxPool2dBackward(g, dy, indices, dx, false);
      const back = ref.maxPool2dBackward(g, dy, indices);
      close(t, dx, back, 4 * EPS32, `maxPool2dBackward ${what}`);
      const before = randomArray(dx.length, random);
      dx.set(before);
      k.maxPool2dBackward(g, dy, indices, dx, true);
      close(t, dx, back.map((v, i) => v + before[i]!), 4 * EPS32, `maxPool2dBackward ${what} accumulate`);
    }
  });

  test(name('maxPool2d lets a NaN win its window, and padding never wins'), (t) => {
    const k = load();
    for (const g of [[1, 4, 4, 2, 2, 2, 2, 0, 0], [1, 4, 4, 3, 3, 1, 1, 1, 1]]) {
      const s = ref.poolShape(g);
      const x = new Float32Array(16).fill(-5);
      x[5] = NaN;
      x[6] = 100;
      const y = new Float32Array(s.oh * s.ow), indices = new Int32Array(y.length);
      k.maxPool2dForward(g, x, y, indices);
      for (let o = 0; o < y.length; o++) {
        const expected = ref.maxPool2dForward(g, x);
        if (Number.isNaN(expected.y[o])) {
          t.true(Number.isNaN(y[o]) && Number.isNaN(x[indices[o]!]), `${g} output ${o}: NaN wins`);
        } else {
          t.is(y[o], expected.y[o], `${g} output ${o}`);
          t.is(indices[o], expected.indices[o], `${g} output ${o} index`);
        }
      }
      const neg = new Float32Array(16).fill(-7);
      k.maxPool2dForward(g, neg, y, indices);
      t.true(y.every((v) => v === -7), `${g}: all-negative windows never take the padding's zero`);
    }
  });

  test(name('avgPool2d forward and backward match the reference with and without countIncludePad'), (t) => {
    const k = load();
    let seed = 800;
    for (const [what, g] of poolShapes) {
      const s = ref.poolShape(g), random = rng(seed++);
      const x = randomArray(s.planes * s.h * s.w, random), dy = randomArray(s.planes * s.oh * s.ow, random);
      for (const include of [true, false]) {
        const y = new Float32Array(dy.length).fill(NaN);
        k.avgPool2dForward(g, x, y, include);
        const tol = 4 * EPS32 * (s.kh * s.kw + 1);
        close(t, y, ref.avgPool2dForward(g, x, include), tol, `avgPool2dForward ${what} include=${include}`);
        const dx = new Float32Array(x.length).fill(NaN);
        k.avgPool2dBackward(g, dy, dx, include, false);
        const back = ref.avgPool2dBackward(g, dy, include);
        close(t, dx, back, tol, `avgPool2dBackward ${what} include=${include}`);
        const before = randomArray(dx.length, random);
        dx.set(before);
        k.avgPool2dBackward(g, dy, dx, include, true);
        close(t, dx, back.map((v, i) => v + before[i]!), tol, `avgPool2dBackward ${what} accumulate`);
      }
    }
  });

  test(name('pooling works on views with a byteOffset over SharedArrayBuffers'), (t) => {
    const k = load();
    const g = [3, 6, 6, 2, 2, 2, 2, 0, 0];
    const s = ref.poolShape(g);
    const x = sharedView(s.planes * s.h * s.w), y = sharedView(s.planes * s.oh * s.ow), dx = sharedView(x.length);
    x.set(randomArray(x.length, rng(900)));
    const buffer = new SharedArrayBuffer((y.length + 6) * 4);
    const indices = new Int32Array(buffer, 12, y.length);
    k.maxPool2dForward(g, x, y, indices);
    const expected = ref.maxPool2dForward(g, x);
    t.deepEqual(Array.from(y), Array.from(expected.y));
    t.deepEqual(Array.from(indices), Array.from(expected.indices));
    k.maxPool2dBackward(g, y, indices, dx, false);
    close(t, dx, ref.maxPool2dBackward(g, y, indices), 0, 'max backward on shared views');
    k.avgPool2dForward(g, x, y, true);
    close(t, y, ref.avgPool2dForward(g, x, true), 8 * EPS32, 'avg forward on shared views');
    t.true(guardsIntact(x) && guardsIntact(y) && guardsIntact(dx), 'wrote outside a view');
    const all = new Int32Array(buffer);
    t.true(all[0] === 0 && all[1] === 0 && all[2] === 0 && all[all.length - 1] === 0, 'indices written outside its view');
  });

  test(name('pooling rejects bad geometries, indices and arrays and leaves the outputs untouched'), (t) => {
    const k = load();
    const g = [2, 6, 6, 2, 2, 2, 2, 0, 0];
    const x = new Float32Array(72).fill(1), y = new Float32Array(18).fill(7), indices = new Int32Array(18).fill(7);
    const dx = new Float32Array(72).fill(7), dy = new Float32Array(18).fill(1);
    const with_ = (j: number, v: number): number[] => g.map((e, i) => (i === j ? v : e));
    const bad: Array<[string, unknown, typeof TypeError]> = [
      ['8 fields', g.slice(0, 8), RangeError],
      ['not a list', 'geometry', TypeError],
      ['planes = 0', with_(0, 0), RangeError],
      ['stride 0', with_(5, 0), RangeError],
      ['padding over half the window', with_(7, 2), RangeError],
      ['negative padding', with_(8, -1), RangeError],
      ['window larger than the input', with_(3, 7), RangeError],
      ['planes beyond 2^31 - 1 positions', [1, 65536, 65536, 2, 2, 2, 2, 0, 0], RangeError],
    ];
    for (const [what, geometry, type] of bad) {
      const geo = geometry as number[];
      expectThrows(t, () => k.maxPool2dForward(geo, x, y, indices), type, `max forward: ${what}`);
      expectThrows(t, () => k.maxPool2dBackward(geo, dy, new Int32Array(18), dx, false), type, `max backward: ${what}`);
      expectThrows(t, () => k.avgPool2dForward(geo, x, y, true), type, `avg forward: ${what}`);
      expectThrows(t, () => k.avgPool2dBackward(geo, dy, dx, true, false), type, `avg backward: ${what}`);
    }
    expectThrows(t, () => k.maxPool2dForward(g, x.subarray(1), y, indices), RangeError, 'x short');
    expectThrows(t, () => k.maxPool2dForward(g, x, y.subarray(1), indices), RangeError, 'y short');
    expectThrows(t, () => k.maxPool2dForward(g, x, y, indices.subarray(1)), RangeError, 'indices short');
    expectThrows(t, () => k.maxPool2dForward(g, x, y, new Float32Array(18) as unknown as Int32Array), TypeError, 'indices Float32Array');
    expectThrows(t, () => k.maxPool2dForward(g, x, x.subarray(0, 18), indices), RangeError, 'y overlaps x');
    for (const at of [-1, 36, 2 ** 31 - 1]) {
      const badIndices = new Int32Array(18);
      badIndices[17] = at;
      expectThrows(t, () => k.maxPool2dBackward(g, dy, badIndices, dx, false), RangeError, `index ${at}`);
    }
    expectThrows(t, () => k.maxPool2dBackward(g, dy, new Int32Array(18), dx, 1 as unknown as boolean), TypeError, 'accumulate');
    expectThrows(t, () => k.avgPool2dForward(g, x, y, 'yes' as unknown as boolean), TypeError, 'countIncludePad');
    expectThrows(t, () => k.avgPool2dBackward(g, dy, dx.subarray(2), true, false), RangeError, 'dx short');
    expectThrows(t, () => k.avgPool2dBackward(g, dy, dy, true, false), RangeError, 'dx is dy');
    t.true(y.every((v) => v === 7) && indices.every((v) => v === 7) && dx.every((v) => v === 7), 'outputs untouched');
  });

  // ---- batch normalisation -------------------------------------------------------------------

  const normShapes: Array<[number, number, number]> = [[4, 3, 25], [2, 5, 1], [1, 2, 7], [3, 16, 49], [1, 1, 1], [8, 4, 17]];

  test(name('batchNormForward follows torch in training (running statistics too) and eval'), (t) => {
    const k = load();
    let seed = 1000;
    for (const [n, c, hw] of normShapes) {
      const random = rng(seed++);
      const x = randomArray(n * c * hw, random, -3, 5), gamma = randomArray(c, random), beta = randomArray(c, random);
      const rm = randomArray(c, random), rv = randomArray(c, random, 0.5, 2);
      for (const [training, g, b, running] of [[true, gamma, beta, true], [true, null, null, false], [false, gamma, beta, true],
        [false, null, beta, true]] as const) {
        const y = new Float32Array(x.length).fill(NaN), mean = new Float32Array(c).fill(NaN), invstd = new Float32Array(c).fill(NaN);
        const runningMean = running ? Float32Array.from(rm) : null, runningVar = running ? Float32Array.from(rv) : null;
        k.batchNormForward(x, y, g, b, mean, invstd, runningMean, runningVar, n, c, hw, training, 0.1, 1e-5);
        const e = ref.batchNormForward(x, g, b, rm, rv, n, c, hw, training, 0.1, 1e-5);
        const what = `batchNorm ${n}x${c}x${hw} training=${training} gamma=${g !== null}`;
        close(t, mean, e.saveMean, 1e-6, `${what}: saveMean`);
        close(t, invstd, e.saveInvstd, 2e-6, `${what}: saveInvstd`);
        close(t, y, e.y, 1e-5, `${what}: y`);
        if (running) {
          close(t, runningMean!, training ? e.runningMean! : rm, 1e-6, `${what}: runningMean`);
          close(t, runningVar!, training ? e.runningVar! : rv, 1e-6, `${what}: runningVar`);
        }
        const inPlace = Float32Array.from(x);
        k.batchNormForward(inPlace, inPlace, g, b, mean, invstd, running ? Float32Array.from(rm) : null,
          running ? Float32Array.from(rv) : null, n, c, hw, training, 0.1, 1e-5);
        t.deepEqual(inPlace, y, `${what}: in place`);
      }
    }
  });

  test(name('batchNormForward keeps its statistics accurate for a large mean'), (t) => {
    const k = load();
    const n = 16, c = 2, hw = 64, random = rng(1100);
    const x = Float32Array.from({ length: n * c * hw }, () => 1000 + random());
    const y = new Float32Array(x.length), mean = new Float32Array(c), invstd = new Float32Array(c);
    k.batchNormForward(x, y, null, null, mean, invstd, null, null, n, c, hw, true, 0.1, 1e-5);
    const e = ref.batchNormForward(x, null, null, null, null, n, c, hw, true, 0.1, 1e-5);
    close(t, invstd, e.saveInvstd, 1e-5, 'invstd (a float sum of squares would lose it)');
    close(t, y, e.y, 2e-3, 'y');
  });

  test(name('batchNormBackward follows the formulas in training and eval, with flags and null outputs'), (t) => {
    const k = load();
    let seed = 1200;
    for (const [n, c, hw] of normShapes) {
      const random = rng(seed++);
      const x = randomArray(n * c * hw, random, -2, 3), dy = randomArray(x.length, random), gamma = randomArray(c, random);
      const mean = new Float32Array(c), invstd = new Float32Array(c);
      k.batchNormForward(x, new Float32Array(x.length), gamma, null, mean, invstd, null, null, n, c, hw, true, 0.1, 1e-5);
      for (const training of [true, false]) {
        for (const g of [gamma, null]) {
          const e = ref.batchNormBackward(x, dy, g, mean, invstd, n, c, hw, training);
          const what = `batchNormBackward ${n}x${c}x${hw} training=${training} gamma=${g !== null}`;
          const tol = 1e-5 * Math.sqrt(n * hw + 1);
          const dx = new Float32Array(x.length).fill(NaN), dgamma = new Float32Array(c).fill(NaN), dbeta = new Float32Array(c).fill(NaN);
          k.batchNormBackward(x, dy, g, mean, invstd, dx, dgamma, dbeta, n, c, hw, training, false, false, false);
          close(t, dx, e.dx, tol, `${what}: dx`);
          close(t, dgamma, e.dgamma, tol, `${what}: dgamma`);
          close(t, dbeta, e.dbeta, tol, `${what}: dbeta`);
          const dx0 = randomArray(x.length, random), dg0 = randomArray(c, random), db0 = randomArray(c, random);
          dx.set(dx0); dgamma.set(dg0); dbeta.set(db0);
          k.batchNormBackward(x, dy, g, mean, invstd, dx, dgamma, dbeta, n, c, hw, training, true, true, true);
          close(t, dx, e.dx.map((v, i) => v + dx0[i]!), tol, `${what}: dx accumulated`);
          close(t, dgamma, e.dgamma.map((v, i) => v + dg0[i]!), tol, `${what}: dgamma accumulated`);
          close(t, dbeta, e.dbeta.map((v, i) => v + db0[i]!), tol, `${what}: dbeta accumulated`);
          const onlyBeta = new Float32Array(c);
          k.batchNormBackward(x, dy, g, mean, invstd, null, null, onlyBeta, n, c, hw, training, false, false, false);
          close(t, onlyBeta, e.dbeta, tol, `${what}: dbeta alone`);
          const inPlace = Float32Array.from(dy);
          k.batchNormBackward(x, inPlace, g, mean, invstd, inPlace, null, null, n, c, hw, training, false, false, false);
          close(t, inPlace, e.dx, tol, `${what}: dx in place over dy`);
        }
      }
    }
  });

  test(name('batchNormBackward agrees with central differences of the training forward'), (t) => {
    const k = load();
    const n = 2, c = 2, hw = 3, random = rng(1300);
    const x = randomArray(n * c * hw, random), gamma = randomArray(c, random), beta = randomArray(c, random);
    const r = randomArray(x.length, random);
    const loss = (xx: ArrayLike<number>, gg: ArrayLike<number>): number =>
      ref.batchNormForward(xx, gg, beta, null, null, n, c, hw, true, 0.1, 1e-5).y.reduce((a, v, i) => a + v * r[i]!, 0);
    const h = 1e-4;
    const fd = (base: Float32Array, at: number, f: (v: Float64Array) => number): number => {
      const plus = Float64Array.from(base), minus = Float64Array.from(base);
      plus[at]! += h;
      minus[at]! -= h;
      return (f(plus) - f(minus)) / (2 * h);
    };
    const mean = new Float32Array(c), invstd = new Float32Array(c);
    k.batchNormForward(x, new Float32Array(x.length), gamma, beta, mean, invstd, null, null, n, c, hw, true, 0.1, 1e-5);
    const dx = new Float32Array(x.length), dgamma = new Float32Array(c), dbeta = new Float32Array(c);
    k.batchNormBackward(x, r, gamma, mean, invstd, dx, dgamma, dbeta, n, c, hw, true, false, false, false);
    close(t, dx, Array.from(x, (_, i) => fd(x, i, (v) => loss(v, gamma))), 1e-3, 'dx by differences');
    close(t, dgamma, Array.from(gamma, (_, i) => fd(gamma, i, (v) => loss(x, v))), 1e-3, 'dgamma by differences');
  });

  test(name('batch norm works on views with a byteOffset over SharedArrayBuffers'), (t) => {
    const k = load();
    const n = 3, c = 4, hw = 10;
    const x = sharedView(n * c * hw), y = sharedView(x.length), mean = sharedView(c), invstd = sharedView(c);
    const rm = sharedView(c), rv = sharedView(c), dx = sharedView(x.length), dgamma = sharedView(c), dbeta = sharedView(c);
    x.set(randomArray(x.length, rng(1400)));
    rm.fill(0);
    rv.fill(1);
    k.batchNormForward(x, y, null, null, mean, invstd, rm, rv, n, c, hw, true, 0.1, 1e-5);
    const e = ref.batchNormForward(x, null, null, new Float32Array(c), new Float32Array(c).fill(1), n, c, hw, true, 0.1, 1e-5);
    close(t, y, e.y, 1e-5, 'y on shared views');
    close(t, rv, e.runningVar!, 1e-6, 'runningVar on shared views');
    k.batchNormBackward(x, y, null, mean, invstd, dx, dgamma, dbeta, n, c, hw, true, false, false, false);
    const b = ref.batchNormBackward(x, y, null, mean, invstd, n, c, hw, true);
    close(t, dgamma, b.dgamma, 1e-5, 'dgamma on shared views');
    for (const v of [x, y, mean, invstd, rm, rv, dx, dgamma, dbeta]) t.true(guardsIntact(v), 'wrote outside a view');
  });

  test(name('batch norm rejects bad arguments and leaves the outputs untouched'), (t) => {
    const k = load();
    const n = 2, c = 3, hw = 4;
    const x = new Float32Array(24).fill(1), y = new Float32Array(24).fill(7), mean = new Float32Array(3).fill(7);
    const invstd = new Float32Array(3).fill(7), rm = new Float32Array(3).fill(7), rv = new Float32Array(3).fill(7);
    const fwd = (over: Record<string, unknown>) => () => {
      const a = { x, y, gamma: null, beta: null, mean, invstd, rm, rv, n, c, hw, training: true, momentum: 0.1, eps: 1e-5, ...over };
      (k.batchNormForward as (...v: unknown[]) => void)(a.x, a.y, a.gamma, a.beta, a.mean, a.invstd, a.rm, a.rv, a.n, a.c, a.hw,
        a.training, a.momentum, a.eps);
    };
    expectThrows(t, fwd({ rm: null, rv: null, training: false }), TypeError, 'eval without running statistics');
    expectThrows(t, fwd({ rv: null }), TypeError, 'runningMean without runningVar');
    expectThrows(t, fwd({ n: 0 }), RangeError, 'n = 0');
    expectThrows(t, fwd({ hw: 1.5 }), RangeError, 'fractional hw');
    expectThrows(t, fwd({ c: 4 }), RangeError, 'x short for c');
    expectThrows(t, fwd({ y: new Float32Array(23) }), RangeError, 'y short');
    expectThrows(t, fwd({ gamma: new Float32Array(2) }), RangeError, 'gamma short');
    expectThrows(t, fwd({ mean: new Float32Array(2) }), RangeError, 'saveMean short');
    expectThrows(t, fwd({ rv: new Float32Array(2) }), RangeError, 'runningVar short');
    expectThrows(t, fwd({ invstd: new Float64Array(3) }), TypeError, 'saveInvstd Float64Array');
    expectThrows(t, fwd({ eps: -1 }), RangeError, 'negative eps');
    expectThrows(t, fwd({ momentum: NaN }), RangeError, 'NaN momentum');
    expectThrows(t, fwd({ training: 'yes' }), TypeError, 'training not a boolean');
    expectThrows(t, fwd({ invstd: mean }), RangeError, 'saveInvstd is saveMean');
    const big = new Float32Array(25);
    expectThrows(t, fwd({ x: big.subarray(0, 24), y: big.subarray(1, 25) }), RangeError, 'y partly overlaps x');
    t.true([y, mean, invstd, rm, rv].every((a) => a.every((v) => v === 7)), 'outputs untouched');
    const dx = new Float32Array(24).fill(7), dgamma = new Float32Array(3).fill(7), dbeta = new Float32Array(3).fill(7);
    const bwd = (over: Record<string, unknown>) => () => {
      const a = { x, dy: x, gamma: null, mean: rm, invstd: rv, dx, dgamma, dbeta, n, c, hw, training: true, ad: false, ag: false,
        ab: false, ...over };
      (k.batchNormBackward as (...v: unknown[]) => void)(a.x, a.dy, a.gamma, a.mean, a.invstd, a.dx, a.dgamma, a.dbeta, a.n, a.c,
        a.hw, a.training, a.ad, a.ag, a.ab);
    };
    expectThrows(t, bwd({ dy: new Float32Array(20) }), RangeError, 'dy short');
    expectThrows(t, bwd({ dx: new Float32Array(20) }), RangeError, 'dx short');
    expectThrows(t, bwd({ dgamma: new Float32Array(2) }), RangeError, 'dgamma short');
    expectThrows(t, bwd({ dbeta: dgamma }), RangeError, 'dbeta is dgamma');
    expectThrows(t, bwd({ dx: x }), RangeError, 'dx is x');
    expectThrows(t, bwd({ ag: 0 }), TypeError, 'accumulateDgamma not a boolean');
    expectThrows(t, bwd({ c: 0 }), RangeError, 'c = 0');
    t.true([dx, dgamma, dbeta].every((a) => a.every((v) => v === 7)), 'gradients untouched');
  });
}
