// Custom shard placement: fractions and parameter-name lists move the shard boundaries; servers and
// trainers compute the same plan; sync training gives the same parameters whatever the placement;
// bad placements are refused with a line naming the problem.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticDataset, type Dataset } from '../../src/data/index.js';
import { main as psrun } from '../../src/cli/psrun.js';
import { parsePlacement, planShards, placementFromEnv, type Placement } from '../../src/server/index.js';
import { trainCentralized } from '../../src/trainer/centralized.js';
import { resolveOptions } from '../../src/trainer/options.js';
import { Capture } from '../launch/fixture.js';
import { startPsWorld } from './ps-world.js';

const specs = [
  { name: 'fc1.weight', size: 60 },
  { name: 'fc1.bias', size: 6 },
  { name: 'fc2.weight', size: 30 },
  { name: 'fc2.bias', size: 4 },
];

test('fractions move the cut points: 0.75 / 0.25 of 100 elements', (t) => {
  const shards = planShards(specs, 2, { fractions: [0.75, 0.25] });
  t.deepEqual(shards.map((s) => [s.start, s.length]), [[0, 75], [75, 25]]);
  t.deepEqual(shards[1]!.slices, [{ name: 'fc2.weight', offset: 9, length: 21 }, { name: 'fc2.bias', offset: 0, length: 4 }]);
});

test('name lists place whole parameters, servers in order', (t) => {
  const p = parsePlacement({ ps1: ['fc2.weight', 'fc2.bias'], ps0: ['fc1.weight', 'fc1.bias'] }, ['ps0', 'ps1']);
  const shards = planShards(specs, 2, p);
  t.deepEqual(shards.map((s) => [s.start, s.length]), [[0, 66], [66, 34]]);
  t.deepEqual(shards[0]!.slices.map((x) => x.name), ['fc1.weight', 'fc1.bias']);
});

test('no placement and equal fractions give the same plan', (t) => {
  t.deepEqual(planShards(specs, 4, { fractions: [0.25, 0.25, 0.25, 0.25] }), planShards(specs, 4));
});

const bad: Array<[string, unknown, string[], RegExp]> = [
  ['fractions not summing to 1', { ps0: 0.5, ps1: 0.25 }, ['ps0', 'ps1'], /fractions sum to 0\.75; they must sum to 1/],
  ['an unknown server name', { ps0: 0.5, psX: 0.5 }, ['ps0', 'ps1'], /'psX' is not a server \(servers: ps0, ps1\)/],
  ['a server without a placement', { ps0: 1 }, ['ps0', 'ps1'], /no placement for server 'ps1'/],
  ['a fraction of 0', { ps0: 1, ps1: 0 }, ['ps0', 'ps1'], /ps1 has fraction 0; expected a number in \(0, 1\]/],
  ['a mix of fractions and names', { ps0: 0.5, ps1: ['fc1.bias'] }, ['ps0', 'ps1'], /not a mix/],
  ['a parameter on two servers', { ps0: ['fc1.weight'], ps1: ['fc1.weight'] }, ['ps0', 'ps1'], /'fc1.weight' is placed on both 'ps0' and 'ps1'/],
  ['an empty list', { ps0: [], ps1: ['fc1.weight'] }, ['ps0', 'ps1'], /ps0 lists no parameter/],
  ['not an object', [0.5, 0.5], ['ps0', 'ps1'], /expected an object/],
];
for (const [what, raw, servers, message] of bad) {
  test(`refuses ${what}`, (t) => {
    t.throws(() => parsePlacement(raw, servers), { message });
  });
}

const badPlans: Array<[string, Placement, RegExp]> = [
  ['a parameter on no server', { names: [['fc1.weight', 'fc1.bias'], ['fc2.weight']] }, /parameter 'fc2.bias' is on no server/],
  ['an unknown parameter name', { names: [['fc1.weight', 'fc1.bias'], ['fc2.weight', 'fc2.bias', 'fc3.weight']] }, /'fc3.weight', which is not a parameter of the model/],
  ['names that are not consecutive parameters', { names: [['fc1.weight', 'fc2.weight'], ['fc1.bias', 'fc2.bias']] }, /must be consecutive parameters/],
];
for (const [what, placement, message] of badPlans) {
  test(`the plan refuses ${what}`, (t) => {
    t.throws(() => planShards(specs, 2, placement), { message });
  });
}

test('PSRPC_SHARDS: read as JSON, refused with the variable named', (t) => {
  t.deepEqual(placementFromEnv(['ps0', 'ps1'], { PSRPC_SHARDS: '{"ps0":0.8,"ps1":0.2}' }), { fractions: [0.8, 0.2] });
  t.is(placementFromEnv(['ps0'], {}), undefined);
  t.throws(() => placementFromEnv(['ps0'], { PSRPC_SHARDS: '{ps0' }), { message: /PSRPC_SHARDS: .*is not JSON/ });
  t.throws(() => placementFromEnv(['ps0', 'ps1'], { PSRPC_SHARDS: '{"ps0":0.8,"ps1":0.3}' }), { message: /PSRPC_SHARDS: .*sum to 1/ });
});

const data: Dataset = syntheticDataset({ samples: 256, features: 12, classes: 3, seed: 5 });
const opts = resolveOptions({ strategy: 'centralized', hidden: 8, batchSize: 16, lr: 0.1, momentum: 0.5, epochs: 1, seed: 7, progress: 'none' });

async function syncRun(placement?: Placement) {
  const w = await startPsWorld(2, 2, { consistency: 'sync', optimizer: { kind: 'sgd', lr: opts.lr, momentum: opts.momentum }, ...(placement ? { placement } : {}) });
  try {
    const names = w.serverAgents.map((a) => a.name);
    const runs = await Promise.all(w.trainerAgents.map((agent, rank) => trainCentralized(opts, { agent, servers: names, rank, trainers: 2, train: data })));
    const values = new Float32Array(runs[0]!.client.params.length);
    for (const s of w.servers) values.set(s.values, s.shard!.start);
    return { values, lengths: w.servers.map((s) => s.values.length), clientShards: runs[0]!.client.shards.map((s) => s.length) };
  } finally {
    await w.stop();
  }
}

test('sync training with an unequal placement gives exactly the parameters of the equal one', async (t) => {
  const equal = await syncRun();
  const fractions = await syncRun({ fractions: [0.9, 0.1] });
  // MLP 12-8-8-10 parameters in order: 0.weight, 0.bias, 2.weight, ... (flattenParameters order)
  t.true(fractions.lengths[0]! > 8 * fractions.lengths[1]!, `shards ${fractions.lengths.join('/')}`);
  t.deepEqual(fractions.clientShards, fractions.lengths, 'the trainers use the servers\' plan');
  t.deepEqual(fractions.values, equal.values);
});

test('servers that report different placements are refused at join', async (t) => {
  const w = await startPsWorld(2, 1, { consistency: 'sync', optimizer: { kind: 'sgd', lr: 0.1 }, placement: { fractions: [0.5, 0.5] } });
  try {
    // a second world's server with another placement cannot be mixed in; emulate by asking with a mismatched server list
    const [a] = w.trainerAgents;
    w.serverAgents[1]!.unregister('ps.placement');
    w.serverAgents[1]!.register('ps.placement', () => ({ fractions: [0.7, 0.3] }));
    await t.throwsAsync(trainCentralized(opts, { agent: a!, servers: w.serverAgents.map((s) => s.name), rank: 0, trainers: 1, train: data }),
      { message: /servers "ps0" and "ps1" report different placements/ });
  } finally {
    await w.stop();
  }
});

const SMALL = ['--dataset', 'synthetic', '--train-samples', '1024', '--test-samples', '256', '--batch-size', '64', '--hidden', '16', '--progress', 'none', '--kill-grace', '2'];

async function job(extra: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-placement-'));
  try {
    const json = join(dir, 'r.json');
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await psrun(['node', 'psrun', '--servers', '2', '--trainers', '2', ...SMALL, ...extra, '--json', json], { stdout, stderr, handleSignals: false });
    return { code, out: stdout.text + stderr.text, result: code === 0 ? JSON.parse(readFileSync(json, 'utf8')) : undefined };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('psrun --shards: ps-server and trainers honour PSRPC_SHARDS, with the same result as equal shards', async (t) => {
  const [equal, unequal] = [await job([]), await job(['--shards', 'ps0=0.8,ps1=0.2'])];
  t.is(equal.code, 0, equal.out);
  t.is(unequal.code, 0, unequal.out);
  t.is(unequal.result.finalLoss, equal.result.finalLoss);
  t.is(unequal.result.testAccuracy, equal.result.testAccuracy);
});

test('psrun with a topology whose shards name an unknown parameter fails, naming it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-placement-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'topology.json');
  writeFileSync(file, JSON.stringify({ strategy: 'centralized', servers: 2, trainers: 1, shards: { ps0: ['nope'], ps1: ['0.weight'] } }));
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await psrun(['node', 'psrun', '--topology', file, ...SMALL], { stdout, stderr, handleSignals: false });
  t.not(code, 0);
  t.regex(stdout.text + stderr.text, /'nope', which is not a parameter of the model/);
});
