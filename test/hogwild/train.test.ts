// hogwild.train: shared memory between worker threads, equivalence with local training for one
// worker, accuracy with several, and failures that stop the run and leave no thread behind.
import test from 'ava';
import type { Worker } from 'node:worker_threads';
import { DataLoader, loadDataset, syntheticSplit, take } from '../../src/data/index.js';
import { HogwildOptionError, HogwildWorkerError, hogwild, trainHogwild } from '../../src/hogwild/index.js';
import { crossEntropy, mlp, SGD, Tensor } from '../../src/tensor/index.js';
import { trainLocal } from '../../src/trainer/local.js';
import { ModelError } from '../../src/trainer/errors.js';
import { mark, type ProbeModel } from './fixtures/probe-model.js';

const PROBE = new URL('./fixtures/probe-model.ts', import.meta.url);
const FAILING = new URL('./fixtures/failing-model.ts', import.meta.url);
const quiet = { progress: 'none' as const, log: () => {} };

/**
 * Counts the worker threads started from now on (process 'worker' events) and, when read, how many
 * of them have not exited yet (their 'exit' events: the OS thread is joined by then). Read right
 * after a run settles (only microtasks in between, so no exit event can slip in), `running` says
 * whether the run left a thread behind. The tests that use it are serial: every thread seen is the run's.
 */
function watchThreads(): { read(): { started: number; running: number } } {
  let started = 0;
  let exited = 0;
  const onWorker = (w: Worker) => {
    started++;
    w.once('exit', () => exited++);
  };
  process.on('worker', onWorker);
  return {
    read() {
      process.off('worker', onWorker);
      return { started, running: started - exited };
    },
  };
}

test.serial('workers share the parameter memory: each sees the writes of the others, and the main thread sees them all', async (t) => {
  for (const workers of [2, 3]) {
    const run = await trainHogwild({ ...quiet, workers, model: PROBE, dataset: 'synthetic', trainSamples: 1536, testSamples: 200, batchSize: 64 });
    const box = (run.model as ProbeModel).mailbox.data;
    t.deepEqual([...box], Array.from({ length: workers }, (_, r) => mark(r)));
    // The mailbox is a view of the shared flat buffer the workers trained in.
    t.is(box.buffer, run.params.buffer);
    t.true(run.params.buffer instanceof SharedArrayBuffer);
  }
});

test.serial('one worker reproduces local training exactly: same loss sequence and same final parameters', async (t) => {
  const opts = { dataset: 'fashion-mnist' as const, trainSamples: 3000, testSamples: 500, batchSize: 32, lr: 0.05, seed: 7, epochs: 2, hidden: 32 };
  const run = await trainHogwild({ ...quiet, ...opts, workers: 1, recordLosses: true });

  // The local strategy's loop (src/trainer/local.ts), written out to keep the losses and the model.
  const split = await loadDataset('fashion-mnist', { seed: opts.seed });
  const train = take(split.train, opts.trainSamples);
  const model = mlp([784, opts.hidden, opts.hidden, 10], { seed: opts.seed });
  const sgd = new SGD(model.parameters(), { lr: opts.lr });
  const loader = new DataLoader(train, { batchSize: opts.batchSize, shuffle: true, seed: opts.seed, dropLast: true });
  const losses: number[] = [];
  for (let e = 0; e < opts.epochs; e++) {
    for (const b of loader) {
      const loss = crossEntropy(model.forward(new Tensor(b.x, [b.size, 784])), b.y);
      sgd.zeroGrad();
      loss.backward();
      sgd.step();
      losses.push(Math.fround(loss.item()));
    }
  }
  t.is(run.losses!.length, 1);
  t.deepEqual([...run.losses![0]!], losses);
  const local = model.parameters().flatMap((p) => [...p.data]);
  t.deepEqual([...run.params], local);
  t.is(run.result.samples, loader.samples * opts.epochs);
  t.is(run.result.epochAccuracy.length, opts.epochs);
  // And the local strategy itself reports the same figures.
  const local2 = await trainLocal({ ...opts, progress: 'none' }, { log: () => {} });
  t.is(run.result.finalLoss, local2.finalLoss);
  t.is(run.result.testAccuracy, local2.testAccuracy);
  t.is(run.result.samples, local2.samples);
});

for (const workers of [2, 4]) {
  test.serial(`${workers} workers reach the accuracy bar on a 6,000-sample slice of fashion-mnist`, async (t) => {
    const { result } = await hogwild.train({ ...quiet, workers, dataset: 'fashion-mnist', trainSamples: 6000, testSamples: 2000, epochs: 2 });
    // Local training on this slice reaches about 0.78 after 2 epochs.
    t.true(result.testAccuracy > 0.7, `testAccuracy ${result.testAccuracy}`);
    t.is(result.trainers, workers);
    t.is(result.strategy, 'hogwild');
    t.is(result.samples, workers * Math.floor(6000 / workers / 64) * 64 * 2);
    t.true(Number.isFinite(result.finalLoss) && result.finalLoss < 1.2, `finalLoss ${result.finalLoss}`);
  });
}

test.serial('a worker that throws stops the run with its rank and error, and no thread is left running', async (t) => {
  const watch = watchThreads();
  const err = await t.throwsAsync(trainHogwild({
    ...quiet, workers: 3, model: FAILING, modelOptions: { failRank: 1, failAfter: 3 }, dataset: 'synthetic', trainSamples: 30_000, testSamples: 100, epochs: 3,
  }), { instanceOf: HogwildWorkerError });
  const threads = watch.read();
  t.is(err!.rank, 1);
  t.regex(err!.message, /hogwild worker 1 failed: boom in the forward of rank 1/);
  // one thread per worker, and every one of them has exited by the time the run rejects
  t.is(threads.started, 3);
  t.is(threads.running, 0, `${threads.running} of the run's ${threads.started} threads still running when it rejected`);
});

test.serial('a model module that cannot be loaded is refused before any thread starts', async (t) => {
  const watch = watchThreads();
  await t.throwsAsync(trainHogwild({ ...quiet, workers: 2, model: './no/such/model.js', dataset: 'synthetic', trainSamples: 512 }), {
    instanceOf: ModelError, message: /^--model \.\/no\/such\/model\.js: no such file \(.*no\/such\/model\.js\)$/,
  });
  await t.throwsAsync(trainHogwild({ ...quiet, workers: 2, model: { createModel: () => mlp([784, 10]) }, dataset: 'synthetic', trainSamples: 512 }), {
    instanceOf: HogwildOptionError, message: /each worker thread imports the model itself/,
  });
  t.is(watch.read().started, 0);
});

test.serial('a worker whose model differs from the main thread\'s fails the run naming the first differing parameter', async (t) => {
  const model = new URL('./fixtures/rank-dependent-model.ts', import.meta.url);
  const e = await t.throwsAsync(trainHogwild({ ...quiet, workers: 2, model, dataset: 'synthetic', trainSamples: 512, testSamples: 64 }), { instanceOf: HogwildWorkerError });
  t.regex(e!.message, /^hogwild worker [01] failed: --model file:.*rank-dependent-model\.ts: worker [01] built another model than the main thread's: parameter 0 is '0\.weight' \[9, 784\] instead of '0\.weight' \[8, 784\]$/);
});

test.serial('a batch larger than a worker\'s partition is refused with the figures', async (t) => {
  await t.throwsAsync(trainHogwild({ ...quiet, workers: 4, dataset: 'synthetic', trainSamples: 200, batchSize: 64 }), {
    instanceOf: RangeError, message: /--batch-size 64 is larger than each worker's 50 training samples/,
  });
});

test.serial('the pool shuts down after a successful run', async (t) => {
  const watch = watchThreads();
  const { result } = await trainHogwild({ ...quiet, workers: 2, dataset: 'synthetic', trainSamples: 1024, testSamples: 100 });
  const threads = watch.read();
  t.is(result.trainers, 2);
  // every thread of the run has exited by the time it resolves
  t.is(threads.started, 2);
  t.is(threads.running, 0, `${threads.running} of the run's ${threads.started} threads still running when it resolved`);
});

test.serial('the API trains on data the caller gives, copying it into shared memory once', async (t) => {
  const data = syntheticSplit({ trainSamples: 2000, testSamples: 300, seed: 3 });
  t.false(data.train.x.buffer instanceof SharedArrayBuffer);
  const { result } = await trainHogwild({ ...quiet, workers: 2, data, epochs: 3, lr: 0.2 });
  t.like(result, { dataset: 'custom', trainers: 2, testSamples: 300, samples: 2 * 15 * 64 * 3 });
  t.true(result.testAccuracy > 0.5, `testAccuracy ${result.testAccuracy}`);
  // The caller's arrays are left as they were.
  t.false(data.train.x.buffer instanceof SharedArrayBuffer);
  await t.throwsAsync(trainHogwild({ ...quiet, workers: 2, data: { train: { ...data.train, x: [] as unknown as Float32Array }, test: data.test } }), {
    instanceOf: HogwildOptionError, message: /data.train must be a Dataset/,
  });
});

test('with evalEvery the main thread records an accuracy curve of the shared model while the workers train', async (t) => {
  const { result } = await trainHogwild({ ...quiet, workers: 2, dataset: 'fashion-mnist', trainSamples: 6000, testSamples: 1000, epochs: 2, evalEvery: 0.005, evalSamples: 500 });
  const curve = result.curve!;
  t.true(curve.length >= 3, `${curve.length} points`);
  t.is(curve[0]!.samples, 0);
  t.is(curve.at(-1)!.samples, result.samples);
  for (let i = 1; i < curve.length; i++) {
    t.true(curve[i]!.seconds >= curve[i - 1]!.seconds);
    t.true(curve[i]!.samples >= curve[i - 1]!.samples);
  }
  t.true(curve[0]!.accuracy < 0.3);
  t.true(curve.at(-1)!.accuracy > 0.65, `end ${curve.at(-1)!.accuracy}`);
});
