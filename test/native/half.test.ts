// The CPU addon's 16-bit wire-format kernels (kernels.h, "16-bit wire formats") against plain
// TypeScript references written here by value (scale, round half to even, re-encode) rather than by
// the bit manipulations half.ts and half.cc use, bit for bit, on random patterns and the edge cases
// of both formats, at every length class (empty, shorter than a vector, tails) and on views with
// byte offsets. The lower vector paths (PSRPC_SIMD=avx2|scalar, read once at load) run this same
// file again in a child ava process each, as kernels.test.ts does.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuKernels, packageRoot, type NativeKernels } from '../../src/tensor/native.js';

type Wire = Required<NativeKernels>;
const k = () => cpuKernels() as Wire;

// ---- references ----

const f1 = new Float32Array(1), u1 = new Uint32Array(f1.buffer);
const bitsOf = (x: number): number => ((f1[0] = x), u1[0]!);
const floatOf = (u: number): number => ((u1[0] = u >>> 0), f1[0]!);
const QUIET_NAN = 0x7fc00000;

function roundHalfEven(m: number): number {
  const f = Math.floor(m), d = m - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/** The fp32 value of pattern u rounded to `mantBits` fraction bits with exponents >= minExp (subnormals below). */
function roundValue(u: number, mantBits: number, minExp: number): number {
  const x = floatOf(u), field = (u >>> 23) & 0xff;
  const e = Math.max(field === 0 ? -126 : field - 127, minExp); // x's binade (fp32 subnormals: -126)
  const q = 2 ** (e - mantBits); // the spacing of representable values there
  return Math.sign(x) * roundHalfEven(Math.abs(x) / q) * q; // the quotient and the product are exact in double
}

function refToBf16(u: number): number {
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return ((u >>> 16) | 0x40) & 0xffff;
  if ((u & 0x7fffffff) === 0x7f800000) return u >>> 16;
  const v = roundValue(u, 7, -126); // 2^128 (overflow) becomes inf in the Float32Array: right
  return bitsOf(v) >>> 16;
}

function refToF16(u: number): number {
  const sign = (u >>> 31) << 15;
  if ((u & 0x7f800000) === 0x7f800000) return (u & 0x7fffff) !== 0 ? sign | 0x7e00 | ((u & 0x7fffff) >>> 13) : sign | 0x7c00;
  const v = Math.abs(roundValue(u, 10, -14));
  if (v >= 65536) return sign | 0x7c00;
  if (v < 2 ** -14) return sign | (v / 2 ** -24); // subnormal (or zero): an integer count of 2^-24
  let e = 0;
  while (2 ** (e + 1) <= v) e++;
  while (2 ** e > v) e--;
  return sign | ((e + 15) << 10) | (v / 2 ** e * 1024 - 1024);
}

function refFromF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >>> 10) & 0x1f, mant = h & 0x3ff;
  if (exp === 0x1f) return mant !== 0 ? (((h & 0x8000) << 16) | 0x7fc00000 | (mant << 13)) >>> 0 : bitsOf(sign * Infinity);
  if (exp === 0) return bitsOf(sign * mant * 2 ** -24);
  return bitsOf(sign * (1 + mant / 1024) * 2 ** (exp - 15));
}

const refFromBf16 = (h: number): number => (h << 16) >>> 0;

function refAcc(a: number, x: number, op: number): number {
  if (op === 1) return a !== a || x !== x ? QUIET_NAN : bitsOf(a > x ? a : x);
  const r = Math.fround(a + x);
  return r !== r ? QUIET_NAN : bitsOf(r);
}

// ---- data ----

/** A small deterministic generator (xorshift32), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
}

// fp32 patterns at the edges of both formats.
const EDGES_F32 = [
  0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00800000, // ±0, fp32 subnormals, smallest normal
  0x33800000, 0x33000000, 0x33000001, 0x33c00000, 0xb3400000, // fp16 2^-24, 2^-25 (tie to 0), just above, 1.5 * 2^-24, 0.75 * 2^-24
  0x387fc000, 0x38800000, 0x387fe000, 0x38000000, // largest fp16 subnormal, smallest normal, halfway between, 2^-15
  0x477fe000, 0x477fefff, 0x477ff000, 0xc77ff000, 0x47800000, // 65504, just below 65520, 65520 (-> inf), -65520, 65536
  0x7f7f0000, 0x7f7f7fff, 0x7f7f8000, 0x7f7fffff, 0xff7fffff, // bf16 max finite, just below the tie, tie to inf, fp32 max
  0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, // bf16 ties to even (down, up), just above, just below
  0x3f801000, 0x3f803000, 0x3f801001, // fp16 ties to even at 1 (down, up), just above
  0x7f800000, 0xff800000, // ±inf
  0x7f800001, 0x7fa00000, 0x7fc00000, 0x7fc00001, 0xffffffff, 0xff812345, 0x7fbfffff, 0x7f802000, // NaNs with payloads
  0x3f800000, 0xbf800000, 0x40490fdb, 0x1e3ce508, 0x5d5e0b6b, // ordinary values
];
// Wire patterns at the edges: zeros, subnormals, max finite, inf, NaNs (signalling and quiet), ordinary.
const EDGES_16 = [0x0000, 0x8000, 0x0001, 0x03ff, 0x8200, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7c01, 0x7dff, 0x7e00,
  0xfe01, 0x7f80, 0xff80, 0x7f81, 0x7fc0, 0xffff, 0x3c00, 0x3f80, 0x0080, 0x007f];

const LENGTHS = [0, 1, 7, 33, 1000, 4097];

/** n fp32 patterns: the edges first, then random bits and random magnitudes near both formats' ranges. */
function patterns(n: number, seed: number): Uint32Array {
  const r = rng(seed), out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    if (i < EDGES_F32.length) out[i] = EDGES_F32[(i + seed) % EDGES_F32.length]!;
    else if (i % 3 === 0) out[i] = r();
    else out[i] = bitsOf((r() & 1 ? -1 : 1) * (r() / 2 ** 32) * 2 ** ((r() % 60) - 30)); // 2^-30 .. 2^30
  }
  return out;
}

function wirePatterns(n: number, seed: number): Uint16Array {
  const r = rng(seed), out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = i < EDGES_16.length ? EDGES_16[(i + seed) % EDGES_16.length]! : r() & 0xffff;
  return out;
}

/** A Float32Array of n elements at `offset` floats into a larger buffer (the rest guards its ends). */
function f32View(bits: Uint32Array, offset: number): { view: Float32Array; whole: Uint32Array } {
  const whole = new Uint32Array(bits.length + offset + 3).fill(0xdeadbeef);
  whole.set(bits, offset);
  return { view: new Float32Array(whole.buffer, offset * 4, bits.length), whole };
}

/** A Uint16Array of n elements at `offset` halves into a larger buffer: offset 1 is 2-byte, not 4-byte, aligned. */
function u16View(h: Uint16Array, offset: number): { view: Uint16Array; whole: Uint16Array } {
  const whole = new Uint16Array(h.length + offset + 5).fill(0xbeef);
  whole.set(h, offset);
  return { view: new Uint16Array(whole.buffer, offset * 2, h.length), whole };
}

/** The guard elements around a view are untouched. */
function guardsIntact(whole: Uint32Array | Uint16Array, offset: number, n: number, guard: number): boolean {
  for (let i = 0; i < whole.length; i++) if ((i < offset || i >= offset + n) && whole[i] !== guard) return false;
  return true;
}

function firstMismatch(got: ArrayLike<number>, want: ArrayLike<number>, input: ArrayLike<number>): string | null {
  if (got.length !== want.length) return `length ${got.length} != ${want.length}`;
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) return `at ${i}: input 0x${input[i]!.toString(16)} gave 0x${got[i]!.toString(16)}, expected 0x${want[i]!.toString(16)}`;
  }
  return null;
}

const path = () => k().simd();
const OFFSETS = [0, 1, 3];

// ---- the references themselves, on values whose answers are known ----

test('the references give the textbook answers at the edges', (t) => {
  t.is(refToBf16(0x3f808000), 0x3f80); // tie, down to even
  t.is(refToBf16(0x3f818000), 0x3f82); // tie, up to even
  t.is(refToBf16(0x7f7f8000), 0x7f80); // rounds up to inf
  t.is(refToBf16(0x7f800001), 0x7fc0); // signalling NaN with a low payload: quiet, not inf
  t.is(refToF16(0x477fe000), 0x7bff); // 65504
  t.is(refToF16(0x477ff000), 0x7c00); // 65520 -> inf
  t.is(refToF16(0x33000000), 0x0000); // 2^-25 ties to 0
  t.is(refToF16(0x33c00000), 0x0002); // 1.5 * 2^-24 ties to 2 * 2^-24
  t.is(refToF16(0x387fe000), 0x0400); // halfway between the largest subnormal and 2^-14: up to even
  t.is(refToF16(0x7f800001), 0x7e00);
  t.is(refFromF16(0x0001), bitsOf(2 ** -24));
  t.is(refFromF16(0x7bff), bitsOf(65504));
  t.is(refFromF16(0x7c01), 0x7fc02000);
});

// ---- every kernel, bit for bit ----

for (const n of LENGTHS) {
  for (const offset of OFFSETS) {
    const seed = n * 7 + offset + 1;

    test(`wireToBf16 / wireToF16 match the references (n=${n}, offset ${offset})`, (t) => {
      const bits = patterns(n, seed);
      const { view: src, whole: srcWhole } = f32View(bits, offset);
      for (const [fn, ref] of [['wireToBf16', refToBf16], ['wireToF16', refToF16]] as const) {
        const { view: dst, whole } = u16View(new Uint16Array(n), offset);
        k()[fn](src, dst);
        t.is(firstMismatch(dst, Array.from(bits, ref), bits), null, `${fn} on ${path()}`);
        t.true(guardsIntact(whole, offset, n, 0xbeef), `${fn} wrote outside dst`);
      }
      t.deepEqual(new Uint32Array(srcWhole.buffer, offset * 4, n), bits, 'src unchanged');
    });

    test(`wireFromBf16 / wireFromF16 match the references (n=${n}, offset ${offset})`, (t) => {
      const h = wirePatterns(n, seed);
      const { view: src } = u16View(h, offset);
      for (const [fn, ref] of [['wireFromBf16', refFromBf16], ['wireFromF16', refFromF16]] as const) {
        const { view: dst, whole } = f32View(new Uint32Array(n), offset);
        k()[fn](src, dst);
        t.is(firstMismatch(new Uint32Array(dst.buffer, dst.byteOffset, n), Array.from(h, ref), h), null, `${fn} on ${path()}`);
        t.true(guardsIntact(whole, offset, n, 0xdeadbeef), `${fn} wrote outside dst`);
      }
    });

    test(`wireAccBf16 / wireAccF16 / wireAccF32, sum and max, match the references (n=${n}, offset ${offset})`, (t) => {
      const accBits = patterns(n, seed), h = wirePatterns(n, seed + 99), other = patterns(n, seed + 7);
      // Some pairs equal and some of opposite sign, so inf - inf, x - x and max(+0, -0) all occur.
      for (let i = 0; i < n; i += 5) other[i] = accBits[i]! ^ (i % 10 === 0 ? 0x80000000 : 0);
      const wide = { wireAccBf16: h, wireAccF16: h, wireAccF32: other };
      const widen = { wireAccBf16: (i: number) => floatOf(refFromBf16(h[i]!)), wireAccF16: (i: number) => floatOf(refFromF16(h[i]!)), wireAccF32: (i: number) => floatOf(other[i]!) };
      for (const fn of ['wireAccBf16', 'wireAccF16', 'wireAccF32'] as const) {
        for (const op of [0, 1]) {
          const { view: acc, whole } = f32View(accBits, offset);
          const want = Array.from(accBits, (a, i) => refAcc(floatOf(a), widen[fn](i), op));
          if (fn === 'wireAccF32') k().wireAccF32(acc, f32View(other, offset).view, op);
          else k()[fn](acc, u16View(wide[fn] as Uint16Array, offset).view, op);
          t.is(firstMismatch(new Uint32Array(acc.buffer, acc.byteOffset, n), want, accBits), null, `${fn} op ${op} on ${path()}`);
          t.true(guardsIntact(whole, offset, n, 0xdeadbeef), `${fn} wrote outside acc`);
        }
      }
    });

    test(`wireRoundBf16 / wireRoundF16 equal widen(narrow(x)), and nonFiniteCount counts (n=${n}, offset ${offset})`, (t) => {
      const bits = patterns(n, seed);
      for (const [fn, narrow, widen] of [['wireRoundBf16', refToBf16, refFromBf16], ['wireRoundF16', refToF16, refFromF16]] as const) {
        const { view: x, whole } = f32View(bits, offset);
        k()[fn](x);
        t.is(firstMismatch(new Uint32Array(x.buffer, x.byteOffset, n), Array.from(bits, (u) => widen(narrow(u))), bits), null, `${fn} on ${path()}`);
        t.true(guardsIntact(whole, offset, n, 0xdeadbeef), `${fn} wrote outside x`);
      }
      const { view: x } = f32View(bits, offset);
      t.is(k().nonFiniteCount(x), bits.filter((u) => (u & 0x7f800000) === 0x7f800000).length);
    });
  }
}

test('every fp16 pattern widens exactly and narrows back to itself (NaNs: to their quiet form)', (t) => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const wide = new Float32Array(65536);
  k().wireFromF16(all, wide);
  const wideBits = new Uint32Array(wide.buffer);
  t.is(firstMismatch(wideBits, Array.from(all, refFromF16), all), null);
  const back = new Uint16Array(65536);
  k().wireToF16(wide, back);
  const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
  t.is(firstMismatch(back, Array.from(all, (h) => (isNaN16(h) ? h | 0x200 : h)), all), null);
});

test('every bf16 pattern widens exactly and narrows back to itself (NaNs: to their quiet form)', (t) => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const wide = new Float32Array(65536);
  k().wireFromBf16(all, wide);
  const back = new Uint16Array(65536);
  k().wireToBf16(wide, back);
  const isNaN16 = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
  t.is(firstMismatch(back, Array.from(all, (h) => (isNaN16(h) ? h | 0x40 : h)), all), null);
});

test('nonFiniteCount counts inf and NaN of either sign at every position of a vector and its tail', (t) => {
  for (const n of [1, 7, 8, 15, 16, 17, 33]) {
    for (let at = 0; at < n; at++) {
      const x = new Float32Array(n).fill(1);
      x[at] = [Infinity, -Infinity, NaN][at % 3]!;
      t.is(k().nonFiniteCount(x), 1, `n=${n} at ${at}`);
    }
  }
  t.is(k().nonFiniteCount(new Float32Array([3.4e38, -3.4e38, 1e-45, 0])), 0);
});

// ---- argument checks ----

test('the wire kernels name the function, the argument and the value when an argument is wrong', (t) => {
  const f = new Float32Array(4), h = new Uint16Array(4);
  t.throws(() => k().wireToBf16(f, new Float32Array(4) as never), { instanceOf: TypeError, message: /wireToBf16: .*dst.* must be a Uint16Array, got .*Float32Array/ });
  t.throws(() => k().wireToF16(new Uint16Array(4) as never, h), { instanceOf: TypeError, message: /wireToF16: .*src.* must be a Float32Array, got .*Uint16Array/ });
  t.throws(() => k().wireFromBf16(new Int16Array(4) as never, f), { instanceOf: TypeError, message: /wireFromBf16: .*src.* must be a Uint16Array, got .*Int16Array/ });
  t.throws(() => k().wireFromF16(h, [0, 0, 0, 0] as never), { instanceOf: TypeError, message: /wireFromF16: .*dst.* must be a Float32Array, got/ });
  t.throws(() => k().wireAccF16(f, f as never, 0), { instanceOf: TypeError, message: /wireAccF16: .*src.* must be a Uint16Array/ });
  t.throws(() => k().wireAccF32(f, h as never, 0), { instanceOf: TypeError, message: /wireAccF32: .*src.* must be a Float32Array/ });
  t.throws(() => k().wireRoundBf16(h as never), { instanceOf: TypeError, message: /wireRoundBf16: .*x.* must be a Float32Array/ });
  t.throws(() => k().nonFiniteCount(null as never), { instanceOf: TypeError, message: /nonFiniteCount: .*x.* must be a Float32Array, got null/ });
  t.throws(() => k().wireToBf16(f, new Uint16Array(5)), { instanceOf: RangeError, message: /wireToBf16: dst has 5 elements, src has 4; they must match/ });
  t.throws(() => k().wireAccBf16(f, new Uint16Array(3), 0), { instanceOf: RangeError, message: /wireAccBf16: .*3 elements.*4/ });
  t.throws(() => k().wireAccBf16(f, h, 2), { instanceOf: RangeError, message: /wireAccBf16: op must be 0 \(sum\) or 1 \(max\), got 2/ });
  t.throws(() => k().wireAccF16(f, h, 0.5), { instanceOf: RangeError, message: /op must be 0 \(sum\) or 1 \(max\), got 0.5/ });
  t.throws(() => k().wireAccF32(f, f, '0' as never), { instanceOf: TypeError, message: /wireAccF32: .*op.* must be a number/ });
});

test('the wire kernels refuse outputs that overlap their inputs, and touch nothing then', (t) => {
  const buf = new ArrayBuffer(64);
  const f = new Float32Array(buf, 0, 8).fill(1.5);
  const h = new Uint16Array(buf, 16, 8); // the second half of f's bytes
  const before = new Uint8Array(buf).slice();
  t.throws(() => k().wireToBf16(f, h), { instanceOf: RangeError, message: /wireToBf16: dst overlaps src/ });
  t.throws(() => k().wireFromF16(h, f), { instanceOf: RangeError, message: /wireFromF16: dst overlaps src/ });
  t.throws(() => k().wireAccBf16(f, h, 0), { instanceOf: RangeError, message: /wireAccBf16: acc overlaps src/ });
  t.throws(() => k().wireAccF32(f, f, 1), { instanceOf: RangeError, message: /acc overlaps src/ });
  t.deepEqual(new Uint8Array(buf), before);
});

// ---- the lower vector paths ----

const forcedPath = process.env.PSRPC_SIMD;
const paths = ['scalar', 'avx2', 'avx512'];

if (!forcedPath) {
  const best = paths.indexOf(k().simd());
  for (const lower of ['avx2', 'scalar'].filter((p) => paths.indexOf(p) < best)) {
    test(`the ${lower} path passes the same tests (child process with PSRPC_SIMD=${lower})`, (t) => {
      const ava = join(packageRoot(), 'node_modules', 'ava', 'entrypoints', 'cli.mjs');
      const child = spawnSync(process.execPath, [ava, fileURLToPath(import.meta.url)], {
        cwd: packageRoot(),
        env: { ...process.env, PSRPC_SIMD: lower },
        encoding: 'utf8',
        timeout: 110_000,
      });
      const output = `${child.stdout}\n${child.stderr}`;
      t.is(child.status, 0, output);
      t.regex(output, /\d+ tests passed/, output);
    });
  }
} else {
  test(`PSRPC_SIMD=${forcedPath} is the path these tests ran on`, (t) => {
    t.is(k().simd(), forcedPath);
  });
}
