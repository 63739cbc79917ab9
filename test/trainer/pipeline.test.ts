// The pipeline strategy across agents in this process (one per stage, loopback, port 0) against
// the plain reference: local training on the same batches (one pipeline) or on the concatenation
// of every pipeline's batches (replicas), within fp32 tolerance; and the failures it names.
import test from 'ava';
import { DataLoader, syntheticDataset, type Dataset } from '../../src/data/index.js';
import { createOptimizer, crossEntropy, flattenParameters, Module, mlp, Sequential, Tensor, type Labels } from '../../src/tensor/index.js';
import { buildModel, modelContext, resolveModel, type ModelContext, type ModelModule } from '../../src/trainer/model.js';
import { resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
import type { PipelineReport } from '../../src/trainer/pipeline.js';
import { optimizerSpec, trainerSampler } from '../../src/trainer/setup.js';
import type { WorldTraining } from '../../src/trainer/strategy.js';
import { runPipelineWorld } from './pipeline-world.js';

const BASE: Partial<TrainOptions> = { dataset: 'synthetic', hidden: 6, depth: 3, batchSize: 10, epochs: 2, lr: 0.1, momentum: 0.5, seed: 3, progress: 'none', collectiveTimeout: 600, strategy: 'pipeline' };

function dataset(): Dataset {
  return syntheticDataset({ samples: 120, seed: 11 }) as unknown as Dataset;
}

const runWorld = runPipelineWorld;

/** Local training where each step sees every pipeline's batch concatenated (R = 1: the pipeline's own batch). */
async function reference(replicas: number, opts: TrainOptions, train: Dataset): Promise<Float32Array> {
  const resolved = await resolveModel(opts.model);
  const mctx = modelContext(opts, train, { rank: 0, role: 'trainer', workers: replicas });
  const model = await buildModel(resolved, mctx) as Module & { forward(x: Tensor): Tensor };
  const flat = flattenParameters(model);
  const optimizer = createOptimizer(model.parameters(), optimizerSpec(opts));
  const loaders = Array.from({ length: replicas }, (_, rank) => new DataLoader(train, { batchSize: opts.batchSize, sampler: trainerSampler(opts, { rank, trainers: replicas, train }), dropLast: true }));
  const features = mctx.inputShape.reduce((a, b) => a * b, 1);
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    const batches = loaders.map((l) => {
      l.setEpoch(epoch);
      const out: { x: Float32Array; y: Int32Array }[] = [];
      for (const b of l) out.push({ x: b.x.slice(), y: (b.y as Int32Array).slice() });
      return out;
    });
    for (let s = 0; s < batches[0]!.length; s++) {
      const rows = replicas * opts.batchSize;
      const x = new Float32Array(rows * features), y = new Int32Array(rows);
      batches.forEach((rb, r) => {
        x.set(rb[s]!.x, r * opts.batchSize * features);
        y.set(rb[s]!.y, r * opts.batchSize);
      });
      for (const p of model.parameters()) p.zeroGrad();
      resolved.loss(model.forward(new Tensor(x, [rows, ...mctx.inputShape])), y as Labels).backward();
      optimizer.step();
    }
  }
  return flat.params.slice();
}

async function trained(run: WorldTraining): Promise<Float32Array> {
  const m = await run.finish() as unknown as Module;
  return Float32Array.from(m.parameters().flatMap((p) => [...(p.data as Float32Array)]));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

const cases: Array<[string, Partial<TrainOptions>]> = [
  ['2 stages, 1f1b, 4 micro-batches', { stages: 2, microBatches: 4 }],
  ['3 stages, gpipe, 5 micro-batches, adam', { stages: 3, microBatches: 5, schedule: 'gpipe', optimizer: 'adam', lr: 0.01 }],
  ['3 stages, 1f1b, 3 micro-batches of 4, 3 and 3 samples, recomputation', { stages: 3, microBatches: 3, recompute: true }],
  ['2 stages cut by hand (--split 2), gpipe, 2 micro-batches', { stages: 2, microBatches: 2, schedule: 'gpipe', split: [2] }],
  ['2 stages x 2 replicas, 1f1b, 2 micro-batches: data parallel on the concatenated batches', { stages: 2, replicas: 2, microBatches: 2 }],
  ['2 stages x 2 replicas, 5 micro-batches, 1 KiB buckets', { stages: 2, replicas: 2, microBatches: 5, bucketKb: 1 }],
];

for (const [title, extra] of cases) {
  test(`${title}: the trained model equals local training on the same batches`, async (t) => {
    const opts = resolveOptions({ ...BASE, ...extra });
    const train = dataset();
    const n = opts.stages * opts.replicas;
    const runs = await runWorld(n, opts, train);
    const got = await trained(runs[0]!);
    const want = await reference(opts.replicas, opts, train);
    const d = maxDiff(got, want);
    t.true(d < 2e-5, `max difference from the reference: ${d}`);
    t.true(maxDiff(want, await reference(1, { ...opts, epochs: 0 }, train)) > 1e-3, 'training moved the parameters');
    const reports = runs.map((r) => r.report as PipelineReport);
    t.deepEqual(reports.map((r) => [r.stage, r.replica]), Array.from({ length: n }, (_, i) => [i % opts.stages, Math.floor(i / opts.stages)]));
    // every stage trained on every batch and learned its loss
    for (const r of reports) {
      t.is(r.samples, reports[0]!.samples);
      t.true(Math.abs(r.lossSum - reports[r.replica * opts.stages]!.lossSum) < 1e-9);
      t.true(r.bubble >= 0 && r.bubble < 1);
      t.true(r.peakActivationBytes > 0);
    }
    // the stages' parameter counts cover the model once
    const stageParams = reports.filter((r) => r.replica === 0).reduce((a, r) => a + r.stageParameters, 0);
    t.is(stageParams, want.length);
    const extras = runs[0]!.extras!(reports);
    t.is(extras.samples, reports[0]!.samples * opts.replicas, 'a sample counts once per pipeline');
    t.is((extras.bubblePerStage as number[]).length, opts.stages);
  });
}

test('1F1B holds less activation memory than GPipe on every stage but the last of two', async (t) => {
  const train = dataset();
  const peaks = async (schedule: 'gpipe' | '1f1b') => (await runWorld(2, resolveOptions({ ...BASE, epochs: 1, stages: 2, microBatches: 5, schedule }), train)).map((r) => (r.report as PipelineReport).peakActivationBytes);
  const [g, f] = [await peaks('gpipe'), await peaks('1f1b')];
  t.true(f[0]! < g[0]!, `stage 0: 1f1b ${f[0]} vs gpipe ${g[0]}`);
  t.true(f[1]! < g[1]!, `stage 1: 1f1b ${f[1]} vs gpipe ${g[1]}`);
});

/** The mlp plus a parameterless layer that throws on its `after`-th forward in the process of rank `rank`. */
function failingModel(rank: number, after: number): ModelModule {
  class Fuse extends Module {
    calls = 0;
    constructor(private readonly armed: boolean) { super(); }
    forward(x: Tensor): Tensor {
      if (this.armed && ++this.calls >= after) throw new Error(`injected failure in forward ${this.calls}`);
      return x;
    }
  }
  return {
    createModel: (ctx: ModelContext) => {
      const m = mlp([ctx.features, 6, 6, ctx.classes], { seed: ctx.seed });
      const layers = Array.from({ length: m.length }, (_, i) => m.at(i));
      return new Sequential(...layers, new Fuse(ctx.rank === rank));
    },
    loss: (o, y) => crossEntropy(o, y),
  };
}

test('a stage that fails stops the others at once, naming it', async (t) => {
  const opts = resolveOptions({ ...BASE, model: failingModel(1, 7), stages: 2, microBatches: 2 });
  const e = await t.throwsAsync(runWorld(2, opts, dataset())) as Error & { settled: PromiseSettledResult<unknown>[] };
  const [first, second] = e.settled as PromiseRejectedResult[];
  t.is(second!.status, 'rejected');
  t.regex(String(second!.reason.message), /injected failure in forward 7/);
  // stage 0 was waiting for a gradient; with a 600 s collective timeout it stopped because it was told
  t.is(first!.status, 'rejected');
  t.regex(String(first!.reason.message), /rank 1 \(w1\) gave up on group world: .*injected failure in forward 7/);
});

test('bad pipelines are refused with one line before anything runs', async (t) => {
  const train = dataset();
  const refuse = async (extra: Partial<TrainOptions>, n: number, re: RegExp) => {
    const e = await t.throwsAsync(async () => runWorld(n, resolveOptions({ ...BASE, ...extra }), train));
    const msg = (e as Error & { settled?: PromiseRejectedResult[] }).settled?.find((s) => s.status === 'rejected')?.reason.message ?? (e as Error).message;
    t.regex(msg, re);
  };
  // 4 layers with parameters (3 hidden + output)
  await refuse({ stages: 5 }, 5, /--stages 5: the model has 4 layer\(s\) with parameters .* so at most 4 stage\(s\)/);
  await refuse({ stages: 3, split: [1, 2] }, 3, /pipeline: stage 1 \(children 1: ReLU\) has no parameters/);
  await refuse({ stages: 2, split: [8] }, 2, /--split 8: 8 is not a valid start of stage 1 \(the model has children 0..6, so stage 1 would be empty\)/);
  t.throws(() => resolveOptions({ ...BASE, stages: 2, microBatches: 11 }), { message: /--micro-batches 11 is more than --batch-size 10: a micro-batch would be empty/ });
  t.throws(() => resolveOptions({ ...BASE, precision: 'bf16' }), { message: /strategy pipeline sends activations and gradients in fp32/ });
  t.throws(() => resolveOptions({ ...BASE, evalEvery: 1 }), { message: /does not record an accuracy curve/ });
});
