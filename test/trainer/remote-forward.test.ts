// The remote-forward strategy in one process: one server agent hosts the model behind an RRef,
// 1, 2 or 3 trainer agents train it concurrently with distributed autograd and a
// DistributedOptimizer. With one trainer the result equals local SGD on the same batches.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main as psrun } from '../../src/cli/psrun.js';
import { Capture } from '../launch/fixture.js';
import { DataLoader, DistributedSampler, syntheticDataset, type Dataset } from '../../src/data/index.js';
import { Agent, ManualClock } from '../../src/rpc/index.js';
import { RemoteModelHost, type SharedModel } from '../../src/server/index.js';
import { resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
import { trainRemoteForward } from '../../src/trainer/remote-forward.js';
import { crossEntropy, flattenParameters, mlp, SGD, Tensor } from '../../src/tensor/index.js';
import { freePort } from '../../src/launch/free-port.js';

/** Today's MLP 784-H-H-10, written out: the mlp preset must build exactly this (same values). */
const buildModel = (o: TrainOptions, features: number, classes: number) => mlp([features, o.hidden, o.hidden, classes], { seed: o.seed });

const data: Dataset = syntheticDataset({ samples: 384, features: 12, classes: 3, seed: 5 });
const opts: TrainOptions = resolveOptions({ strategy: 'remote-forward', hidden: 8, batchSize: 16, lr: 0.1, momentum: 0.5, epochs: 2, seed: 7, progress: 'none' });

async function world(trainers: number, o = opts, clock?: ManualClock) {
  const size = trainers + 1;
  const names = ['ps0', ...Array.from({ length: trainers }, (_, i) => `trainer${i}`)];
  const master = await Agent.start({ name: 'ps0', rank: 0, worldSize: size, master: '127.0.0.1:0', timeoutMs: 20_000 });
  const agents = [master];
  for (let r = 1; r < size; r++) agents.push(await Agent.start({ name: names[r]!, rank: r, worldSize: size, master: master.address, timeoutMs: 20_000 }));
  const model = buildModel(o, data.features, data.classes);
  const host = new RemoteModelHost({ name: 'ps0', model, trainers, ...(clock ? { clock } : {}) }).register(master);
  await Promise.all(agents.map((a) => a.rendezvous()));
  return {
    host,
    model,
    server: master,
    trainerAgents: agents.slice(1),
    async stop() {
      await Promise.all(agents.map((a) => a.shutdown({ graceful: false })));
    },
  };
}

/** Local SGD on trainer 0's batches when it is the only trainer. */
function reference(o: TrainOptions): Float32Array {
  const model = buildModel(o, data.features, data.classes);
  const flat = flattenParameters(model);
  const opt = new SGD(model.parameters(), { lr: o.lr, momentum: o.momentum });
  const loader = new DataLoader(data, { batchSize: o.batchSize, dropLast: true, sampler: new DistributedSampler(data.length, { numReplicas: 1, rank: 0, shuffle: true, seed: o.seed }) });
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    loader.setEpoch(epoch);
    for (const b of loader) {
      const loss = crossEntropy(model.forward(new Tensor(b.x, [b.size, data.features])), b.y);
      opt.zeroGrad();
      loss.backward();
      opt.step();
    }
  }
  return flat.params.slice();
}

function meanLoss(model: ReturnType<typeof buildModel>): number {
  const x = new Tensor(data.x.slice(0, data.length * data.features), [data.length, data.features]);
  return crossEntropy(model.forward(x), data.y).item();
}

test('one trainer: parameters after training equal local SGD on the same batches', async (t) => {
  const w = await world(1);
  try {
    const [run] = await Promise.all([trainRemoteForward(opts, { agent: w.trainerAgents[0]!, server: 'ps0', rank: 0, trainers: 1, train: data })]);
    const steps = opts.epochs * Math.floor(data.length / opts.batchSize);
    t.is(run.report.steps, steps);
    t.is(w.host.stats().forwards, steps);
    const got = flattenParameters(w.model).params;
    const expected = reference(opts);
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
    t.true(worst <= 2e-5, `max difference ${worst} over ${got.length} elements`);
    await w.host.done;
    t.deepEqual(w.server.distAutograd.activeContexts(), 0, 'every context was released on the server');
  } finally {
    await w.stop();
  }
});

for (const trainers of [2, 3]) {
  test(`${trainers} concurrent trainers share the model without errors and the loss falls`, async (t) => {
    const o = resolveOptions({ ...opts, epochs: 3 });
    const w = await world(trainers, o);
    try {
      const before = meanLoss(w.model);
      const runs = await Promise.all(w.trainerAgents.map((agent, rank) => trainRemoteForward(o, { agent, server: 'ps0', rank, trainers, train: data })));
      const per = o.epochs * Math.floor(data.length / trainers / o.batchSize);
      t.deepEqual(runs.map((r) => r.report.steps), Array(trainers).fill(per));
      t.is(w.host.stats().forwards, per * trainers);
      const after = meanLoss(w.model);
      t.true(after < before * 0.9, `loss ${before.toFixed(4)} -> ${after.toFixed(4)}`);
      await w.host.done;
      t.deepEqual(w.host.stats().left, trainers);
    } finally {
      await w.stop();
    }
  });
}

test('with --eval-every the first trainer records a curve of the server\'s model, from 0 samples to the end', async (t) => {
  const o = resolveOptions({ ...opts, epochs: 3, evalEvery: 0.001, evalSamples: 100 });
  const w = await world(2, o);
  try {
    const runs = await Promise.all(w.trainerAgents.map((agent, rank) =>
      trainRemoteForward(o, { agent, server: 'ps0', rank, trainers: 2, train: data, ...(rank === 0 ? { test: data } : {}) })));
    t.is(runs[1]!.curve, undefined, 'only the first trainer records');
    const curve = runs[0]!.curve!;
    t.true(curve.length >= 2, `${curve.length} points`);
    t.is(curve[0]!.samples, 0);
    t.is(curve.at(-1)!.samples, runs[0]!.report.samples * 2);
    for (let i = 1; i < curve.length; i++) t.true(curve[i]!.seconds >= curve[i - 1]!.seconds && curve[i]!.samples >= curve[i - 1]!.samples);
    t.true(curve.at(-1)!.accuracy > curve[0]!.accuracy, `accuracy ${curve[0]!.accuracy} -> ${curve.at(-1)!.accuracy}`);
    t.is(curve.at(-1)!.seconds, runs[0]!.report.trainSeconds, 'the last point is at the end of training');
  } finally {
    await w.stop();
  }
});

test('a trainer that does not leave keeps the host running; fetchModel copies the server\'s parameters', async (t) => {
  const clock = new ManualClock(); // never advanced: no silence can end the host, only a leave
  const w = await world(1, opts, clock);
  try {
    const run = await trainRemoteForward(opts, { agent: w.trainerAgents[0]!, server: 'ps0', rank: 0, trainers: 1, train: data, leave: false });
    let done = false;
    void w.host.done.then(() => { done = true; });
    const local = await run.fetchModel(); // round trips after every message of the training
    t.false(done, 'the host still waits for the trainer');
    t.deepEqual(flattenParameters(local).params, flattenParameters(w.model).params);
    await run.leave();
    await w.host.done;
    t.true(done);
  } finally {
    await w.stop();
  }
});

test('a trainer that dies (never leaves) and one that never joins are dropped after liveTimeoutMs of silence', async (t) => {
  const clock = new ManualClock();
  const ps = await Agent.start({ name: 'ps0', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: 20_000 });
  const tr = await Agent.start({ name: 'trainer0', rank: 1, worldSize: 2, master: ps.address, timeoutMs: 20_000 });
  try {
    const host = new RemoteModelHost({ name: 'ps0', model: buildModel(opts, data.features, data.classes), trainers: 2, liveTimeoutMs: 2000, clock }).register(ps);
    let done = false;
    void host.done.then(() => { done = true; });
    clock.advance(30_000); // a slow rendezvous is nobody's silence: the clocks start at its end
    await Promise.all([ps.rendezvous(), tr.rendezvous()]);
    clock.advance(500);
    await tr.call('ps0', 'rf.join', ['trainer0']); // at 500 ms; the missing trainer is awaited from 0 ms
    clock.advance(1499);
    // a request that names no trainer (the model's RRef; forwards alike) counts for every live one
    t.is(await tr.remote<SharedModel>('ps0', 'rf.model').rpcSync().parameterCount(), 6);
    clock.advance(1);
    t.deepEqual(host.stats().dropped, [], 'the missing trainer is silent (2000 ms) but trainer0 is not');
    clock.advance(1998);
    await new Promise((r) => setImmediate(r));
    t.false(done, 'not before trainer0 is silent for 2000 ms');
    t.deepEqual(host.stats().dropped, []);
    clock.advance(1);
    await host.done;
    const s = host.stats();
    t.is(s.joined, 1);
    t.is(s.left, 0);
    t.is(s.dropped.length, 2);
    t.is(s.dropped[0], 'trainer0');
    t.regex(s.dropped[1]!, /never joined/);
  } finally {
    await Promise.all([tr.shutdown({ graceful: false }), ps.shutdown({ graceful: false })]);
  }
});

test('a host whose trainers never join stops waiting liveTimeoutMs after the rendezvous, not after register', async (t) => {
  const clock = new ManualClock();
  const ps = await Agent.start({ name: 'ps0', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: 20_000 });
  const tr = await Agent.start({ name: 'trainer0', rank: 1, worldSize: 2, master: ps.address, timeoutMs: 20_000 });
  try {
    const host = new RemoteModelHost({ name: 'ps0', model: buildModel(opts, data.features, data.classes), trainers: 1, liveTimeoutMs: 2000, clock }).register(ps);
    clock.advance(10_000);
    await Promise.all([ps.rendezvous(), tr.rendezvous()]);
    clock.advance(1999);
    t.deepEqual(host.stats().dropped, []);
    clock.advance(1);
    await host.done;
    t.deepEqual(host.stats().dropped, ['(trainer 1 of 1, never joined)']);
  } finally {
    await Promise.all([tr.shutdown({ graceful: false }), ps.shutdown({ graceful: false })]);
  }
});

test('RemoteModelHost refuses a bad liveTimeoutMs', (t) => {
  t.throws(() => new RemoteModelHost({ name: 'ps0', model: buildModel(opts, data.features, data.classes), trainers: 1, liveTimeoutMs: 0 }), { message: /liveTimeoutMs/ });
});

test('a batch larger than the trainer\'s partition is refused with the numbers', async (t) => {
  const w = await world(1);
  try {
    const o = resolveOptions({ ...opts, batchSize: 1000 });
    await t.throwsAsync(trainRemoteForward(o, { agent: w.trainerAgents[0]!, server: 'ps0', rank: 0, trainers: 1, train: data }), { message: /--batch-size 1000 is larger than the 384 training samples/ });
  } finally {
    await w.stop();
  }
});

const SMALL = ['--dataset', 'synthetic', '--train-samples', '1024', '--test-samples', '256', '--batch-size', '64', '--hidden', '16', '--progress', 'none'];

test('psrun --strategy remote-forward with 2 trainers runs end to end and writes the combined result', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-rf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'result.json');
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await psrun(['node', 'psrun', '--servers', '1', '--trainers', '2', '--strategy', 'remote-forward', ...SMALL, '--eval-every', '0.005', '--kill-grace', '2', '--json', json],
    { stdout, stderr, handleSignals: false });
  t.is(code, 0, stdout.text + stderr.text);
  const r = JSON.parse(readFileSync(json, 'utf8'));
  t.is(r.strategy, 'remote-forward');
  t.is(r.trainers, 2);
  t.is(r.samples, 1024);
  t.true(r.samplesPerSecond > 0);
  t.true(r.testAccuracy >= 0 && r.testAccuracy <= 1);
  t.is(r.testSamples, 256);
  t.true(Array.isArray(r.curve) && r.curve.length >= 2, 'the first trainer\'s curve is in the job result');
  t.is(r.curve.at(-1).samples, 1024);
  // 2 trainers x 8 steps x (64x784 inputs out, 64x10 outputs back and their gradients out) x 4 bytes
  t.is(r.bytesSent, 2 * 8 * (64 * 784 + 2 * 64 * 10) * 4);
});

test('psrun with remote-forward over 2 servers fails with one line saying to use 1 server', async (t) => {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await psrun(['node', 'psrun', '--servers', '2', '--trainers', '2', '--strategy', 'remote-forward', ...SMALL],
    { stdout, stderr, handleSignals: false });
  t.not(code, 0);
  t.regex(stdout.text + stderr.text, /remote-forward.*--servers 1|one server/);
});


test('ps-server and trainer processes with --strategy remote-forward: the first trainer evaluates, the others report', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-rf-'));
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const master = `127.0.0.1:${await freePort()}`;
  const common = ['--strategy', 'remote-forward', '--servers', '1', '--world-size', '3', '--master', master, ...SMALL];
  const start = (entry: string, args: string[]) => new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', join('src', 'cli', `${entry}-main.ts`), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(c);
    let out = '';
    c.stdout!.on('data', (d) => { out += d; });
    c.stderr!.on('data', (d) => { out += d; });
    c.on('close', (code) => resolve({ code, out }));
  });
  const done = await Promise.all([
    start('ps-server', [...common, '--rank', '0']),
    start('trainer', [...common, '--rank', '1', '--json', join(dir, 't1.json')]),
    start('trainer', [...common, '--rank', '2', '--json', join(dir, 't2.json')]),
  ]);
  for (const d of done) t.is(d.code, 0, d.out);
  t.regex(done[0]!.out, /ps-server ps0: steps=16 /);
  const first = JSON.parse(readFileSync(join(dir, 't1.json'), 'utf8'));
  const second = JSON.parse(readFileSync(join(dir, 't2.json'), 'utf8'));
  t.is(first.trainers, 2);
  t.is(first.samples, 1024);
  t.true(first.testAccuracy >= 0 && first.testAccuracy <= 1);
  t.is(second.trainers, 1);
  t.is(second.samples, 512);
  t.is(second.testAccuracy, null);
});
