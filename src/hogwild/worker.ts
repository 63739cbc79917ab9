// A Hogwild worker thread (a piscina task that lasts the whole run): builds its own instance of
// the model, points its parameters at the shared buffer, and trains its DistributedSampler
// partition, applying each SGD step in place with no lock. Its gradients, activations and
// optimizer state stay in this thread; only the weights are shared (and, with checkpoints, the
// optimizer state: below).
//
// Per step it touches shared memory twice besides the weights: plain stores of its sample count
// and batch loss into its own slots of the stats block, which the main thread polls.
//
// With checkpoints (snapshot.ts) its optimizer state is shared memory too, and it also stores its
// position and step counts after each step; rank 0 takes the snapshots between two of its steps:
// every --checkpoint-steps N of its own steps (its position, resumes included, is a multiple of N)
// and every --checkpoint-every S seconds of its clock, but not at its last step, which the
// checkpoint at the end covers. On --resume each worker starts at its position in the checkpoint.
import { DataLoader, DistributedSampler, type Dataset } from '../data/index.js';
import { flattenBuffers, flattenParameters, layoutDifference, layoutOf, type Module, type ParameterLayout, type Tensor } from '../tensor/index.js';
import { runLoop, supervisedStep } from '../trainer/loop.js';
import { ModelError } from '../trainer/errors.js';
import type { TrainOptions } from '../trainer/options.js';
import { buildOptimizer } from '../trainer/setup.js';
import {
  arriveAndWait, clockMs, STAT_BATCHES, STAT_END, STAT_LAST_LOSS, STAT_LOSS_SUM, STAT_SAMPLES, STAT_START, STATS_PER_WORKER, STOP,
} from './control.js';
import { buildModel, modelContext, resolveModel } from '../trainer/model.js';
// The module, not the server layer's index: that one loads the RPC layer, of no use in a worker thread.
import { CheckpointSchedule } from '../server/checkpoint.js';
import { adoptSharedState, publish, takeSnapshot, type SnapshotBlock } from './snapshot.js';

/** What the main thread sends each worker once. Typed arrays are views of SharedArrayBuffers. */
export interface WorkerTask {
  rank: number;
  workers: number;
  /** The run's options; `opts.model` is the URL of the model module (the worker imports it). */
  opts: TrainOptions;
  /** The shared parameters, already initialised by the main thread. */
  params: Float32Array;
  /** The shared buffers (running statistics), in namedBuffers() order, initialised by the main thread. */
  buffers: Float32Array;
  /** The main thread's model's parameters (names, sizes, shapes): every worker's must be the same. */
  layout: ParameterLayout[];
  train: Dataset;
  control: Int32Array;
  stats: Float64Array;
  /** Return every batch loss (tests compare the sequence with local training). */
  recordLosses: boolean;
  /** With --checkpoint-dir: the shared optimizer state, the snapshot area and where each worker starts. */
  checkpoint: SnapshotBlock | null;
}

export interface WorkerReport {
  rank: number;
  /** Samples this worker trained. */
  samples: number;
  /** Batch losses in order, when asked for. */
  losses: Float32Array | null;
  /** The run was stopped (another worker failed) before this one finished. */
  stopped: boolean;
}

export default async function hogwildWorker(task: WorkerTask): Promise<WorkerReport> {
  const { rank, workers, opts, train, control, stats } = task;
  const resolved = await resolveModel(opts.model);
  const ctx = modelContext(opts, train, { rank, role: 'worker', workers });
  const model = await buildModel(resolved, ctx) as Module & { forward(x: Tensor): Tensor };
  const why = layoutDifference(task.layout, layoutOf(model));
  if (why) throw new ModelError(resolved.name, `worker ${rank} built another model than the main thread's: ${why}`);
  // copy: false keeps the main thread's initial values: this instance's own init is discarded.
  flattenParameters(model, { buffer: task.params, copy: false });
  flattenBuffers(model, { buffer: task.buffers, copy: false });
  model.train();
  const optimizer = buildOptimizer(model.parameters(), opts);
  // With one worker this is exactly local training's order (its DataLoader shuffles through a
  // one-replica DistributedSampler with the same seed, and drops the short last batch).
  const sampler = new DistributedSampler(train.length, { numReplicas: workers, rank, shuffle: true, seed: opts.seed });
  // The DataLoader's row copy is a native memcpy, so gathering out of the shared dataset is fast.
  const loader = new DataLoader(train, { batchSize: opts.batchSize, sampler, dropLast: true });
  const losses = task.recordLosses ? new Float32Array(loader.length * opts.epochs) : null;
  const base = rank * STATS_PER_WORKER;
  let step = 0;
  const report = (samples: number, stopped: boolean): WorkerReport => ({ rank, samples, losses, stopped });

  const ck = task.checkpoint;
  // Batches trained since the first run began: where this worker is in its epochs.
  let position = ck ? ck.start.positions[rank]! : 0;
  const state = ck ? adoptSharedState(optimizer, model.parameters(), ck.live[rank]!, ck.start.scalars[rank]!) : null;
  if (state) publish(stats, rank, position, state, ck!.names);
  const end = loader.length * opts.epochs;
  const schedule = ck && rank === 0 ? new CheckpointSchedule(opts.checkpointSteps, opts.checkpointEvery * 1000) : null;
  const start = { epoch: Math.floor(position / loader.length), batch: position % loader.length };

  if (!arriveAndWait(control, 0)) return report(0, true);
  const firstEpoch = ck?.start.epoch ?? 0;
  if (start.epoch > firstEpoch) {
    // It had finished the run's first epoch when the checkpoint was copied: an empty epoch, then
    // its end barrier with the others (none after the last epoch).
    stats[base + STAT_START] = stats[base + STAT_END] = clockMs();
    stats[base + STAT_LOSS_SUM] = stats[base + STAT_BATCHES] = 0;
    if (start.epoch < opts.epochs && !arriveAndWait(control, firstEpoch + 1)) return report(0, true);
  }
  const run = await runLoop({
    opts: { epochs: opts.epochs, progress: 'none' }, loader, label: `hogwild worker ${rank}`, whose: ' of this worker', start,
    step: supervisedStep(model, resolved.loss, ctx.inputShape, 'cpu', () => optimizer.step()),
    beforeEpoch: () => {
      stats[base + STAT_LOSS_SUM] = 0;
      stats[base + STAT_BATCHES] = 0;
      stats[base + STAT_START] = clockMs();
    },
    afterBatch: (value, samples) => {
      if (losses !== null) losses[step] = value;
      step++;
      stats[base + STAT_LAST_LOSS] = value;
      stats[base + STAT_SAMPLES] = samples;
      position++;
      if (state) {
        publish(stats, rank, position, state, ck!.names);
        if (schedule && position < end && schedule.isDue(position) && !takeSnapshot(ck!, task)) return false;
      }
      return Atomics.load(control, STOP) === 0;
    },
    afterEpoch: (epoch, lossSum, batches) => {
      stats[base + STAT_END] = clockMs();
      stats[base + STAT_LOSS_SUM] = lossSum;
      stats[base + STAT_BATCHES] = batches;
      // After the last epoch the task's completion is the signal; before it, the main thread
      // evaluates the shared model while every worker waits here.
      return epoch === opts.epochs - 1 || arriveAndWait(control, epoch + 1);
    },
  });
  return report(run.samples, run.stopped);
}
