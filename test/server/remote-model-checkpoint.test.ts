// Checkpoints of the remote-forward strategy, written by the RemoteModelHost in the servers'
// format: the hosted model (a model with batch-norm buffers), its buffers and every trainer's
// optimizer state kept on the host; a host restored from one; a resumed one-trainer run ends as the
// uninterrupted run, bit for bit; checkpoints of another model, job or optimizer are refused.
// In one process: a server agent hosting the model and trainer agents running trainRemoteForward.
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticDataset, type Dataset } from '../../src/data/index.js';
import { Agent, DistributedOptimizer, ManualClock, type RRef } from '../../src/rpc/index.js';
import { CheckpointStore, loadCheckpoint, RemoteModelHost, RF_FUNCTIONS, type ShardSnapshot, type WriteResult } from '../../src/server/index.js';
import { openRemoteModelCheckpoints, RemoteModelCheckpoints, type RemoteModelCheckpointOptions } from '../../src/server/remote-model-checkpoint.js';
import { decodeSafetensorsHeader, flattenParameters, layoutOf, type Module, type Tensor } from '../../src/tensor/index.js';
import { loadModel } from '../../src/trainer/model.js';
import { resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
import { trainRemoteForward } from '../../src/trainer/remote-forward.js';

const BN = new URL('../trainer/fixtures/batchnorm-model.ts', import.meta.url).pathname;
// 12 features seen as 1 x 3 x 4 images; 256 samples / 16 = 16 steps an epoch, 32 in all (one trainer)
const data: Dataset = { ...syntheticDataset({ samples: 256, features: 12, classes: 3, seed: 5 }), shape: [1, 3, 4] };
const OPTS: Partial<TrainOptions> = { strategy: 'remote-forward', model: BN, batchSize: 16, optimizer: 'adam', lr: 0.01, epochs: 2, seed: 7, progress: 'none' };
const quiet = () => {};

function tempDir(t: { teardown(f: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'psrpc-rf-ckpt-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function hostedModel(o: TrainOptions): Promise<Module> {
  return (await loadModel(o, data, { rank: 0, role: 'server', workers: 1 })).model as unknown as Module;
}

/** A server agent hosting the model with `checkpoints`, and `trainers` trainer agents. */
async function world(trainers: number, o: TrainOptions, checkpoints?: RemoteModelCheckpointOptions) {
  const size = trainers + 1;
  const server = await Agent.start({ name: 'ps0', rank: 0, worldSize: size, master: '127.0.0.1:0', timeoutMs: 60_000 });
  const agents = [server];
  for (let r = 1; r < size; r++) agents.push(await Agent.start({ name: `trainer${r}`, rank: r, worldSize: size, master: server.address, timeoutMs: 60_000 }));
  const stop = () => Promise.all(agents.map((a) => a.shutdown({ graceful: false })));
  try {
    const model = await hostedModel(o);
    // a ManualClock never advanced: only the trainers' leaves end the host
    const host = new RemoteModelHost({ name: 'ps0', model: model as never, trainers, clock: new ManualClock(), ...(checkpoints ? { checkpoints } : {}) }).register(server);
    await Promise.all(agents.map((a) => a.rendezvous()));
    return { host, model, server, trainers: agents.slice(1), stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Trains every trainer of `w` to the end and waits for the host (and its last checkpoint). */
async function train(w: Awaited<ReturnType<typeof world>>, o: TrainOptions) {
  const runs = await Promise.all(w.trainers.map((agent, rank) => trainRemoteForward(o, { agent, server: 'ps0', rank, trainers: w.trainers.length, train: data })));
  await w.host.done;
  return runs;
}

/** One run with checkpoints in `dir` (--resume when asked); its trainers' reports and the host's stats. */
async function run(dir: string, trainers: number, extra: Partial<TrainOptions> = {}, log: (line: string) => void = quiet) {
  const o = resolveOptions({ ...OPTS, checkpointSteps: 5, ...extra, checkpointDir: dir });
  const { checkpoints } = await openRemoteModelCheckpoints(o, 'ps0', log);
  const w = await world(trainers, o, checkpoints);
  try {
    const runs = await train(w, o);
    return { reports: runs.map((r) => r.report), stats: w.host.stats(), params: flattenParameters(w.model).params.slice() };
  } finally {
    await w.stop();
  }
}

const shardOf = (dir: string, id: number) => readFileSync(join(dir, `ckpt-${String(id).padStart(9, '0')}`, 'shard-0-of-1.safetensors'));
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

let reference: Promise<{ dir: string; params: Float32Array }> | undefined;
/** The uninterrupted one-trainer run (made once, shared by the tests; removed when the process exits). */
function uninterrupted() {
  reference ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'psrpc-rf-ref-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const r = await run(dir, 1);
    return { dir, params: r.params };
  })();
  return reference;
}

test('the host writes complete checkpoints of the model, its buffers and the optimizer state it keeps, readable by the servers\' reader', async (t) => {
  const { dir, params } = await uninterrupted();
  t.deepEqual(readdirSync(dir), ['ckpt-000000025', 'ckpt-000000030', 'ckpt-000000032'], 'every 5 steps, the last 3 kept, the one at the end among them');
  const cp = (await new CheckpointStore(dir, { log: quiet }).latest())!;
  t.is(cp.id, 32);
  const model = await hostedModel(resolveOptions(OPTS));
  t.deepEqual(cp.manifest.layout.map((p) => `${p.name}:${p.shape!.join('x')}`), model.namedParameters().map(([n, p]) => `${n}:${p.shape.join('x')}`));
  t.like(cp.manifest, { optimizer: 'adam', trainers: 1, consistency: 'async', total: params.length });
  const r = cp.read(0, params.length);
  t.is(r.version, 32, 'the host\'s step count');
  t.true(bytes(r.values).equals(bytes(params)), 'the hosted model\'s parameters at the end');
  t.deepEqual([...cp.buffers().keys()], model.namedBuffers().map(([n]) => n));
  t.true([...cp.buffers().values()].some((b) => b.some((v) => v !== 0 && v !== 1)), 'the buffers moved with the forwards');
  t.deepEqual(Object.keys(r.state!.arrays).sort(), ['trainer0.m', 'trainer0.v']);
  t.like(r.state!.scalars, { 'trainer0.step': 32, 'applied.trainer0': 32 });
  const file = shardOf(dir, 32);
  const header = decodeSafetensorsHeader(file, file.length, 'shard');
  t.deepEqual([...header.tensors.keys()].filter((n) => !n.startsWith('buffer.')), ['parameters', 'optimizer.trainer0.m', 'optimizer.trainer0.v']);
});

test('a host restored from a checkpoint holds exactly its parameters, buffers and step count, and gives the trainer rank its optimizer state', async (t) => {
  const { dir } = await uninterrupted();
  const cp = await loadCheckpoint(join(dir, 'ckpt-000000030'));
  const written: number[] = [];
  const sink = { writeShard: async (s: ShardSnapshot): Promise<WriteResult> => { written.push(s.id); return { file: '', bytes: 0, ms: 0, completed: true }; } };
  const o = resolveOptions(OPTS);
  const w = await world(1, o, { sink, restore: cp, optimizer: 'adam', log: quiet });
  try {
    const total = cp.manifest.total;
    const saved = cp.read(0, total);
    t.true(bytes(flattenParameters(w.model).params).equals(bytes(saved.values)));
    for (const [n, b] of w.model.namedBuffers()) t.deepEqual(Array.from(b.toTypedArray()), Array.from(cp.buffers().get(n)!), n);
    t.is(w.host.stats().steps, 30);
    const trainer = w.trainers[0]!;
    await trainer.call('ps0', RF_FUNCTIONS.join, [trainer.name]);
    const refs = await trainer.call<RRef<Tensor>[]>('ps0', RF_FUNCTIONS.params, []);
    const opt = new DistributedOptimizer(trainer, 'adam', refs, { lr: 0.01 });
    await opt.ready();
    t.deepEqual(await trainer.call('ps0', RF_FUNCTIONS.optimizer, [trainer.name, 0, opt.id]), { steps: 30, version: 30 });
    const kept = w.server.optimizerHost.optimizer(opt.id)!;
    let at = 0;
    for (const p of w.model.parameters()) {
      const s = kept.exportState(p)!;
      t.true(bytes(s.arrays.m!).equals(bytes(saved.state!.arrays['trainer0.m']!.subarray(at, at + p.size))));
      t.true(bytes(s.arrays.v!).equals(bytes(saved.state!.arrays['trainer0.v']!.subarray(at, at + p.size))));
      t.is(s.scalars.step, 30);
      at += p.size;
    }
    await opt.release();
    await trainer.call('ps0', RF_FUNCTIONS.leave, [trainer.name]);
    await w.host.done;
    t.deepEqual(written, [30], 'the checkpoint at the end, of the restored state');
  } finally {
    await w.stop();
  }
});

test('a one-trainer run resumed from its checkpoint at step 10 goes on at step 10 and ends as the uninterrupted run, bit for bit', async (t) => {
  const ref = await uninterrupted();
  const dir = tempDir(t);
  await run(dir, 1, { checkpointKeep: 10 });
  // the run "died" right after checkpoint 10: everything after it removed
  for (const d of readdirSync(dir)) if (Number(d.slice(5)) > 10) rmSync(join(dir, d), { recursive: true });
  const lines: string[] = [];
  const r = await run(dir, 1, { checkpointKeep: 10, resume: true }, (l) => lines.push(l));
  t.true(lines.some((l) => /ps0: resuming from checkpoint 10 /.test(l)), lines.join('\n'));
  t.is(r.reports[0]!.steps, 32 - 10, 'only the steps after the checkpoint were trained');
  t.is(r.stats.steps, 32);
  t.deepEqual(readdirSync(dir), ['ckpt-000000005', 'ckpt-000000010', 'ckpt-000000015', 'ckpt-000000020', 'ckpt-000000025', 'ckpt-000000030', 'ckpt-000000032']);
  t.true(bytes(r.params).equals(bytes(ref.params)));
  t.true(shardOf(dir, 32).equals(shardOf(ref.dir, 32)), 'the final parameters, buffers and optimizer state equal the uninterrupted run\'s');
});

test('two trainers: one optimizer state and step count per rank; resumed, each goes on after its own steps', async (t) => {
  const dir = tempDir(t);
  // 2 trainers x 128 samples / 16 = 8 steps an epoch each, 32 in all
  const first = await run(dir, 2, { optimizer: 'sgd', momentum: 0.9, lr: 0.05, checkpointKeep: 10 });
  t.deepEqual(first.reports.map((r) => r.steps), [16, 16]);
  const end = (await loadCheckpoint(join(dir, 'ckpt-000000032'))).read(0, first.params.length);
  t.deepEqual(Object.keys(end.state!.arrays).sort(), ['trainer0.momentumBuffer', 'trainer1.momentumBuffer']);
  t.like(end.state!.scalars, { 'applied.trainer0': 16, 'applied.trainer1': 16, 'trainer0.steps': 16, 'trainer1.steps': 16 });
  const mid = (await loadCheckpoint(join(dir, 'ckpt-000000010'))).read(0, first.params.length);
  const applied = [mid.state!.scalars['applied.trainer0']!, mid.state!.scalars['applied.trainer1']!];
  t.is(applied[0]! + applied[1]!, 10, 'the checkpoint\'s step is the host\'s steps, both trainers\' together');
  for (const d of readdirSync(dir)) if (Number(d.slice(5)) > 10) rmSync(join(dir, d), { recursive: true });
  const resumed = await run(dir, 2, { optimizer: 'sgd', momentum: 0.9, lr: 0.05, checkpointKeep: 10, resume: true });
  t.deepEqual(resumed.reports.map((r) => r.steps), applied.map((n) => 16 - n), 'each trainer trains the batches whose steps the checkpoint lacks');
  t.is(resumed.stats.steps, 32);
});

test('a checkpoint of another model, job size or optimizer, or not a remote-forward host\'s, is refused naming the difference; nothing is set', async (t) => {
  const { dir } = await uninterrupted();
  const cp = await loadCheckpoint(join(dir, 'ckpt-000000032'));
  const sink = new CheckpointStore(tempDir(t), { log: quiet });
  const o = resolveOptions(OPTS);
  const make = (model: Module, trainers: number, optimizer: string) => new RemoteModelHost({ name: 'ps0', model: model as never, trainers, checkpoints: { sink, restore: cp, optimizer, log: quiet } });
  const other = (await loadModel(resolveOptions({ ...OPTS, model: 'mlp', hidden: 8 }), data, { rank: 0, role: 'server', workers: 1 })).model as unknown as Module;
  t.throws(() => make(other, 1, 'adam'), { message: /^--resume: checkpoint 32 \(.*ckpt-000000032\) was written for another model: parameter 0 is '0\.weight' \[8, 12\] instead of '0\.weight' \[4, 1, 3, 3\]/ });
  const model = await hostedModel(o);
  const before = flattenParameters(model).params.slice();
  t.throws(() => make(model, 2, 'adam'), { message: /was written by a job of 1 trainer\(s\); resume it with as many \(this one has 2\)/ });
  t.throws(() => make(model, 1, 'sgd'), { message: /holds adam state; this run uses --optimizer sgd/ });
  t.true(bytes(flattenParameters(model).params).equals(bytes(before)), 'a refused checkpoint sets nothing');
  t.true(model.namedBuffers().every(([n, b]) => b.toTypedArray().every((v) => v === (n.endsWith('running_var') ? 1 : 0))));

  // a checkpoint with this layout but no per-trainer step counts (a parameter server's, say)
  const plain = tempDir(t);
  const host = { name: 'ps0', trainers: 1, params: model.parameters(), layout: layoutOf(model), buffers: model.namedBuffers() };
  const snap = new RemoteModelCheckpoints(host, { sink, optimizer: 'adam' }).snapshot(4, { steps: 4, forwards: 4, trainers: [{ applied: 4 }] });
  delete snap.state!.scalars['applied.trainer0'];
  await new CheckpointStore(plain, { log: quiet }).writeShard({ ...snap, id: 4 });
  const foreign = await loadCheckpoint(join(plain, 'ckpt-000000004'));
  t.throws(() => new RemoteModelHost({ name: 'ps0', model: model as never, trainers: 1, checkpoints: { sink, restore: foreign, optimizer: 'adam', log: quiet } }),
    { message: /checkpoint 4 .* was not written by a remote-forward host: it has no step count applied\.trainer0 of trainer rank 0/ });
});

test('a trainer whose optimizer is not the checkpoint\'s is refused at rf.optimizer, naming both', async (t) => {
  const { dir } = await uninterrupted();
  const cp = await loadCheckpoint(join(dir, 'ckpt-000000032'));
  const o = resolveOptions(OPTS);
  const w = await world(1, o, { sink: new CheckpointStore(tempDir(t), { log: quiet }), restore: cp, optimizer: 'adam', log: quiet });
  try {
    const sgd = resolveOptions({ ...OPTS, optimizer: 'sgd', momentum: 0.9 });
    await t.throwsAsync(trainRemoteForward(sgd, { agent: w.trainers[0]!, server: 'ps0', rank: 0, trainers: 1, train: data }),
      { message: /remote-forward host "ps0": trainer "trainer1"'s optimizer: it is SGD, but this host checkpoints adam state \(--optimizer adam\)/ });
    t.is(w.host.stats().steps, 32, 'no step was taken');
  } finally {
    await w.stop();
  }
});

for (const [budget, expected, note] of [[undefined, [4, 8, 12, 16], 'every copy waits'], [1, [4, 16], 'room for one: 8 is replaced by 12, 12 by 16']] as const) {
  test(`steps never wait for the disk: checkpoints due while one is written wait in memory, up to maxQueuedBytes (${budget ?? 'default'}: ${note}); the state at the end is written last`, async (t) => {
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const written: number[] = [];
    const sink = {
      async writeShard(s: ShardSnapshot): Promise<WriteResult> {
        if (written.length === 0) await held;
        written.push(s.id);
        return { file: '', bytes: 0, ms: 0, completed: true };
      },
    };
    const lines: string[] = [];
    const o = resolveOptions({ ...OPTS, epochs: 1 });
    const w = await world(1, o, { sink, steps: 4, optimizer: 'adam', log: (l) => lines.push(l), ...(budget !== undefined ? { maxQueuedBytes: budget } : {}) });
    try {
      // the first write (checkpoint 4) is held until every step has been taken
      const r = await trainRemoteForward(o, { agent: w.trainers[0]!, server: 'ps0', rank: 0, trainers: 1, train: data });
      t.is(r.report.steps, 16);
      t.deepEqual(written, []);
      release();
      await w.host.done;
      // 16 is also the state at the end: written once
      t.deepEqual(written, [...expected]);
      const dropped = lines.filter((l) => /checkpoint \d+ is not written/.test(l));
      if (budget === undefined) t.deepEqual(dropped, []);
      else t.deepEqual(dropped, ['ps0: checkpoint 8 is not written: 12 is due while the copies waiting for the disk hold 1 bytes; the newest wait instead (steps never wait for the disk; a longer --checkpoint-every or --checkpoint-steps avoids this)'], 'said once');
    } finally {
      await w.stop();
    }
  });
}
