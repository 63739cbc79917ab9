// The centralized strategy against in-process servers: sync equals local training on the
// concatenated batches, whatever the number of servers; async and ssp train too.
import test from 'ava';
import { DataLoader, DistributedSampler, syntheticDataset, type Dataset } from '../../src/data/index.js';
import { trainCentralized } from '../../src/trainer/centralized.js';
import { resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
import { crossEntropy, flattenParameters, mlp, SGD, Tensor } from '../../src/tensor/index.js';
import { startPsWorld } from '../server/ps-world.js';

/** Today's MLP 784-H-H-10, written out: the mlp preset must build exactly this (same values). */
const buildModel = (o: TrainOptions, features: number, classes: number) => mlp([features, o.hidden, o.hidden, classes], { seed: o.seed });

const data: Dataset = syntheticDataset({ samples: 320, features: 12, classes: 3, seed: 5 });
const opts: TrainOptions = resolveOptions({ strategy: 'centralized', hidden: 8, batchSize: 16, lr: 0.1, momentum: 0.5, epochs: 2, seed: 7, progress: 'none' });

/** Local SGD on the concatenation of every trainer's batch of each step. */
function reference(o: TrainOptions, trainers: number): Float32Array {
  const model = buildModel(o, data.features, data.classes);
  const flat = flattenParameters(model);
  const opt = new SGD(model.parameters(), { lr: o.lr, momentum: o.momentum });
  const loaders = Array.from({ length: trainers }, (_, r) =>
    new DataLoader(data, { batchSize: o.batchSize, dropLast: true, sampler: new DistributedSampler(data.length, { numReplicas: trainers, rank: r, shuffle: true, seed: o.seed }) }));
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const its = loaders.map((l) => { l.setEpoch(epoch); return l[Symbol.iterator](); });
    for (;;) {
      const xs: number[] = [];
      const ys: number[] = [];
      let done = false;
      for (const it of its) {
        const n = it.next();
        if (n.done) { done = true; break; }
        xs.push(...n.value.x);
        ys.push(...n.value.y);
      }
      if (done) break;
      const loss = crossEntropy(model.forward(new Tensor(Float32Array.from(xs), [ys.length, data.features])), Int32Array.from(ys));
      opt.zeroGrad();
      loss.backward();
      opt.step();
    }
  }
  return flat.params.slice();
}

function close(t: { true(c: boolean, m?: string): void }, a: Float32Array, b: Float32Array, tol = 2e-5): void {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  t.true(a.length === b.length && worst <= tol, `max difference ${worst} over ${a.length} elements`);
}

async function runSync(servers: number, trainers: number, o = opts) {
  const w = await startPsWorld(servers, trainers, { consistency: 'sync', optimizer: { kind: 'sgd', lr: o.lr, momentum: o.momentum } });
  try {
    const names = w.serverAgents.map((a) => a.name);
    const runs = await Promise.all(w.trainerAgents.map((agent, rank) => trainCentralized(o, { agent, servers: names, rank, trainers, train: data })));
    const serverValues = new Float32Array(runs[0]!.client.params.length);
    for (const s of w.servers) serverValues.set(s.values, s.shard!.start);
    return { runs, serverValues, stats: w.servers.map((s) => s.stats()) };
  } finally {
    await w.stop();
  }
}

test('sync with 2 trainers gives the parameters of local SGD on the concatenated batches', async (t) => {
  const { runs, serverValues, stats } = await runSync(1, 2);
  const expected = reference(opts, 2);
  close(t, serverValues, expected);
  for (const r of runs) close(t, r.client.params, expected);
  const steps = opts.epochs * Math.floor(data.length / 2 / opts.batchSize);
  t.is(stats[0]!.version, steps);
  t.deepEqual(runs.map((r) => r.report.steps), [steps, steps]);
  t.is(runs[0]!.report.version, steps);
});

for (const servers of [2, 3]) {
  test(`sharding over ${servers} servers gives the same parameters as one server`, async (t) => {
    const { serverValues, stats } = await runSync(servers, 2);
    close(t, serverValues, reference(opts, 2));
    t.is(new Set(stats.map((s) => s.version)).size, 1, 'every server took the same number of steps');
  });
}

test('sync with 3 trainers matches local SGD on 3 concatenated batches', async (t) => {
  const { serverValues } = await runSync(2, 3);
  close(t, serverValues, reference(opts, 3));
});

for (const consistency of ['async', 'ssp'] as const) {
  test(`${consistency} training steps once per push and lowers the loss`, async (t) => {
    const o = { ...opts, epochs: 3, momentum: 0 };
    const w = await startPsWorld(2, 2, { consistency, staleness: 1, optimizer: { kind: 'sgd', lr: o.lr } });
    try {
      const names = w.serverAgents.map((a) => a.name);
      const runs = await Promise.all(w.trainerAgents.map((agent, rank) => trainCentralized(o, { agent, servers: names, rank, trainers: 2, train: data })));
      const pushes = runs.reduce((n, r) => n + r.report.steps, 0);
      for (const s of w.servers) t.is(s.stats().version, pushes, 'one step per push');
      if (consistency === 'ssp') for (const s of w.servers) t.true(s.stats().maxLead <= 1, `lead ${s.stats().maxLead}`);
      const first = runs[0]!.report;
      t.true(first.lossSum / first.lossCount < 0.9, `last-epoch loss ${first.lossSum / first.lossCount}`);
    } finally {
      await w.stop();
    }
  });
}
