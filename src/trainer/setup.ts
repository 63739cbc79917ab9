// What every strategy sets up the same way from `TrainOptions`: the data, the optimizer spec and the
// device (the model comes from src/trainer/model.ts). One place, so strategies compared side by side
// really train the same thing.
import { DistributedSampler, loadDataset, parseDatasetSpec, shardPages, take, type DatasetSplit, type Sampler } from '../data/index.js';
import { resolveDevice } from '../tensor/cuda.js';
import { createOptimizer, getBackend, hasBackend, type Device, type Optimizer, type OptimizerSpec, type Tensor } from '../tensor/index.js';
import type { TrainOptions } from './options.js';

export interface LoadedData extends DatasetSplit {
  /** Milliseconds the load took. */
  loadMs: number;
  /**
   * Set when `train` is only this trainer's share of the training split (a dataset file read by
   * rank): the samples each trainer visits per epoch, the same for all (the smallest share).
   */
  share?: number;
}

/**
 * The dataset of `opts.dataset`, cut to `trainSamples` / `testSamples` when they are set. With
 * `shard` and a dataset file (file:), only that rank's page-aligned share of the training split is
 * read (never another rank's pages), and `share` says how many of its samples to visit per epoch.
 */
export async function loadTrainingData(opts: TrainOptions, extra: { shared?: boolean; shard?: { rank: number; worldSize: number } } = {}): Promise<LoadedData> {
  const t0 = performance.now();
  const byShare = extra.shard !== undefined && extra.shard.worldSize > 1 && parseDatasetSpec(opts.dataset).kind === 'file';
  const split = await loadDataset(opts.dataset, {
    seed: opts.seed,
    ...(extra.shared ? { shared: true } : {}),
    ...(opts.dataset === 'synthetic' && opts.trainSamples > 0 ? { trainSamples: opts.trainSamples } : {}),
    ...(byShare ? { shard: extra.shard } : {}),
  });
  const test = opts.testSamples > 0 ? take(split.test, Math.min(opts.testSamples, split.test.length)) : split.test;
  if (byShare && split.file) {
    // every rank computes every rank's share from the header, so all step through the same count
    const h = split.file.header;
    const world = extra.shard!.worldSize;
    let smallest = Infinity;
    for (let r = 0; r < world; r++) {
      const [from, to] = shardPages(h.trainPages, r, world);
      smallest = Math.min(smallest, Math.min(to * h.pageSamples, h.trainCount) - from * h.pageSamples);
    }
    const limit = opts.trainSamples > 0 ? Math.floor(opts.trainSamples / world) : Infinity;
    const share = Math.max(0, Math.min(smallest, limit, split.train.length));
    return { train: split.train, test, permutation: split.permutation, loadMs: performance.now() - t0, share };
  }
  const train = opts.trainSamples > 0 ? take(split.train, Math.min(opts.trainSamples, split.train.length)) : split.train;
  return { train, test, permutation: split.permutation, loadMs: performance.now() - t0 };
}

/**
 * Which training samples trainer `rank` of `trainers` visits each epoch: its DistributedSampler
 * partition of the whole split, or, when `share` is set (the split is already this trainer's share),
 * `share` samples of its own share in a fresh order each epoch.
 */
export function trainerSampler(opts: TrainOptions, ctx: { rank: number; trainers: number; train: { length: number }; share?: number }): Sampler {
  if (ctx.share === undefined) return new DistributedSampler(ctx.train.length, { numReplicas: ctx.trainers, rank: ctx.rank, shuffle: true, seed: opts.seed });
  const inner = new DistributedSampler(ctx.train.length, { shuffle: true, seed: opts.seed + ctx.rank });
  const length = ctx.share;
  return { length, setEpoch: (e) => inner.setEpoch(e), indices: () => inner.indices().subarray(0, length) };
}

/** The optimizer the options ask for, as the one description every strategy builds it from. */
export function optimizerSpec(opts: TrainOptions): OptimizerSpec {
  return opts.optimizer === 'adam'
    ? { kind: 'adam', lr: opts.lr, weightDecay: opts.weightDecay }
    : { kind: 'sgd', lr: opts.lr, momentum: opts.momentum, weightDecay: opts.weightDecay };
}

export function buildOptimizer(params: Iterable<Tensor>, opts: TrainOptions): Optimizer<unknown> {
  return createOptimizer(params, optimizerSpec(opts));
}

/**
 * The device the tensors live on. `--device auto` is 'cuda' only when a CUDA device is present
 * (or a 'cuda' backend was registered by hand: tests register the SIMT-emulated device);
 * `--device cuda` without one throws, saying why (resolveDevice). Strategies whose parameters are
 * shared host memory or travel over RPC (Hogwild, the parameter servers) train with CPU tensors:
 * they call this without `{ cuda: true }`, so 'auto' stays on the CPU with a note and an explicit
 * 'cuda' is refused rather than silently running on the CPU.
 */
export function chooseDevice(opts: TrainOptions, log: (line: string) => void): 'cpu';
export function chooseDevice(opts: TrainOptions, log: (line: string) => void, support: { cuda: boolean }): Device;
export function chooseDevice(opts: TrainOptions, log: (line: string) => void, support: { cuda: boolean } = { cuda: false }): Device {
  const device = opts.device !== 'cpu' && hasBackend('cuda') ? 'cuda' : resolveDevice(opts.device);
  if (device === 'cpu') return 'cpu';
  if (!support.cuda) {
    const why = `the ${opts.strategy} strategy trains with CPU tensors only (its parameters live in shared host memory or travel over RPC)`;
    if (opts.device === 'cuda') throw new Error(`--device cuda: ${why}; use --device cpu or --device auto`);
    log(`note: a CUDA device is present, but ${why}; training on the CPU`);
    return 'cpu';
  }
  log(`training on CUDA (${getBackend('cuda').name})`);
  return 'cuda';
}
