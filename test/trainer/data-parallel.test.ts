// ddp and zero against the plain reference: local training on the concatenation of every rank's
// batches (the same samples, the same order), within fp32 tolerance.
import test from 'ava';
import { DataLoader, syntheticDataset, type Dataset } from '../../src/data/index.js';
import type { Agent } from '../../src/rpc/index.js';
import { createOptimizer, flattenParameters, Linear, Module, Sequential, ReLU, Tensor, crossEntropy, type Labels } from '../../src/tensor/index.js';
import { trainDataParallel, type DataParallelReport } from '../../src/trainer/ddp.js';
import { trainFsdp, type FsdpReport } from '../../src/trainer/fsdp.js';
import { LossScaler, makeBuckets } from '../../src/trainer/data-parallel.js';
import { buildModel, modelContext, resolveModel, type ModelModule } from '../../src/trainer/model.js';
import { resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
import { optimizerSpec, trainerSampler } from '../../src/trainer/setup.js';
import type { WorldTraining } from '../../src/trainer/strategy.js';
import { startWorld, stopWorld } from '../rpc/world.js';

// hidden 5: 4015 parameters, divisible by neither 2 nor 3
const BASE: Partial<TrainOptions> = { dataset: 'synthetic', hidden: 5, batchSize: 8, epochs: 2, lr: 0.1, momentum: 0.5, seed: 3, progress: 'none', collectiveTimeout: 600 };

function dataset(): Dataset {
  return syntheticDataset({ samples: 200, seed: 11 }) as unknown as Dataset;
}

async function runWorld(n: number, opts: TrainOptions, mode: 'ddp' | 'zero' | 'fsdp', train: Dataset): Promise<WorldTraining[]> {
  const agents = await startWorld(n);
  try {
    const names = agents.map((a) => a.name);
    return await Promise.all(agents.map((agent: Agent, rank) => {
      const ctx = {
        agent, rank, trainers: n, train, leave: true,
        place: { name: agent.name, rank, worldSize: n, master: '', role: 'trainer' as const, index: rank, partitioned: true, servers: n, trainers: n, serverNames: names, trainerNames: names },
      };
      return mode === 'fsdp' ? trainFsdp(opts, ctx) : trainDataParallel(opts, ctx, mode);
    }));
  } finally {
    await stopWorld(agents, false);
  }
}

/** Local training where each step sees every rank's batches (a window of `accum` of them) concatenated. */
async function reference(n: number, opts: TrainOptions, train: Dataset): Promise<Float32Array> {
  const resolved = await resolveModel(opts.model);
  const mctx = modelContext(opts, train, { rank: 0, role: 'trainer', workers: n });
  const model = await buildModel(resolved, mctx) as Module & { forward(x: Tensor): Tensor };
  const flat = flattenParameters(model);
  const optimizer = createOptimizer(model.parameters(), optimizerSpec(opts));
  const loaders = Array.from({ length: n }, (_, rank) => new DataLoader(train, { batchSize: opts.batchSize, sampler: trainerSampler(opts, { rank, trainers: n, train }), dropLast: true }));
  const features = mctx.inputShape.reduce((a, b) => a * b, 1);
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    const batches: { x: Float32Array; y: Int32Array }[][] = loaders.map((l) => {
      l.setEpoch(epoch);
      // a batch is valid until the next is requested: copy each as it comes
      const out: { x: Float32Array; y: Int32Array }[] = [];
      for (const b of l) out.push({ x: b.x.slice(), y: (b.y as Int32Array).slice() });
      return out;
    });
    const steps = batches[0]!.length;
    for (let start = 0; start < steps; start += opts.gradAccum) {
      const window = batches.flatMap((rb) => rb.slice(start, Math.min(steps, start + opts.gradAccum)));
      const rows = window.reduce((a, b) => a + b.y.length, 0);
      const x = new Float32Array(rows * features), y = new Int32Array(rows);
      let at = 0;
      for (const b of window) {
        x.set(b.x, at * features);
        y.set(b.y, at);
        at += b.y.length;
      }
      for (const p of model.parameters()) p.zeroGrad();
      resolved.loss(model.forward(new Tensor(x, [rows, ...mctx.inputShape])), y as Labels).backward();
      optimizer.step();
    }
  }
  return flat.params.slice();
}

async function finalParams(runs: WorldTraining[]): Promise<Float32Array[]> {
  return Promise.all(runs.map(async (r) => {
    const m = await r.finish() as unknown as Module;
    return Float32Array.from(m.parameters().flatMap((p) => [...(p.data as Float32Array)]));
  }));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

const cases: Array<[string, number, 'ddp' | 'zero' | 'fsdp', Partial<TrainOptions>]> = [
  ['ddp, 2 ranks, one bucket', 2, 'ddp', {}],
  ['ddp, 3 ranks, 4 KiB buckets', 3, 'ddp', { bucketKb: 4 }],
  ['ddp, 2 ranks, --grad-accum 2 (windows of 2 batches, the last shorter)', 2, 'ddp', { gradAccum: 2, bucketKb: 4 }],
  ['zero stage 1, 3 ranks, adam', 3, 'zero', { zeroStage: 1, optimizer: 'adam', lr: 0.01, bucketKb: 4 }],
  ['zero stage 2, 2 ranks', 2, 'zero', { zeroStage: 2, bucketKb: 4 }],
  ['fsdp, 2 ranks', 2, 'fsdp', {}],
  ['fsdp, 3 ranks, adam, gathered parameters kept from forward to backward', 3, 'fsdp', { optimizer: 'adam', lr: 0.01, reshardAfterForward: false }],
];

for (const [title, n, mode, extra] of cases) {
  test(`${title}: parameters equal local training on the concatenated batches`, async (t) => {
    const opts = resolveOptions({ ...BASE, ...extra, strategy: mode });
    const train = dataset();
    const runs = await runWorld(n, opts, mode, train);
    const got = await finalParams(runs);
    const want = await reference(n, opts, train);
    for (let r = 0; r < n; r++) {
      t.is(maxDiff(got[r]!, got[0]!), 0, `rank ${r} holds the same parameters as rank 0`);
    }
    const d = maxDiff(got[0]!, want);
    t.true(d < 2e-5, `max difference from the reference: ${d}`);
    t.true(maxDiff(want, await reference(1, { ...opts, epochs: 0 }, train)) > 1e-3, 'training moved the parameters');
    const reports = runs.map((r) => r.report as DataParallelReport);
    if (mode === 'zero') {
      const elems = reports.map((r) => r.optimizerElements);
      t.is(elems.reduce((a, b) => a + b, 0), want.length, 'the shards cover the parameters once');
      t.true(Math.max(...elems) - Math.min(...elems) <= makeBuckets(flattenParameters(await buildModel(await resolveModel('mlp'), modelContext(opts, train, { rank: 0, role: 'trainer', workers: n }))), [], 4096).length, 'equal element counts, within one per bucket');
      const perElem = opts.optimizer === 'adam' ? 8 : 4;
      for (const r of reports) t.is(r.optimizerStateBytes, r.optimizerElements * perElem, 'state only for the shard');
    } else if (mode === 'fsdp') {
      const elems = reports.map((r) => r.optimizerElements);
      t.is(elems.reduce((a, b) => a + b, 0), want.length, 'the shards cover the parameters once');
      // units of 3925, 30 and 60 parameters: the peak is the shards plus at most two gathered units
      for (const r of reports as FsdpReport[]) {
        t.is(r.units, 3);
        if (opts.reshardAfterForward) t.true(r.peakParameterBytes <= (Math.ceil(want.length / n) + 3 + 3925 + 60) * 4, `peak ${r.peakParameterBytes}`);
        else t.is(r.peakParameterBytes, (r.optimizerElements + want.length) * 4, 'without resharding every unit stays gathered until its backward');
        t.true(r.peakParameterBytes >= (3925 + 30) * 4, `peak ${r.peakParameterBytes} holds the largest unit`);
      }
    } else {
      for (const r of reports) t.is(r.optimizerElements, want.length);
    }
  });
}

test('bf16 on the wire: trains to the fp32 result within bf16 tolerance and sends half the bytes', async (t) => {
  const train = dataset();
  const fp32 = resolveOptions({ ...BASE, strategy: 'ddp', epochs: 1 });
  const bf16 = resolveOptions({ ...BASE, strategy: 'ddp', epochs: 1, precision: 'bf16' });
  const [a, b] = [await runWorld(2, fp32, 'ddp', train), await runWorld(2, bf16, 'ddp', train)];
  const [pa, pb] = [(await finalParams(a))[0]!, (await finalParams(b))[0]!];
  t.true(maxDiff(pa, pb) < 0.02, `bf16 parameters stay near fp32's (${maxDiff(pa, pb)})`);
  t.true(maxDiff(pa, pb) > 0, 'bf16 really rounded something');
  // the initial broadcast is fp32 in both; the gradients are half
  const bytes = (r: WorldTraining[]) => r[0]!.report.bytesSent;
  const broadcast = pa.length * 4; // rank 0 sends the parameters once to rank 1
  t.is((bytes(b) - broadcast) * 2, bytes(a) - broadcast);
});

test('fp16 with dynamic loss scaling: a step whose reduced gradient overflows is skipped and the scale halves', (t) => {
  const s = new LossScaler(true, 8, 3);
  t.is(s.scale, 8);
  t.false(s.update(true));
  t.is(s.scale, 4);
  t.is(s.skipped, 1);
  t.true(s.update(false));
  t.true(s.update(false));
  t.true(s.update(false));
  t.is(s.scale, 8, 'doubles after growthInterval good steps');
  const off = new LossScaler(false);
  t.is(off.scale, 1);
  t.true(off.update(true), 'fp32 and bf16 never skip');
});

test('fp16 ddp trains: finite parameters near fp32, no skipped step on a well-scaled model', async (t) => {
  const train = dataset();
  const runs = await runWorld(2, resolveOptions({ ...BASE, strategy: 'ddp', epochs: 1, precision: 'fp16' }), 'ddp', train);
  const fp32 = await runWorld(2, resolveOptions({ ...BASE, strategy: 'ddp', epochs: 1 }), 'ddp', train);
  const [p, q] = [(await finalParams(runs))[0]!, (await finalParams(fp32))[0]!];
  t.true(p.every(Number.isFinite));
  t.true(maxDiff(p, q) < 0.01, `${maxDiff(p, q)}`);
  t.is((runs[0]!.report as DataParallelReport).skippedSteps, 0);
});

/** A model with a layer the loss never reaches. */
const unusedModel: ModelModule = {
  createModel: (ctx) => {
    const m = new (class extends Module {
      net = new Sequential(new Linear(ctx.features, 4, { seed: ctx.seed }), new ReLU(), new Linear(4, ctx.classes, { seed: ctx.seed + 1 }));
      spare = new Linear(3, 3, { seed: 5 });
      constructor() {
        super();
        this.registerModule('net', this.net);
        this.registerModule('spare', this.spare);
      }
      forward(x: Tensor): Tensor {
        return this.net.forward(x);
      }
    })();
    return m;
  },
  loss: (out, labels) => crossEntropy(out, labels),
};

test('a parameter without a gradient fails the step naming it, unless --find-unused-parameters', async (t) => {
  const train = dataset();
  const opts = resolveOptions({ ...BASE, strategy: 'ddp', epochs: 1, model: unusedModel });
  const e = await t.throwsAsync(runWorld(2, opts, 'ddp', train));
  t.regex(e!.message, /parameters 'spare\.bias', 'spare\.weight' got no gradient in this step: the loss does not depend on them; pass --find-unused-parameters/);
  const runs = await runWorld(2, { ...opts, findUnusedParameters: true }, 'ddp', train);
  const params = await finalParams(runs);
  t.is(maxDiff(params[0]!, params[1]!), 0);
});
