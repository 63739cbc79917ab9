// A split as stored rows, before it becomes float32 tensors: what every non-built-in source (IDX
// files, dataset modules, the dataset file) produces and what `psdata convert` writes.
//
// Rows are kept in their source's element type (uint8 pixels with the normalisation that turns
// them into floats, or float32) and in chunks (a dataset file's pages are read in place, not joined
// first). `materialize` turns such a split into a `DatasetSplit`: one Float32Array holding the test
// rows then the training rows (the layout splitRaw gives the built-in datasets), uint8 rows through
// the native byte-to-float table gather, float32 rows through the native row copy.
import { checkBoolean, DataOptionError } from './errors.js';
import { pixelTable, type Dataset, type DatasetSplit, type RawDataset } from './dataset.js';
import { nativeRows } from './native-rows.js';
import { permutation } from './random.js';

/** Consecutive rows of one split: `count` samples, their values row-major, their labels. */
export interface RowChunk {
  count: number;
  values: Uint8Array | Float32Array;
  labels: Int32Array;
}

export interface SplitRows {
  shape: readonly number[];
  features: number;
  classes: number;
  /** Element type of every chunk's `values`. */
  dtype: 'uint8' | 'float32';
  /** uint8 only: x = (v/255 - mean)/std; false: x = v/255. Float32 rows are used as they are. */
  normalize: { mean: number; std: number } | false;
  train: RowChunk[];
  test: RowChunk[];
}

export function rowCount(chunks: readonly RowChunk[]): number {
  let n = 0;
  for (const c of chunks) n += c.count;
  return n;
}

/** Identity index 0..n-1, grown once and shared: the gathers of whole chunks read rows in order. */
let identity = new Int32Array(0);
function identityIndex(n: number): Int32Array {
  if (identity.length < n) {
    identity = new Int32Array(Math.max(n, identity.length * 2));
    for (let i = 0; i < identity.length; i++) identity[i] = i;
  }
  return identity.subarray(0, n);
}

/**
 * Builds the float32 split of stored rows chunk by chunk, as they arrive: test rows first, then
 * training rows, in one Float32Array (over a SharedArrayBuffer when `shared`). `permutation` is the
 * identity: the rows are in split order (test sample i is row i, training sample i is row
 * test.length + i).
 */
export class SplitBuilder {
  readonly x: Float32Array;
  readonly y: Int32Array;
  private readonly lut: Float32Array | undefined;

  constructor(private readonly rows: Omit<SplitRows, 'train' | 'test'>, readonly testCount: number, readonly trainCount: number, shared = false) {
    checkBoolean('loadDataset.shared', shared);
    const total = testCount + trainCount;
    if (total * rows.features > 2 ** 32) throw new DataOptionError('dataset size', total * rows.features, 'at most 2^32 float32 values');
    const bytes = total * rows.features * 4;
    this.x = new Float32Array(shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
    this.y = new Int32Array(total);
    this.lut = rows.dtype === 'uint8'
      ? (rows.normalize === false ? pixelTable(0, 1) : pixelTable(rows.normalize.mean, rows.normalize.std))
      : undefined;
  }

  /** Converts `chunk` into rows [row, row + chunk.count) (training rows start at testCount). */
  put(chunk: RowChunk, row: number): void {
    if (chunk.count === 0) return;
    const f = this.rows.features;
    const dst = this.x.subarray(row * f, (row + chunk.count) * f);
    const index = identityIndex(chunk.count);
    const src = chunk.values.subarray(0, chunk.count * f);
    if (this.lut !== undefined) nativeRows().gatherRowsU8(src as Uint8Array, index, f, this.lut, dst);
    else nativeRows().gatherRowsF32(src as Float32Array, index, f, dst);
    this.y.set(chunk.labels.subarray(0, chunk.count), row);
  }

  finish(): DatasetSplit {
    const { shape, features, classes } = this.rows;
    const { x, y, testCount } = this;
    const total = y.length;
    const part = (from: number, to: number): Dataset => ({
      x: x.subarray(from * features, to * features), y: y.subarray(from, to), length: to - from, shape, features, classes,
    });
    const perm = new Int32Array(total);
    for (let i = 0; i < total; i++) perm[i] = i;
    return { test: part(0, testCount), train: part(testCount, total), permutation: perm };
  }
}

/** The float32 split of stored rows (SplitBuilder over all of them at once). */
export function materialize(rows: SplitRows, options: { shared?: boolean } = {}): DatasetSplit {
  const builder = new SplitBuilder(rows, rowCount(rows.test), rowCount(rows.train), options.shared ?? false);
  let at = 0;
  for (const chunk of [...rows.test, ...rows.train]) {
    builder.put(chunk, at);
    at += chunk.count;
  }
  return builder.finish();
}

/**
 * A built-in dataset's raw samples in split order (the order `splitRaw` gives them with the same
 * seed and test size), still uint8: what converting a built-in dataset writes, so that the file
 * trains the same samples in the same order as the name does.
 */
export function rawSplitRows(raw: RawDataset, split: { seed: number; testSize: number; normalize: { mean: number; std: number } | false }): SplitRows {
  const { count, features, classes } = raw;
  const perm = permutation(count, split.seed);
  const values = new Uint8Array(count * features);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const s = perm[i]!;
    values.set(raw.pixels.subarray(s * features, (s + 1) * features), i * features);
    labels[i] = raw.labels[s]!;
  }
  const t = split.testSize;
  return {
    shape: raw.shape ?? [features],
    features,
    classes,
    dtype: 'uint8',
    normalize: split.normalize,
    test: [{ count: t, values: values.subarray(0, t * features), labels: labels.subarray(0, t) }],
    train: [{ count: count - t, values: values.subarray(t * features), labels: labels.subarray(t) }],
  };
}

/** Float32 rows of an already materialised split (synthetic data, a dataset module's arrays). */
export function floatSplitRows(split: { train: Dataset; test: Dataset }): SplitRows {
  const chunk = (d: Dataset): RowChunk[] => [{ count: d.length, values: d.x, labels: d.y }];
  return {
    shape: split.train.shape,
    features: split.train.features,
    classes: split.train.classes,
    dtype: 'float32',
    normalize: false,
    train: chunk(split.train),
    test: chunk(split.test),
  };
}
