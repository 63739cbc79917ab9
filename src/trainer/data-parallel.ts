// What ddp and zero share: gradient buckets over the flat gradient buffer, launched from the
// autograd engine's gradient-ready hooks while backward runs, in the same order on every rank.
//
// Buckets follow PyTorch's reducer: parameters in reverse registration order (roughly the order
// backward produces their gradients), packed into buckets up to `--bucket-kb`, the first one at
// most 1 MiB so communication starts early. Because flattenParameters lays the parameters out
// contiguously in registration order, a bucket of consecutive parameters in reverse order is one
// contiguous range of the flat buffer: its collective runs in place on a subarray, no copies.
//
// A bucket is launched once all its parameters' gradients are ready and every bucket before it
// has been launched, so every rank issues the same collectives in the same order (the process
// group numbers them). After backward, a parameter whose hook never fired got no gradient: with
// `findUnusedParameters` its slice is zeroed and counts as ready, otherwise the step fails naming it.
import type { ProcessGroup, WireDType } from '../collective/index.js';
import { DataLoader } from '../data/index.js';
import { getBackend, onGradReady, type FlatParameters, type Tensor } from '../tensor/index.js';
import type { TrainedModel, TrainerReport } from './centralized.js';
import { buildModel, modelContext, resolveModel, type ModelContext, type ResolvedModel } from './model.js';
import type { Precision, TrainOptions } from './options.js';
import { trainerSampler } from './setup.js';
import type { WorldTrainerContext } from './strategy.js';

/** What a data-parallel rank (ddp, zero, fsdp) reports beyond the common figures. */
export interface DataParallelReport extends TrainerReport {
  /** Peak resident memory of this process, bytes (process.resourceUsage().maxRSS). */
  peakRssBytes: number;
  /** Bytes of optimizer state this rank holds. */
  optimizerStateBytes: number;
  /** Parameter elements whose optimizer state this rank holds (zero, fsdp: its shard). */
  optimizerElements: number;
  /** The gradient buckets (ddp, zero) or units (fsdp) and their sizes in elements. */
  buckets: number[];
}

/** One rank's loader over its partition and its model, as ddp, zero and fsdp start. */
export async function rankSetup(opts: TrainOptions, ctx: WorldTrainerContext): Promise<{ loader: DataLoader; resolved: ResolvedModel; mctx: ModelContext; model: TrainedModel }> {
  const sampler = trainerSampler(opts, ctx);
  const loader = new DataLoader(ctx.train, { batchSize: opts.batchSize, sampler, dropLast: true });
  if (loader.length === 0) {
    throw new RangeError(`--batch-size ${opts.batchSize} is larger than the ${sampler.length} training samples of rank ${ctx.rank} of ${ctx.trainers}`);
  }
  const resolved = await resolveModel(opts.model);
  const mctx = modelContext(opts, ctx.train, { rank: ctx.rank, role: 'trainer', workers: ctx.trainers });
  const model = await buildModel(resolved, mctx) as TrainedModel;
  return { loader, resolved, mctx, model };
}

/**
 * The job result's figures every data-parallel strategy reports, from every rank's report; `own`
 * adds a strategy's. (The trainer role takes `precision` and `skippedSteps` from the reports itself.)
 */
export function dataParallelExtras(reports: readonly DataParallelReport[], own: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...own,
    peakRssBytes: Math.max(...reports.map((r) => r.peakRssBytes ?? 0)),
    optimizerStateBytesPerRank: reports.map((r) => r.optimizerStateBytes),
    optimizerElementsPerRank: reports.map((r) => r.optimizerElements),
    buckets: reports[0]?.buckets ?? [],
  };
}

export interface Bucket {
  /** Range of the flat buffer, [start, end). */
  start: number;
  end: number;
  /** The parameters in it (reverse registration order) and their names. */
  params: Tensor[];
  names: string[];
}

export const FIRST_BUCKET_BYTES = 1 << 20;

/** Buckets over `flat`'s entries in reverse order: each at most `capBytes`, the first at most min(cap, 1 MiB); a parameter larger than the cap gets a bucket of its own. */
export function makeBuckets(flat: FlatParameters, params: readonly Tensor[], capBytes: number): Bucket[] {
  const buckets: Bucket[] = [];
  let cur: Bucket | null = null;
  for (let i = flat.entries.length - 1; i >= 0; i--) {
    const e = flat.entries[i]!;
    const cap = buckets.length === 0 ? Math.min(capBytes, FIRST_BUCKET_BYTES) : capBytes;
    if (cur && (cur.end - e.offset) * 4 > cap) {
      buckets.push(cur);
      cur = null;
    }
    if (!cur) cur = { start: e.offset, end: e.offset + e.size, params: [], names: [] };
    cur.start = e.offset;
    cur.params.push(params[i]!);
    cur.names.push(e.name);
  }
  if (cur) buckets.push(cur);
  return buckets;
}

/** The wire format of a precision flag. */
export function wireDType(p: Precision): WireDType {
  return p === 'bf16' ? 'bfloat16' : p === 'fp16' ? 'float16' : 'float32';
}

/**
 * Runs one collective per bucket during backward. `reduce(bucket, view)` starts the bucket's
 * collective on its slice of the flat gradient; `arm(scale)` before a backward that must
 * synchronise (the slices are multiplied by `scale` just before they go out: 1 / accumulated
 * batches, times the fp16 loss scale), `finish()` after it.
 */
export class GradSync {
  private readonly grads: Float32Array;
  private readonly bucketOf = new Map<Tensor, number>();
  private readonly ready: Set<Tensor>[];
  private launched: Promise<unknown>[] = [];
  private next = 0;
  private armed = false;
  private scale = 1;
  private readonly removers: (() => void)[] = [];
  /** A failed launch (a collective that rejected synchronously or a hook error), rethrown by finish. */
  private failure: unknown;

  constructor(
    flat: FlatParameters,
    readonly buckets: readonly Bucket[],
    private readonly reduce: (bucket: Bucket, view: Float32Array, index: number) => Promise<unknown>,
    private readonly findUnused: boolean,
  ) {
    this.grads = flat.grads;
    this.ready = buckets.map(() => new Set());
    buckets.forEach((b, i) => {
      for (const p of b.params) {
        this.bucketOf.set(p, i);
        this.removers.push(onGradReady(p, (t) => this.mark(t)));
      }
    });
  }

  arm(scale: number): void {
    this.armed = true;
    this.scale = scale;
    this.next = 0;
    this.launched = [];
    this.failure = undefined;
    for (const r of this.ready) r.clear();
  }

  /** Backward without synchronisation (accumulating batches locally). */
  disarm(): void {
    this.armed = false;
  }

  private mark(p: Tensor): void {
    if (!this.armed) return;
    const i = this.bucketOf.get(p)!;
    if (this.ready[i]!.has(p)) return;
    this.ready[i]!.add(p);
    this.launchReady();
  }

  /** Every parameter of bucket i has its gradient for this step. */
  private complete(i: number): boolean {
    return this.ready[i]!.size === this.buckets[i]!.params.length;
  }

  private launchReady(): void {
    while (this.next < this.buckets.length && this.complete(this.next)) {
      const i = this.next++;
      const b = this.buckets[i]!;
      const view = this.grads.subarray(b.start, b.end);
      try {
        if (this.scale !== 1) getBackend('cpu').kernels.scale(this.scale, view);
        const p = this.reduce(b, view, i);
        p.catch(() => {}); // observed by finish's Promise.all; never left unhandled meanwhile
        this.launched.push(p);
      } catch (e) {
        this.failure ??= e;
        this.launched.push(Promise.reject(e).catch(() => {}));
      }
    }
  }

  /**
   * After backward: settles the parameters that got no gradient (zeroed with findUnused, an error
   * naming them otherwise), launches what is left and waits for every bucket.
   */
  async finish(): Promise<void> {
    if (!this.armed) throw new Error('GradSync.finish without arm');
    this.armed = false;
    const unused: string[] = [];
    for (let i = 0; i < this.buckets.length; i++) {
      if (this.complete(i)) continue;
      const b = this.buckets[i]!;
      b.params.forEach((p, k) => {
        if (this.ready[i]!.has(p)) return;
        // a gradient accumulated by an earlier batch of the window counts as ready
        if (p.grad === null) {
          if (!this.findUnused) unused.push(b.names[k]!);
          else {
            // zero, and attached: the reduced value (other ranks may have used it) is what steps it
            (p.gradStorage as Float32Array).fill(0);
            p.attachGrad(p.gradStorage!);
          }
        }
        this.ready[i]!.add(p);
      });
    }
    if (unused.length > 0) {
      // the buckets already launched must still complete on every rank, or the others would wait for them
      this.launchReady();
      await Promise.allSettled(this.launched);
      throw new RangeError(`parameter${unused.length > 1 ? 's' : ''} ${unused.map((n) => `'${n}'`).join(', ')} got no gradient in this step: the loss does not depend on ${unused.length > 1 ? 'them' : 'it'}; pass --find-unused-parameters (findUnusedParameters: true) to count such gradients as zero`);
    }
    this.launchReady();
    const all = this.launched;
    this.launched = [];
    if (this.failure !== undefined) {
      await Promise.allSettled(all);
      throw this.failure;
    }
    await Promise.all(all);
  }

  dispose(): void {
    for (const r of this.removers) r();
    this.removers.length = 0;
  }
}

/** Bytes held by an optimizer's state (momentum buffers, moments): every typed array in it. */
export function optimizerStateBytes(opt: { state: Map<unknown, unknown> }): number {
  let n = 0;
  for (const s of opt.state.values()) {
    if (s === null || typeof s !== 'object') continue;
    for (const v of Object.values(s as Record<string, unknown>)) if (ArrayBuffer.isView(v)) n += v.byteLength;
  }
  return n;
}

/**
 * fp16's dynamic loss scaling on the wire (PyTorch GradScaler's defaults): gradients are multiplied
 * by the scale before they are narrowed to fp16 and divided after the reduction; a step whose
 * reduced gradient holds inf or NaN is skipped and the scale halves; after 2000 good steps it doubles.
 */
export class LossScaler {
  scale: number;
  skipped = 0;
  private good = 0;
  constructor(readonly enabled: boolean, init = 2 ** 16, private readonly growthInterval = 2000) {
    this.scale = enabled ? init : 1;
  }
  /** After a reduction: whether to step (false: the gradient overflowed, the step is skipped). */
  update(overflow: boolean): boolean {
    if (!this.enabled) return true;
    if (overflow) {
      this.skipped++;
      this.good = 0;
      this.scale = Math.max(1, this.scale / 2);
      return false;
    }
    if (++this.good >= this.growthInterval) {
      this.good = 0;
      this.scale *= 2;
    }
    return true;
  }
}
