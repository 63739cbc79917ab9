// The `local` strategy: one process, one model, the batches of every epoch in a seeded order.
//
// It is the baseline every distributed strategy is compared with, so it is also the reference the
// tests use: sync parameter-server training must reproduce it on concatenated batches.
import { DataLoader } from '../data/index.js';
import { crossEntropy, Module, Tensor, type Device } from '../tensor/index.js';
import { AccuracyCurve } from './curve.js';
import { evaluate } from './evaluate.js';
import { resolveOptions, type TrainOptions } from './options.js';
import { createProgress } from './progress.js';
import { resultOf, type TrainResult } from './result.js';
import { buildModel, buildOptimizer, chooseDevice, loadTrainingData } from './setup.js';

/**
 * The model as evaluate() can use it: evaluate builds host tensors, so on another device the
 * input is uploaded first (train/eval mode reaches the model through the child link).
 */
function onDevice(model: Module, device: Device): Module {
  if (device === 'cpu') return model;
  return new (class extends Module {
    constructor() {
      super();
      this.registerModule('model', model);
    }

    forward(x: Tensor): Tensor {
      return model.forward(x.to(device));
    }
  })();
}

export interface LocalRunHooks {
  /** Receives notes (device choice, data loading) that are not progress. */
  log?: (line: string) => void;
}

/** Trains the MLP on one process and evaluates it on the test split. */
export async function trainLocal(options: Partial<TrainOptions>, hooks: LocalRunHooks = {}): Promise<TrainResult> {
  const opts = resolveOptions({ ...options, strategy: 'local' });
  const log = hooks.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const device = chooseDevice(opts, log, { cuda: true });
  const data = await loadTrainingData(opts);
  const { train, test } = data;
  if (train.length < opts.batchSize) {
    throw new RangeError(`--batch-size ${opts.batchSize} is larger than the ${train.length} training samples`);
  }
  const model = buildModel(opts, train.features, train.classes).to(device);
  const optimizer = buildOptimizer(model.parameters(), opts);
  // As PyTorch's reference loop: a fresh seeded order every epoch, the short last batch dropped.
  const loader = new DataLoader(train, { batchSize: opts.batchSize, shuffle: true, seed: opts.seed, dropLast: true });
  const progress = createProgress({ mode: opts.progress, total: loader.samples * opts.epochs, label: 'local' });

  let samples = 0;
  let lossSum = 0;
  let lossCount = 0;
  const curve = new AccuracyCurve(onDevice(model, device), test, opts);
  curve.record(0);
  try {
    for (let epoch = 0; epoch < opts.epochs; epoch++) {
      lossSum = 0;
      lossCount = 0;
      for (const batch of loader) {
        // On 'cuda' the batch is uploaded (the labels too, by crossEntropy); on the CPU it is wrapped.
        const x = new Tensor(batch.x, [batch.size, train.features], { device });
        const loss = crossEntropy(model.forward(x), batch.y);
        optimizer.zeroGrad();
        loss.backward();
        optimizer.step();
        const value = loss.item();
        if (!Number.isFinite(value)) throw new Error(`training diverged: loss is ${value} at epoch ${epoch}, after ${samples} samples (try a smaller --lr)`);
        lossSum += value;
        lossCount++;
        samples += batch.size;
        progress.tick(batch.size, value);
        curve.maybeRecord(samples);
      }
    }
  } finally {
    progress.stop();
  }
  // The curve's clock: training time with its evaluations taken out; the last point is taken at
  // the same reading.
  const trainSeconds = curve.finish(samples);
  const testAccuracy = evaluate(onDevice(model, device), test);
  return {
    ...resultOf(opts, {
      strategy: 'local', consistency: null, trainers: 1, device, samples, trainSeconds,
      finalLoss: lossCount > 0 ? lossSum / lossCount : NaN, testAccuracy, testSamples: test.length,
    }),
    ...(opts.evalEvery > 0 ? { curve: curve.points } : {}),
  };
}
