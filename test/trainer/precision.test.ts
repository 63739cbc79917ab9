// --precision for the parameter-server strategies: centralized and partitioned training in bf16 and
// fp16 train like fp32, with the real bytes (2 per element each way in 16 bits, the join's fp32
// initial values aside), and fp16 reports its loss-scaling skips.
import test from 'ava';
import { Agent } from '../../src/rpc/index.js';
import { syntheticDataset } from '../../src/data/index.js';
import { trainCentralized } from '../../src/trainer/centralized.js';
import { evaluate } from '../../src/trainer/evaluate.js';
import { resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
import { partitionServer, trainPartitioned } from '../../src/trainer/partitioned.js';
import { optimizerSpec } from '../../src/trainer/setup.js';
import { startPsWorld } from '../server/ps-world.js';

const data = syntheticDataset({ samples: 480, features: 12, classes: 3, seed: 5 });
const base = { hidden: 8, batchSize: 16, lr: 0.1, momentum: 0.5, epochs: 2, seed: 7, progress: 'none' } as const;

async function centralized(precision: TrainOptions['precision']) {
  const opts = resolveOptions({ ...base, strategy: 'centralized', precision });
  const w = await startPsWorld(1, 2, { consistency: 'sync', optimizer: optimizerSpec(opts) });
  try {
    const runs = await Promise.all(w.trainerAgents.map((agent, rank) => trainCentralized(opts, { agent, servers: ['ps0'], rank, trainers: 2, train: data })));
    return { runs, server: w.servers[0]!, master: w.servers[0]!.values.slice() };
  } finally {
    await w.stop();
  }
}

const lossOf = (r: { report: { lossSum: number; lossCount: number } }) => r.report.lossSum / r.report.lossCount;

test('centralized bf16: trains like fp32 with the real bytes: 2 per element each way a step', async (t) => {
  const fp32 = await centralized('fp32');
  const bf16 = await centralized('bf16');
  t.is(bf16.server.precision, 'bfloat16');
  t.is(fp32.server.precision, 'float32');
  const n = bf16.master.length;
  const steps = bf16.runs[0]!.report.steps;
  t.true(steps > 0);
  for (const run of [fp32, bf16]) {
    t.true(lossOf(run.runs[0]!) < 0.8 * Math.log(3), `final loss ${lossOf(run.runs[0]!)} well below chance's ln 3`);
    const acc = evaluate(run.runs[0]!.model, data);
    t.true(acc > 0.7, `accuracy ${acc} well above chance (1/3)`);
    t.true(run.master.every((v) => Number.isFinite(v)));
  }
  for (let r = 0; r < 2; r++) {
    // join: fp32 initial values out, the reply in the precision; then one push and one pull a step
    t.is(fp32.runs[r]!.report.bytesSent, n * 4 * 2 + steps * n * 4 * 2);
    t.is(bf16.runs[r]!.report.bytesSent, n * 4 + n * 2 + steps * n * 2 * 2);
    // the steps' bytes exactly halve
    t.is((bf16.runs[r]!.report.bytesSent - n * 6) * 2, fp32.runs[r]!.report.bytesSent - n * 8);
    t.is(bf16.runs[r]!.report.skippedSteps, undefined);
  }
  // the trainers' copies are the master narrowed: exactly representable in bf16
  const copy = bf16.runs[1]!.client.params;
  t.true(new Uint32Array(copy.buffer, copy.byteOffset, copy.length).every((u) => (u & 0xffff) === 0), 'low 16 bits zero');
});

test('centralized fp16 with dynamic loss scaling trains and reports its skipped steps', async (t) => {
  const fp16 = await centralized('fp16');
  t.is(fp16.server.precision, 'float16');
  for (const r of fp16.runs) {
    t.is(typeof r.report.skippedSteps, 'number');
    t.true(r.report.skippedSteps! < r.report.steps / 2, `${r.report.skippedSteps} of ${r.report.steps} steps skipped`);
  }
  t.true(fp16.master.every((v) => Number.isFinite(v)));
  const acc = evaluate(fp16.runs[0]!.model, data);
  t.true(acc > 0.7, `accuracy ${acc}`);
});

test('partitioned bf16: each worker\'s own shard stays local (not counted), same precision everywhere', async (t) => {
  const opts = resolveOptions({ ...base, strategy: 'partitioned', precision: 'bf16' });
  const names = ['trainer0', 'trainer1'];
  const master = await Agent.start({ name: names[0]!, rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: 20_000 });
  const agents = [master, await Agent.start({ name: names[1]!, rank: 1, worldSize: 2, master: master.address, timeoutMs: 20_000 })];
  const servers = agents.map((a, r) => partitionServer(a, opts, r, 2));
  try {
    await Promise.all(agents.map((a) => a.rendezvous()));
    const runs = await Promise.all(agents.map((agent, rank) => trainPartitioned(opts, { agent, rank, trainers: 2, train: data, workerNames: names })));
    t.deepEqual(servers.map((s) => s.precision), ['bfloat16', 'bfloat16']);
    const steps = runs[0]!.report.steps;
    for (let r = 0; r < 2; r++) {
      const other = servers[1 - r]!.values.length;
      t.is(runs[r]!.report.bytesSent, other * 6 + steps * other * 4);
    }
    t.true(evaluate(runs[0]!.model, data) > 0.7);
    // both workers end with the same (narrowed) parameters
    t.deepEqual([...runs[0]!.client.params], [...runs[1]!.client.params]);
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    await Promise.all(agents.map((a) => a.shutdown({ graceful: false })));
  }
});
