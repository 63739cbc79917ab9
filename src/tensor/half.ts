// 16-bit wire formats: what gradients and parameters travel as between processes (collectives,
// parameter-server push and pull) when `--precision bf16|fp16` halves the bytes. Values are always
// widened back into fp32 before they are summed, so accumulation stays fp32.
//
// bf16 is the top half of an fp32, rounded to nearest even; NaN stays a quiet NaN. fp16 is IEEE
// binary16, rounded to nearest even, overflow to inf, subnormals exact. Both conversions work on
// the fp32 bit pattern (a Uint32Array view of the same memory), so there is one pass and no
// temporary array. fp32 sums go through the backend's add kernel.
import { getBackend } from './backend.js';

export type WireDType = 'float32' | 'bfloat16' | 'float16';
export type WireReduce = 'sum' | 'max';

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

const F16_TABLE = (() => {
  // every binary16 pattern widened, once (256 KiB)
  const t = new Float32Array(65536);
  const u = bits32(t);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) u[h] = sign | 0x7f800000 | (mant << 13);
    else if (exp !== 0) u[h] = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    else if (mant === 0) u[h] = sign;
    else t[h] = (sign ? -1 : 1) * mant * 2 ** -24;
  }
  return t;
})();

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
  if (dtype === 'bfloat16') {
    const d = bits32(dst);
    for (let i = 0; i < n; i++) d[i] = s[i]! << 16;
  } else for (let i = 0; i < n; i++) dst[i] = F16_TABLE[s[i]!]!;
}

/** acc[i] = acc[i] + x[i] (sum) or max(acc[i], x[i]) (max; NaN wins), x the widened wire values. */
export function accumulateWire(dtype: WireDType, op: WireReduce, acc: Float32Array, src: Float32Array | Uint16Array): void {
  checkDType('accumulateWire', dtype);
  if (op !== 'sum' && op !== 'max') throw new RangeError(`accumulateWire: op must be sum or max, got ${JSON.stringify(op)}`);
  if (!(acc instanceof Float32Array)) throw new TypeError(`accumulateWire: acc must be a Float32Array, got ${describe(acc)}`);
  checkPair('accumulateWire', dtype, src, acc.length, 'src');
  const n = acc.length;
  if (dtype === 'float32') {
    const s = src as Float32Array;
    if (op === 'sum') getBackend('cpu').kernels.add(acc, s, acc);
    else for (let i = 0; i < n; i++) acc[i] = maxNaN(acc[i]!, s[i]!);
    return;
  }
  const s = src as Uint16Array;
  if (dtype === 'bfloat16') {
    const one = new Float32Array(1), ob = bits32(one);
    if (op === 'sum') for (let i = 0; i < n; i++) { ob[0] = s[i]! << 16; acc[i] = acc[i]! + one[0]!; }
    else for (let i = 0; i < n; i++) { ob[0] = s[i]! << 16; acc[i] = maxNaN(acc[i]!, one[0]!); }
  } else if (op === 'sum') for (let i = 0; i < n; i++) acc[i] = acc[i]! + F16_TABLE[s[i]!]!;
  else for (let i = 0; i < n; i++) acc[i] = maxNaN(acc[i]!, F16_TABLE[s[i]!]!);
}

function maxNaN(a: number, b: number): number {
  return a !== a || b !== b ? NaN : a > b ? a : b;
}

/** x[i] = widen(narrow(x[i])) in place: what every other rank receives (no-op for float32). */
export function roundToWire(dtype: WireDType, x: Float32Array): void {
  checkDType('roundToWire', dtype);
  if (dtype === 'float32') return;
  if (!(x instanceof Float32Array)) throw new TypeError(`roundToWire: x must be a Float32Array, got ${describe(x)}`);
  const u = bits32(x), n = x.length;
  if (dtype === 'bfloat16') for (let i = 0; i < n; i++) u[i] = bf16Of(u[i]!) << 16;
  else for (let i = 0; i < n; i++) x[i] = F16_TABLE[f16Of(u[i]!)]!;
}

/** How many elements of `x` are inf or NaN (dynamic loss scaling's overflow check). */
export function nonFiniteCount(x: Float32Array): number {
  if (!(x instanceof Float32Array)) throw new TypeError(`nonFiniteCount: x must be a Float32Array, got ${describe(x)}`);
  const u = bits32(x);
  let c = 0;
  for (let i = 0; i < u.length; i++) if ((u[i]! & 0x7f800000) === 0x7f800000) c++;
  return c;
}
