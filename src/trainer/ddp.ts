// The `ddp` and `zero` strategies: data parallelism over a process group, no servers.
//
// ddp (PyTorch's DistributedDataParallel): rank 0 broadcasts parameters and buffers at the start;
// every rank trains a full replica on its DistributedSampler partition, and each step's gradients
// are averaged across ranks by bucketed all-reduces that start during backward (GradSync), then
// every rank steps its own optimizer on the same averaged gradient, so the replicas stay equal.
//
// zero (ZeRO stages 1 and 2, PyTorch's ZeroRedundancyOptimizer): the same buckets, but each
// bucket is reduce-scattered instead of all-reduced: rank r receives the averaged gradient of
// segment r of every bucket only (equal element counts, not whole tensors), steps an optimizer
// that holds state for those segments only, and the buckets' parameters are all-gathered back.
// Stage 1 reduce-scatters after backward; stage 2 starts each bucket's reduce-scatter during
// backward, as ddp does. In this version the backward still writes the full local gradient into
// one flat buffer, so stage 2 saves no gradient memory over stage 1: it overlaps communication.
//
// --grad-accum N sums N batches' gradients locally (no communication: PyTorch's no_sync) and
// exchanges once, scaled by 1/N, so a step equals one over the concatenation of all ranks' N
// batches; the last window of an epoch may be shorter and is scaled by its own length.
import { attachCollectives, ProcessGroup, segmentBounds } from '../collective/index.js';
import type { Batch } from '../data/index.js';
import type { Agent } from '../rpc/index.js';
import { createOptimizer, flattenBuffers, flattenParameters, getBackend, nonFiniteCount, Tensor, type Labels } from '../tensor/index.js';
import { AccuracyCurve } from './curve.js';
import { dataParallelExtras, GradSync, LossScaler, makeBuckets, optimizerStateBytes, rankSetup, wireDType, type Bucket, type DataParallelReport } from './data-parallel.js';
import { runLoop } from './loop.js';
import type { TrainOptions } from './options.js';
import { optimizerSpec } from './setup.js';
import { faultAtStep, ModelCheckpoints, resumePosition, SegmentCheckpoints, type Segment } from './checkpoint.js';
import type { WorldTrainerContext, WorldTraining } from './strategy.js';

export type { DataParallelReport } from './data-parallel.js';

/** Called by the strategies' host hook before the rendezvous completes, so no rank's first message finds no receiver. */
export function hostCollectives(agent: Agent): { close(): Promise<void> } {
  attachCollectives(agent);
  return { async close() {} };
}

export async function trainDataParallel(opts: TrainOptions, ctx: WorldTrainerContext, mode: 'ddp' | 'zero'): Promise<WorldTraining> {
  const pg = ProcessGroup.create(ctx.agent, { timeoutMs: opts.collectiveTimeout * 1000 });
  try {
    return await run(opts, ctx, mode, pg);
  } catch (e) {
    pg.close();
    throw e;
  }
}

async function run(opts: TrainOptions, ctx: WorldTrainerContext, mode: 'ddp' | 'zero', pg: ProcessGroup): Promise<WorldTraining> {
  const { agent } = ctx;
  const { loader, resolved, mctx, model } = await rankSetup(opts, ctx);
  const params = model.parameters();
  const flat = flattenParameters(model);
  const buffers = flattenBuffers(model);
  const dtype = wireDType(opts.precision);
  // every replica starts from rank 0's parameters and buffers (exactly: the broadcast is fp32)
  await pg.broadcast(flat.params, 0);
  if (buffers.length > 0) await pg.broadcast(buffers, 0);

  const buckets = makeBuckets(flat, params, opts.bucketKb * 1024);
  const scaler = new LossScaler(opts.precision === 'fp16');
  const spec = optimizerSpec(opts);
  let optimizer: ReturnType<typeof createOptimizer>;
  let reduce: (b: Bucket, view: Float32Array) => Promise<unknown>;
  /** The ranges of the flat buffer whose reduced gradient this rank holds and steps: ddp all of it, zero its segment of each bucket. */
  let segments: [number, number][];
  /** zero: the optimizer's shard tensors and where each starts in the flat buffer. */
  let masters: [Tensor, number][] = [];
  if (mode === 'ddp') {
    optimizer = createOptimizer(params, spec);
    segments = [[0, flat.params.length]];
    reduce = (_b, view) => pg.allReduce(view, { op: 'avg', dtype });
  } else {
    // one shard tensor per bucket segment: views of the flat parameters and gradients
    segments = buckets.map((b) => {
      const bounds = segmentBounds(b.end - b.start, pg.size);
      return [b.start + bounds[pg.rank]!, b.start + bounds[pg.rank + 1]!];
    });
    // In 16 bits the gathered working copy is rounded, so each shard keeps an fp32 master of its
    // own (copied into the flat buffer before each gather); in fp32 the shard is the flat buffer itself.
    const own = segments.filter(([a, e]) => e > a);
    masters = own.map(([a, e]) => {
      const t = new Tensor(dtype === 'float32' ? flat.params.subarray(a, e) : flat.params.slice(a, e), [e - a], { requiresGrad: true });
      t.attachGrad(flat.grads.subarray(a, e));
      return [t, a];
    });
    optimizer = createOptimizer(masters.map(([t]) => t), spec);
    reduce = (_b, view) => pg.reduceScatter(view, { op: 'avg', dtype });
  }
  const optimizerElements = segments.reduce((n, [a, e]) => n + e - a, 0);
  // ddp checkpoints: every replica is the same, so rank 0 writes it; every rank reads it back on
  // --resume (the optimizer state is each rank's own), then the start broadcast changes nothing
  const say = (l: string) => process.stderr.write(l + '\n');
  const ckpt = mode === 'ddp' && opts.checkpointDir !== undefined
    ? new ModelCheckpoints(opts, model, optimizer, say, { consistency: 'sync', trainers: ctx.trainers })
    : undefined;
  // zero: every rank writes the segments it owns (their optimizer state is nowhere else)
  const zck = mode === 'zero' && opts.checkpointDir !== undefined
    ? new SegmentCheckpoints(opts, flat.entries.map((e) => ({ name: e.name, size: e.size, shape: [...e.shape] })), allSegments(buckets, pg.size, pg.rank, masters), optimizer, say, ctx.trainers, model, ctx.rank === 0, flat.params)
    : undefined;
  let done = 0;
  const writer = ckpt ?? zck;
  /** ddp: rank 0 writes the replica; zero: every rank its segments. */
  const writes = writer !== undefined && (zck !== undefined || ctx.rank === 0);
  if (writer && opts.resume) done = await writer.resume(agent.name, ctx.rank === 0);
  const start = resumePosition(opts, done, ctx.trainers, loader.length, true);
  done = start.step;
  const fault = faultAtStep(agent.name);
  // zero stage 1 exchanges after backward: hooks launch nothing until finish
  const overlap = mode === 'ddp' || opts.zeroStage === 2;
  const sync = new GradSync(flat, buckets, reduce, opts.findUnusedParameters);
  const accum = opts.gradAccum;
  const batches = loader.length;
  let inEpoch = 0;

  const exchange = async (): Promise<boolean> => {
    await sync.finish();
    if (!scaler.enabled) return true;
    let bad = 0;
    for (const [a, e] of segments) bad += nonFiniteCount(flat.grads.subarray(a, e));
    // every rank must agree on skipping: ddp's reduced gradients are equal everywhere; zero's
    // segments differ per rank, so the overflow flags are combined
    let overflow = bad > 0;
    if (mode === 'zero') {
      const flag = Float32Array.of(overflow ? 1 : 0);
      await pg.allReduce(flag, { op: 'max' });
      overflow = flag[0]! > 0;
    }
    const scale = scaler.scale;
    const step = scaler.update(overflow);
    if (step) for (const [a, e] of segments) getBackend('cpu').kernels.scale(1 / scale, flat.grads.subarray(a, e));
    return step;
  };

  const gatherParams = async (): Promise<void> => {
    if (dtype !== 'float32') for (const [t, a] of masters) flat.params.set(t.data as Float32Array, a);
    const all: Promise<unknown>[] = [];
    for (const b of buckets) all.push(pg.allGather(flat.params.subarray(b.start, b.end), { dtype }));
    await Promise.all(all);
  };

  const step = async (batch: Batch): Promise<number> => {
    const first = inEpoch % accum === 0;
    const window = Math.min(accum, batches - (inEpoch - (inEpoch % accum)));
    const last = inEpoch % accum === window - 1;
    inEpoch++;
    if (first) for (const p of params) p.zeroGrad();
    const x = new Tensor(batch.x, [batch.size, ...mctx.inputShape]);
    const l = resolved.loss(model.forward(x), batch.y as Labels);
    const factor = scaler.scale / window;
    if (last && overlap) sync.arm(factor);
    else sync.disarm();
    l.backward();
    fault(++done);
    if (last) {
      if (!overlap) sync.arm(factor);
      if (await exchange()) {
        optimizer.step();
        if (mode === 'zero') await gatherParams();
      }
      // at a window's end only, so a resumed run starts at a window's first batch
      if (writes) await writer!.afterStep(done);
    }
    return l.item();
  };

  const curve = ctx.rank === 0 && ctx.test && opts.evalEvery > 0 ? new AccuracyCurve(model, ctx.test, opts, true, undefined, resolved.metric) : undefined;
  let result;
  try {
    result = await runLoop({
      opts, loader, label: agent.name, curve, curveScale: ctx.trainers,
      beforeEpoch: (epoch) => { inEpoch = epoch === start.epoch ? start.batch : 0; },
      step,
      start,
    });
  } catch (e) {
    // a peer died (the collective failed): the checkpoints already copied still reach the disk
    await writer?.flush();
    throw e;
  } finally {
    sync.dispose();
    writer?.dispose();
  }
  if (writes) {
    await writer!.write(done);
    await writer!.flush();
  }
  // every collective has completed on every rank (each op waits for its peers' messages)
  pg.close();
  const stats = pg.stats();
  const report: DataParallelReport = {
    trainer: agent.name, samples: result.samples, steps: result.steps, trainSeconds: result.trainSeconds,
    lossSum: result.lossSum, lossCount: result.lossCount, version: result.steps, bytesSent: stats.bytesSent, precision: opts.precision,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    optimizerStateBytes: optimizerStateBytes(optimizer as unknown as { state: Map<unknown, unknown> }),
    optimizerElements,
    skippedSteps: scaler.skipped,
    buckets: buckets.map((b) => b.end - b.start),
  };
  return {
    report,
    ...(curve ? { curve: curve.points } : {}),
    resolved,
    parameters: model.parameterCount(),
    extras: (reports) => dataParallelExtras(reports as DataParallelReport[], {
      ...(mode === 'zero' ? { zeroStage: opts.zeroStage } : {}),
      gradAccum: opts.gradAccum,
    }),
    async finish() {
      return model;
    },
  };
}

/**
 * Every rank's segments of every bucket (zero's optimizer shards), sorted by start, the empty ones
 * left out; this rank's carry their master tensors.
 */
function allSegments(buckets: readonly Bucket[], size: number, rank: number, masters: ReadonlyArray<[Tensor, number]>): Segment[] {
  const mine = new Map(masters.map(([t, a]) => [a, t]));
  const out: Segment[] = [];
  for (const b of buckets) {
    const bounds = segmentBounds(b.end - b.start, size);
    for (let r = 0; r < size; r++) {
      const start = b.start + bounds[r]!;
      const end = b.start + bounds[r + 1]!;
      if (end > start) out.push({ start, end, master: r === rank ? mine.get(start) ?? null : null });
    }
  }
  return out.sort((x, y) => x.start - y.start);
}
