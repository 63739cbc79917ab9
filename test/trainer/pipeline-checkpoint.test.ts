// Checkpoints of the pipeline strategy, across agents in this process (one per stage, loopback):
// every stage of pipeline 0 writes its layers as segments of the whole model's flat layout, so the
// set tiles the model and the ordinary reader reads it; a resumed run ends as the uninterrupted
// one, bit for bit (with another --stages too: a layer computes the same wherever it runs); a
// checkpoint of another model or another number of pipelines is refused, naming the difference.
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticDataset, type Dataset } from '../../src/data/index.js';
import { loadCheckpoint } from '../../src/server/index.js';
import { BatchNorm2d, crossEntropy, Flatten, Generator, Linear, Module, Sequential, Tensor } from '../../src/tensor/index.js';
import type { ModelContext, ModelModule } from '../../src/trainer/model.js';
import { resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
import type { WorldTraining } from '../../src/trainer/strategy.js';
import { runPipelineWorld } from './pipeline-world.js';

// 120 samples / 10 = 12 steps an epoch for one pipeline, 6 for each of two
const BASE: Partial<TrainOptions> = {
  dataset: 'synthetic', hidden: 6, depth: 3, batchSize: 10, epochs: 2, lr: 0.1, momentum: 0.5, seed: 3, progress: 'none', collectiveTimeout: 600,
  strategy: 'pipeline', stages: 2, microBatches: 2,
};

function dataset(): Dataset {
  return syntheticDataset({ samples: 120, seed: 11 }) as unknown as Dataset;
}

function dir(t: { teardown(f: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'psrpc-pipe-ckpt-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** The world of `opts`: stages x replicas ranks. */
const runWorld = (opts: TrainOptions, train: Dataset): Promise<WorldTraining[]> => runPipelineWorld(opts.stages * opts.replicas, opts, train);

/** A model with buffers on its middle stage: Linear(F, 8), a view as [N, 2, 2, 2], BatchNorm2d(2), Flatten, Linear(8, classes). */
const batchNormModel: ModelModule = {
  createModel: (ctx: ModelContext) => {
    class View extends Module {
      forward(x: Tensor): Tensor {
        return x.reshape([x.shape[0]!, 2, 2, 2]);
      }
    }
    const generator = new Generator(ctx.seed);
    return new Sequential(new Linear(ctx.features, 8, { generator }), new View(), new BatchNorm2d(2), new Flatten(), new Linear(8, ctx.classes, { generator }));
  },
  loss: (o, y) => crossEntropy(o, y),
};

const files = (d: string, id: string) => readdirSync(join(d, `ckpt-${id.padStart(9, '0')}`)).filter((f) => f.endsWith('.safetensors')).sort();

test.serial('2 stages x 2 replicas: pipeline 0 writes every stage\'s parameters, optimizer state and buffers; the manifest covers the whole model, and it holds the trained model', async (t) => {
  const d = dir(t);
  const opts = resolveOptions({ ...BASE, model: batchNormModel, replicas: 2, split: [2], checkpointDir: d, checkpointSteps: 4 });
  const runs = await runWorld(opts, dataset());
  // 6 steps an epoch: checkpoints 4 and 8 by step count, 12 at the end
  t.deepEqual(readdirSync(d), ['ckpt-000000004', 'ckpt-000000008', 'ckpt-000000012']);
  const model = await runs[0]!.finish() as unknown as Module;
  const cp = await loadCheckpoint(join(d, 'ckpt-000000012'));
  const named = model.namedParameters();
  t.deepEqual(cp.manifest.layout.map((p) => p.name), named.map(([n]) => n));
  t.deepEqual(cp.manifest.layout.map((p) => p.name), ['0.weight', '0.bias', '2.weight', '2.bias', '4.weight', '4.bias']);
  t.is(cp.manifest.total, model.parameterCount());
  t.is(cp.manifest.trainers, 2, 'the manifest counts the pipelines (the data shares)');
  t.is(cp.manifest.consistency, 'sync');
  // one segment per parameter, written by the stage that trains it
  t.is(cp.manifest.shards.length, named.length);
  const r = cp.read(0, cp.manifest.total);
  t.is(r.version, 12);
  const trained = Float32Array.from(named.flatMap(([, p]) => [...(p.data as Float32Array)]));
  t.deepEqual([...r.values], [...trained], 'the checkpoint holds rank 0\'s trained model, every stage\'s layers');
  t.deepEqual(Object.keys(r.state!.arrays), ['momentumBuffer']);
  t.true(r.state!.arrays.momentumBuffer!.some((v) => v !== 0));
  // stage 1 (children 2..4) wrote the batch-norm statistics under the whole model's names
  const buffers = cp.buffers();
  const want = model.namedBuffers();
  t.deepEqual([...buffers.keys()].sort(), want.map(([n]) => n).sort());
  t.true(want.length >= 2);
  for (const [name, b] of want) t.deepEqual([...buffers.get(name)!], [...(b.data as Float32Array)], name);
});

test.serial('a pipeline resumed from its checkpoint ends as the uninterrupted run, bit for bit (Adam state included), with the same or another --stages', async (t) => {
  const opts = (extra: Partial<TrainOptions>) => resolveOptions({ ...BASE, optimizer: 'adam', lr: 0.01, checkpointSteps: 5, ...extra });
  const ref = dir(t);
  await runWorld(opts({ checkpointDir: ref }), dataset());
  t.deepEqual(readdirSync(ref), ['ckpt-000000015', 'ckpt-000000020', 'ckpt-000000024']);
  const want = files(ref, '24');
  t.is(want.length, 8, 'one file per parameter of the 4 Linear layers');
  for (const stages of [2, 3]) {
    // the first epoch (its checkpoint at the end: step 12), then the second resumed from it
    const d = dir(t);
    const first = await runWorld(opts({ checkpointDir: d, epochs: 1 }), dataset());
    t.is(first[0]!.report.samples, 12 * 10);
    const resumed = await runWorld(opts({ checkpointDir: d, stages, resume: true }), dataset());
    t.is(resumed[0]!.report.samples, 12 * 10, 'only the steps after the checkpoint were trained');
    t.deepEqual(files(d, '24'), want);
    for (const f of want) t.true(readFileSync(join(d, 'ckpt-000000024', f)).equals(readFileSync(join(ref, 'ckpt-000000024', f))), `--stages ${stages}: ${f}`);
  }
});

test.serial('--resume with a checkpoint of another model or another number of pipelines is refused, naming the difference; --checkpoint-every is refused', async (t) => {
  const d = dir(t);
  await runWorld(resolveOptions({ ...BASE, epochs: 1, checkpointDir: d }), dataset());
  t.deepEqual(readdirSync(d), ['ckpt-000000012']);
  await t.throwsAsync(runWorld(resolveOptions({ ...BASE, hidden: 8, checkpointDir: d, resume: true }), dataset()),
    { message: /^--resume: checkpoint 12 \(.*\) was written for another model: it has 0\.weight\[6x\d+\].*; this model has 0\.weight\[8x\d+\]/ });
  await t.throwsAsync(runWorld(resolveOptions({ ...BASE, replicas: 2, checkpointDir: d, resume: true }), dataset()),
    { message: /^--resume: checkpoint 12 \(.*\) was written by 1 pipeline\(s\); resume it with --replicas 1 \(this run has 2\)/ });
  await t.throwsAsync(runWorld(resolveOptions({ ...BASE, optimizer: 'adam', checkpointDir: d, resume: true }), dataset()),
    { message: /holds sgd state; this run uses --optimizer adam/ });
  // the refusals changed nothing: the checkpoint is still there, and resumes
  t.deepEqual(readdirSync(d), ['ckpt-000000012']);
  const r = await runWorld(resolveOptions({ ...BASE, checkpointDir: d, resume: true }), dataset());
  t.is(r[0]!.report.samples, 12 * 10);
  t.throws(() => resolveOptions({ ...BASE, checkpointDir: d, checkpointEvery: 5 }), { message: '--checkpoint-every: pipeline checkpoints by step count only (every stage writes its own layers of the same step): use --checkpoint-steps N' });
});
