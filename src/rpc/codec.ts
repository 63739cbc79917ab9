// The payload codec: call arguments and results as a small JSON header plus raw tensor bytes.
//
// Layout (little endian), offsets from the start of the payload:
//   0   u32  magic 'PSR1'
//   4   u32  header length H (UTF-8 JSON)
//   8   f64  data section length D
//   16  H bytes of JSON, zero padding to a multiple of 8
//   ... D bytes of data: each tensor's bytes start at a multiple of 8 within the data section
// The JSON holds the value with tensors, typed arrays, RRefs and other non-JSON values replaced by
// `{ "$t": i }`-style markers, and a table of tensors `[kind, dtype, shape, offset, byteLength]`.
// Tensor data is never touched element by element: on send it is referenced in place (the segments
// returned by `encode` are views of the caller's arrays); on receive it is wrapped without a copy
// when its address is aligned for its element type, and copied once otherwise.
import { errors } from './errors.js';
import { ARRAY_KINDS, deviceTensorView, DTYPES, isTensorView, isTypedArray, makeTensor, type TypedArray } from './tensor-view.js';

const MAGIC = 0x31525350; // 'PSR1'
const PREFIX = 16;
const ALIGN = 8;

/** Hooks for values the codec does not own (RRefs). */
export interface CodecContext {
  /** Name of this worker, for error messages. */
  worker: string;
  /** Returns a JSON-able descriptor when `x` is an RRef, undefined otherwise. */
  encodeRef?(x: object): unknown;
  /** Rebuilds an RRef from its descriptor. */
  decodeRef?(desc: unknown): unknown;
}

/** An encoded payload: segments to be written in order (views, not copies, of tensor data). */
export interface Encoded {
  segments: Uint8Array[];
  byteLength: number;
}

type TableEntry = [kind: string, dtype: string | null, shape: number[] | null, offset: number, byteLength: number];

const pad = (n: number) => (ALIGN - (n % ALIGN)) % ALIGN;
const ZEROS = new Uint8Array(ALIGN);

function isPlainObject(x: object): boolean {
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

export function encode(value: unknown, ctx: CodecContext): Encoded {
  const table: TableEntry[] = [];
  const data: Uint8Array[] = [];
  let dataLen = 0;

  const addBytes = (bytes: Uint8Array): number => {
    const p = pad(dataLen);
    if (p) { data.push(ZEROS.subarray(0, p)); dataLen += p; }
    const offset = dataLen;
    data.push(bytes);
    dataLen += bytes.byteLength;
    return offset;
  };
  const bytesOf = (a: TypedArray) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

  const walk = (v: unknown, path: string): unknown => {
    switch (typeof v) {
      case 'string': case 'boolean': return v;
      case 'number': return Number.isFinite(v) ? v : { $n: String(v) };
      case 'undefined': return { $u: 1 };
      case 'bigint': return { $b: v.toString() };
      case 'function': case 'symbol':
        throw errors.unsupportedValue(ctx.worker, path, `a ${typeof v} cannot be sent`);
    }
    if (v === null) return null;
    const o = v as object;
    if (Array.isArray(o)) return o.map((x, i) => walk(x, `${path}[${i}]`));
    if (isTypedArray(o)) {
      const kind = Buffer.isBuffer(o) ? 'Buffer' : o.constructor.name;
      if (!(kind in ARRAY_KINDS)) throw errors.unsupportedValue(ctx.worker, path, `unsupported typed array ${kind}`);
      const offset = addBytes(bytesOf(o));
      table.push([kind, null, null, offset, o.byteLength]);
      return { $t: table.length - 1 };
    }
    const view = deviceTensorView(o) ?? (isTensorView(o) ? o : undefined);
    if (view) {
      const o = view;
      const ctor = DTYPES[o.dtype];
      if (!ctor) throw errors.unsupportedValue(ctx.worker, path, `unknown tensor dtype "${o.dtype}" (known: ${Object.keys(DTYPES).join(', ')})`);
      if (!(o.data instanceof ctor)) {
        throw errors.unsupportedValue(ctx.worker, path, `tensor dtype "${o.dtype}" needs ${ctor.name} storage, got ${o.data.constructor.name}`);
      }
      const shape = Array.from(o.shape);
      let n = 1;
      for (const d of shape) {
        if (!Number.isSafeInteger(d) || d < 0) throw errors.unsupportedValue(ctx.worker, path, `bad tensor shape [${shape.join(', ')}]`);
        n *= d;
      }
      if (n !== o.data.length) {
        throw errors.unsupportedValue(ctx.worker, path, `tensor shape [${shape.join(', ')}] needs ${n} elements, storage has ${o.data.length}`);
      }
      const offset = addBytes(bytesOf(o.data));
      table.push(['tensor', o.dtype, shape, offset, o.data.byteLength]);
      return { $t: table.length - 1 };
    }
    const ref = ctx.encodeRef?.(o);
    if (ref !== undefined) return { $r: ref };
    if (!isPlainObject(o)) {
      throw errors.unsupportedValue(ctx.worker, path, `instances of ${o.constructor?.name ?? 'unknown class'} cannot be sent (plain objects, arrays, tensors, typed arrays and RRefs can)`);
    }
    const out: Record<string, unknown> = {};
    let escaped = false;
    for (const [k, x] of Object.entries(o)) {
      if (k.startsWith('$')) escaped = true;
      Object.defineProperty(out, k, { value: walk(x, `${path}.${k}`), enumerable: true, writable: true, configurable: true });
    }
    return escaped ? { $o: out } : out;
  };

  const v = walk(value, 'args');
  const header = Buffer.from(JSON.stringify(table.length ? { v, t: table } : { v }), 'utf8');
  const headPad = pad(PREFIX + header.length);
  const head = Buffer.allocUnsafe(PREFIX + header.length + headPad);
  head.writeUInt32LE(MAGIC, 0);
  head.writeUInt32LE(header.length, 4);
  head.writeDoubleLE(dataLen, 8);
  header.copy(head, PREFIX);
  head.fill(0, PREFIX + header.length);
  return { segments: [head, ...data], byteLength: head.length + dataLen };
}

/** Concatenates an encoded payload into one buffer (for small payloads). */
export function flatten(e: Encoded): Buffer {
  return e.segments.length === 1 ? (e.segments[0] as Buffer) : Buffer.concat(e.segments, e.byteLength);
}

export function decode(buf: Uint8Array, ctx: CodecContext): unknown {
  const bad = (what: string) => errors.codec(ctx.worker, what);
  if (buf.byteLength < PREFIX) throw bad(`${buf.byteLength} bytes is shorter than the ${PREFIX}-byte prefix`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) throw bad(`bad magic 0x${dv.getUint32(0, true).toString(16)} (not a psrpc payload)`);
  const headerLen = dv.getUint32(4, true);
  const dataLen = dv.getFloat64(8, true);
  const dataStart = PREFIX + headerLen + pad(PREFIX + headerLen);
  if (!Number.isSafeInteger(dataLen) || dataLen < 0) throw bad(`bad data length ${dataLen}`);
  if (dataStart + dataLen !== buf.byteLength) {
    throw bad(`length mismatch: header says ${dataStart + dataLen} bytes, got ${buf.byteLength} (truncated or garbage)`);
  }
  let parsed: { v: unknown; t?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + PREFIX, headerLen).toString('utf8'));
  } catch (e) {
    throw bad(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || !('v' in parsed)) throw bad('header has no value');
  const table = parsed.t ?? [];
  if (!Array.isArray(table)) throw bad('tensor table is not an array');
  const base = buf.byteOffset + dataStart;

  const tensorAt = (i: unknown): unknown => {
    if (typeof i !== 'number' || !(i in table)) throw bad(`tensor reference ${JSON.stringify(i)} out of range`);
    const e = table[i] as TableEntry;
    if (!Array.isArray(e) || e.length !== 5) throw bad(`tensor table entry ${i} malformed`);
    const [kind, dtype, shape, offset, byteLength] = e;
    const ctor = kind === 'tensor' ? DTYPES[dtype as string] : ARRAY_KINDS[kind];
    if (!ctor) throw bad(`tensor table entry ${i}: unknown ${kind === 'tensor' ? `dtype "${dtype}"` : `array kind "${kind}"`}`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(byteLength) || offset < 0 || byteLength < 0 || offset + byteLength > dataLen) {
      throw bad(`tensor table entry ${i}: bytes [${offset}, +${byteLength}) outside the ${dataLen}-byte data section`);
    }
    const size = ctor.BYTES_PER_ELEMENT;
    if (byteLength % size !== 0) throw bad(`tensor table entry ${i}: ${byteLength} bytes is not a whole number of ${ctor.name} elements`);
    const n = byteLength / size;
    if (kind === 'tensor') {
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0) || shape.reduce((a, d) => a * d, 1) !== n) {
        throw bad(`tensor table entry ${i}: shape ${JSON.stringify(shape)} does not match ${n} elements`);
      }
    }
    let arr: TypedArray;
    if ((base + offset) % size === 0) {
      arr = new ctor(buf.buffer, base + offset, n); // zero copy
    } else {
      arr = new ctor(n);
      new Uint8Array(arr.buffer).set(new Uint8Array(buf.buffer, base + offset, byteLength));
    }
    if (kind === 'Buffer') return Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength);
    if (kind !== 'tensor') return arr;
    return makeTensor({ shape: shape as number[], dtype: dtype as string, data: arr });
  };

  const walk = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null) return v;
    if (Array.isArray(v)) return v.map(walk);
    const o = v as Record<string, unknown>;
    if ('$t' in o) return tensorAt(o.$t);
    if ('$u' in o) return undefined;
    if ('$n' in o) return Number(o.$n);
    if ('$b' in o) return BigInt(o.$b as string);
    if ('$r' in o) {
      if (!ctx.decodeRef) throw bad('an RRef arrived where none can be rebuilt');
      return ctx.decodeRef(o.$r);
    }
    const src = '$o' in o ? (o.$o as Record<string, unknown>) : o;
    if (typeof src !== 'object' || src === null) throw bad('escaped object malformed');
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(src)) {
      // defineProperty so that a "__proto__" key stays data, never a prototype switch
      Object.defineProperty(out, k, { value: walk(src[k]), enumerable: true, writable: true, configurable: true });
    }
    return out;
  };
  try {
    return walk(parsed.v);
  } catch (e) {
    if (e instanceof Error && e.name === 'CodecError') throw e;
    throw bad(`malformed value (${(e as Error).message})`);
  }
}
