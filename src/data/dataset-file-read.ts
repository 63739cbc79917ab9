// Reading the paged dataset file (layout: dataset-file-format.ts): `--dataset file:PATH`.
//
// One read gets the header and the index; then the wanted pages are read in blocks of consecutive
// pages (one positional read each, up to 4 MiB), each block's pages checked against their CRC32s
// and converted straight from the read buffer into the split (SplitBuilder in split-rows.ts: uint8
// rows through the native byte-to-float table gather, float32 rows through the native row copy)
// while the next block's read is in flight. So reading overlaps converting, and a load holds the
// output and two blocks, not a second copy of the file.
//
// Sharded reads (docs/DATA.md): with P training pages and W ranks, rank r reads training pages
// [floor(r*P/W), floor((r+1)*P/W)): contiguous, page-aligned shares that differ by at most one
// page and cover every page once; plus every test page. No other rank's page is read, so neither
// its bytes nor its checksum are touched.
import { open, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { checkFinite, checkInteger, DataOptionError, DatasetFileError, DatasetSourceError } from './errors.js';
import type { DatasetSplit } from './dataset.js';
import {
  decodeHeader, decodeIndex, HEADER_BYTES, indexBytes, pageLayout, PAGE_ALIGN, type DatasetFileHeader, type PageEntry,
} from './dataset-file-format.js';
import { SplitBuilder, type RowChunk, type SplitRows } from './split-rows.js';

export interface DatasetFileShard {
  rank: number;
  worldSize: number;
}

export interface DatasetFileReadOptions {
  /** Read only this rank's share of the training split (and the whole test split). */
  shard?: DatasetFileShard;
}

export interface DatasetFileLoadOptions extends DatasetFileReadOptions {
  /** Allocate `x` over a SharedArrayBuffer (for worker threads). Default false. */
  shared?: boolean;
  /** uint8 files only: replaces the header's normalisation; false gives pixel/255. */
  normalize?: { mean: number; std: number } | false;
}

/** What a read touched, for tests and tools. */
export interface DatasetFileReadInfo {
  path: string;
  header: DatasetFileHeader;
  /** Indices of the pages read (training pages first, then test pages, as in the index). */
  pagesRead: number[];
  /** Bytes read: header and index included. */
  bytesRead: number;
  /** Training pages [from, to) and samples [from, to) of the file this read holds as its train split. */
  trainPages: [number, number];
  trainSamples: [number, number];
}

export type DatasetFileLoad = DatasetSplit & { file: DatasetFileReadInfo };

// the first page starts at PAGE_ALIGN or later, so this read never touches a page
const HEAD_READ = PAGE_ALIGN;
const MAX_READ = 1 << 30;
/** Bytes per read of consecutive pages: large enough to stream, small enough to overlap with the conversion. */
const BLOCK_BYTES = 4 << 20;

/** The training pages [from, to) of `rank` among `worldSize` ranks, for a file of `trainPages` pages. */
export function shardPages(trainPages: number, rank: number, worldSize: number): [number, number] {
  return [Math.floor((rank * trainPages) / worldSize), Math.floor(((rank + 1) * trainPages) / worldSize)];
}

function checkShard(shard: unknown): DatasetFileShard {
  if (shard === null || typeof shard !== 'object') throw new DataOptionError('loadDatasetFile.shard', shard, 'an object { rank, worldSize }');
  const worldSize = checkInteger('loadDatasetFile.shard.worldSize', (shard as DatasetFileShard).worldSize, 1);
  const rank = checkInteger('loadDatasetFile.shard.rank', (shard as DatasetFileShard).rank, 0, worldSize - 1);
  return { rank, worldSize };
}

async function openFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (err) {
    throw new DatasetSourceError(`cannot read the dataset file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, path, { cause: err });
  }
}

/** Reads [position, position + buf.length) fully; a short file is a truncated dataset file. */
async function readAt(fh: FileHandle, buf: Uint8Array, position: number, path: string): Promise<void> {
  let at = 0;
  while (at < buf.length) {
    const { bytesRead } = await fh.read(buf, at, Math.min(buf.length - at, MAX_READ), position + at);
    if (bytesRead === 0) throw new DatasetFileError(`truncated dataset file: ends before byte ${position + buf.length}`, path);
    at += bytesRead;
  }
}

/** Header and index, from one read of the file's first 4 KiB (two when the index does not fit: over 248 pages). */
async function readHead(fh: FileHandle, path: string): Promise<{ header: DatasetFileHeader; pages: PageEntry[]; bytes: number }> {
  const { size } = await fh.stat();
  const head = Buffer.allocUnsafe(Math.min(size, HEAD_READ));
  await readAt(fh, head, 0, path);
  const header = decodeHeader(head, path);
  if (size !== header.fileBytes) {
    throw new DatasetFileError(`${size < header.fileBytes ? 'truncated' : 'oversized'} dataset file: ${size} bytes, the header says ${header.fileBytes}`, path);
  }
  const need = HEADER_BYTES + indexBytes(header);
  let index: Uint8Array = head.subarray(HEADER_BYTES, need);
  let bytes = head.length;
  if (need > head.length) {
    const rest = Buffer.allocUnsafe(need - HEADER_BYTES);
    await readAt(fh, rest, HEADER_BYTES, path);
    index = rest;
    bytes += rest.length;
  }
  return { header, pages: decodeIndex(index, header, path), bytes };
}

/** The header of a dataset file (its index checked too), without reading any page. */
export async function readDatasetFileHeader(path: string): Promise<DatasetFileHeader> {
  const fh = await openFile(path);
  try {
    return (await readHead(fh, path)).header;
  } finally {
    await fh.close();
  }
}

/** A page as read: its index in the file's index and its rows, viewed in the read buffer. */
interface ReadPage { page: number; chunk: RowChunk }

/**
 * Reads the wanted pages (a rank's training pages, or all, then every test page) and hands them to
 * `take` block by block, each checked (checksum, labels) before it is handed over. A block is a run
 * of consecutive pages of up to BLOCK_BYTES (at least one page), read with one positional read;
 * the next block's read is in flight while `take` converts the previous one, so the disk and the
 * conversion overlap and only two blocks are in memory at a time.
 */
async function readPages(path: string, shard: DatasetFileShard | undefined,
  take: (h: DatasetFileHeader, pages: ReadPage[]) => void, start: (h: DatasetFileHeader, trainPages: [number, number]) => void): Promise<DatasetFileReadInfo> {
  const fh = await openFile(path);
  let pending: Promise<unknown> | undefined;
  try {
    const { header: h, pages, bytes } = await readHead(fh, path);
    let trainPages: [number, number] = [0, h.trainPages];
    if (shard !== undefined) {
      if (h.trainPages < shard.worldSize) {
        throw new DataOptionError('loadDatasetFile.shard.worldSize', shard.worldSize,
          `at most the file's ${h.trainPages} training pages (${h.pageSamples} samples each); convert it again with a smaller --page-samples (${path})`);
      }
      trainPages = shardPages(h.trainPages, shard.rank, shard.worldSize);
    }
    start(h, trainPages);
    const wanted: number[] = [];
    for (let p = trainPages[0]; p < trainPages[1]; p++) wanted.push(p);
    for (let p = h.trainPages; p < h.trainPages + h.testPages; p++) wanted.push(p);
    const pageEnd = (p: number): number => pages[p]!.offset + pageLayout(pages[p]!.samples, h.features, h.dtype).bytes;
    // blocks [i, j) of `wanted`: consecutive pages, at most BLOCK_BYTES unless one page is larger
    const blocks: Array<[number, number]> = [];
    for (let i = 0; i < wanted.length;) {
      let j = i + 1;
      while (j < wanted.length && wanted[j] === wanted[j - 1]! + 1 && pageEnd(wanted[j]!) - pages[wanted[i]!]!.offset <= BLOCK_BYTES) j++;
      blocks.push([i, j]);
      i = j;
    }
    let bytesRead = bytes;
    const read = async ([i, j]: [number, number]): Promise<ReadPage[]> => {
      const base = pages[wanted[i]!]!.offset;
      // not pooled, so the views start at an aligned address (pages are 4096-aligned in the file)
      const buf = Buffer.allocUnsafeSlow(pageEnd(wanted[j - 1]!) - base);
      await readAt(fh, buf, base, path);
      bytesRead += buf.length;
      return wanted.slice(i, j).map((p) => ({ page: p, chunk: pageChunk(buf, pages[p]!, base, p, h, path) }));
    };
    let next = blocks.length > 0 ? read(blocks[0]!) : undefined;
    for (let b = 0; b < blocks.length; b++) {
      const current = await next!;
      next = b + 1 < blocks.length ? read(blocks[b + 1]!) : undefined;
      // kept so that the file is not closed under it, and so that its failure is not unhandled
      // when converting this block throws first
      pending = next?.catch(() => {});
      take(h, current);
    }
    const trainSamples: [number, number] = [trainPages[0] * h.pageSamples, Math.min(trainPages[1] * h.pageSamples, h.trainCount)];
    return { path, header: h, pagesRead: wanted, bytesRead, trainPages, trainSamples };
  } finally {
    await pending;
    await fh.close();
  }
}

/** The stored rows of a dataset file (or of a rank's share), checksums and labels checked; pages are viewed in place. */
export async function readDatasetFileRows(path: string, options: DatasetFileReadOptions = {}): Promise<{ rows: SplitRows; info: DatasetFileReadInfo }> {
  const shard = options.shard === undefined ? undefined : checkShard(options.shard);
  const train: RowChunk[] = [];
  const test: RowChunk[] = [];
  const info = await readPages(path, shard, (h, read) => {
    for (const { page, chunk } of read) (page < h.trainPages ? train : test).push(chunk);
  }, () => {});
  const h = info.header;
  const rows: SplitRows = {
    shape: h.shape, features: h.features, classes: h.classes, dtype: h.dtype,
    normalize: h.dtype === 'uint8' ? { mean: h.mean, std: h.std } : false,
    train, test,
  };
  return { rows, info };
}

function pageChunk(buf: Buffer, entry: PageEntry, base: number, index: number, h: DatasetFileHeader, path: string): RowChunk {
  const layout = pageLayout(entry.samples, h.features, h.dtype);
  const at = buf.byteOffset + entry.offset - base;
  const body = new Uint8Array(buf.buffer, at, layout.bytes);
  const where = index < h.trainPages ? `training page ${index}` : `test page ${index - h.trainPages}`;
  if (crc32(body) !== entry.crc) throw new DatasetFileError(`corrupt dataset file: checksum mismatch in ${where} (page ${index} of the index)`, path);
  const n = entry.samples;
  const labels = new Int32Array(buf.buffer, at + layout.labelsAt, n);
  for (let i = 0; i < n; i++) {
    const label = labels[i]!;
    if (label < 0 || label >= h.classes) throw new DatasetFileError(`corrupt dataset file: label ${label} in ${where} is outside [0, ${h.classes})`, path);
  }
  const values = h.dtype === 'uint8' ? new Uint8Array(buf.buffer, at, n * h.features) : new Float32Array(buf.buffer, at, n * h.features);
  return { count: n, values, labels };
}

/**
 * Loads a dataset file as float32 datasets, or with `shard` only that rank's share of the training
 * split (and the whole test split). The file's split is fixed: no seed, no test size.
 */
export async function loadDatasetFile(path: string, options: DatasetFileLoadOptions = {}): Promise<DatasetFileLoad> {
  if (options === null || typeof options !== 'object') throw new DataOptionError('loadDatasetFile options', options, 'an object');
  const shard = options.shard === undefined ? undefined : checkShard(options.shard);
  let normalize: { mean: number; std: number } | false | undefined;
  if (options.normalize !== undefined) {
    normalize = options.normalize === false ? false
      : { mean: checkFinite('loadDatasetFile.normalize.mean', options.normalize?.mean), std: checkFinite('loadDatasetFile.normalize.std', options.normalize?.std, true) };
  }
  let builder: SplitBuilder | undefined;
  let trainAt = 0;
  let testAt = 0;
  // pages are converted into the split as their block arrives: the read buffers are not kept
  const info = await readPages(path, shard, (h, read) => {
    for (const { page, chunk } of read) {
      if (page < h.trainPages) {
        builder!.put(chunk, builder!.testCount + trainAt);
        trainAt += chunk.count;
      } else {
        builder!.put(chunk, testAt);
        testAt += chunk.count;
      }
    }
  }, (h, trainPages) => {
    if (normalize !== undefined && h.dtype !== 'uint8') {
      throw new DataOptionError('loadDatasetFile.normalize', options.normalize, `absent for a float32 dataset file (its values are stored as they are used) (${path})`);
    }
    const trainCount = Math.min(trainPages[1] * h.pageSamples, h.trainCount) - trainPages[0] * h.pageSamples;
    builder = new SplitBuilder({
      shape: h.shape, features: h.features, classes: h.classes, dtype: h.dtype,
      normalize: normalize ?? (h.dtype === 'uint8' ? { mean: h.mean, std: h.std } : false),
    }, h.testCount, trainCount, options.shared ?? false);
  });
  return { ...builder!.finish(), file: info };
}

/** Checks every page's checksum and labels (psdata inspect --verify); returns the header. */
export async function verifyDatasetFile(path: string): Promise<DatasetFileHeader> {
  return (await readDatasetFileRows(path)).info.header;
}
