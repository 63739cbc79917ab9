// The batches of one Hogwild worker: its DistributedSampler partition of the shared training set,
// gathered row by row into a batch buffer the worker owns.
//
// Why not the data layer's DataLoader: its row copy is TypedArray.prototype.set, which V8 runs
// as a byte-wise relaxed-atomic copy (v8::internal::relaxed_memmove) when the source is a
// SharedArrayBuffer, since another thread might write it. In a 2-worker profile that copy was
// the largest single symbol (11% of all samples, above every GEMM microkernel). The native
// kernels read shared memory with plain vector loads, so each row is copied with `mul(row, ones,
// dst)`: x * 1 is exactly x for every float (-0 and NaN included), so the batches are bit-identical
// to the DataLoader's. The order is the DataLoader's too: the sampler's indices, full batches,
// the short last batch dropped, so one worker visits exactly what local training visits.
import type { Dataset, Sampler } from '../data/index.js';
import { cpuKernels, type NativeKernels } from '../tensor/native.js';

export interface WorkerBatch {
  /** size * features values, row-major; overwritten by the next batch. */
  readonly x: Float32Array;
  readonly y: Int32Array;
  readonly size: number;
}

export class SharedBatches {
  /** Full batches per epoch. */
  readonly length: number;
  /** Samples per epoch (length * batchSize). */
  readonly samples: number;
  private readonly batch: WorkerBatch;
  /** Row k of the batch buffer, made once. */
  private readonly rows: Float32Array[];
  private readonly ones: Float32Array;
  private readonly kernels: NativeKernels;

  constructor(private readonly data: Dataset, private readonly sampler: Sampler, private readonly batchSize: number) {
    this.length = Math.floor(sampler.length / batchSize);
    this.samples = this.length * batchSize;
    const f = data.features;
    const x = new Float32Array(batchSize * f);
    this.batch = { x, y: new Int32Array(batchSize), size: batchSize };
    this.rows = Array.from({ length: batchSize }, (_, k) => x.subarray(k * f, (k + 1) * f));
    this.ones = new Float32Array(f).fill(1);
    this.kernels = cpuKernels();
  }

  /** Epoch `epoch`'s batches in order; each batch is valid until the next one is requested. */
  *epoch(epoch: number): Generator<WorkerBatch, void, undefined> {
    this.sampler.setEpoch(epoch);
    const indices = this.sampler.indices();
    const { batch, batchSize, rows, ones, kernels } = this;
    const f = this.data.features;
    const src = this.data.x;
    const labels = this.data.y;
    const n = this.data.length;
    const y = batch.y;
    for (let pos = 0; pos + batchSize <= this.samples; pos += batchSize) {
      for (let k = 0; k < batchSize; k++) {
        const i = indices[pos + k]!;
        if (!(i >= 0 && i < n)) throw new RangeError(`sampler index ${i} is outside the ${n} training samples`);
        kernels.mul(src.subarray(i * f, (i + 1) * f), ones, rows[k]!);
        y[k] = labels[i]!;
      }
      yield batch;
    }
  }
}
