// src/tensor/half.ts, the wire formats' face: with the native addon and with the TypeScript
// fallback (the CPU backend switched to the js one) it computes the same bits and throws the same
// errors; bf16 and fp16 round trips stay within their precision in the normal range.
import test from 'ava';
import { getBackend, jsBackend, nativeCpuBackend, resetBackend, setBackend } from '../../src/tensor/backend.js';
import { cudaEmuKernels } from '../../src/tensor/cuda.js';
import { accumulateWire, fromWire, nonFiniteCount, roundToWire, toWire, wireBytes, type WireDType } from '../../src/tensor/half.js';

/** fn's result with the native CPU backend, then with the TypeScript one (each test body is synchronous). */
function both<T>(fn: () => T): [T, T] {
  try {
    setBackend(nativeCpuBackend());
    const native = fn();
    setBackend(jsBackend());
    return [native, fn()];
  } finally {
    resetBackend('cpu');
  }
}

let seed = 12345;
function rand(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
}

/** Values of every size from fp16's subnormals past both formats' max, a few specials, fixed seed. */
function sample(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (rand() * 2 - 1) * 2 ** Math.floor(rand() * 60 - 30);
  const specials = [0, -0, Infinity, -Infinity, NaN, 65504, 65520, 2 ** -24, 2 ** -25, 3.4e38];
  specials.forEach((v, j) => { if (j * 7 < n) x[j * 7] = v; });
  // NaNs with payloads (a signalling one among them), written as bits: a JS number may not keep them
  const u = new Uint32Array(x.buffer, x.byteOffset, n);
  [0x7f800001, 0xffa12345, 0x7fc00001, 0x7f802000, 0x3f808000, 0x3f801000].forEach((b, j) => { if (j * 11 + 5 < n) u[j * 11 + 5] = b; });
  return x;
}

const bits = (x: Float32Array | Uint16Array) => Array.from(x instanceof Float32Array ? new Uint32Array(x.buffer, x.byteOffset, x.length) : x);
const DTYPES: WireDType[] = ['float32', 'bfloat16', 'float16'];

test('toWire, fromWire, roundToWire, nonFiniteCount: native and TypeScript give the same bits', (t) => {
  for (const n of [0, 1, 7, 33, 1000, 4097]) {
    const x = sample(n + 3).subarray(3); // an offset view
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const [wn, wj] = both(() => toWire(dtype, x) as Uint16Array);
      t.deepEqual(bits(wn), bits(wj), `toWire ${dtype} n=${n}`);
      const [bn, bj] = both(() => {
        const out = new Float32Array(n + 1).subarray(1);
        fromWire(dtype, wn, out);
        return out;
      });
      t.deepEqual(bits(bn), bits(bj), `fromWire ${dtype} n=${n}`);
      const [rn, rj] = both(() => {
        const y = x.slice();
        roundToWire(dtype, y);
        return y;
      });
      t.deepEqual(bits(rn), bits(rj), `roundToWire ${dtype} n=${n}`);
      t.deepEqual(bits(rn), bits(bn), `roundToWire ${dtype} = fromWire(toWire) n=${n}`);
    }
    const [cn, cj] = both(() => nonFiniteCount(x));
    t.is(cn, cj);
  }
});

test('accumulateWire: native and TypeScript give the same bits for each dtype and op', (t) => {
  for (const n of [0, 1, 7, 33, 1000, 4097]) {
    const acc0 = sample(n), x = sample(n);
    for (const dtype of DTYPES) {
      const wire = dtype === 'float32' ? x : (toWire(dtype, x) as Uint16Array);
      for (const op of ['sum', 'max'] as const) {
        const [an, aj] = both(() => {
          const acc = acc0.slice();
          accumulateWire(dtype, op, acc, wire);
          return acc;
        });
        t.deepEqual(bits(an), bits(aj), `${dtype} ${op} n=${n}`); // a NaN result is 0x7fc00000 on both (kernels.h)
      }
    }
  }
});

test('float32 on the wire: toWire returns src itself, or copies into dst; fromWire copies', (t) => {
  const x = sample(9);
  for (const [n, j] of [both(() => toWire('float32', x)), both(() => toWire('float32', x, new Float32Array(9)))]) {
    t.deepEqual(bits(n as Float32Array), bits(j as Float32Array));
  }
  t.is(toWire('float32', x), x);
  const out = new Float32Array(9);
  fromWire('float32', x, out);
  t.deepEqual(bits(out), bits(x));
  t.is(wireBytes('float32'), 4);
  t.is(wireBytes('bfloat16'), 2);
  t.is(wireBytes('float16'), 2);
});

test('round trips stay within precision in the normal range: bf16 2^-8, fp16 2^-11 relative', (t) => {
  const n = 5000;
  for (const [dtype, lo, hi, tol] of [['bfloat16', 2 ** -126, 3e38, 2 ** -8], ['float16', 2 ** -14, 65504, 2 ** -11]] as const) {
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (rand() < 0.5 ? -1 : 1) * Math.fround(Math.exp(Math.log(lo) + rand() * (Math.log(hi) - Math.log(lo))));
    for (const back of both(() => {
      const y = new Float32Array(n);
      fromWire(dtype, toWire(dtype, x), y);
      return y;
    })) {
      let worst = 0;
      for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(back[i]! - x[i]!) / Math.abs(x[i]!));
      t.true(worst <= tol, `${dtype}: worst relative error ${worst}`);
    }
  }
});

test('views over the same memory keep to the in-order TypeScript loops, native or not', (t) => {
  // a Uint16Array over the first half of src's own bytes: narrowing in place
  const x64 = sample(64), x16 = sample(16);
  const [n, j] = both(() => {
    const x = x64.slice();
    const wire = new Uint16Array(x.buffer, 0, 64);
    toWire('bfloat16', x, wire);
    return Array.from(wire);
  });
  t.deepEqual(n, j);
  const [an, aj] = both(() => {
    const x = x16.slice();
    accumulateWire('float32', 'sum', x, x); // acc and src the very same array: doubles
    return bits(x);
  });
  t.deepEqual(an, aj);
});

test('bad arguments give the same errors with either implementation and touch nothing', (t) => {
  const f = new Float32Array(4).fill(3), h = new Uint16Array(4).fill(9);
  const calls: (() => unknown)[] = [
    () => toWire('float64' as WireDType, f),
    () => toWire('bfloat16', new Float64Array(4) as never),
    () => toWire('float16', f, new Uint16Array(3)),
    () => toWire('bfloat16', f, new Float32Array(4)),
    () => toWire('float32', f, h as never),
    () => fromWire('bfloat16', f as never, f),
    () => fromWire('float16', h, new Float32Array(5)),
    () => fromWire('float16', h, h as never),
    () => accumulateWire('bfloat16', 'min' as never, f, h),
    () => accumulateWire('float16', 'sum', f, new Uint16Array(5)),
    () => accumulateWire('float32', 'max', f, h as never),
    () => accumulateWire('bfloat16', 'sum', h as never, h),
    () => roundToWire('float16', h as never),
    () => roundToWire('x' as WireDType, f),
    () => nonFiniteCount([1] as never),
  ];
  for (const call of calls) {
    const [en, ej] = both(() => {
      try {
        call();
        return 'no error';
      } catch (e) {
        return `${(e as Error).constructor.name}: ${(e as Error).message}`;
      }
    });
    t.not(en, 'no error');
    t.is(en, ej);
  }
  t.deepEqual(Array.from(f), [3, 3, 3, 3]);
  t.deepEqual(Array.from(h), [9, 9, 9, 9]);
});

test('every 16-bit pattern widens (fromWire) and accumulates (sum, max) to the same bits natively and in TypeScript', (t) => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const acc0 = sample(65536);
  for (const dtype of ['bfloat16', 'float16'] as const) {
    const [wn, wj] = both(() => {
      const out = new Float32Array(65536);
      fromWire(dtype, all, out);
      return bits(out);
    });
    t.deepEqual(wn, wj, `fromWire ${dtype}`);
    for (const op of ['sum', 'max'] as const) {
      const [an, aj] = both(() => {
        const acc = acc0.slice();
        accumulateWire(dtype, op, acc, all);
        return bits(acc);
      });
      t.deepEqual(an, aj, `accumulateWire ${dtype} ${op}`);
    }
  }
});

test('the js backend (what PSRPC_KERNELS=js selects) has no wire kernels, and the face computes them itself', (t) => {
  const [n, j] = both(() => getBackend('cpu').name);
  t.not(n, j); // both() really switched implementations
  setBackend(jsBackend());
  try {
    t.is(typeof (getBackend('cpu').kernels as { wireToBf16?: unknown }).wireToBf16, 'undefined');
    const y = new Float32Array([1.00390625, 65520, -0]);
    roundToWire('bfloat16', y);
    t.deepEqual(Array.from(y), [1, 65536, -0]);
  } finally {
    resetBackend('cpu');
  }
});

test('a CPU backend whose addon has no wire kernels (the emulated-CUDA one) gets the TypeScript code, same bits', (t) => {
  const kernels = cudaEmuKernels();
  t.is(typeof kernels.wireToBf16, 'undefined'); // its binding leaves them out: calling one would be an unresolved symbol
  const x = sample(1001);
  const run = () => {
    const w = toWire('float16', x) as Uint16Array, acc = x.slice();
    accumulateWire('float16', 'sum', acc, w);
    roundToWire('bfloat16', acc);
    return [...bits(w), ...bits(acc), nonFiniteCount(acc)];
  };
  setBackend({ device: 'cpu', name: 'cuda-emu', kernels });
  let emu: number[];
  try {
    emu = run();
  } finally {
    resetBackend('cpu');
  }
  t.deepEqual(emu, run());
});
