// The safetensors layout (https://huggingface.co/docs/safetensors): an unsigned 64-bit
// little-endian header length N, N bytes of JSON header, then the raw little-endian tensor bytes.
// The header maps each tensor's name to {dtype, shape, data_offsets: [begin, end]} (byte offsets
// into the data section) and may hold "__metadata__", a map of strings to strings.
//
// The header is padded with spaces to a multiple of 8 bytes (as the reference writer does), so
// every tensor starts 8-byte aligned in the file and a reader can view it without a copy. Tensors
// are laid out in the order given, each right after the previous one. Only the dtypes psrpc has
// are written and read: F32, F16, BF16 (raw 16-bit), I32, U8.
import { endianness } from 'node:os';

export type SafeDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'U8';

const BYTES: Record<SafeDType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, U8: 1 };

/** One tensor to write: its dtype, its shape, its elements. */
export interface SafeTensorIn {
  dtype: SafeDType;
  shape: readonly number[];
  data: Float32Array | Uint16Array | Int32Array | Uint8Array;
}

/** One tensor as the header describes it: byte range [begin, end) of the data section. */
export interface SafeTensorInfo {
  dtype: SafeDType;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafeHeader {
  /** Bytes before the data section (8 + the header's length). */
  dataStart: number;
  tensors: Map<string, SafeTensorInfo>;
  metadata: Record<string, string>;
}

/** A file (or buffer) that does not follow the layout; the message says where. */
export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

function checkHost(): void {
  if (endianness() !== 'LE') throw new SafetensorsError('safetensors: this machine is big-endian; the layout is little-endian and psrpc does not swap bytes');
}

/**
 * The bytes of a safetensors file holding `tensors` (in this order) and `metadata`: the header
 * (length, JSON, padding) as one Buffer, then one view per tensor's data (no copies), ready for a
 * gathered write.
 */
export function encodeSafetensors(tensors: ReadonlyArray<readonly [string, SafeTensorIn]>, metadata: Record<string, string> = {}): Buffer[] {
  checkHost();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw new SafetensorsError(`safetensors: metadata "${k}" must be a string, got ${typeof v}`);
    header.__metadata__ = metadata;
  }
  const parts: Buffer[] = [];
  let at = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__' || name.length === 0) throw new SafetensorsError(`safetensors: "${name}" cannot name a tensor`);
    if (Object.prototype.hasOwnProperty.call(header, name)) throw new SafetensorsError(`safetensors: tensor "${name}" given twice`);
    const size = BYTES[t.dtype];
    if (size === undefined) throw new SafetensorsError(`safetensors: tensor "${name}": unknown dtype ${String(t.dtype)}`);
    const count = t.shape.reduce((n, d) => n * d, 1);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) || count !== t.data.length || t.data.BYTES_PER_ELEMENT !== size) {
      throw new SafetensorsError(`safetensors: tensor "${name}": shape [${t.shape.join(', ')}] of ${t.dtype} does not match ${t.data.length} elements of ${t.data.BYTES_PER_ELEMENT} bytes`);
    }
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [at, at + t.data.byteLength] };
    at += t.data.byteLength;
    parts.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  let json = JSON.stringify(header);
  const pad = (8 - ((8 + Buffer.byteLength(json)) % 8)) % 8;
  json += ' '.repeat(pad);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, 'utf8');
  return [head, ...parts];
}

/**
 * Parses the header at the start of `bytes` (the whole file, or at least its first 8 + N bytes)
 * and checks that every tensor's range fits `fileBytes` (the file's size) and the ranges tile the
 * data section without gaps or overlaps.
 */
export function decodeSafetensorsHeader(bytes: Uint8Array, fileBytes = bytes.length, where = 'safetensors'): SafeHeader {
  checkHost();
  if (bytes.length < 8) throw new SafetensorsError(`${where}: ${bytes.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(Math.min(fileBytes - 8, 100 * 1024 * 1024))) throw new SafetensorsError(`${where}: header length ${n} does not fit the ${fileBytes}-byte file`);
  const dataStart = 8 + Number(n);
  if (bytes.length < dataStart) throw new SafetensorsError(`${where}: ${bytes.length} bytes read, the header needs ${dataStart}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, Number(n)).toString('utf8'));
  } catch (e) {
    throw new SafetensorsError(`${where}: the header is not JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new SafetensorsError(`${where}: the header is not a JSON object`);
  const tensors = new Map<string, SafeTensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
        throw new SafetensorsError(`${where}: __metadata__ must map strings to strings`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = t?.dtype as SafeDType;
    const shape = t?.shape;
    const off = t?.data_offsets;
    if (typeof dtype !== 'string' || BYTES[dtype] === undefined) throw new SafetensorsError(`${where}: tensor "${name}": dtype ${JSON.stringify(t?.dtype)} is not one of ${Object.keys(BYTES).join(', ')}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new SafetensorsError(`${where}: tensor "${name}": bad shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1]) {
      throw new SafetensorsError(`${where}: tensor "${name}": bad data_offsets ${JSON.stringify(off)}`);
    }
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    if ((off[1] - off[0]) !== count * BYTES[dtype]) throw new SafetensorsError(`${where}: tensor "${name}": ${off[1] - off[0]} bytes for shape [${shape.join(', ')}] of ${dtype}`);
    if (dataStart + off[1] > fileBytes) throw new SafetensorsError(`${where}: tensor "${name}" ends at byte ${dataStart + off[1]}, past the end of the ${fileBytes}-byte file (truncated?)`);
    tensors.set(name, { dtype, shape: shape as number[], begin: off[0], end: off[1] });
  }
  // the ranges must tile the data section exactly: nothing hidden, nothing shared
  const ranges = [...tensors.entries()].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let at = 0;
  for (const [name, t] of ranges) {
    if (t.begin !== at) throw new SafetensorsError(`${where}: tensor "${name}" starts at data byte ${t.begin}, expected ${at} (gap or overlap)`);
    at = t.end;
  }
  if (dataStart + at !== fileBytes) throw new SafetensorsError(`${where}: the tensors end at byte ${dataStart + at}, the file has ${fileBytes}`);
  return { dataStart, tensors, metadata };
}

/** A view (or, when misaligned, a copy) of tensor `info`'s elements in `bytes` (the whole file). */
export function tensorData(bytes: Uint8Array, header: SafeHeader, name: string): Float32Array | Uint16Array | Int32Array | Uint8Array {
  const info = header.tensors.get(name);
  if (!info) throw new SafetensorsError(`safetensors: no tensor "${name}" (has ${[...header.tensors.keys()].join(', ') || 'none'})`);
  const size = BYTES[info.dtype];
  const offset = bytes.byteOffset + header.dataStart + info.begin;
  const count = (info.end - info.begin) / size;
  const ctor = info.dtype === 'F32' ? Float32Array : info.dtype === 'I32' ? Int32Array : info.dtype === 'U8' ? Uint8Array : Uint16Array;
  if (offset % size === 0) return new ctor(bytes.buffer as ArrayBuffer, offset, count);
  return new ctor(bytes.slice(header.dataStart + info.begin, header.dataStart + info.end).buffer, 0, count);
}
