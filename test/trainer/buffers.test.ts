// Buffers (BatchNorm2d's running statistics) travel with the strategies' parameters: whose the
// result keeps is part of each strategy's contract (docs/ARCHITECTURE.md, "Buffers").
import test from 'ava';
import { syntheticDataset } from '../../src/data/index.js';
import { trainHogwild } from '../../src/hogwild/index.js';
import { Agent, ManualClock } from '../../src/rpc/index.js';
import { RemoteModelHost } from '../../src/server/index.js';
import { loadModel } from '../../src/trainer/model.js';
import { resolveOptions } from '../../src/trainer/options.js';
import { evaluate, type Classifier } from '../../src/trainer/evaluate.js';
import { loadTrainingData } from '../../src/trainer/setup.js';
import { trainRemoteForward } from '../../src/trainer/remote-forward.js';
import type { Module } from '../../src/tensor/index.js';

const BN = new URL('./fixtures/batchnorm-model.ts', import.meta.url).pathname;
const quiet = { log: () => {} };

const stats = (m: Module) => new Map(m.namedBuffers().map(([n, t]) => [n, Array.from(t.toTypedArray())]));
const isDefault = (m: Module) => m.namedBuffers().every(([n, t]) => t.toTypedArray().every((v) => v === (n.endsWith('running_var') ? 1 : 0)));

test('hogwild: the threads update one shared set of running statistics, and the main thread evaluates with it', async (t) => {
  const run = await trainHogwild({ ...quiet, workers: 2, model: BN, dataset: 'fashion-mnist', trainSamples: 1024, testSamples: 200, batchSize: 64, progress: 'none' });
  t.false(isDefault(run.model), 'the workers\' forwards moved the main thread\'s statistics');
  const tracked = run.model.namedBuffers().find(([n]) => n.endsWith('num_batches_tracked'))![1].toTypedArray()[0]!;
  // each of the 2 workers trains 512 / 64 = 8 batches; racing increments may lose a few, never add
  t.true(tracked > 0 && tracked <= 16, `num_batches_tracked ${tracked}`);
  // the result's accuracy is the main thread's model evaluated with those shared statistics (not
  // with fresh ones): the same figure again from the returned model. (No accuracy bar: 16 racing
  // Hogwild steps land anywhere from 0.3 to 0.6 depending on how a loaded machine interleaves them.)
  const { test: split } = await loadTrainingData(resolveOptions({ dataset: 'fashion-mnist', testSamples: 200 }));
  t.is(evaluate(run.model as unknown as Classifier, split), run.result.testAccuracy);
  t.true(run.result.testAccuracy > 0.15, `accuracy ${run.result.testAccuracy} is above chance (0.1): the workers trained it`);
});

test('remote-forward: the hosted model keeps the statistics of every forward, and the trainer copies them before it evaluates', async (t) => {
  // 12 features seen as 1 x 3 x 4 images
  const data = { ...syntheticDataset({ samples: 256, features: 12, classes: 3, seed: 5 }), shape: [1, 3, 4] };
  const opts = resolveOptions({ strategy: 'remote-forward', model: BN, batchSize: 16, lr: 0.1, epochs: 1, seed: 7, progress: 'none' });
  const place = { rank: 0, role: 'server', workers: 1 } as const;
  const { model } = await loadModel(opts, data, place);
  const master = await Agent.start({ name: 'ps0', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: 20_000 });
  const trainer = await Agent.start({ name: 'trainer0', rank: 1, worldSize: 2, master: master.address, timeoutMs: 20_000 });
  try {
    const host = new RemoteModelHost({ name: 'ps0', model, trainers: 1, clock: new ManualClock() }).register(master);
    await Promise.all([master.rendezvous(), trainer.rendezvous()]);
    const run = await trainRemoteForward(opts, { agent: trainer, server: 'ps0', rank: 0, trainers: 1, train: data, leave: false });
    t.false(isDefault(model), 'the forwards ran on the host and moved its statistics');
    const twin = await run.fetchModel();
    t.deepEqual(stats(twin), stats(model));
    await run.leave();
    await host.done;
  } finally {
    await Promise.all([master, trainer].map((a) => a.shutdown({ graceful: false })));
  }
});
