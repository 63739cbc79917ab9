// The paged dataset file (`.psds`, written by `psdata convert`, read by `--dataset file:PATH`): its
// byte layout, in one place. docs/DATA.md describes the same layout for people.
//
// Little-endian throughout. A 128-byte header, then an index of 16 bytes per page, then the pages,
// each starting at a multiple of PAGE_ALIGN bytes so that it can be read (and mapped) in place:
//
//   header                                     index entry (one per page, train pages first)
//    0  8  magic 'PSRPCDSF'                      0  u64 offset of the page in the file
//    8  u32 format version (1)                   8  u32 samples in the page
//   12  u32 header bytes (128)                  12  u32 CRC32 of the page's bytes
//   16  u32 dtype (1 uint8, 2 float32)
//   20  u32 sample dimensions D (1..8)         page (samples n, features f, element size e)
//   24  8 x u32 the shape, unused ones 0         0  n*f*e bytes of values, row-major
//   56  u32 classes                              .. zero bytes up to a multiple of 8
//   60  u32 training samples                     L  n x i32 labels
//   64  u32 test samples                         .. zero bytes up to the next page's offset
//   68  u32 samples per page
//   72  u32 training pages                     (a page's CRC32 covers its values, the padding
//   76  u32 test pages                          after them and its labels: L + 4n bytes)
//   80  f64 mean   \ uint8: x = (v/255 - mean)/std; float32: 0 and 1 (values used as stored)
//   88  f64 std    /
//   96  u64 file size in bytes
//  104  u32 page alignment (4096)
//  108  u32 CRC32 of the index
//  112  12 bytes reserved, 0
//  124  u32 CRC32 of bytes 0..124
import { endianness } from 'node:os';
import { crc32 } from 'node:zlib';
import { DatasetFileError } from './errors.js';
import { MAX_SAMPLE_DIMS } from './dataset.js';

export const DATASET_FILE_MAGIC = 'PSRPCDSF';
export const DATASET_FILE_VERSION = 1;
export const HEADER_BYTES = 128;
export const INDEX_ENTRY_BYTES = 16;
export const PAGE_ALIGN = 4096;
export const DTYPE_CODES = { uint8: 1, float32: 2 } as const;
export type FileDtype = keyof typeof DTYPE_CODES;

export interface DatasetFileHeader {
  version: number;
  dtype: FileDtype;
  shape: readonly number[];
  features: number;
  classes: number;
  trainCount: number;
  testCount: number;
  pageSamples: number;
  trainPages: number;
  testPages: number;
  /** uint8: x = (v/255 - mean)/std; float32 files store 0 and 1. */
  mean: number;
  std: number;
  fileBytes: number;
  pageAlign: number;
  indexCrc: number;
}

export interface PageEntry {
  offset: number;
  samples: number;
  crc: number;
}

export const elementBytes = (dtype: FileDtype): number => (dtype === 'uint8' ? 1 : 4);
export const align = (n: number, to: number): number => Math.ceil(n / to) * to;

/** Byte sizes of a page of `samples` rows: values, where the labels start, the checksummed length. */
export function pageLayout(samples: number, features: number, dtype: FileDtype): { valueBytes: number; labelsAt: number; bytes: number } {
  const valueBytes = samples * features * elementBytes(dtype);
  const labelsAt = align(valueBytes, 8);
  return { valueBytes, labelsAt, bytes: labelsAt + 4 * samples };
}

/** Where the first page starts: after the header and the index, aligned. */
export const firstPageOffset = (pages: number): number => align(HEADER_BYTES + INDEX_ENTRY_BYTES * pages, PAGE_ALIGN);

export function encodeHeader(h: Omit<DatasetFileHeader, 'version' | 'pageAlign' | 'features'>): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  b.write(DATASET_FILE_MAGIC, 0, 'latin1');
  b.writeUInt32LE(DATASET_FILE_VERSION, 8);
  b.writeUInt32LE(HEADER_BYTES, 12);
  b.writeUInt32LE(DTYPE_CODES[h.dtype], 16);
  b.writeUInt32LE(h.shape.length, 20);
  h.shape.forEach((d, i) => b.writeUInt32LE(d, 24 + 4 * i));
  b.writeUInt32LE(h.classes, 56);
  b.writeUInt32LE(h.trainCount, 60);
  b.writeUInt32LE(h.testCount, 64);
  b.writeUInt32LE(h.pageSamples, 68);
  b.writeUInt32LE(h.trainPages, 72);
  b.writeUInt32LE(h.testPages, 76);
  b.writeDoubleLE(h.mean, 80);
  b.writeDoubleLE(h.std, 88);
  b.writeBigUInt64LE(BigInt(h.fileBytes), 96);
  b.writeUInt32LE(PAGE_ALIGN, 104);
  b.writeUInt32LE(h.indexCrc, 108);
  b.writeUInt32LE(crc32(b.subarray(0, 124)), 124);
  return b;
}

/** Decodes and checks a header; every inconsistency is a DatasetFileError naming the file. */
export function decodeHeader(buf: Uint8Array, path: string): DatasetFileHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const bad = (why: string): DatasetFileError => new DatasetFileError(`not a valid psrpc dataset file: ${why}`, path);
  if (b.length < HEADER_BYTES) throw bad(`truncated header: ${b.length} bytes, expected ${HEADER_BYTES}`);
  if (b.toString('latin1', 0, 8) !== DATASET_FILE_MAGIC) throw bad(`bad magic '${b.toString('latin1', 0, 8).replace(/[^\x20-\x7e]/g, '?')}', expected '${DATASET_FILE_MAGIC}'`);
  const version = b.readUInt32LE(8);
  if (version !== DATASET_FILE_VERSION) throw bad(`unsupported format version ${version} (this psrpc reads version ${DATASET_FILE_VERSION})`);
  if (crc32(b.subarray(0, 124)) !== b.readUInt32LE(124)) throw bad('header checksum mismatch');
  if (endianness() !== 'LE') throw bad('the file is little-endian and this machine is not');
  const dtypeCode = b.readUInt32LE(16);
  const dtype = (Object.keys(DTYPE_CODES) as FileDtype[]).find((k) => DTYPE_CODES[k] === dtypeCode);
  if (dtype === undefined) throw bad(`unknown dtype code ${dtypeCode}`);
  const ndim = b.readUInt32LE(20);
  if (ndim < 1 || ndim > MAX_SAMPLE_DIMS) throw bad(`sample dimensions ${ndim}, expected 1..${MAX_SAMPLE_DIMS}`);
  const shape = Object.freeze(Array.from({ length: ndim }, (_, i) => b.readUInt32LE(24 + 4 * i)));
  if (shape.some((d) => d < 1)) throw bad(`sample shape [${shape.join(', ')}] has an empty dimension`);
  const h: DatasetFileHeader = {
    version, dtype, shape,
    features: shape.reduce((a, d) => a * d, 1),
    classes: b.readUInt32LE(56),
    trainCount: b.readUInt32LE(60),
    testCount: b.readUInt32LE(64),
    pageSamples: b.readUInt32LE(68),
    trainPages: b.readUInt32LE(72),
    testPages: b.readUInt32LE(76),
    mean: b.readDoubleLE(80),
    std: b.readDoubleLE(88),
    fileBytes: Number(b.readBigUInt64LE(96)),
    pageAlign: b.readUInt32LE(104),
    indexCrc: b.readUInt32LE(108),
  };
  if (h.classes < 1) throw bad('classes is 0');
  if (h.pageSamples < 1) throw bad('samples per page is 0');
  if (h.trainPages !== Math.ceil(h.trainCount / h.pageSamples) || h.testPages !== Math.ceil(h.testCount / h.pageSamples)) {
    throw bad(`page counts ${h.trainPages} + ${h.testPages} do not match ${h.trainCount} + ${h.testCount} samples in pages of ${h.pageSamples}`);
  }
  if (h.pageAlign !== PAGE_ALIGN) throw bad(`page alignment ${h.pageAlign}, expected ${PAGE_ALIGN}`);
  if (!Number.isFinite(h.mean) || !Number.isFinite(h.std) || h.std <= 0) throw bad(`normalisation mean ${h.mean} std ${h.std}`);
  return h;
}

export const indexBytes = (h: Pick<DatasetFileHeader, 'trainPages' | 'testPages'>): number => INDEX_ENTRY_BYTES * (h.trainPages + h.testPages);

export function encodeIndex(pages: readonly PageEntry[]): Buffer {
  const b = Buffer.alloc(INDEX_ENTRY_BYTES * pages.length);
  pages.forEach((p, i) => {
    b.writeBigUInt64LE(BigInt(p.offset), i * INDEX_ENTRY_BYTES);
    b.writeUInt32LE(p.samples, i * INDEX_ENTRY_BYTES + 8);
    b.writeUInt32LE(p.crc, i * INDEX_ENTRY_BYTES + 12);
  });
  return b;
}

/**
 * Decodes and checks the index against the header: its checksum, each page's sample count (full
 * pages, a shorter last one per split) and each page's place (aligned, in order, inside the file).
 */
export function decodeIndex(buf: Uint8Array, h: DatasetFileHeader, path: string): PageEntry[] {
  const bad = (why: string): DatasetFileError => new DatasetFileError(`not a valid psrpc dataset file: ${why}`, path);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (crc32(b) !== h.indexCrc) throw bad('index checksum mismatch');
  const pages: PageEntry[] = [];
  let end = firstPageOffset(h.trainPages + h.testPages);
  const splits = [[h.trainPages, h.trainCount], [h.testPages, h.testCount]] as const;
  for (const [count, samples] of splits) {
    for (let p = 0; p < count; p++) {
      const i = pages.length;
      const entry = {
        offset: Number(b.readBigUInt64LE(i * INDEX_ENTRY_BYTES)),
        samples: b.readUInt32LE(i * INDEX_ENTRY_BYTES + 8),
        crc: b.readUInt32LE(i * INDEX_ENTRY_BYTES + 12),
      };
      const expected = p < count - 1 ? h.pageSamples : samples - (count - 1) * h.pageSamples;
      if (entry.samples !== expected) throw bad(`page ${i} holds ${entry.samples} samples, expected ${expected}`);
      if (entry.offset !== end) throw bad(`page ${i} at offset ${entry.offset}, expected ${end}`);
      end = align(entry.offset + pageLayout(entry.samples, h.features, h.dtype).bytes, PAGE_ALIGN);
      pages.push(entry);
    }
  }
  if (end !== h.fileBytes) throw bad(`the pages end at ${end} but the header says the file has ${h.fileBytes} bytes`);
  return pages;
}
