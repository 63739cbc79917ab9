// IDX files (the MNIST distribution's format) and `--dataset idx:FOLDER`.
//
// An IDX file is a big-endian header, then the elements row-major:
//   0  u16 zero   2  u8 element type (0x08 unsigned byte, ...)   3  u8 number of dimensions D
//   4  D x u32 dimension sizes   4+4D  the elements
// A folder holds the four files of the original MNIST layout, each optionally gzipped (detected
// by the gzip magic, whatever the name says). Images: [count, rows, cols] (one channel) or
// [count, rows, cols, channels] (stored pixel by pixel, HWC); a sample's shape is [channels, rows,
// cols] (CHW, what Conv2d reads), so 4-D images are transposed once at load. Labels: [count].
// Train and test are the files' own splits, in file order. classes = the largest label of both
// splits + 1. Pixels are normalised with the training split's mean and std of pixel/255 (a
// constant training set, std 0, keeps std 1), so they are zero-mean and unit-variance in training.
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { constants as zconst, gunzip, gunzipSync } from 'node:zlib';
import { DatasetFileError, DatasetSourceError } from './errors.js';
import type { DatasetShape } from './dataset.js';
import type { RowChunk, SplitRows } from './split-rows.js';

const gunzipAsync = promisify(gunzip);

/** IDX element types by code: name and size in bytes. */
const IDX_TYPES: Record<number, { name: string; size: number }> = {
  0x08: { name: 'unsigned byte', size: 1 },
  0x09: { name: 'signed byte', size: 1 },
  0x0b: { name: 'short', size: 2 },
  0x0c: { name: 'int', size: 4 },
  0x0d: { name: 'float', size: 4 },
  0x0e: { name: 'double', size: 8 },
};
const UBYTE = 0x08;

export interface IdxHeader {
  /** Element type code (0x08: unsigned byte). */
  type: number;
  /** Dimension sizes, the first one the sample count. */
  dims: number[];
  /** Bytes before the elements: 4 + 4 * dims.length. */
  headerBytes: number;
}

const hex = (v: number, digits: number): string => `0x${v.toString(16).padStart(digits, '0')}`;

/** Decodes an IDX header from the first bytes of a (decompressed) file; refuses all but unsigned bytes. */
export function parseIdxHeader(buf: Uint8Array, path: string): IdxHeader {
  if (buf.length < 4) throw new DatasetFileError(`not an IDX file: ${buf.length} bytes, shorter than the 4-byte magic`, path);
  const magic = ((buf[0]! << 24) | (buf[1]! << 16) | (buf[2]! << 8) | buf[3]!) >>> 0;
  const type = buf[2]!;
  const ndims = buf[3]!;
  if (buf[0] !== 0 || buf[1] !== 0 || ndims === 0) {
    throw new DatasetFileError(`not an IDX file: magic ${hex(magic, 8)}, expected 0x0000TTDD (TT the element type, DD the number of dimensions)`, path);
  }
  if (type !== UBYTE) {
    throw new DatasetFileError(`unsupported IDX element type ${hex(type, 2)} (${IDX_TYPES[type]?.name ?? 'unknown'}): only unsigned bytes (0x08) are read`, path);
  }
  const headerBytes = 4 + 4 * ndims;
  if (buf.length < headerBytes) throw new DatasetFileError(`truncated IDX header: ${buf.length} bytes, ${ndims} dimensions need ${headerBytes}`, path);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) dims.push(view.getUint32(4 + 4 * d, false));
  return { type, dims, headerBytes };
}

const isGzip = (b: Uint8Array): boolean => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

/** An IDX file's contents, decompressed; the body is checked against the header's dimensions. */
export async function readIdx(path: string): Promise<{ header: IdxHeader; data: Uint8Array }> {
  let buf: Uint8Array;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw new DatasetSourceError(`cannot read an IDX file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, path, { cause: err });
  }
  if (isGzip(buf)) {
    try {
      buf = await gunzipAsync(buf);
    } catch (err) {
      throw new DatasetFileError(`corrupt or truncated gzip data: ${(err as Error).message}`, path, { cause: err });
    }
  }
  const header = parseIdxHeader(buf, path);
  const need = header.dims.reduce((a, b) => a * b, 1);
  const have = buf.length - header.headerBytes;
  if (have < need) {
    throw new DatasetFileError(`truncated IDX body: ${have} bytes, dimensions [${header.dims.join(', ')}] need ${need}`, path);
  }
  if (have > need) {
    throw new DatasetFileError(`IDX body has ${have - need} bytes more than dimensions [${header.dims.join(', ')}] need (${need})`, path);
  }
  return { header, data: buf.subarray(header.headerBytes) };
}

/** Only the header of an IDX file: reads (and inflates) its first bytes, not the body. */
export async function readIdxHeader(path: string): Promise<IdxHeader> {
  let prefix: Uint8Array;
  try {
    const fh = await open(path, 'r');
    try {
      const b = Buffer.alloc(4096);
      const { bytesRead } = await fh.read(b, 0, b.length, 0);
      prefix = b.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new DatasetSourceError(`cannot read an IDX file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, path, { cause: err });
  }
  if (isGzip(prefix)) {
    try {
      // a sync flush inflates what the prefix holds instead of failing on the missing rest
      prefix = gunzipSync(prefix, { finishFlush: zconst.Z_SYNC_FLUSH });
    } catch (err) {
      throw new DatasetFileError(`corrupt gzip data: ${(err as Error).message}`, path, { cause: err });
    }
  }
  return parseIdxHeader(prefix, path);
}

type Role = 'train-images' | 'train-labels' | 't10k-images' | 't10k-labels';
const ROLES: Record<Role, string[]> = {
  'train-images': ['train-images-idx3-ubyte', 'train-images-idx4-ubyte'],
  'train-labels': ['train-labels-idx1-ubyte'],
  't10k-images': ['t10k-images-idx3-ubyte', 't10k-images-idx4-ubyte'],
  't10k-labels': ['t10k-labels-idx1-ubyte'],
};

/** The four files of an IDX folder; a missing one is an error listing the names looked for. */
export async function idxFiles(dir: string): Promise<Record<Role, string>> {
  let names: Set<string>;
  try {
    if (!(await stat(dir)).isDirectory()) throw new DatasetSourceError('idx: expected a folder of IDX files, got a file', dir);
    names = new Set(await readdir(dir));
  } catch (err) {
    if (err instanceof DatasetSourceError) throw err;
    throw new DatasetSourceError(`idx: cannot read the folder: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, dir, { cause: err });
  }
  const found = {} as Record<Role, string>;
  for (const [role, bases] of Object.entries(ROLES) as Array<[Role, string[]]>) {
    const hit = bases.flatMap((b) => [b, `${b}.gz`]).find((n) => names.has(n));
    if (hit === undefined) {
      const expected = Object.values(ROLES).map((b) => b.map((n) => `${n}[.gz]`).join(' or ')).join(', ');
      throw new DatasetSourceError(`idx: no ${role} file (${bases.map((n) => `${n}[.gz]`).join(' or ')}); an IDX folder holds ${expected}`, dir);
    }
    found[role] = join(dir, hit);
  }
  return found;
}

/** Sample shape [channels, rows, cols] of an image file's dimensions. */
function imageShape(dims: number[], path: string): number[] {
  const shape = dims.length === 3 ? [1, dims[1]!, dims[2]!] : dims.length === 4 ? [dims[3]!, dims[1]!, dims[2]!] : undefined;
  if (shape !== undefined && shape.every((d) => d > 0)) return shape;
  throw new DatasetFileError(`images must have 3 dimensions (count, rows, cols) or 4 (count, rows, cols, channels), got [${dims.join(', ')}] (every size but the count > 0)`, path);
}

function checkLabels(header: IdxHeader, path: string): number {
  if (header.dims.length !== 1) throw new DatasetFileError(`labels must have 1 dimension (count), got [${header.dims.join(', ')}]`, path);
  return header.dims[0]!;
}

/** Sample shape and classes of an IDX folder: the image headers and the (small) label files only. */
export async function idxShape(dir: string): Promise<DatasetShape> {
  const files = await idxFiles(dir);
  const [trainH, testH] = await Promise.all([readIdxHeader(files['train-images']), readIdxHeader(files['t10k-images'])]);
  const shape = imageShape(trainH.dims, files['train-images']);
  const testShape = imageShape(testH.dims, files['t10k-images']);
  if (shape.join() !== testShape.join()) throw sameShapeError(shape, testShape, dir);
  const [trainL, testL] = await Promise.all([readIdx(files['train-labels']), readIdx(files['t10k-labels'])]);
  checkLabels(trainL.header, files['train-labels']);
  checkLabels(testL.header, files['t10k-labels']);
  return { shape: Object.freeze(shape), features: shape.reduce((a, b) => a * b, 1), classes: Math.max(maxOf(trainL.data), maxOf(testL.data)) + 1 };
}

function sameShapeError(train: number[], test: number[], dir: string): DatasetSourceError {
  return new DatasetFileError(`idx: training images are [${train.join(', ')}] but test images [${test.join(', ')}]`, dir);
}

function maxOf(labels: Uint8Array): number {
  let m = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i]! > m) m = labels[i]!;
  return m;
}

interface IdxPart { shape: number[]; chunk: RowChunk; maxLabel: number }

async function readPart(imagesPath: string, labelsPath: string): Promise<IdxPart> {
  const [images, labels] = await Promise.all([readIdx(imagesPath), readIdx(labelsPath)]);
  const shape = imageShape(images.header.dims, imagesPath);
  const count = images.header.dims[0]!;
  const nLabels = checkLabels(labels.header, labelsPath);
  if (nLabels !== count) {
    throw new DatasetFileError(`${count} images but ${nLabels} labels in ${labelsPath}`, imagesPath);
  }
  const [channels, rows, cols] = shape as [number, number, number];
  let values = images.data;
  if (images.header.dims.length === 4 && channels > 1) {
    // HWC -> CHW once, here, so every later gather and kernel reads channel planes
    values = new Uint8Array(images.data.length);
    const plane = rows * cols;
    const src = images.data;
    for (let n = 0; n < count; n++) {
      const base = n * plane * channels;
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < channels; c++) values[base + c * plane + p] = src[base + p * channels + c]!;
      }
    }
  }
  const y = Int32Array.from(labels.data);
  return { shape, chunk: { count, values, labels: y }, maxLabel: maxOf(labels.data) };
}

/** Mean and std of pixel/255 over uint8 values, exactly, from a 256-bin histogram. */
export function pixelStats(values: Uint8Array): { mean: number; std: number } {
  const hist = new Float64Array(256);
  for (let i = 0; i < values.length; i++) hist[values[i]!]++;
  let n = 0, sum = 0, sq = 0;
  for (let v = 0; v < 256; v++) {
    const x = v / 255;
    n += hist[v]!;
    sum += hist[v]! * x;
    sq += hist[v]! * x * x;
  }
  if (n === 0) return { mean: 0, std: 1 };
  const mean = sum / n;
  const std = Math.sqrt(Math.max(0, sq / n - mean * mean));
  return { mean, std: std > 0 ? std : 1 };
}

/** The rows of an IDX folder: its train and test files, shape, classes and the training split's normalisation. */
export async function loadIdxRows(dir: string, options: { normalize?: { mean: number; std: number } | false } = {}): Promise<SplitRows> {
  const files = await idxFiles(dir);
  const [train, test] = await Promise.all([
    readPart(files['train-images'], files['train-labels']),
    readPart(files['t10k-images'], files['t10k-labels']),
  ]);
  if (train.shape.join() !== test.shape.join()) throw sameShapeError(train.shape, test.shape, dir);
  const shape = Object.freeze(train.shape);
  return {
    shape,
    features: shape.reduce((a, b) => a * b, 1),
    classes: Math.max(train.maxLabel, test.maxLabel) + 1,
    dtype: 'uint8',
    normalize: options.normalize ?? pixelStats(train.chunk.values as Uint8Array),
    train: [train.chunk],
    test: [test.chunk],
  };
}

/** Encodes an IDX file of unsigned bytes (tests and tools write fixtures with it). */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = UBYTE;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, data]);
}
