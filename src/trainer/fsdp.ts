// The `fsdp` strategy (ZeRO stage 3, PyTorch's FullyShardedDataParallel): parameters, gradients
// and optimizer state are all sharded. A unit is a child of the model's top-level Sequential that
// has parameters, with the parameterless children after it (a Linear and its ReLU); a model that
// is not a Sequential is one unit. Each rank keeps only its fp32 shard of each unit's flat
// parameters (equal element counts), and per step:
//
//   forward:  all-gather unit k (unit k + 1's gather already in flight: prefetch), run it, free
//             its gathered parameters (`--reshard-after-forward`, default on; the last unit stays,
//             its backward comes first);
//   backward: unit by unit from the last: gather it again (the one before it prefetched), run its
//             backward, start the reduce-scatter of its gradient, free it;
//   step:     every rank steps its shards; nothing else moves.
//
// The autograd engine runs one backward synchronously, so the model's graph is cut at the unit
// boundaries (each unit's input is a fresh leaf) and the backward runs unit by unit, awaiting each
// unit's gather in between: a unit's parameters exist only while it computes, and the next one is
// prefetched only when both fit in the largest unit's size. Each unit's gradient exists from its backward to
// the end of its reduce-scatter. The parameter bytes a rank holds (its shards plus the gathered
// units; gradients not counted) are counted as they change; the peak over
// training is in the result. The model is built whole once at the start (rank 0's values are
// broadcast unit by unit) and gathered whole at the end for the result; neither is in the peak.
import { ProcessGroup, segmentBounds } from '../collective/index.js';
import type { Batch } from '../data/index.js';
import { createOptimizer, flattenBuffers, Module, Sequential, Tensor, type Labels } from '../tensor/index.js';
import { dataParallelExtras, optimizerStateBytes, rankSetup, wireDType, type DataParallelReport } from './data-parallel.js';
import { runLoop } from './loop.js';
import type { TrainOptions } from './options.js';
import { optimizerSpec } from './setup.js';
import { faultAtStep, resumePosition, SegmentCheckpoints, type Segment } from './checkpoint.js';
import { fsdp } from './strategies/fsdp.js';
import type { WorldTrainerContext, WorldTraining } from './strategy.js';

interface Unit {
  modules: Module[];
  params: Tensor[];
  numel: number;
  /** This rank's segment of the unit's flat parameters. */
  lo: number;
  hi: number;
  /** fp32 master of the shard, stepped by the optimizer; its grad is the reduced shard. */
  master: Tensor;
  /** The gathered parameters while they exist. */
  full: Float32Array | null;
  gathering: Promise<void> | null;
}

export interface FsdpReport extends DataParallelReport {
  /** The most parameter bytes this rank held at once during training (shards plus gathered units). */
  peakParameterBytes: number;
  units: number;
}

const EMPTY = new Float32Array(0);

function unitsOf(model: Module): Module[][] {
  if (!(model instanceof Sequential)) return [[model]];
  const out: Module[][] = [];
  for (let i = 0; i < model.length; i++) {
    const m = model.at(i);
    if (m.parameters().length > 0 || out.length === 0) out.push([m]);
    else out[out.length - 1]!.push(m);
  }
  return out;
}

export async function trainFsdp(opts: TrainOptions, ctx: WorldTrainerContext): Promise<WorldTraining> {
  // API callers reach this without resolveOptions: the declaration's own refusal, the same line
  const refusal = fsdp.check?.(opts);
  if (refusal) throw new RangeError(refusal);
  const pg = ProcessGroup.create(ctx.agent, { timeoutMs: opts.collectiveTimeout * 1000 });
  try {
    return await run(opts, ctx, pg);
  } finally {
    pg.close();
  }
}

async function run(opts: TrainOptions, ctx: WorldTrainerContext, pg: ProcessGroup): Promise<WorldTraining> {
  const { agent } = ctx;
  const { loader, resolved, mctx, model } = await rankSetup(opts, ctx);
  const dtype = wireDType(opts.precision);
  const nameOf = new Map(model.namedParameters().map(([n, p]) => [p, n] as const));
  // the flat layout a checkpoint names, before the parameters give their storage to the shards
  const layout = model.namedParameters().map(([name, p]) => ({ name, size: p.size, shape: [...p.shape] }));
  const buffers = flattenBuffers(model);
  if (buffers.length > 0) await pg.broadcast(buffers, 0);

  let live = 0;
  let peak = 0;
  const hold = (bytes: number) => {
    live += bytes;
    peak = Math.max(peak, live);
  };

  const units: Unit[] = [];
  for (const modules of unitsOf(model)) {
    const params = modules.flatMap((m) => m.parameters());
    const numel = params.reduce((n, p) => n + p.size, 0);
    const bounds = segmentBounds(numel, pg.size);
    const lo = bounds[pg.rank]!, hi = bounds[pg.rank + 1]!;
    // rank 0's initial values everywhere, then keep the own segment only
    const flat = new Float32Array(numel);
    let at = 0;
    for (const p of params) {
      flat.set(p.data as Float32Array, at);
      at += p.size;
    }
    await pg.broadcast(flat, 0);
    const master = new Tensor(flat.slice(lo, hi), [hi - lo], { requiresGrad: true });
    master.attachGrad(new Float32Array(hi - lo));
    for (const p of params) {
      p.data = EMPTY;
      p.gradStorage = null;
    }
    units.push({ modules, params, numel, lo, hi, master, full: null, gathering: null });
  }
  for (const u of units) hold(u.master.size * 4);
  const optimizer = createOptimizer(units.map((u) => u.master).filter((m) => m.size > 0), optimizerSpec(opts));

  // checkpoints: every rank writes the unit segments it owns (their values and optimizer state are nowhere else)
  const ckpt = opts.checkpointDir !== undefined
    ? new SegmentCheckpoints(opts, layout, unitSegments(units, pg.size, pg.rank), optimizer, (l) => process.stderr.write(l + '\n'), ctx.trainers, model, ctx.rank === 0)
    : undefined;
  let done = 0;
  if (ckpt && opts.resume) done = await ckpt.resume(agent.name, ctx.rank === 0);
  const start = resumePosition(opts, done, ctx.trainers, loader.length, true);
  done = start.step;
  const fault = faultAtStep(agent.name);

  const gather = (u: Unit): Promise<void> => {
    if (u.full) return Promise.resolve();
    if (u.gathering) return u.gathering;
    const full = new Float32Array(u.numel);
    hold(u.numel * 4);
    full.set(u.master.data as Float32Array, u.lo);
    u.gathering = pg.allGather(full, { dtype }).then(() => {
      u.full = full;
      u.gathering = null;
      let off = 0;
      for (const p of u.params) {
        p.data = full.subarray(off, off + p.size);
        off += p.size;
      }
    });
    return u.gathering;
  };
  const free = (u: Unit): void => {
    if (!u.full) return;
    u.full = null;
    for (const p of u.params) p.data = EMPTY;
    live -= u.numel * 4;
  };

  // Prefetch only within a budget of the largest unit's size: the next unit's gather starts while
  // the current one computes when both fit in it, so the peak stays at the shards plus the
  // largest unit; a large unit after a large one is gathered when it is needed.
  const budget = Math.max(...units.map((u) => u.numel));
  const prefetch = (u: Unit, current: Unit): void => {
    if (u.full || u.gathering) return;
    if (current.numel + u.numel > budget) return;
    gather(u).catch(() => {});
  };

  const runUnit = (u: Unit, x: Tensor): Tensor => {
    let y = x;
    for (const m of u.modules) y = (m as Module & { forward(x: Tensor): Tensor }).forward(y);
    return y;
  };

  const step = async (batch: Batch): Promise<number> => {
    const K = units.length;
    const inputs: Tensor[] = [];
    const outputs: Tensor[] = [];
    let x = new Tensor(batch.x, [batch.size, ...mctx.inputShape]);
    for (let k = 0; k < K; k++) {
      const u = units[k]!;
      await gather(u);
      if (k + 1 < K) prefetch(units[k + 1]!, u); // in flight while unit k computes
      inputs.push(x);
      const y = runUnit(u, x);
      outputs.push(y);
      if (opts.reshardAfterForward && k < K - 1) free(u);
      // the next unit starts from a leaf: the graph is cut here, so backward can go unit by unit
      x = k < K - 1 ? new Tensor(y.data as Float32Array, y.shape, { requiresGrad: true }) : y;
    }
    const loss = resolved.loss(outputs[K - 1]!, batch.y as Labels);
    const value = loss.item();
    const reductions: Promise<unknown>[] = [];
    for (let k = K - 1; k >= 0; k--) {
      const u = units[k]!;
      await gather(u);
      if (k > 0) prefetch(units[k - 1]!, u);
      // the unit's gradient, in one flat buffer: its parameters' gradients are views of it
      const grad = new Float32Array(u.numel);
      let off = 0;
      for (const p of u.params) {
        p.zeroGrad();
        p.gradStorage = grad.subarray(off, off + p.size);
        off += p.size;
      }
      if (k === K - 1) loss.backward();
      else outputs[k]!.backward(inputs[k + 1]!.grad!);
      for (const p of u.params) {
        if (p.grad === null) throw new RangeError(`fsdp: parameter '${nameOf.get(p)}' got no gradient in this step: the loss does not depend on it`);
      }
      free(u);
      reductions.push(pg.reduceScatter(grad, { op: 'avg', dtype }).then((mine) => {
        (u.master.grad!.data as Float32Array).set(mine);
      }));
    }
    await Promise.all(reductions);
    fault(++done);
    optimizer.step();
    if (ckpt) await ckpt.afterStep(done);
    return value;
  };

  // a peer died (a collective failed): the checkpoints already copied still reach the disk
  const result = await runLoop({ opts, loader, label: agent.name, step, start })
    .catch(async (e: unknown) => { await ckpt?.flush(); throw e; })
    .finally(() => ckpt?.dispose());
  if (ckpt) {
    await ckpt.write(done);
    await ckpt.flush();
  }
  const trainingPeak = peak;
  // the result: every rank gathers the whole model (a collective: all ranks take part)
  for (const u of units) await gather(u);
  const report: FsdpReport = {
    trainer: agent.name, samples: result.samples, steps: result.steps, trainSeconds: result.trainSeconds,
    lossSum: result.lossSum, lossCount: result.lossCount, version: result.steps, bytesSent: pg.stats().bytesSent, precision: opts.precision,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    optimizerStateBytes: optimizerStateBytes(optimizer as unknown as { state: Map<unknown, unknown> }),
    optimizerElements: units.reduce((n, u) => n + u.hi - u.lo, 0),
    buckets: units.map((u) => u.numel),
    peakParameterBytes: trainingPeak,
    units: units.length,
  };
  return {
    report,
    resolved,
    parameters: model.parameterCount(),
    extras: (reports) => {
      const rs = reports as FsdpReport[];
      return dataParallelExtras(rs, { peakParameterBytesPerRank: rs.map((r) => r.peakParameterBytes) });
    },
    async finish() {
      return model;
    },
  };
}

/** Every rank's segment of every unit, as offsets of the model's flat parameters (units in order); this rank's carry their masters. */
function unitSegments(units: readonly Unit[], size: number, rank: number): Segment[] {
  const out: Segment[] = [];
  let base = 0;
  for (const u of units) {
    const bounds = segmentBounds(u.numel, size);
    for (let r = 0; r < size; r++) {
      const start = base + bounds[r]!;
      const end = base + bounds[r + 1]!;
      if (end > start) out.push({ start, end, master: r === rank ? u.master : null });
    }
    base += u.numel;
  }
  return out;
}
