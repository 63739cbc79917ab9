// The `Dataset` shape every part of psrpc trains on, and the split of raw pixels into train/test.
//
// A dataset is two typed arrays, a sample shape and three numbers, nothing else: rows are
// contiguous so a batch is a row gather, the native kernels read `x` in place, and a batch becomes
// an input tensor as a view: new Tensor(batch.x, [batch.size, ...dataset.shape]). Train and test
// of one split are two views of one Float32Array (optionally over a SharedArrayBuffer, for
// Hogwild's worker threads).
import { checkBoolean, checkFinite, checkInteger, DataOptionError } from './errors.js';
import { nativeRows } from './native-rows.js';
import { permutation } from './random.js';

export interface Dataset {
  /** Features, row-major: sample i is x[i*features .. (i+1)*features). */
  readonly x: Float32Array;
  /** Class labels in [0, classes). */
  readonly y: Int32Array;
  /** Number of samples. */
  readonly length: number;
  /** Shape of one sample, e.g. [1, 28, 28] for greyscale images (CHW) or [784]; its product is `features`. */
  readonly shape: readonly number[];
  /** Values per sample (the product of `shape`). */
  readonly features: number;
  readonly classes: number;
}

/** What a dataset's tensors look like, known before (or without) loading its samples. */
export interface DatasetShape {
  shape: readonly number[];
  features: number;
  classes: number;
}

export interface DatasetSplit {
  train: Dataset;
  test: Dataset;
  /**
   * Source index of every sample: test sample i is source sample permutation[i], train sample i
   * is permutation[test.length + i] (source order: the package's, class by class).
   */
  permutation: Int32Array;
}

/** Raw samples as stored in the cache: uint8 pixels (0..255) and uint8 labels, in source order. */
export interface RawDataset {
  pixels: Uint8Array;
  labels: Uint8Array;
  count: number;
  features: number;
  classes: number;
  /** Shape of one sample (default [features]). */
  shape?: readonly number[];
}

export interface SplitOptions {
  /** Seed of the split permutation (default 0). */
  seed?: number;
  /** Samples held out as the test set (the first ones of the permutation). */
  testSize?: number;
  /** Normalisation x = (pixel/255 - mean) / std; `false` keeps pixel/255. */
  normalize?: { mean: number; std: number } | false;
  /** Allocate `x` over a SharedArrayBuffer (for worker threads). Default false. */
  shared?: boolean;
}

/** Views of the first `n` samples of a dataset (no copy); `n` larger than the dataset is refused. */
export function take(dataset: Dataset, n: number): Dataset {
  checkInteger('take.n', n, 0, dataset.length);
  if (n === dataset.length) return dataset;
  return {
    x: dataset.x.subarray(0, n * dataset.features),
    y: dataset.y.subarray(0, n),
    length: n,
    shape: dataset.shape,
    features: dataset.features,
    classes: dataset.classes,
  };
}

/** Largest number of dimensions a sample may have (the dataset file's header has room for this many). */
export const MAX_SAMPLE_DIMS = 8;

/**
 * Checks a sample shape: 1 to 8 positive integers, whose product is `features` when given; returns
 * a frozen copy (datasets share it, so nobody may change it under the others).
 */
export function checkShape(what: string, shape: unknown, features?: number): readonly number[] {
  const ok = Array.isArray(shape) && shape.length >= 1 && shape.length <= MAX_SAMPLE_DIMS
    && shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 1);
  if (!ok) throw new DataOptionError(what, shape, `an array of 1 to ${MAX_SAMPLE_DIMS} positive integers`);
  const dims = shape as number[];
  const product = dims.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(product) || product > 2 ** 31 - 1) throw new DataOptionError(what, shape, 'a shape of at most 2^31-1 values');
  if (features !== undefined && product !== features) {
    throw new DataOptionError(what, shape, `a shape whose product is features = ${features} (its product is ${product})`);
  }
  return Object.isFrozen(shape) ? dims : Object.freeze([...dims]);
}

/** Checks that a dataset is consistent: array lengths agree with its counts, the shape with its features. */
export function checkDataset(what: string, d: Dataset): Dataset {
  if (d === null || typeof d !== 'object') throw new DataOptionError(what, d, 'a Dataset');
  checkInteger(`${what}.length`, d.length, 0);
  checkInteger(`${what}.features`, d.features, 1);
  checkInteger(`${what}.classes`, d.classes, 1);
  checkShape(`${what}.shape`, d.shape, d.features);
  if (!(d.x instanceof Float32Array) || d.x.length !== d.length * d.features) {
    throw new DataOptionError(`${what}.x`, d.x instanceof Float32Array ? `Float32Array(${d.x.length})` : typeof d.x,
      `a Float32Array of length*features = ${d.length * d.features}`);
  }
  if (!(d.y instanceof Int32Array) || d.y.length !== d.length) {
    throw new DataOptionError(`${what}.y`, d.y instanceof Int32Array ? `Int32Array(${d.y.length})` : typeof d.y,
      `an Int32Array of length ${d.length}`);
  }
  return d;
}

/**
 * Permutes raw samples with a seeded permutation, normalises them to float32 and splits them:
 * the first `testSize` samples of the permutation are the test set, the rest the training set
 * (the layout of the peer PyTorch scripts, with our generator instead of numpy's).
 */
export function splitRaw(raw: RawDataset, options: Required<SplitOptions>): DatasetSplit {
  const seed = checkInteger('seed', options.seed, Number.MIN_SAFE_INTEGER);
  const testSize = checkInteger('testSize', options.testSize, 0, raw.count);
  const shared = checkBoolean('shared', options.shared);
  let mean = 0;
  let std = 1;
  if (options.normalize !== false) {
    mean = checkFinite('normalize.mean', options.normalize?.mean);
    std = checkFinite('normalize.std', options.normalize?.std, true);
  }
  const { count, features, classes } = raw;
  const shape = checkShape('raw.shape', raw.shape ?? [features], features);
  // 256 entries instead of a divide per pixel; also makes every process produce identical floats.
  const lut = pixelTable(mean, std);

  const perm = permutation(count, seed);
  const bytes = count * features * 4;
  const x = new Float32Array(shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  const y = new Int32Array(count);
  if (count > 0 && features > 0) nativeRows().gatherRowsU8(raw.pixels.subarray(0, count * features), perm, features, lut, x);
  for (let i = 0; i < count; i++) y[i] = raw.labels[perm[i]!]!;
  const part = (from: number, to: number): Dataset => ({
    x: x.subarray(from * features, to * features),
    y: y.subarray(from, to),
    length: to - from,
    shape,
    features,
    classes,
  });
  return { test: part(0, testSize), train: part(testSize, count), permutation: perm };
}

/**
 * The byte-to-float table of the uint8 datasets: lut[v] = (v/255 - mean)/std. Every uint8 source
 * (the cache, IDX files, the dataset file) converts through this one expression, so a dataset read
 * from any of them has the same floats, bit for bit.
 */
export function pixelTable(mean: number, std: number): Float32Array {
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = (v / 255 - mean) / std;
  return lut;
}
