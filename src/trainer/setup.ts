// What every strategy sets up the same way from `TrainOptions`: the data, the model, the optimizer
// and the device. One place, so strategies compared side by side really train the same thing.
import { loadDataset, take, type DatasetSplit } from '../data/index.js';
import { resolveDevice } from '../tensor/cuda.js';
import { Adam, mlp, SGD, type Optimizer, type Sequential, type Tensor } from '../tensor/index.js';
import type { TrainOptions } from './options.js';

export interface LoadedData extends DatasetSplit {
  /** Milliseconds the load took. */
  loadMs: number;
}

/** The dataset of `opts.dataset`, cut to `trainSamples` / `testSamples` when they are set. */
export async function loadTrainingData(opts: TrainOptions, extra: { shared?: boolean } = {}): Promise<LoadedData> {
  const t0 = performance.now();
  const split = await loadDataset(opts.dataset, {
    seed: opts.seed,
    ...(extra.shared ? { shared: true } : {}),
    ...(opts.dataset === 'synthetic' && opts.trainSamples > 0 ? { trainSamples: opts.trainSamples } : {}),
  });
  const train = opts.trainSamples > 0 ? take(split.train, Math.min(opts.trainSamples, split.train.length)) : split.train;
  const test = opts.testSamples > 0 ? take(split.test, Math.min(opts.testSamples, split.test.length)) : split.test;
  return { train, test, permutation: split.permutation, loadMs: performance.now() - t0 };
}

/** The MLP 784-H-H-10 (input and class counts taken from the data). */
export function buildModel(opts: TrainOptions, features = 784, classes = 10): Sequential {
  return mlp([features, opts.hidden, opts.hidden, classes], { seed: opts.seed });
}

export function buildOptimizer(params: Iterable<Tensor>, opts: TrainOptions): Optimizer<unknown> {
  return opts.optimizer === 'adam'
    ? new Adam(params, { lr: opts.lr, weightDecay: opts.weightDecay })
    : new SGD(params, { lr: opts.lr, momentum: opts.momentum, weightDecay: opts.weightDecay });
}

/**
 * The device the tensors live on. CUDA kernels exist (native/cuda) but tensors with device storage
 * are not wired into the tensor layer yet, so 'auto' stays on the CPU and says why, and an explicit
 * 'cuda' is refused with a clear message rather than silently running on the CPU.
 */
export function chooseDevice(opts: TrainOptions, log: (line: string) => void): 'cpu' {
  const device = resolveDevice(opts.device);
  if (device === 'cuda') {
    const why = 'a CUDA device is present, but training with CUDA tensors is not supported by the tensor layer yet';
    if (opts.device === 'cuda') throw new Error(`--device cuda: ${why}; use --device cpu`);
    log(`note: ${why}; training on the CPU`);
  }
  return 'cpu';
}
