// DataLoader: an epoch of a dataset as batches of typed arrays, gathered into reused buffers.
//
// The hot path allocates nothing: each batch's rows are copied into one Float32Array and one
// Int32Array allocated with the loader, and the same batch object is handed out every time. The
// lifetime rule that buys this: a batch is valid until the next one is requested (copy it to keep
// it), and one iteration of a loader runs at a time (starting a new one ends the previous one).
import { checkBoolean, checkInteger, DataOptionError } from './errors.js';
import { checkDataset, type Dataset } from './dataset.js';
import { nativeRows } from './native-rows.js';
import { DistributedSampler, type Sampler } from './sampler.js';

export interface Batch {
  /** size * features values, row-major; a view of the loader's buffer. */
  readonly x: Float32Array;
  /** size labels; a view of the loader's buffer. */
  readonly y: Int32Array;
  /** Samples in this batch (batchSize, or fewer for the last one). */
  readonly size: number;
}

export interface DataLoaderOptions {
  /** Samples per batch. */
  batchSize: number;
  /** Which indices to visit and in what order, e.g. a DistributedSampler; excludes `shuffle`. */
  sampler?: Sampler;
  /** Without a sampler: visit the samples in a seeded random order, new every epoch (default false). */
  shuffle?: boolean;
  /** Without a sampler: seed of the shuffle (default 0). */
  seed?: number;
  /** Drop the last batch when it is short (default false). */
  dropLast?: boolean;
}

const KNOWN = new Set(['batchSize', 'sampler', 'shuffle', 'seed', 'dropLast']);

interface MutableBatch { x: Float32Array; y: Int32Array; size: number }

export class DataLoader implements Iterable<Batch> {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly dropLast: boolean;
  readonly sampler: Sampler;
  /** Batches per epoch. */
  readonly length: number;
  /** Samples per epoch (the sampler's length, less a dropped short batch). */
  readonly samples: number;
  private nextEpoch = 0;
  private iteration = 0;
  private readonly full: MutableBatch;
  private readonly tail: MutableBatch;

  constructor(dataset: Dataset, options: DataLoaderOptions) {
    this.dataset = checkDataset('DataLoader dataset', dataset);
    if (options === null || typeof options !== 'object') throw new DataOptionError('DataLoader options', options, 'an object');
    for (const key of Object.keys(options)) {
      if (!KNOWN.has(key)) throw new DataOptionError('DataLoader options', key, `one of ${[...KNOWN].join(', ')}`);
    }
    this.batchSize = checkInteger('DataLoader.batchSize', options.batchSize, 1, 2 ** 31 - 1);
    this.dropLast = checkBoolean('DataLoader.dropLast', options.dropLast ?? false);
    const shuffle = checkBoolean('DataLoader.shuffle', options.shuffle ?? false);
    if (options.sampler !== undefined) {
      const s = options.sampler as Partial<Sampler> | null;
      if (s === null || typeof s !== 'object' || typeof s.indices !== 'function' || typeof s.setEpoch !== 'function' || !Number.isSafeInteger(s.length)) {
        throw new DataOptionError('DataLoader.sampler', s === null ? null : typeof s, 'a Sampler (length, setEpoch, indices)');
      }
      // As torch: a sampler decides the order, so a second source of shuffling would be ambiguous.
      if (shuffle) throw new DataOptionError('DataLoader.shuffle', true, 'false when a sampler is given (the sampler decides the order)');
      if (options.seed !== undefined) throw new DataOptionError('DataLoader.seed', options.seed, 'absent when a sampler is given (seed the sampler)');
      this.sampler = options.sampler;
    } else {
      const seed = checkInteger('DataLoader.seed', options.seed ?? 0, Number.MIN_SAFE_INTEGER);
      this.sampler = new DistributedSampler(dataset.length, { numReplicas: 1, rank: 0, shuffle, seed });
    }
    const n = this.sampler.length;
    const rest = n % this.batchSize;
    this.length = this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
    this.samples = this.dropLast ? n - rest : n;

    const f = dataset.features;
    const rows = Math.min(this.batchSize, Math.max(n, 1));
    this.full = { x: new Float32Array(rows * f), y: new Int32Array(rows), size: rows };
    // The short last batch gets its views once, here, so no batch allocates.
    this.tail = rest === 0 || this.dropLast
      ? this.full
      : { x: this.full.x.subarray(0, rest * f), y: this.full.y.subarray(0, rest), size: rest };
  }

  /** The epoch the next iteration will use (0, 1, 2, ... unless setEpoch says otherwise). */
  get epoch(): number {
    return this.nextEpoch;
  }

  /**
   * Makes the next iteration epoch `epoch`: its order is the sampler's for that epoch (the loader
   * drives its sampler's epoch). Without a call, consecutive iterations are epochs 0, 1, 2, ...
   */
  setEpoch(epoch: number): void {
    this.nextEpoch = checkInteger('DataLoader.setEpoch epoch', epoch, 0);
  }

  /**
   * Batch `b` of epoch `epoch`, the batch an iteration of that epoch yields `b`-th: for trainers that
   * are handed batch numbers (elastic training, src/server/batch-queue.ts) rather than iterate.
   * The epoch's order is computed once and kept for the next calls of the same epoch. The batch is
   * a view of the loader's buffers: valid until the next call or iteration.
   */
  batchAt(epoch: number, b: number): Batch {
    checkInteger('DataLoader.batchAt epoch', epoch, 0);
    checkInteger('DataLoader.batchAt batch', b, 0, Math.max(0, this.length - 1));
    if (this.orderEpoch !== epoch) {
      this.sampler.setEpoch(epoch);
      const indices = this.sampler.indices();
      for (let k = 0; k < this.samples; k++) {
        const i = indices[k]!;
        if (!(i >= 0 && i < this.dataset.length)) {
          throw new DataOptionError('DataLoader.sampler index', i, `in [0, ${this.dataset.length - 1}] (the sampler was built for another dataset?)`);
        }
      }
      this.order = indices.slice(0, this.samples);
      this.orderEpoch = epoch;
    }
    this.iteration++;
    const pos = b * this.batchSize;
    const size = Math.min(this.batchSize, this.samples - pos);
    const batch = size === this.batchSize ? this.full : this.tail;
    gatherRows(this.dataset.x, this.dataset.y, this.dataset.features, this.order!, pos, size, batch.x, batch.y);
    return batch;
  }

  private order?: Int32Array;
  private orderEpoch = -1;

  /** Starts an epoch; any earlier iteration of this loader is ended (its next() throws). */
  [Symbol.iterator](): Iterator<Batch> {
    this.sampler.setEpoch(this.nextEpoch);
    const indices = this.sampler.indices();
    if (indices.length < this.samples) {
      throw new DataOptionError('DataLoader.sampler indices()', `Int32Array(${indices.length})`, `at least sampler.length = ${this.samples} indices`);
    }
    // Once per epoch, not per batch: an index past the dataset would read garbage rows silently.
    for (let k = 0; k < this.samples; k++) {
      const i = indices[k]!;
      if (!(i >= 0 && i < this.dataset.length)) {
        throw new DataOptionError('DataLoader.sampler index', i, `in [0, ${this.dataset.length - 1}] (the sampler was built for another dataset?)`);
      }
    }
    this.nextEpoch++;
    const token = ++this.iteration;
    const { dataset, batchSize, full, tail } = this;
    const limit = this.samples;
    const f = dataset.features;
    const src = dataset.x;
    const labels = dataset.y;
    let pos = 0;
    const result = { done: false, value: full as Batch };
    const done = { done: true as const, value: undefined };
    return {
      next: (): IteratorResult<Batch> => {
        if (token !== this.iteration) {
          throw new DataOptionError('DataLoader iteration', 'superseded', 'the current one (a newer iteration of this loader has started and reuses its buffers)');
        }
        if (pos >= limit) return done;
        const size = Math.min(batchSize, limit - pos);
        const batch = size === batchSize ? full : tail;
        gatherRows(src, labels, f, indices, pos, size, batch.x, batch.y);
        pos += size;
        result.value = batch;
        return result;
      },
    };
  }
}

/** Copies rows indices[pos .. pos+size) of (x, y) into (bx, by); a plain loop, no allocation. */
function gatherRows(x: Float32Array, y: Int32Array, f: number, indices: Int32Array, pos: number, size: number,
  bx: Float32Array, by: Int32Array): void {
  // A native memcpy per row: an element loop is ~10x slower, and TypedArray.set copies byte by
  // byte when the data is a SharedArrayBuffer (Hogwild's case).
  const rows = indices.subarray(pos, pos + size);
  nativeRows().gatherRowsF32(x, rows, f, bx);
  for (let k = 0; k < size; k++) by[k] = y[rows[k]!]!;
}
