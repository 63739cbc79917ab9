// The CPU addon's 16-bit wire-format kernels (kernels.h, "16-bit wire formats") against
// src/tensor/half.ts's TypeScript fallback, bit for bit: random bit patterns, random values in and
// around each format's range, the edge cases (±0, subnormals of both formats, max finite, values
// that round up to inf, ties to even, NaNs with payloads, inf), lengths 0, 1, 7, 33, 1000, 4097,
// views at odd element offsets, guard elements around every output. The suite runs on the best
// vector path here and again in a child ava process per lower path (PSRPC_SIMD=avx2|scalar), as
// test/native/kernels.test.ts does.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsBackend, setBackend } from '../../src/tensor/backend.js';
import { accumulateWire, fromWire, nonFiniteCount, roundToWire, toWire } from '../../src/tensor/half.js';
import { cpuKernels, packageRoot, type NativeKernels } from '../../src/tensor/native.js';

// half.ts runs its TypeScript code in this process: it is the reference the native kernels equal.
setBackend(jsBackend());

type Wire = Required<NativeKernels>;
const k = cpuKernels() as Wire;
const LENGTHS = [0, 1, 7, 33, 1000, 4097];
const OFFSETS = [0, 1, 3];
const GUARD = 5;

// ---- data ----

let seed = 0x9e3779b9;
function rand32(): number {
  // xorshift32: reproducible
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>>= 0);
}

const f32 = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0]!;

/** fp32 patterns that matter to either 16-bit format. */
const EDGE_BITS: number[] = [
  0x00000000, 0x80000000, // ±0
  0x00000001, 0x807fffff, 0x00400000, // fp32 subnormals
  0x7f800000, 0xff800000, // ±inf
  0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa5a5a5, 0x7fffffff, 0xffffffff, 0x7f80ffff, 0x7f810000, // NaNs
  0x7f7fffff, 0xff7fffff, 0x7f7f7fff, 0x7f7f8000, 0x7f7f8001, 0x7f7effff, // bf16: max finite, round up to inf, ties
  0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, 0xbf808000, 0xbf818000, // bf16 ties to even
  0x00008000, 0x00018000, 0x0000ffff, // bf16 subnormals and ties among them
];
/** Values for fp16: around its max finite, its subnormal range and its ties. */
const EDGE_VALUES: number[] = [
  65504, -65504, 65519, 65519.996, 65520, -65520, 65536, 1e6, 131008,
  2 ** -14, 2 ** -14 * (1 - 2 ** -11), 2 ** -24, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -25 * 0.9999999, 3 * 2 ** -25,
  5 * 2 ** -25, 2 ** -26, 2 ** -24 * 1.5, 2 ** -24 * 2.5, 2 ** -15 + 2 ** -25, 1023 * 2 ** -24, 1023.5 * 2 ** -24,
  1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, 2048 + 1, 2048 + 3, -(1 + 2 ** -11), 0.1, -0.1, 1 / 3,
];

function floats(n: number): Float32Array {
  const x = new Float32Array(n), u = new Uint32Array(x.buffer);
  const edges = [...EDGE_BITS.map(f32), ...EDGE_VALUES.map((v) => Math.fround(v))];
  for (let i = 0; i < n; i++) {
    const pick = rand32() % 8;
    if (pick === 0) u[i] = rand32(); // any pattern: NaNs, infs, subnormals included
    else if (pick === 1) x[i] = edges[rand32() % edges.length]!;
    else {
      // a value anywhere from fp16's subnormals to beyond its max (and fp32 beyond bf16's reach)
      const mant = (rand32() / 2 ** 32) * 2 - 1;
      x[i] = mant * 2 ** ((rand32() % 60) - 30);
      if (pick === 2) u[i] = (u[i]! & ~0x1fff) | 0x1000 | (rand32() & 0x2000); // an fp16 tie
      if (pick === 3) u[i] = (u[i]! & ~0xffff) | 0x8000; // a bf16 tie
    }
  }
  return x;
}

function halves(n: number): Uint16Array {
  const h = new Uint16Array(n);
  for (let i = 0; i < n; i++) h[i] = n >= 65536 ? i & 0xffff : rand32() & 0xffff;
  return h;
}

/** A view of `len` elements at element offset `off` of a larger array filled with a guard pattern. */
function view<T extends Float32Array | Uint16Array>(make: (n: number) => T, src: T, off: number, guard: number): T {
  const whole = make(off + src.length + GUARD);
  (whole instanceof Float32Array ? new Uint32Array(whole.buffer) : new Uint16Array(whole.buffer)).fill(guard);
  const v = whole.subarray(off, off + src.length) as T;
  v.set(src);
  return v;
}

const bitsOf = (x: Float32Array | Uint16Array) => (x instanceof Float32Array ? new Uint32Array(x.buffer, x.byteOffset, x.length) : x);

/** The view and its surroundings as bit patterns, for a bit-for-bit comparison of everything. */
function whole(x: Float32Array | Uint16Array): number[] {
  return Array.from(x instanceof Float32Array ? new Uint32Array(x.buffer) : new Uint16Array(x.buffer));
}

/** fp16 signalling NaNs widen to quiet ones on the native side; JS may or may not quiet them. */
function quietNaNs(x: Float32Array): Float32Array {
  const u = bitsOf(x);
  for (let i = 0; i < u.length; i++) if (isNaNBits(u[i]!)) u[i] = u[i]! | 0x400000;
  return x;
}

const isNaNBits = (u: number) => (u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0;

/**
 * Which NaN a sum of NaNs gives is left open: JS does not define it (V8 may swap the operands of an
 * add, or canonicalise), nor do the compiled loops (the compiler may swap a commutative add's
 * operands too). So a sum is compared bit for bit except that a NaN only has to meet a NaN.
 */
function canonicalNaNs(x: Float32Array): void {
  const u = bitsOf(x);
  for (let i = 0; i < u.length; i++) if (isNaNBits(u[i]!)) u[i] = 0x7fc00000;
}

const F32 = (n: number) => new Float32Array(n);
const U16 = (n: number) => new Uint16Array(n);

function sameBits(t: import('ava').ExecutionContext, got: Float32Array | Uint16Array, want: Float32Array | Uint16Array, what: string) {
  const g = whole(got), w = whole(want);
  if (g.length !== w.length) return t.fail(`${what}: lengths ${g.length} vs ${w.length}`);
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== w[i]) return t.fail(`${what}: element ${i} of the buffer: native 0x${g[i]!.toString(16)}, reference 0x${w[i]!.toString(16)}`);
  }
  t.pass();
}

const simd = k.simd();
const cases = LENGTHS.flatMap((n) => OFFSETS.map((off) => ({ n, off })));

// ---- the kernels ----

for (const [name, fmt] of [['wireToBf16', 'bfloat16'], ['wireToF16', 'float16']] as const) {
  test(`${simd}: ${name} equals toWire(${fmt}) bit for bit`, (t) => {
    for (const { n, off } of cases) {
      const src = floats(n);
      const dst = view(U16, U16(n), off, 0xabcd), ref = view(U16, U16(n), off, 0xabcd);
      const before = Array.from(bitsOf(src));
      k[name](src, dst);
      toWire(fmt, src, ref);
      sameBits(t, dst, ref, `${name} n=${n} off=${off}`);
      t.deepEqual(Array.from(bitsOf(src)), before, 'src untouched');
    }
  });
}

for (const [name, fmt] of [['wireFromBf16', 'bfloat16'], ['wireFromF16', 'float16']] as const) {
  test(`${simd}: ${name} equals fromWire(${fmt}) bit for bit, all 65536 patterns too`, (t) => {
    for (const { n, off } of [...cases, { n: 65536, off: 1 }]) {
      const src = view(U16, halves(n), off, 0);
      const dst = view(F32, F32(n), off, 0x5a5a5a5a), ref = view(F32, F32(n), off, 0x5a5a5a5a);
      k[name](src, dst);
      fromWire(fmt, src, ref);
      if (fmt === 'float16') quietNaNs(ref);
      sameBits(t, dst, ref, `${name} n=${n} off=${off}`);
    }
  });
}

for (const [name, fmt] of [['wireAccBf16', 'bfloat16'], ['wireAccF16', 'float16'], ['wireAccF32', 'float32']] as const) {
  for (const op of ['sum', 'max'] as const) {
    test(`${simd}: ${name} op ${op} equals accumulateWire(${fmt}, ${op}) bit for bit`, (t) => {
      for (const { n, off } of cases) {
        const base = floats(n);
        // ties and equal magnitudes of both signs for max; NaN on either side
        const src = fmt === 'float32' ? view(F32, floats(n), off, 0) : view(U16, halves(n), off, 0);
        if (n > 3 && fmt !== 'float32') {
          toWire(fmt, base.subarray(0, 3), (src as Uint16Array).subarray(0, 3)); // equal values
          base[1] = -base[1]!;
        }
        const acc = view(F32, base, off, 0x5a5a5a5a), ref = view(F32, base, off, 0x5a5a5a5a);
        k[name](acc, src as never, op === 'sum' ? 0 : 1);
        accumulateWire(fmt, op, ref, src);
        if (op === 'sum') {
          canonicalNaNs(acc);
          canonicalNaNs(ref);
        }
        sameBits(t, acc, ref, `${name} ${op} n=${n} off=${off}`);
      }
    });
  }
}

for (const [name, fmt] of [['wireRoundBf16', 'bfloat16'], ['wireRoundF16', 'float16']] as const) {
  test(`${simd}: ${name} equals roundToWire(${fmt}) bit for bit`, (t) => {
    for (const { n, off } of cases) {
      const x0 = floats(n);
      const x = view(F32, x0, off, 0x5a5a5a5a), ref = view(F32, x0, off, 0x5a5a5a5a);
      k[name](x);
      roundToWire(fmt, ref);
      sameBits(t, x, ref, `${name} n=${n} off=${off}`);
    }
  });
}

test(`${simd}: nonFiniteCount equals the reference count`, (t) => {
  for (const { n, off } of cases) {
    const x = view(F32, floats(n), off, 0x7f800000); // the guard elements are infs: must not be counted
    t.is(k.nonFiniteCount(x), nonFiniteCount(x), `n=${n} off=${off}`);
  }
  const all = new Float32Array(4097).fill(Infinity);
  t.is(k.nonFiniteCount(all), 4097);
});

test(`${simd}: the conversions of named values`, (t) => {
  const x = new Float32Array([1, -2, 65504, 65520, 2 ** -24, 2 ** -25, 3 * 2 ** -25, NaN, -Infinity, 3.4028234663852886e38]);
  const h = new Uint16Array(x.length);
  k.wireToF16(x, h);
  t.deepEqual(Array.from(h), [0x3c00, 0xc000, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x0002, 0x7e00, 0xfc00, 0x7c00]);
  k.wireToBf16(x, h);
  t.deepEqual(Array.from(h).slice(0, 3), [0x3f80, 0xc000, 0x4780]);
  t.deepEqual(Array.from(h).slice(7), [0x7fc0, 0xff80, 0x7f80]); // NaN, -inf, max fp32 rounds up to inf
  const sNaN16 = new Uint16Array([0x7c01, 0xfd55, 0x0001, 0x8000]), w = new Float32Array(4);
  k.wireFromF16(sNaN16, w);
  t.deepEqual(Array.from(bitsOf(w)), [0x7fc02000, 0xffeaa000, 0x33800000, 0x80000000]);
});

// ---- argument checks ----

test('the wire kernels check their arguments and touch nothing on a bad one', (t) => {
  const f = new Float32Array(8).fill(1.5), h = new Uint16Array(8).fill(7);
  const checks: [() => unknown, new (...a: never[]) => Error, RegExp][] = [
    [() => k.wireToBf16(new Float64Array(8) as never, h), TypeError, /^wireToBf16: src must be a Float32Array, got a Float64Array$/],
    [() => k.wireToF16(f, new Int16Array(8) as never), TypeError, /^wireToF16: dst must be a Uint16Array, got a Int16Array$/],
    [() => k.wireToBf16(f, new Uint16Array(7)), RangeError, /^wireToBf16: dst has 7 elements, src has 8; they must match$/],
    [() => k.wireFromBf16(h, new Float32Array(9)), RangeError, /^wireFromBf16: dst has 9 elements, src has 8/],
    [() => k.wireFromF16(f as never, f), TypeError, /^wireFromF16: src must be a Uint16Array, got a Float32Array$/],
    [() => k.wireAccBf16(f, h, 2), RangeError, /^wireAccBf16: op must be 0 \(sum\) or 1 \(max\), got 2$/],
    [() => k.wireAccF16(f, h, NaN), RangeError, /^wireAccF16: op must be 0 \(sum\) or 1 \(max\), got NaN$/],
    [() => k.wireAccF16(f, h, 'sum' as never), TypeError, /^wireAccF16: op must be a number, got a string$/],
    [() => k.wireAccF32(f, h as never, 0), TypeError, /^wireAccF32: src must be a Float32Array, got a Uint16Array$/],
    [() => k.wireAccBf16(f, new Uint16Array(3), 0), RangeError, /^wireAccBf16: src has 3 elements, acc has 8; they must match$/],
    [() => k.wireAccF32(f, f, 0), RangeError, /^wireAccF32: acc overlaps src; they must be distinct memory$/],
    [() => k.wireRoundBf16(h as never), TypeError, /^wireRoundBf16: x must be a Float32Array, got a Uint16Array$/],
    [() => k.wireRoundF16(undefined as never), TypeError, /^wireRoundF16: x must be a Float32Array, got undefined$/],
    [() => k.nonFiniteCount([1, 2] as never), TypeError, /^nonFiniteCount: x must be a Float32Array, got an Array$/],
  ];
  for (const [call, type, message] of checks) t.throws(call, { instanceOf: type, message });
  // overlapping memory: a Uint16Array over src's own bytes
  const shared = new Float32Array(8).fill(2);
  t.throws(() => k.wireToBf16(shared, new Uint16Array(shared.buffer, 0, 8)), { instanceOf: RangeError, message: /^wireToBf16: dst overlaps src/ });
  t.throws(() => k.wireFromF16(new Uint16Array(shared.buffer, 16, 8), shared), { instanceOf: RangeError, message: /^wireFromF16: dst overlaps src/ });
  t.deepEqual(Array.from(f), new Array(8).fill(1.5));
  t.deepEqual(Array.from(h), new Array(8).fill(7));
  t.deepEqual(Array.from(shared), new Array(8).fill(2));
});

// ---- the lower vector paths ----

const forcedPath = process.env.PSRPC_SIMD;
const paths = ['scalar', 'avx2', 'avx512'];
if (!forcedPath) {
  const best = paths.indexOf(simd);
  for (const path of ['avx2', 'scalar'].filter((p) => paths.indexOf(p) < best)) {
    test(`the ${path} path passes the same tests (child process with PSRPC_SIMD=${path})`, (t) => {
      const ava = join(packageRoot(), 'node_modules', 'ava', 'entrypoints', 'cli.mjs');
      const child = spawnSync(process.execPath, [ava, fileURLToPath(import.meta.url)], {
        cwd: packageRoot(),
        env: { ...process.env, PSRPC_SIMD: path },
        encoding: 'utf8',
        timeout: 110_000,
      });
      const output = `${child.stdout}\n${child.stderr}`;
      t.is(child.status, 0, output);
      t.regex(output, new RegExp(`${path}: wireToBf16`), output);
      t.regex(output, /\d+ tests passed/, output);
    });
  }
}
