// 16-bit wire formats: what gradients and parameters travel as between processes (collectives,
// parameter-server push and pull) when `--precision bf16|fp16` halves the bytes. Values are always
// widened back into fp32 before they are summed, so accumulation stays fp32.
//
// bf16 is the top half of an fp32, rounded to nearest even; NaN stays a quiet NaN. fp16 is IEEE
// binary16, rounded to nearest even, overflow to inf, subnormals exact. Both conversions work on
// the fp32 bit pattern (a Uint32Array view of the same memory), so there is one pass and no
// temporary array.
//
// Each function runs the native addon's kernel (kernels.h, "16-bit wire formats") when the CPU
// backend is the native one, and the TypeScript code here otherwise (PSRPC_KERNELS=js, no addon
// built, or a backend registered without these kernels): the same bits either way, NaNs included
// (every NaN an accumulation gives is 0x7fc00000; values travel as bit patterns, never through a JS
// number, which V8 may or may not quiet depending on the tier), and the same argument checks, which
// stay here. Overlapping views (say a Uint16Array over the first half of src's own bytes) keep to
// the TypeScript loops, whose in-order reads and writes define them.
import { getBackend } from './backend.js';
import type { NativeKernels } from './native.js';

export type WireDType = 'float32' | 'bfloat16' | 'float16';
export type WireReduce = 'sum' | 'max';
/** The same as WireReduce (the tensor index exports only WireReduce: src/collective has a ReduceOp of its own). */
export type ReduceOp = WireReduce;

/** Bytes per element on the wire. */
export function wireBytes(dtype: WireDType): 2 | 4 {
  return dtype === 'float32' ? 4 : 2;
}

const bits32 = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length);

function checkDType(fn: string, dtype: unknown): asserts dtype is WireDType {
  if (dtype !== 'float32' && dtype !== 'bfloat16' && dtype !== 'float16') {
    throw new RangeError(`${fn}: dtype must be float32, bfloat16 or float16, got ${JSON.stringify(dtype)}`);
  }
}

function checkPair(fn: string, dtype: WireDType, wire: unknown, n: number, role: string): void {
  const want = dtype === 'float32' ? Float32Array : Uint16Array;
  if (!(wire instanceof want)) throw new TypeError(`${fn}: ${role} must be a ${want.name} for ${dtype}, got ${describe(wire)}`);
  if ((wire as Float32Array | Uint16Array).length !== n) throw new RangeError(`${fn}: ${role} has ${(wire as Float32Array | Uint16Array).length} elements, expected ${n}`);
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  return typeof x === 'object' ? ((x as object).constructor?.name ?? 'an object') : typeof x;
}

type WireKernels = Required<Pick<NativeKernels, 'wireToBf16' | 'wireFromBf16' | 'wireToF16' | 'wireFromF16' | 'wireAccBf16' |
  'wireAccF16' | 'wireAccF32' | 'wireRoundBf16' | 'wireRoundF16' | 'nonFiniteCount'>>;

/** Set once getBackend('cpu') has failed (no addon built): the TypeScript code from then on. */
let noBackend = false;

/** The CPU backend's wire kernels, or null when the TypeScript code here serves. */
function native(): WireKernels | null {
  if (noBackend) return null;
  let k: Partial<WireKernels>;
  try {
    k = getBackend('cpu').kernels as unknown as Partial<WireKernels>; // the host backends' kernels are NativeKernels
  } catch {
    noBackend = true;
    return null;
  }
  return typeof k.wireToBf16 === 'function' ? (k as WireKernels) : null;
}

/** Whether two views share no byte (the native kernels' precondition). */
function apart(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return a.buffer !== b.buffer || a.byteLength === 0 || b.byteLength === 0 ||
    a.byteOffset + a.byteLength <= b.byteOffset || b.byteOffset + b.byteLength <= a.byteOffset;
}

const SUM = 0, MAX = 1;
/** Every NaN an accumulation produces (as the native kernels: kernels.h, acc_*). */
const QUIET_NAN = 0x7fc00000;

// ---- scalar conversions on bit patterns ----

function bf16Of(u: number): number {
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x007fffff) !== 0) return ((u >>> 16) | 0x0040) & 0xffff; // quiet NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

function f16Of(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: zero
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0)) h++; // may carry into the exponent, up to inf: correct
  return sign | h;
}

// Every binary16 pattern widened, once (256 KiB): the bits, written as bits so that NaN payloads
// survive (a JS number in between may not keep them), and the same memory as floats for sums.
const F16_BITS = (() => {
  const u = new Uint32Array(65536);
  const f = new Float32Array(u.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) u[h] = sign | 0x7f800000 | (mant << 13) | (mant !== 0 ? 0x400000 : 0); // a NaN comes out quiet
    else if (exp !== 0) u[h] = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    else if (mant === 0) u[h] = sign;
    else f[h] = (sign ? -1 : 1) * mant * 2 ** -24; // subnormal: exact in fp32
  }
  return u;
})();
const F16_VALUES = new Float32Array(F16_BITS.buffer);

/** Widened bf16 values for the fallback's sums, a block at a time (no allocation per call). */
const BLOCK = 4096;
const scratchBits = new Uint32Array(BLOCK);
const scratch = new Float32Array(scratchBits.buffer);

// ---- the API ----

/**
 * `src` in the wire format: float32 returns `src` itself (no copy) unless `dst` is given; the 16-bit
 * formats write into `dst` (a Uint16Array of src.length, allocated when omitted).
 */
export function toWire(dtype: WireDType, src: Float32Array, dst?: Float32Array | Uint16Array): Float32Array | Uint16Array {
  checkDType('toWire', dtype);
  if (!(src instanceof Float32Array)) throw new TypeError(`toWire: src must be a Float32Array, got ${describe(src)}`);
  if (dtype === 'float32') {
    if (dst === undefined) return src;
    checkPair('toWire', dtype, dst, src.length, 'dst');
    (dst as Float32Array).set(src);
    return dst;
  }
  const out = dst ?? new Uint16Array(src.length);
  checkPair('toWire', dtype, out, src.length, 'dst');
  const k = native();
  if (k && apart(src, out)) {
    if (dtype === 'bfloat16') k.wireToBf16(src, out as Uint16Array);
    else k.wireToF16(src, out as Uint16Array);
    return out;
  }
  const u = bits32(src), o = out as Uint16Array, n = src.length;
  if (dtype === 'bfloat16') for (let i = 0; i < n; i++) o[i] = bf16Of(u[i]!);
  else for (let i = 0; i < n; i++) o[i] = f16Of(u[i]!);
  return out;
}

/** Widens wire values `src` into `dst` (same length). */
export function fromWire(dtype: WireDType, src: Float32Array | Uint16Array, dst: Float32Array): void {
  checkDType('fromWire', dtype);
  if (!(dst instanceof Float32Array)) throw new TypeError(`fromWire: dst must be a Float32Array, got ${describe(dst)}`);
  checkPair('fromWire', dtype, src, dst.length, 'src');
  if (dtype === 'float32') {
    if (src !== dst) dst.set(src as Float32Array);
    return;
  }
  const s = src as Uint16Array, n = dst.length;
  const k = native();
  if (k && apart(s, dst)) {
    if (dtype === 'bfloat16') k.wireFromBf16(s, dst);
    else k.wireFromF16(s, dst);
    return;
  }
  const d = bits32(dst);
  if (dtype === 'bfloat16') for (let i = 0; i < n; i++) d[i] = s[i]! << 16;
  else for (let i = 0; i < n; i++) d[i] = F16_BITS[s[i]!]!;
}

/** acc[i] = acc[i] + x[i] (sum) or max(acc[i], x[i]) (max; NaN wins), x the widened wire values. */
export function accumulateWire(dtype: WireDType, op: WireReduce, acc: Float32Array, src: Float32Array | Uint16Array): void {
  checkDType('accumulateWire', dtype);
  if (op !== 'sum' && op !== 'max') throw new RangeError(`accumulateWire: op must be sum or max, got ${JSON.stringify(op)}`);
  if (!(acc instanceof Float32Array)) throw new TypeError(`accumulateWire: acc must be a Float32Array, got ${describe(acc)}`);
  checkPair('accumulateWire', dtype, src, acc.length, 'src');
  const n = acc.length;
  const k = native();
  if (k && apart(acc, src)) {
    const code = op === 'sum' ? SUM : MAX;
    if (dtype === 'float32') k.wireAccF32(acc, src as Float32Array, code);
    else if (dtype === 'bfloat16') k.wireAccBf16(acc, src as Uint16Array, code);
    else k.wireAccF16(acc, src as Uint16Array, code);
    return;
  }
  const ab = bits32(acc), max = op === 'max';
  if (dtype === 'float32') accumulate(acc, ab, src as Float32Array, 0, n, max);
  else if (dtype === 'float16') accumulate(acc, ab, F16_VALUES, 0, n, max, src as Uint16Array);
  else {
    const s = src as Uint16Array;
    for (let at = 0; at < n; at += BLOCK) {
      const len = Math.min(BLOCK, n - at);
      for (let j = 0; j < len; j++) scratchBits[j] = s[at + j]! << 16;
      accumulate(acc, ab, scratch, at, len, max);
    }
  }
}

/**
 * acc[at + j] op= x[j] for j < len, or x[index[at + j]] when index is given (the fp16 table); a NaN
 * result is written as QUIET_NAN's bits (ab is acc's Uint32Array view).
 */
function accumulate(acc: Float32Array, ab: Uint32Array, x: Float32Array, at: number, len: number, max: boolean, index?: Uint16Array): void {
  for (let j = 0; j < len; j++) {
    const i = at + j, a = acc[i]!, b = index ? x[index[i]!]! : x[j]!;
    const r = max ? (a > b ? a : b) : a + b;
    if (r !== r || (max && (a !== a || b !== b))) ab[i] = QUIET_NAN;
    else acc[i] = r;
  }
}

/** x[i] = widen(narrow(x[i])) in place: what every other rank receives (no-op for float32). */
export function roundToWire(dtype: WireDType, x: Float32Array): void {
  checkDType('roundToWire', dtype);
  if (!(x instanceof Float32Array)) throw new TypeError(`roundToWire: x must be a Float32Array, got ${describe(x)}`);
  if (dtype === 'float32') return;
  const k = native();
  if (k) {
    if (dtype === 'bfloat16') k.wireRoundBf16(x);
    else k.wireRoundF16(x);
    return;
  }
  const u = bits32(x), n = x.length;
  if (dtype === 'bfloat16') for (let i = 0; i < n; i++) u[i] = bf16Of(u[i]!) << 16;
  else for (let i = 0; i < n; i++) u[i] = F16_BITS[f16Of(u[i]!)]!;
}

/** How many elements of `x` are inf or NaN (dynamic loss scaling's overflow check). */
export function nonFiniteCount(x: Float32Array): number {
  if (!(x instanceof Float32Array)) throw new TypeError(`nonFiniteCount: x must be a Float32Array, got ${describe(x)}`);
  const k = native();
  if (k) return k.nonFiniteCount(x);
  const u = bits32(x);
  let c = 0;
  for (let i = 0; i < u.length; i++) if ((u[i]! & 0x7f800000) === 0x7f800000) c++;
  return c;
}
