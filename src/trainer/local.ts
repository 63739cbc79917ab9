// The `local` strategy: one process, one model, the batches of every epoch in a seeded order.
//
// It is the baseline every distributed strategy is compared with, so it is also the reference the
// tests use: sync parameter-server training must reproduce it on concatenated batches.
import { DataLoader } from '../data/index.js';
import { Module, Tensor, type Device } from '../tensor/index.js';
import { AccuracyCurve } from './curve.js';
import { evaluate } from './evaluate.js';
import { runLoop, supervisedStep } from './loop.js';
import { buildModel, modelContext, resolveModel } from './model.js';
import { resolveOptions, type TrainOptions } from './options.js';
import { resultOf, type TrainResult } from './result.js';
import { buildOptimizer, chooseDevice, loadTrainingData } from './setup.js';
import { ModelCheckpoints, resumePosition } from './checkpoint.js';

/**
 * The model as evaluate() can use it: evaluate builds host tensors, so on another device the
 * input is uploaded first (train/eval mode reaches the model through the child link).
 */
function onDevice(model: Module & { forward(x: Tensor): Tensor }, device: Device): Module & { forward(x: Tensor): Tensor } {
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

/** Trains `options.model` (default: the mlp preset) in one process and evaluates it on the test split. */
export async function trainLocal(options: Partial<TrainOptions>, hooks: LocalRunHooks = {}): Promise<TrainResult> {
  const opts = resolveOptions({ ...options, strategy: 'local' });
  const log = hooks.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const resolved = await resolveModel(opts.model);
  const device = chooseDevice(opts, log, { cuda: true });
  const data = await loadTrainingData(opts);
  const { train, test } = data;
  if (train.length < opts.batchSize) {
    throw new RangeError(`--batch-size ${opts.batchSize} is larger than the ${train.length} training samples`);
  }
  const ctx = modelContext(opts, train, { rank: 0, role: 'local', workers: 1 });
  const built = await buildModel(resolved, ctx) as Module & { forward(x: Tensor): Tensor };
  const model = built.to(device);
  const optimizer = buildOptimizer(model.parameters(), opts);
  // As PyTorch's reference loop: a fresh seeded order every epoch, the short last batch dropped.
  const loader = new DataLoader(train, { batchSize: opts.batchSize, shuffle: true, seed: opts.seed, dropLast: true });
  const ckpt = opts.checkpointDir !== undefined ? new ModelCheckpoints(opts, model, optimizer, log) : undefined;
  let step = 0;
  if (ckpt && opts.resume) step = await ckpt.resume('local', true);
  const start = resumePosition(opts, step, 1, loader.length, true);
  step = start.step;
  const evaluated = onDevice(model, device);
  const curve = opts.evalEvery > 0 ? new AccuracyCurve(evaluated, test, opts, true, undefined, resolved.metric) : undefined;
  const run = await runLoop({
    opts, loader, label: 'local', curve,
    step: supervisedStep(model, resolved.loss, ctx.inputShape, device, ckpt
      ? () => { optimizer.step(); return ckpt.afterStep(++step) ?? Promise.resolve(); }
      : () => optimizer.step()),
    start,
  }).catch(async (e: unknown) => { await ckpt?.flush(); throw e; }).finally(() => ckpt?.dispose());
  if (ckpt) {
    // always one at the end: the trained model, on disk before the command returns
    await ckpt.write(step);
    await ckpt.flush();
  }
  const testAccuracy = evaluate(evaluated, test, resolved.metric);
  return {
    ...resultOf(opts, {
      strategy: 'local', consistency: null, trainers: 1, device, samples: run.samples, trainSeconds: run.trainSeconds,
      finalLoss: run.lossCount > 0 ? run.lossSum / run.lossCount : NaN, testAccuracy, testSamples: test.length,
      model: { name: resolved.name, parameters: model.parameterCount() },
    }),
    ...(curve ? { curve: curve.points } : {}),
  };
}
