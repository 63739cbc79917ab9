// Checkpoints of the hogwild strategy: the shared model, its buffers and every worker's optimizer
// state and position in the servers' format; one worker resumed from a checkpoint ends as the run
// never interrupted, bit for bit; several resume at their own positions; a checkpoint this run
// cannot go on from is refused, naming the difference.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { syntheticDataset, take } from '../../src/data/index.js';
import { HogwildWorkerError, trainHogwild, type HogwildOptions, type HogwildRun } from '../../src/hogwild/index.js';
import { CheckpointStore, loadCheckpoint, type LoadedCheckpoint } from '../../src/server/index.js';
import { trainLocal } from '../../src/trainer/local.js';

const BN = new URL('./fixtures/batchnorm-model.ts', import.meta.url);
const FAILING = new URL('./fixtures/failing-model.ts', import.meta.url);
// 512 samples of 12 features seen as 1 x 3 x 4 images, 3 classes
const images = (seed: number, samples: number) => ({ ...syntheticDataset({ samples, features: 12, classes: 3, seed }), shape: [1, 3, 4] });
const DATA = { train: images(5, 512), test: take(images(6, 128), 128) };

// one worker: 512 / 32 = 16 steps an epoch, 32 in all; a checkpoint every 5
const ONE: HogwildOptions = { workers: 1, model: BN, data: DATA, batchSize: 32, epochs: 2, optimizer: 'adam', lr: 0.01, seed: 7, progress: 'none', checkpointSteps: 5 };
// two workers: 256 / 32 = 8 steps an epoch each, 32 in all together; rank 0 takes one every 3 of its steps
const TWO: HogwildOptions = { ...ONE, workers: 2, optimizer: 'sgd', momentum: 0.9, lr: 0.05, checkpointSteps: 3 };
// a plain mlp on synthetic data, for the refusals: 256 / 32 = 8 steps
const MLP: HogwildOptions = { workers: 1, dataset: 'synthetic', trainSamples: 256, testSamples: 64, batchSize: 32, epochs: 1, hidden: 16, optimizer: 'adam', lr: 0.01, progress: 'none' };

function dir(t: { teardown(f: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'psrpc-hogwild-ckpt-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const shardFile = (d: string, id: number) => join(d, `ckpt-${String(id).padStart(9, '0')}`, 'shard-0-of-1.safetensors');
const final = (d: string) => readFileSync(shardFile(d, 32));
const ids = (d: string) => readdirSync(d).map((n) => Number(n.slice('ckpt-'.length)));
/** Removes the checkpoints after `id`, as if the run had died right after writing it. */
const dieAfter = (d: string, id: number) => { for (const n of readdirSync(d)) if (Number(n.slice(5)) > id) rmSync(join(d, n), { recursive: true }); };
const silent = () => {};

/** The safetensors header's tensor names, read as any reader would (8-byte length, JSON). */
function tensorNames(file: string): string[] {
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  return Object.keys(JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>).filter((k) => k !== '__metadata__').sort();
}

// The uninterrupted one-worker run, shared by the tests that compare with it.
let reference: Promise<{ dir: string; run: HogwildRun }> | undefined;
const refDir = mkdtempSync(join(tmpdir(), 'psrpc-hogwild-ref-'));
test.after.always(() => rmSync(refDir, { recursive: true, force: true }));
function uninterrupted(): Promise<{ dir: string; run: HogwildRun }> {
  reference ??= trainHogwild({ ...ONE, checkpointDir: refDir, recordLosses: true, log: silent }).then((run) => ({ dir: refDir, run }));
  return reference;
}

test('one worker resumed after its checkpoint at step 10 ends as the uninterrupted run, bit for bit (Adam state and batch-norm statistics included)', async (t) => {
  const ref = await uninterrupted();
  t.deepEqual(ids(ref.dir), [25, 30, 32], 'the last 3 kept, the one at the end among them');

  const b = dir(t);
  await trainHogwild({ ...ONE, checkpointDir: b, checkpointKeep: 10, log: silent });
  t.deepEqual(ids(b), [5, 10, 15, 20, 25, 30, 32]);
  dieAfter(b, 10);
  const logs: string[] = [];
  const resumed = await trainHogwild({ ...ONE, checkpointDir: b, checkpointKeep: 10, resume: true, recordLosses: true, log: (l) => logs.push(l) });
  t.true(logs.some((l) => /^hogwild: resuming from checkpoint 10 \(.*ckpt-000000010\) in epoch 1\/2, the workers at batches 10 \(16 an epoch\)$/.test(l)), logs.join('\n'));
  t.is(resumed.result.samples, (32 - 10) * 32, 'only the steps after the checkpoint were trained');
  t.deepEqual([...resumed.losses![0]!.subarray(0, 22)], [...ref.run.losses![0]!.subarray(10)], 'the same batches in the same order, with the same losses');
  t.true(final(b).equals(final(ref.dir)), 'the final checkpoints are the same bytes');
  t.deepEqual([...resumed.params], [...ref.run.params]);
  t.is(resumed.result.testAccuracy, ref.run.result.testAccuracy);
});

test('two workers write complete checkpoints in the servers\' format: the shared weights, the buffers, each worker\'s momentum, step count and position', async (t) => {
  const d = dir(t);
  const run = await trainHogwild({ ...TWO, checkpointDir: d, checkpointKeep: 100, log: silent });
  // rank 0 takes one at its steps 3, 6, 9, 12, 15 (not at its last: the one at the end covers it)
  t.is(readdirSync(d).length, 6);
  t.is(ids(d).at(-1), 32);
  const latest = (await new CheckpointStore(d, { log: silent }).latest())!;
  t.is(latest.id, 32);
  t.like(latest.manifest, { consistency: 'hogwild', trainers: 2, optimizer: 'sgd', total: run.params.length });
  t.deepEqual(latest.manifest.layout.map((p) => p.name), run.model.namedParameters().map(([n]) => n));
  t.deepEqual(tensorNames(shardFile(d, 32)), [
    'buffer.1.num_batches_tracked', 'buffer.1.running_mean', 'buffer.1.running_var',
    'optimizer.worker0.momentumBuffer', 'optimizer.worker1.momentumBuffer', 'parameters',
  ]);
  const all = latest.read(0, latest.manifest.total);
  t.deepEqual([...all.values], [...run.params], 'the final checkpoint holds the trained shared weights');
  t.deepEqual(all.state!.scalars, { 'worker0.steps': 16, 'worker0.batches': 16, 'worker1.steps': 16, 'worker1.batches': 16 });
  for (const k of ['worker0.momentumBuffer', 'worker1.momentumBuffer']) {
    t.is(all.state!.arrays[k]!.length, run.params.length);
    t.true(all.state!.arrays[k]!.some((v) => v !== 0), `${k} is a trained momentum`);
  }
  t.notDeepEqual([...all.state!.arrays['worker0.momentumBuffer']!], [...all.state!.arrays['worker1.momentumBuffer']!], 'each worker has its own');
  const buffers = latest.buffers();
  for (const [name, b] of run.model.namedBuffers()) t.deepEqual([...buffers.get(name)!], [...b.toTypedArray()], name);

  // every checkpoint taken during the run is complete; its number is the steps of both workers together
  const mid: LoadedCheckpoint[] = [];
  for (const id of ids(d).slice(0, -1)) mid.push(await loadCheckpoint(join(d, `ckpt-${String(id).padStart(9, '0')}`)));
  const at = (cp: LoadedCheckpoint, w: number) => cp.read(0, 1).state!.scalars[`worker${w}.batches`]!;
  t.deepEqual(mid.map((cp) => at(cp, 0)), [3, 6, 9, 12, 15]);
  for (const cp of mid) t.is(cp.id, at(cp, 0) + at(cp, 1));

  // resumed from the third, each worker goes on at its own position and trains the rest of its batches
  const from = mid[2]!;
  dieAfter(d, from.id);
  const logs: string[] = [];
  const resumed = await trainHogwild({ ...TWO, checkpointDir: d, checkpointKeep: 100, resume: true, log: (l) => logs.push(l) });
  t.true(logs.some((l) => l.includes(`hogwild: resuming from checkpoint ${from.id} `) && l.includes(`the workers at batches 9, ${at(from, 1)} (8 an epoch)`)), logs.join('\n'));
  t.is(resumed.result.samples, (32 - from.id) * 32);
  const end = await loadCheckpoint(join(d, 'ckpt-000000032'));
  t.deepEqual(end.read(0, 1).state!.scalars, { 'worker0.steps': 16, 'worker0.batches': 16, 'worker1.steps': 16, 'worker1.batches': 16 });
});

test('a worker that had finished the epoch when the checkpoint was copied waits at its end for the other; positions more than an epoch apart are refused', async (t) => {
  const src = dir(t);
  await trainHogwild({ ...TWO, checkpointSteps: 0, checkpointDir: src, log: silent });
  const cp = (await loadCheckpoint(join(src, 'ckpt-000000032')));
  const r = cp.read(0, cp.manifest.total);
  // the same contents, with worker 0 at the end of epoch 0 (batch 8 of 8) and worker 1 at batch 3 of it
  const rewrite = async (d: string, w0: number, w1: number) => new CheckpointStore(d, { log: silent }).writeShard({
    id: w0 + w1, shard: 0, shards: 1, start: 0, length: cp.manifest.total, total: cp.manifest.total, version: w0 + w1,
    layout: cp.manifest.layout.map(({ offset: _, ...p }) => p), consistency: 'hogwild', trainers: 2, optimizer: 'sgd',
    values: r.values, state: { arrays: r.state!.arrays, scalars: { ...r.state!.scalars, 'worker0.batches': w0, 'worker1.batches': w1 } },
    buffers: Object.fromEntries(cp.buffers()),
  });
  const d = dir(t);
  await rewrite(d, 8, 3);
  const logs: string[] = [];
  const resumed = await trainHogwild({ ...TWO, checkpointSteps: 0, checkpointDir: d, resume: true, log: (l) => logs.push(l) });
  t.true(logs.some((l) => /resuming from checkpoint 11 .* in epoch 1\/2, the workers at batches 8, 3 \(8 an epoch\)$/.test(l)), logs.join('\n'));
  t.is(resumed.result.samples, ((16 - 8) + (16 - 3)) * 32);
  t.is(resumed.result.epochAccuracy.length, 2);
  t.deepEqual(ids(d), [11, 32]);

  const far = dir(t);
  await rewrite(far, 12, 3);
  await t.throwsAsync(trainHogwild({ ...TWO, checkpointDir: far, resume: true, log: silent }), {
    message: /^--resume: checkpoint 15 \(.*\) has worker 0 at batch 12 and another in epoch 1 of 8 batches: more than an epoch apart/,
  });
});

test('--resume with a checkpoint of another model, optimizer, number of workers or strategy is refused naming the difference, and leaves the directory as it was', async (t) => {
  const a = dir(t);
  await trainHogwild({ ...MLP, checkpointDir: a, log: silent });
  const before = readFileSync(shardFile(a, 8));
  const refused = async (o: HogwildOptions, message: RegExp, d = a) => {
    await t.throwsAsync(trainHogwild({ ...MLP, ...o, checkpointDir: d, resume: true, log: silent }), { instanceOf: RangeError, message });
  };
  await refused({ hidden: 8 }, /^--resume: checkpoint 8 \(.*\) was written for another model: it has 0\.weight\[16x784\], .*; this model has 0\.weight\[8x784\], /);
  await refused({ optimizer: 'sgd' }, /holds adam state; this run uses --optimizer sgd$/);
  await refused({ workers: 2 }, /was written by 1 hogwild worker\(s\); resume it with --workers 1 \(this run has 2\)/);
  t.deepEqual(ids(a), [8]);
  t.true(readFileSync(shardFile(a, 8)).equals(before));

  const sgd = dir(t);
  await trainHogwild({ ...MLP, optimizer: 'sgd', momentum: 0.9, checkpointDir: sgd, log: silent });
  await refused({ optimizer: 'sgd', momentum: 0 }, /holds optimizer state worker0\.momentumBuffer: this run's sgd keeps no arrays per worker \(another --momentum\?\)/, sgd);

  const local = dir(t);
  await trainLocal({ dataset: 'synthetic', trainSamples: 256, testSamples: 64, batchSize: 32, epochs: 1, hidden: 16, optimizer: 'adam', lr: 0.01, progress: 'none', checkpointDir: local }, { log: silent });
  await refused({}, /was not written by hogwild workers \(it says consistency "local"\)/, local);

  const empty = dir(t);
  const logs: string[] = [];
  const r = await trainHogwild({ ...MLP, checkpointDir: empty, resume: true, log: (l) => logs.push(l) });
  t.is(r.result.samples, 8 * 32);
  t.true(logs.some((l) => /^hogwild: --resume: no complete checkpoint in .*; starting from the beginning$/.test(l)), logs.join('\n'));
});

test('a run whose worker fails rejects with its error once the checkpoints taken before are on disk, and writes none at the end', async (t) => {
  const d = dir(t);
  // rank 0 takes checkpoints 3 and 6, and its 8th forward throws
  await t.throwsAsync(trainHogwild({ ...MLP, trainSamples: 512, model: FAILING, modelOptions: { failRank: 0, failAfter: 7 }, checkpointSteps: 3, checkpointDir: d, log: silent }), {
    instanceOf: HogwildWorkerError, message: /boom in the forward of rank 0/,
  });
  t.deepEqual(ids(d), [3, 6]);
  t.is((await new CheckpointStore(d, { log: silent }).latest())!.id, 6);
});

test('--checkpoint-every takes checkpoints by rank 0\'s clock, and one of them resumes as exactly as one by steps; a period longer than the run leaves only the one at the end', async (t) => {
  const ref = await uninterrupted();
  const d = dir(t);
  // 1 us: due at every step (a step of this model takes far longer), so there are checkpoints besides the last
  await trainHogwild({ ...ONE, checkpointSteps: 0, checkpointEvery: 1e-6, checkpointKeep: 100, checkpointDir: d, log: silent });
  const taken = ids(d);
  t.true(taken.length > 1, `checkpoints ${taken.join(', ')}`);
  t.is(taken.at(-1), 32);
  dieAfter(d, taken[0]!);
  const logs: string[] = [];
  await trainHogwild({ ...ONE, checkpointSteps: 0, checkpointDir: d, resume: true, log: (l) => logs.push(l) });
  t.true(logs.some((l) => l.startsWith(`hogwild: resuming from checkpoint ${taken[0]} `)), logs.join('\n'));
  t.true(final(d).equals(final(ref.dir)));

  const e = dir(t);
  await trainHogwild({ ...ONE, checkpointSteps: 0, checkpointEvery: 1e6, checkpointDir: e, log: silent });
  t.deepEqual(ids(e), [32]);
});

const runner = fileURLToPath(new URL('../../src/cli/trainer-main.ts', import.meta.url));
function trainer(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', runner, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } }, (e, _stdout, stderr) => {
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stderr });
    });
  });
}

test('trainer --strategy hogwild killed once checkpoint 8 is on disk (the fault hook) goes on from it with --resume and ends as the uninterrupted run, bit for bit', async (t) => {
  const d = dir(t);
  const opts = { workers: 1, dataset: 'synthetic', trainSamples: 512, testSamples: 64, batchSize: 32, epochs: 2, hidden: 16, optimizer: 'sgd', momentum: 0.9 } as const;
  const args = ['--strategy', 'hogwild', '--workers', '1', '--dataset', 'synthetic', '--train-samples', '512', '--test-samples', '64', '--batch-size', '32', '--epochs', '2',
    '--hidden', '16', '--optimizer', 'sgd', '--momentum', '0.9', '--checkpoint-steps', '4', '--checkpoint-dir', d, '--progress', 'none'];
  const killed = await trainer(args, { PSRPC_FAULT_KILL_AFTER_CHECKPOINT: '8' });
  t.is(killed.signal, 'SIGKILL', killed.stderr);
  t.regex(killed.stderr, /hogwild: PSRPC_FAULT_KILL_AFTER_CHECKPOINT=8: killing this process/);
  // the writes go one after another: nothing after 8 was begun
  t.deepEqual(ids(d), [4, 8]);
  const resumed = await trainer([...args, '--resume']);
  t.is(resumed.code, 0, resumed.stderr);
  t.regex(resumed.stderr, /hogwild: resuming from checkpoint 8 \(.*\) in epoch 1\/2, the workers at batches 8 \(16 an epoch\)/);
  const ref = dir(t);
  await trainHogwild({ ...opts, progress: 'none', checkpointDir: ref, log: silent });
  t.true(final(d).equals(final(ref)));
});
