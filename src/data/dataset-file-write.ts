// Writing the paged dataset file (layout: dataset-file-format.ts): any split's rows, page by page.
//
// One page buffer is filled and written at a time, so converting needs the source's memory and one
// page, not a second copy of the dataset. The file is written under a temp name and renamed over
// the target at the end, so a reader never sees half a file and an interrupted conversion leaves
// the previous file in place.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { checkInteger, DatasetSourceError } from './errors.js';
import {
  align, DATASET_FILE_VERSION, encodeHeader, encodeIndex, firstPageOffset, HEADER_BYTES, pageLayout, PAGE_ALIGN,
  type DatasetFileHeader, type PageEntry,
} from './dataset-file-format.js';
import { rowCount, type RowChunk, type SplitRows } from './split-rows.js';

export interface WriteDatasetFileOptions {
  /** Samples per page (default 1024): the unit of a sharded read and of a checksum. */
  pageSamples?: number;
  /** Called after each page is written, with the pages written and the pages in all. */
  onPage?: (written: number, pages: number) => void;
}

export const DEFAULT_PAGE_SAMPLES = 1024;

const bytesOf = (a: Uint8Array | Float32Array | Int32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Reads consecutive rows out of a list of chunks into a page buffer, a run at a time. */
class RowCursor {
  private chunk = 0;
  private row = 0;
  constructor(private readonly chunks: readonly RowChunk[], private readonly rowBytes: number) {}

  /** Copies the next `n` rows' values to page[0..) and their labels to page[labelsAt..). */
  fill(n: number, page: Buffer, labelsAt: number): void {
    let done = 0;
    while (done < n) {
      const c = this.chunks[this.chunk]!;
      const run = Math.min(n - done, c.count - this.row);
      if (run > 0) {
        const values = bytesOf(c.values);
        page.set(values.subarray(this.row * this.rowBytes, (this.row + run) * this.rowBytes), done * this.rowBytes);
        page.set(bytesOf(c.labels.subarray(this.row, this.row + run)), labelsAt + 4 * done);
        done += run;
        this.row += run;
      }
      if (this.row >= c.count) {
        this.chunk++;
        this.row = 0;
      }
    }
  }
}

/** Writes `rows` as a dataset file at `path` (replacing it atomically); returns its header. */
export async function writeDatasetFile(path: string, rows: SplitRows, options: WriteDatasetFileOptions = {}): Promise<DatasetFileHeader> {
  const pageSamples = checkInteger('writeDatasetFile.pageSamples', options.pageSamples ?? DEFAULT_PAGE_SAMPLES, 1, 2 ** 31 - 1);
  const { dtype, shape, features, classes } = rows;
  const trainCount = rowCount(rows.train);
  const testCount = rowCount(rows.test);
  checkInteger('writeDatasetFile training samples', trainCount, 0, 2 ** 32 - 1);
  checkInteger('writeDatasetFile test samples', testCount, 0, 2 ** 32 - 1);
  const trainPages = Math.ceil(trainCount / pageSamples);
  const testPages = Math.ceil(testCount / pageSamples);
  const total = trainPages + testPages;
  const norm = dtype === 'uint8' && rows.normalize !== false ? rows.normalize : { mean: 0, std: 1 };
  const rowBytes = features * (dtype === 'uint8' ? 1 : 4);
  const full = pageLayout(Math.min(pageSamples, Math.max(trainCount, testCount, 1)), features, dtype);
  const page = Buffer.alloc(full.bytes);

  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  let fh;
  try {
    fh = await open(tmp, 'wx');
  } catch (err) {
    throw new DatasetSourceError(`cannot write the dataset file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, path, { cause: err });
  }
  try {
    const entries: PageEntry[] = [];
    let offset = firstPageOffset(total);
    for (const [chunks, count] of [[rows.train, trainCount], [rows.test, testCount]] as const) {
      const cursor = new RowCursor(chunks, rowBytes);
      for (let start = 0; start < count; start += pageSamples) {
        const n = Math.min(pageSamples, count - start);
        const layout = pageLayout(n, features, dtype);
        const body = page.subarray(0, layout.bytes);
        body.fill(0, layout.valueBytes, layout.labelsAt);
        cursor.fill(n, body, layout.labelsAt);
        const crc = crc32(body);
        await writeAll(fh, body, offset);
        entries.push({ offset, samples: n, crc });
        offset = align(offset + layout.bytes, PAGE_ALIGN);
        options.onPage?.(entries.length, total);
      }
    }
    const index = encodeIndex(entries);
    const header = {
      dtype, shape, classes, trainCount, testCount, pageSamples, trainPages, testPages,
      mean: norm.mean, std: norm.std, fileBytes: offset, indexCrc: crc32(index),
    };
    await writeAll(fh, index, HEADER_BYTES);
    await writeAll(fh, encodeHeader(header), 0);
    // the gaps between pages are holes, read back as the zeros the layout promises
    await fh.truncate(offset);
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
    return { ...header, version: DATASET_FILE_VERSION, pageAlign: PAGE_ALIGN, features };
  } catch (err) {
    await fh?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    if (err instanceof DatasetSourceError) throw err;
    throw new DatasetSourceError(`cannot write the dataset file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, path, { cause: err });
  }
}

async function writeAll(fh: import('node:fs/promises').FileHandle, data: Uint8Array, position: number): Promise<void> {
  let at = 0;
  while (at < data.length) {
    const { bytesWritten } = await fh.write(data, at, data.length - at, position + at);
    at += bytesWritten;
  }
}
