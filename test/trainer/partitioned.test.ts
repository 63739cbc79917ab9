// The partitioned strategy: N workers, each the server of 1/N of the parameters, train exactly as
// sync centralized training does (and so as local SGD on the concatenated batches).
import test from 'ava';
import { Agent } from '../../src/rpc/index.js';
import { syntheticDataset } from '../../src/data/index.js';
import { trainCentralized } from '../../src/trainer/centralized.js';
import { resolveOptions } from '../../src/trainer/options.js';
import { partitionServer, trainPartitioned } from '../../src/trainer/partitioned.js';
import { optimizerSpec } from '../../src/trainer/setup.js';
import { startPsWorld } from '../server/ps-world.js';

const data = syntheticDataset({ samples: 300, features: 10, classes: 3, seed: 11 });

async function partitioned(n: number, optimizer: 'sgd' | 'adam') {
  const opts = resolveOptions({ strategy: 'partitioned', hidden: 6, batchSize: 10, lr: optimizer === 'adam' ? 0.01 : 0.1, momentum: optimizer === 'sgd' ? 0.9 : 0, optimizer, epochs: 2, seed: 3, progress: 'none' });
  const names = Array.from({ length: n }, (_, i) => `trainer${i}`);
  const master = await Agent.start({ name: names[0]!, rank: 0, worldSize: n, master: '127.0.0.1:0', timeoutMs: 20_000 });
  const agents = [master];
  for (let r = 1; r < n; r++) agents.push(await Agent.start({ name: names[r]!, rank: r, worldSize: n, master: master.address, timeoutMs: 20_000 }));
  const servers = agents.map((a, r) => partitionServer(a, opts, r, n));
  try {
    await Promise.all(agents.map((a) => a.rendezvous()));
    const runs = await Promise.all(agents.map((agent, rank) => trainPartitioned(opts, { agent, rank, trainers: n, train: data, workerNames: names })));
    return { opts, runs, servers };
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    await Promise.all(agents.map((a) => a.shutdown({ graceful: false })));
  }
}

async function centralizedSync(n: number, opts: ReturnType<typeof resolveOptions>) {
  const w = await startPsWorld(1, n, { consistency: 'sync', optimizer: optimizerSpec(opts) });
  try {
    const runs = await Promise.all(w.trainerAgents.map((agent, rank) => trainCentralized(opts, { agent, servers: ['ps0'], rank, trainers: n, train: data })));
    return runs[0]!.client.params.slice();
  } finally {
    await w.stop();
  }
}

for (const [n, optimizer] of [[2, 'sgd'], [3, 'sgd'], [3, 'adam']] as const) {
  test(`${n} partitioned workers (${optimizer}) match sync centralized training`, async (t) => {
    const { opts, runs, servers } = await partitioned(n, optimizer);
    const expected = await centralizedSync(n, opts);
    let worst = 0;
    for (const r of runs) for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(r.client.params[i]! - expected[i]!));
    t.true(worst <= 2e-5, `max difference ${worst}`);
    const steps = runs[0]!.report.steps;
    t.true(steps > 0);
    for (const s of servers) t.is(s.stats().version, steps, `${s.name} stepped its shard once per step`);
    // each worker holds (about) 1/n of the parameters and their optimizer state
    const sizes = servers.map((s) => s.values.length);
    t.true(Math.max(...sizes) - Math.min(...sizes) <= 1, `shard sizes ${sizes.join(', ')}`);
    t.is(sizes.reduce((a, b) => a + b, 0), expected.length);
  });
}
