// A user's model file (fixtures/custom-model.ts: 784-H-10 with its own loss) through every
// strategy's API, through the commands (trainer, psrun; --model and --model-options reach every
// process, servers included), sync centralized training of it against local SGD written out, bad
// model input refused with one line, and processes whose models differ refused at join.
//
// The fixture's loss counts its calls in globalThis.customLossCalls: the tests that read the
// counter are serial, so no other test of this file calls the loss meanwhile.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main as psrun } from '../../src/cli/psrun.js';
import type { SpawnFn } from '../../src/launch/launcher.js';
import { DataLoader, DistributedSampler, syntheticDataset, type Dataset } from '../../src/data/index.js';
import { trainHogwild } from '../../src/hogwild/index.js';
import { Agent, RpcError } from '../../src/rpc/index.js';
import { RemoteModelHost } from '../../src/server/index.js';
import { crossEntropy, flattenParameters, Module, SGD, Tensor } from '../../src/tensor/index.js';
import { trainCentralized } from '../../src/trainer/centralized.js';
import { trainLocal } from '../../src/trainer/local.js';
import { loadModel, modelContext } from '../../src/trainer/model.js';
import { resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
import { partitionServer, trainPartitioned } from '../../src/trainer/partitioned.js';
import { trainRemoteForward } from '../../src/trainer/remote-forward.js';
import { Capture } from '../launch/fixture.js';
import { startPsWorld } from '../server/ps-world.js';
import { createModel as customModel, loss as customLoss } from './fixtures/custom-model.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const CUSTOM = fixture('custom-model.ts');
/** The fixture as a command line names it: relative to the working directory (ava's: the project root). */
const CUSTOM_REL = 'test/trainer/fixtures/custom-model.ts';
const CUSTOM_SHAPES = [[100, 784], [100], [10, 100], [10]];
const params = (hidden: number) => 784 * hidden + hidden + hidden * 10 + 10;

const data: Dataset = syntheticDataset({ samples: 1024, features: 784, classes: 10, seed: 5 });
const base = { model: CUSTOM, batchSize: 64, lr: 0.5, epochs: 1, seed: 7, progress: 'none' as const };
const quiet = { log: () => {} };
const counter = globalThis as { customLossCalls?: number };
/** Steps of one epoch of each of `trainers` trainers on `data` (batch 64, the short last batch dropped). */
const stepsEach = (trainers: number) => Math.floor(data.length / trainers / 64);

/** Mean cross-entropy of `model` over `data` (not the custom loss: reading it must not count a call). */
function meanLoss(model: Module & { forward(x: Tensor): Tensor }): number {
  return crossEntropy(model.forward(new Tensor(data.x, [data.length, data.features])), data.y).item();
}

/** The fixture's model as every strategy's first instance builds it (rank 0's, the seed's values). */
function initial(o: TrainOptions): Float32Array {
  const m = customModel(modelContext(o, data, { rank: 0, role: 'trainer', workers: 2 }));
  return flattenParameters(m).params.slice();
}

function maxDifference(a: Float32Array, b: Float32Array): number {
  let worst = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** 1 server and 2 trainers in this process. */
async function centralizedWorld() {
  return startPsWorld(1, 2, { consistency: 'sync', optimizer: { kind: 'sgd', lr: base.lr } });
}

/** A remote-forward world in this process: ps0 hosts `model`, trainer0.. train it. */
async function remoteForwardWorld(trainers: number, model: Module & { forward(x: Tensor): Tensor }) {
  const names = ['ps0', ...Array.from({ length: trainers }, (_, i) => `trainer${i}`)];
  const master = await Agent.start({ name: 'ps0', rank: 0, worldSize: trainers + 1, master: '127.0.0.1:0', timeoutMs: 20_000 });
  const agents = [master];
  try {
    for (let r = 1; r <= trainers; r++) agents.push(await Agent.start({ name: names[r]!, rank: r, worldSize: trainers + 1, master: master.address, timeoutMs: 20_000 }));
    const host = new RemoteModelHost({ name: 'ps0', model, trainers }).register(master);
    await Promise.all(agents.map((a) => a.rendezvous()));
    return { host, trainerAgents: agents.slice(1), stop: () => Promise.all(agents.map((a) => a.shutdown({ graceful: false }))) };
  } catch (e) {
    await Promise.all(agents.map((a) => a.shutdown({ graceful: false })));
    throw e;
  }
}

// ---- 1. every strategy's API trains the custom model with its loss ----

test.serial('trainLocal trains the custom model with its loss: 1 check + 1 call per step', async (t) => {
  counter.customLossCalls = 0;
  const r = await trainLocal({ ...base, dataset: 'synthetic', trainSamples: 1024, testSamples: 256 }, quiet);
  t.is(counter.customLossCalls, 1 + stepsEach(1));
  t.is(r.model, CUSTOM);
  t.is(r.parameters, params(100));
  t.is(r.samples, stepsEach(1) * 64);
  t.true(r.testAccuracy > 0.25, `accuracy ${r.testAccuracy} (10 classes: chance is 0.1)`);
});

test.serial('trainCentralized (1 server, 2 trainers) trains the custom model with its loss', async (t) => {
  const o = resolveOptions({ ...base, strategy: 'centralized' });
  const w = await centralizedWorld();
  t.teardown(() => w.stop());
  counter.customLossCalls = 0;
  const runs = await Promise.all(w.trainerAgents.map((agent, rank) => trainCentralized(o, { agent, servers: ['ps0'], rank, trainers: 2, train: data })));
  t.is(counter.customLossCalls, 2 * (1 + stepsEach(2)), 'each trainer: 1 check + 1 call per step');
  for (const r of runs) {
    t.deepEqual(r.model.parameters().map((p) => p.shape), CUSTOM_SHAPES);
    t.is(r.resolved.name, CUSTOM);
    t.is(r.report.steps, stepsEach(2));
  }
  t.is(w.servers[0]!.stats().version, stepsEach(2));
  t.true(maxDifference(w.servers[0]!.values, initial(o)) > 1e-3, 'the server\'s parameters moved');
  const before = customModel(modelContext(o, data, { rank: 0, role: 'trainer', workers: 2 }));
  const [lossBefore, lossAfter] = [meanLoss(before), meanLoss(runs[0]!.model)];
  t.true(lossAfter < lossBefore * 0.9, `loss ${lossBefore.toFixed(4)} -> ${lossAfter.toFixed(4)}`);
});

test.serial('trainPartitioned (2 workers) trains the custom model with its loss', async (t) => {
  const o = resolveOptions({ ...base, strategy: 'partitioned' });
  const names = ['trainer0', 'trainer1'];
  const master = await Agent.start({ name: names[0]!, rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: 20_000 });
  const agents = [master];
  t.teardown(() => Promise.all(agents.map((a) => a.shutdown({ graceful: false }))));
  agents.push(await Agent.start({ name: names[1]!, rank: 1, worldSize: 2, master: master.address, timeoutMs: 20_000 }));
  const servers = agents.map((a, r) => partitionServer(a, o, r, 2));
  t.teardown(() => Promise.all(servers.map((s) => s.close())));
  await Promise.all(agents.map((a) => a.rendezvous()));
  counter.customLossCalls = 0;
  const runs = await Promise.all(agents.map((agent, rank) => trainPartitioned(o, { agent, rank, trainers: 2, train: data, workerNames: names })));
  t.is(counter.customLossCalls, 2 * (1 + stepsEach(2)));
  for (const r of runs) t.deepEqual(r.model.parameters().map((p) => p.shape), CUSTOM_SHAPES);
  t.deepEqual(servers.map((s) => s.stats().version), [stepsEach(2), stepsEach(2)]);
  t.is(servers[0]!.values.length + servers[1]!.values.length, params(100), 'each worker holds its half of the custom model');
  t.true(maxDifference(runs[0]!.client.params, initial(o)) > 1e-3, 'the parameters moved');
  t.deepEqual(runs[0]!.client.params, runs[1]!.client.params, 'both workers end with the same parameters');
});

test.serial('trainRemoteForward trains the custom model hosted by the server (built with loadModel) with its loss', async (t) => {
  const o = resolveOptions({ ...base, strategy: 'remote-forward' });
  counter.customLossCalls = 0;
  const { model, resolved } = await loadModel(o, data, { rank: 0, role: 'server', workers: 2 });
  t.is(resolved.name, CUSTOM);
  t.deepEqual(model.parameters().map((p) => p.shape), CUSTOM_SHAPES);
  const hosted = model as Module & { forward(x: Tensor): Tensor };
  const before = meanLoss(hosted);
  const start = flattenParameters(customModel(modelContext(o, data, { rank: 0, role: 'server', workers: 2 }))).params;
  const w = await remoteForwardWorld(2, hosted);
  t.teardown(() => w.stop());
  const runs = await Promise.all(w.trainerAgents.map((agent, rank) => trainRemoteForward(o, { agent, server: 'ps0', rank, trainers: 2, train: data })));
  // the host's check, each trainer's twin's check, and each trainer's steps (the loss is computed on the trainers)
  t.is(counter.customLossCalls, 1 + 2 + 2 * stepsEach(2));
  t.deepEqual(runs.map((r) => r.parameters), [params(100), params(100)]);
  t.is(w.host.stats().forwards, 2 * stepsEach(2));
  await w.host.done;
  t.true(maxDifference(flattenParameters(hosted).params, start) > 1e-3, 'the hosted parameters moved');
  const after = meanLoss(hosted);
  t.true(after < before * 0.9, `loss ${before.toFixed(4)} -> ${after.toFixed(4)}`);
});

test.serial('hogwild.train (2 worker threads) trains the custom model from its path, with its loss in every thread', async (t) => {
  // The workers run the loss in their own threads, where globalThis.customLossCalls is not this
  // one's: the counted variant of the fixture (same model, same loss) counts in shared memory.
  const lossCalls = new SharedArrayBuffer(4);
  counter.customLossCalls = 0;
  const run = await trainHogwild({
    ...base, log: () => {}, model: fixture('counted-custom-model.ts'), modelOptions: { lossCalls }, workers: 2,
    dataset: 'synthetic', trainSamples: 1024, testSamples: 256,
  });
  // the main thread's check, then each worker's check and its steps
  t.is(Atomics.load(new Int32Array(lossCalls), 0), 1 + 2 * (1 + stepsEach(2)));
  t.is(counter.customLossCalls, 1, 'this thread only checked the model; the training loss ran in the workers');
  t.deepEqual(run.model.parameters().map((p) => p.shape), CUSTOM_SHAPES);
  t.is(run.result.model, fixture('counted-custom-model.ts'));
  t.is(run.result.parameters, params(100));
  t.is(run.result.samples, 2 * stepsEach(2) * 64);
  const o = resolveOptions({ ...base, modelOptions: {} });
  t.true(maxDifference(run.params, flattenParameters(customModel(modelContext(o, data, { rank: null, role: 'worker', workers: 2 }))).params) > 1e-3, 'the shared parameters moved');
  t.true(run.result.testAccuracy > 0.25, `accuracy ${run.result.testAccuracy}`);
});

// ---- 3. sync centralized with the custom model is local SGD on the concatenated batches ----

test.serial('sync centralized with the custom model and its loss equals local SGD on the concatenated batches', async (t) => {
  const small = syntheticDataset({ samples: 512, features: 784, classes: 10, seed: 9 });
  const o = resolveOptions({ ...base, strategy: 'centralized', modelOptions: { hidden: 16 }, batchSize: 32, lr: 0.1, momentum: 0.5, epochs: 2 });
  const w = await startPsWorld(1, 2, { consistency: 'sync', optimizer: { kind: 'sgd', lr: o.lr, momentum: o.momentum } });
  t.teardown(() => w.stop());
  const runs = await Promise.all(w.trainerAgents.map((agent, rank) => trainCentralized(o, { agent, servers: ['ps0'], rank, trainers: 2, train: small })));

  // The reference: the fixture's createModel and loss, one SGD step per pair of batches (trainer 0's then trainer 1's).
  const model = customModel(modelContext(o, small, { rank: 0, role: 'trainer', workers: 2 }));
  const flat = flattenParameters(model);
  const sgd = new SGD(model.parameters(), { lr: o.lr, momentum: o.momentum });
  const loaders = [0, 1].map((rank) => new DataLoader(small, {
    batchSize: o.batchSize, dropLast: true, sampler: new DistributedSampler(small.length, { numReplicas: 2, rank, shuffle: true, seed: o.seed }),
  }));
  let steps = 0;
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const its = loaders.map((l) => { l.setEpoch(epoch); return l[Symbol.iterator](); });
    for (;;) {
      const batches = its.map((it) => it.next());
      if (batches.some((b) => b.done)) break;
      const xs = batches.flatMap((b) => [...b.value!.x]);
      const ys = batches.flatMap((b) => [...b.value!.y]);
      const loss = customLoss(model.forward(new Tensor(Float32Array.from(xs), [ys.length, small.features])), Int32Array.from(ys));
      sgd.zeroGrad();
      loss.backward();
      sgd.step();
      steps++;
    }
  }
  t.is(steps, o.epochs * Math.floor(small.length / 2 / o.batchSize));
  t.is(w.servers[0]!.stats().version, steps);
  const expected = flat.params;
  t.deepEqual(runs[0]!.model.parameters().map((p) => p.shape), [[16, 784], [16], [10, 16], [10]]);
  for (const got of [w.servers[0]!.values, runs[0]!.client.params, runs[1]!.client.params]) {
    const worst = maxDifference(got, expected);
    t.true(worst <= 2e-5, `max difference ${worst} over ${expected.length} elements`);
  }
  t.true(maxDifference(expected, initial(o)) > 1e-3, 'training moved the parameters (the comparison is not of two initial models)');
});

// ---- 5. processes whose models differ are refused at join, naming the first differing parameter ----

test('centralized: a second trainer built with other model options is refused at join, naming both trainers and the parameter', async (t) => {
  const w = await centralizedWorld();
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= w.stop());
  t.teardown(stop);
  const server = w.servers[0]!;
  // trainer0's join initialises the server before trainer1 joins: the join is hooked to say when
  // (its initialisation runs before the join's first await; trainer0's join then waits for trainer1)
  let initialised!: () => void;
  const firstJoin = new Promise<void>((r) => { initialised = r; });
  const join = server.join.bind(server);
  server.join = (...args: Parameters<typeof server.join>) => {
    const p = join(...args);
    initialised();
    return p;
  };
  const first = trainCentralized(resolveOptions({ ...base, modelOptions: { hidden: 100 } }), { agent: w.trainerAgents[0]!, servers: ['ps0'], rank: 0, trainers: 2, train: data });
  first.catch(() => {});
  await firstJoin;
  t.truthy(server.layout(), 'trainer0 initialised the server');
  const e = await t.throwsAsync(trainCentralized(resolveOptions({ ...base, modelOptions: { hidden: 50 } }), { agent: w.trainerAgents[1]!, servers: ['ps0'], rank: 1, trainers: 2, train: data }), { instanceOf: RpcError });
  t.is(e!.message, 'parameter server "ps0": layout differs from the one trainer "trainer0" initialised it with (trainer "trainer1" joined with another model): '
    + "parameter 0 is '0.weight' [50, 784] instead of '0.weight' [100, 784]");
  // trainer0 still waits for a second trainer; stopping the world ends its wait (server closed or agent shut down, whichever comes first)
  await stop();
  await t.throwsAsync(first, { message: /closed|shut down/ });
});

test('remote-forward: a trainer whose model differs from the hosted one is refused at join with the host\'s line', async (t) => {
  const o = resolveOptions({ ...base, strategy: 'remote-forward', hidden: 16 });
  const { model } = await loadModel({ ...o, model: 'mlp' }, data, { rank: 0, role: 'server', workers: 1 });
  const w = await remoteForwardWorld(1, model as Module & { forward(x: Tensor): Tensor });
  t.teardown(() => w.stop());
  const e = await t.throwsAsync(trainRemoteForward(o, { agent: w.trainerAgents[0]!, server: 'ps0', rank: 0, trainers: 1, train: data }), { instanceOf: RpcError });
  t.is(e!.message, 'remote-forward host "ps0": the model of trainer "trainer0" differs from the one it hosts: '
    + "parameter 0 is '0.weight' [100, 784] instead of '0.weight' [16, 784]");
  t.is(w.host.stats().joined, 0, 'the trainer was not let in');
});

// ---- 2. through the commands ----

const SMALL = ['--dataset', 'synthetic', '--train-samples', '1024', '--test-samples', '256', '--batch-size', '64', '--hidden', '16', '--progress', 'none'];
const trainerMain = fileURLToPath(new URL('../../src/cli/trainer-main.ts', import.meta.url));

function trainer(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', trainerMain, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function psrunJob(args: string[]) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await psrun(['node', 'psrun', ...args, '--kill-grace', '2'], { stdout, stderr, handleSignals: false });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

function tempDir(t: { teardown(f: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-custom-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('psrun passes --model-options to every process as the JSON object it parsed', async (t) => {
  const r = await psrunJob(['--servers', '1', '--trainers', '2', '--strategy', 'remote-forward', '--model', CUSTOM_REL, '--model-options', '{"hidden": 50}', '--dry-run']);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.deepEqual(lines.map((l) => l.split(' ')[0]), ['ps0', 'trainer1', 'trainer2']);
  for (const l of lines) t.true(l.includes(` --model ${CUSTOM_REL} --model-options {"hidden":50}`), l);
});

for (const strategy of ['centralized', 'remote-forward'] as const) {
  test(`psrun --strategy ${strategy} hands --model and --model-options to every process and names the model in its result`, async (t) => {
    const json = join(tempDir(t), 'result.json');
    // remote-forward: the server builds the hosted model and each trainer its twin; a process
    // that missed either flag would build another model and be refused at rf.join
    const r = await psrunJob(['--servers', '1', '--trainers', '2', '--strategy', strategy, ...SMALL,
      '--model', CUSTOM_REL, '--model-options', '{"hidden": 50}', '--json', json]);
    t.is(r.code, 0, r.stdout + r.stderr);
    const result = JSON.parse(readFileSync(json, 'utf8'));
    t.is(result.strategy, strategy);
    t.is(result.model, CUSTOM_REL);
    t.is(result.parameters, params(50));
    t.is(result.trainers, 2);
    t.is(result.samples, 1024);
  });
}

test('trainer --strategy local --model <file> --model-options writes the model and its parameter count', (t) => {
  const json = join(tempDir(t), 'result.json');
  const r = trainer(['--strategy', 'local', ...SMALL, '--model', CUSTOM_REL, '--model-options', '{"hidden": 50}', '--json', json]);
  t.is(r.code, 0, r.stderr);
  const result = JSON.parse(readFileSync(json, 'utf8'));
  t.is(result.strategy, 'local');
  t.is(result.model, CUSTOM_REL);
  t.is(result.parameters, params(50));
  t.is(result.trainers, 1);
});

// ---- 4. bad model input through the commands: one line, exit 1, before anything trains ----

const BAD: Array<[string, string[], RegExp]> = [
  ['a model file that does not exist', ['--model', './no/such.js'], /^error: --model \.\/no\/such\.js: no such file \(.*\/no\/such\.js\)$/],
  ['--model-options that is not JSON', ['--model-options', '{bad'], /^error: option '--model-options <json>' argument '\{bad' is invalid\. --model-options must be a JSON object, got '\{bad' \(.*\)$/],
  ['--model-options that is not an object', ['--model-options', '[1]'], /^error: option '--model-options <json>' argument '\[1\]' is invalid\. --model-options must be a JSON object, got '\[1\]'$/],
  ['a negative --depth', ['--depth', '-1'], /^error: option '--depth <n>' argument '-1' is invalid\. --depth must be an integer in \[0, 1024\], got '-1'$/],
  ['a model whose output does not match the classes', ['--model', 'test/trainer/fixtures/wrong-output.ts'],
    /^error: --model test\/trainer\/fixtures\/wrong-output\.ts: the model's output for a batch of shape \[2, 784\] has shape \[2, 13\]; expected \[2, 10\] \(one logit per class of the dataset\)$/],
];

for (const [what, args, line] of BAD) {
  test(`trainer --strategy local refuses ${what} with one line and exit 1`, (t) => {
    const r = trainer(['--strategy', 'local', ...SMALL, ...args]);
    t.is(r.code, 1, r.stdout + r.stderr);
    t.is(r.stdout, '', 'no result line: nothing trained');
    t.regex(r.stderr.trimEnd(), line);
    t.is(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  });
}

// psrun refuses every one of them itself, with the same line, before it starts any process.
for (const [what, args, line] of BAD) {
  test(`psrun refuses ${what} with one line before starting any process`, async (t) => {
    const spawned: string[] = [];
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await psrun(['node', 'psrun', '--servers', '1', '--trainers', '2', '--strategy', 'centralized', ...SMALL, ...args], {
      stdout, stderr, handleSignals: false,
      spawn: ((cmd: string) => { spawned.push(cmd); throw new Error('nothing may start'); }) as unknown as SpawnFn,
    });
    t.is(code, 1, stdout.text + stderr.text);
    t.is(stdout.text, '');
    t.regex(stderr.text.trimEnd(), line);
    t.is(stderr.text.trimEnd().split('\n').length, 1, stderr.text);
    t.deepEqual(spawned, [], 'no process was started');
  });
}
