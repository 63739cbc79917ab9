// A topology psrun has no flag for, built with the public API in one process:
//   ps0       a parameter server only, holding 70% of the parameters
//   ps1       a trainer that is also a parameter server: it holds the other 30% and trains
//   trainer2  a trainer only
// Both servers get the same unequal placement; the trainers learn it from them (`ps.placement`)
// when they join, so every push and pull goes to the right server. Sync consistency: the result
// is exactly that of equal shards (see test/server/placement.test.ts).
//
//   node --import tsx examples/custom-topology.ts
//
// The three agents could as well be three processes on three machines: each would run its own
// part of the code below with its own rank and the rendezvous address of rank 0.
import { Agent, evaluate, loadDataset, ParameterServer, parsePlacement, resolveOptions, trainCentralized } from '../src/index.js';

const servers = ['ps0', 'ps1'];
const trainers = ['ps1', 'trainer2'];
const placement = parsePlacement({ ps0: 0.7, ps1: 0.3 }, servers);
const opts = resolveOptions({ strategy: 'centralized', hidden: 64, batchSize: 32, lr: 0.05, momentum: 0.9, epochs: 1, seed: 3, progress: 'none' });

// 2 trainers x 200 steps x 32 samples
const { train, test } = await loadDataset('synthetic', { seed: 3, trainSamples: 2 * 200 * 32 });

// Rank 0 hosts the rendezvous; port 0 picks a free port, which the others then use.
const ps0 = await Agent.start({ name: 'ps0', rank: 0, worldSize: 3, master: '127.0.0.1:0' });
const ps1 = await Agent.start({ name: 'ps1', rank: 1, worldSize: 3, master: ps0.address });
const trainer2 = await Agent.start({ name: 'trainer2', rank: 2, worldSize: 3, master: ps0.address });

// Servers register their functions before the rendezvous, so no trainer's call can miss them.
const shardServers = [ps0, ps1].map((agent, shard) => new ParameterServer({
  name: agent.name, shard, shards: servers.length, trainers: trainers.length, placement,
  consistency: 'sync', optimizer: { kind: 'sgd', lr: opts.lr, momentum: opts.momentum },
}).register(agent));
await Promise.all([ps0, ps1, trainer2].map((a) => a.rendezvous()));

const t0 = performance.now();
const runs = await Promise.all([ps1, trainer2].map((agent, rank) =>
  trainCentralized(opts, { agent, servers, rank, trainers: trainers.length, train })));
const seconds = (performance.now() - t0) / 1000;

for (const s of shardServers) console.log(`${s.name}: ${s.values.length} parameters (elements ${s.shard!.start}..${s.shard!.start + s.shard!.length}), ${s.version} steps`);
for (const r of runs) console.log(`${r.report.trainer}: ${r.report.steps} steps, last-epoch loss ${(r.report.lossSum / r.report.lossCount).toFixed(4)}`);
// sync: every trainer's last pull holds the final parameters
console.log(`test accuracy ${evaluate(runs[0]!.model, test).toFixed(4)} on ${test.length} samples; ` +
  `${Math.round(runs.reduce((n, r) => n + r.report.samples, 0) / seconds)} samples/s`);

await Promise.all(shardServers.map((s) => s.close()));
await Promise.all([trainer2, ps1, ps0].map((a) => a.shutdown({ graceful: true })));
