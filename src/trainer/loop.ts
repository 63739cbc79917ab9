// The one training loop every strategy runs: epochs over a DataLoader (its sampler decides each
// epoch's order), the strategy's step per batch, the divergence check, the loss sums, progress
// and the accuracy curve. A strategy supplies only its step (and, where it needs them, what
// happens around the curve's points and the epochs); nothing else about training is written twice.
//
// Timing: the loop's clock is the curve's when there is one (its evaluations are left out of the
// training time), else the time from the loop's start to its end. The last curve point and the
// training seconds come from one clock reading.
import type { Batch, DataLoader } from '../data/index.js';
import { Tensor, type Device, type Labels, type Module } from '../tensor/index.js';
import type { AccuracyCurve } from './curve.js';
import type { LossFunction } from './model.js';
import type { TrainOptions } from './options.js';
import { createProgress } from './progress.js';

export interface LoopSpec {
  opts: Pick<TrainOptions, 'epochs' | 'progress'>;
  loader: DataLoader;
  /** Progress label (e.g. 'local', a worker's name). */
  label: string;
  /** Trains on one batch; returns (or resolves to) the batch's loss. */
  step: (batch: Batch) => number | Promise<number>;
  /** Records test accuracy over training time; its points count `samples * curveScale` samples. */
  curve?: AccuracyCurve;
  curveScale?: number;
  /** Runs before each curve point, off the training clock (e.g. copying a remote model). */
  beforePoint?: () => Promise<void>;
  /** Runs after the last batch, on the clock (e.g. waiting for a step still in flight). */
  end?: () => Promise<void>;
  /** Called after each batch; false stops the loop (e.g. another Hogwild worker failed). */
  afterBatch?: (loss: number, samples: number) => boolean;
  /** Called after each epoch with its loss sum and batches; false (or a promise of false) stops the loop. */
  afterEpoch?: (epoch: number, lossSum: number, batches: number) => boolean | Promise<boolean>;
  /** Called before each epoch. */
  beforeEpoch?: (epoch: number) => void;
  /** Who trains, for the divergence message (e.g. ' of this worker'). */
  whose?: string;
  /** Time source when there is no curve (default performance.now). */
  now?: () => number;
  /**
   * Where a resumed run starts: `batch` batches into epoch `epoch` (a checkpoint's position). The
   * batches before it are passed over without a step, so the sampler's order is the same as in an
   * uninterrupted run.
   */
  start?: { epoch: number; batch: number };
  /**
   * Batches handed out rather than iterated (elastic training: the servers number the job's
   * batches and give each to one trainer, src/server/batch-queue.ts): the loop takes the next one
   * until it gets null, in place of the loader's epochs. `samples` is what the progress display
   * expects this trainer to train (an estimate: the others' speed decides). The epoch hooks run
   * when a batch of a new epoch arrives (and afterEpoch after the last).
   */
  source?: { next(): Promise<{ epoch: number; batch: Batch } | null>; samples: number };
}

export interface LoopResult {
  samples: number;
  steps: number;
  /** Loss sum and batches of the last epoch. */
  lossSum: number;
  lossCount: number;
  /** Seconds of training (curve evaluations excluded). */
  trainSeconds: number;
  /** A hook stopped the loop before its last epoch ended. */
  stopped: boolean;
}

export async function runLoop(spec: LoopSpec): Promise<LoopResult> {
  const { opts, loader, curve } = spec;
  const scale = spec.curveScale ?? 1;
  const now = spec.now ?? (() => performance.now());
  const start = spec.start ?? { epoch: 0, batch: 0 };
  if (!(Number.isSafeInteger(start.epoch) && Number.isSafeInteger(start.batch) && start.epoch >= 0 && start.batch >= 0 && start.batch < Math.max(1, loader.length))) {
    throw new RangeError(`training loop: start at batch ${start.batch} of epoch ${start.epoch} is outside the ${loader.length} batches of an epoch`);
  }
  const skipped = Math.min(loader.samples * opts.epochs, start.epoch * loader.samples + start.batch * loader.batchSize);
  const total = spec.source ? spec.source.samples : loader.samples * opts.epochs - skipped;
  const progress = createProgress({ mode: opts.progress, total, label: spec.label });
  // the time is read before the preparation, so the preparation stays off the training clock
  const point = async (samples: number): Promise<void> => {
    const at = curve!.clock.now();
    if (spec.beforePoint) await spec.beforePoint();
    curve!.record(samples * scale, at);
  };
  let samples = 0;
  let steps = 0;
  let lossSum = 0;
  let lossCount = 0;
  let stopped = false;
  const t0 = now();
  /** One batch's step and its bookkeeping; false: a hook stopped the loop. */
  const train = async (batch: Batch, epoch: number): Promise<boolean> => {
    const r = spec.step(batch);
    const value = typeof r === 'number' ? r : await r;
    if (!Number.isFinite(value)) {
      throw new Error(`training diverged: loss is ${value} at epoch ${epoch}, after ${samples} samples${spec.whose ?? ''} (try a smaller --lr)`);
    }
    lossSum += value;
    lossCount++;
    samples += batch.size;
    steps++;
    progress.tick(batch.size, value);
    if (spec.afterBatch && !spec.afterBatch(value, samples)) return false;
    if (curve?.due()) await point(samples);
    return true;
  };
  try {
    if (curve) await point(0);
    if (spec.source) {
      let epoch = -1;
      for (;;) {
        const next = await spec.source.next();
        if (next === null) break;
        if (next.epoch !== epoch) {
          if (epoch >= 0 && spec.afterEpoch && !(await spec.afterEpoch(epoch, lossSum, lossCount))) {
            stopped = true;
            break;
          }
          epoch = next.epoch;
          spec.beforeEpoch?.(epoch);
          lossSum = 0;
          lossCount = 0;
        }
        if (!(await train(next.batch, epoch))) {
          stopped = true;
          break;
        }
      }
      if (!stopped && epoch >= 0 && spec.afterEpoch) await spec.afterEpoch(epoch, lossSum, lossCount);
    }
    if (!spec.source) epochs: for (let epoch = start.epoch; epoch < opts.epochs; epoch++) {
      loader.setEpoch(epoch);
      spec.beforeEpoch?.(epoch);
      lossSum = 0;
      lossCount = 0;
      let pass = epoch === start.epoch ? start.batch : 0;
      for (const batch of loader) {
        if (pass > 0) {
          pass--;
          continue;
        }
        if (!(await train(batch, epoch))) {
          stopped = true;
          break epochs;
        }
      }
      if (spec.afterEpoch && !(await spec.afterEpoch(epoch, lossSum, lossCount))) {
        stopped = epoch < opts.epochs - 1;
        if (stopped) break;
      }
    }
    if (spec.end) await spec.end();
  } finally {
    progress.stop();
  }
  let trainSeconds: number;
  if (curve) {
    const at = curve.clock.now();
    if (spec.beforePoint) await spec.beforePoint();
    trainSeconds = curve.finish(samples * scale, at);
  } else {
    trainSeconds = (now() - t0) / 1000;
  }
  return { samples, steps, lossSum, lossCount, trainSeconds, stopped };
}

/**
 * The supervised step most strategies share: forward the batch (shaped [size, ...inputShape] on
 * `device`), the model's loss, zeroGrad, backward, then the strategy's `update` (an optimizer step,
 * a push to the servers). Returns the loss value.
 */
export function supervisedStep(
  model: Module & { forward(x: Tensor): Tensor }, loss: LossFunction, inputShape: readonly number[], device: Device,
  update: () => void,
): (batch: Batch) => number;
export function supervisedStep(
  model: Module & { forward(x: Tensor): Tensor }, loss: LossFunction, inputShape: readonly number[], device: Device,
  update: () => Promise<unknown>,
): (batch: Batch) => Promise<number>;
export function supervisedStep(
  model: Module & { forward(x: Tensor): Tensor }, loss: LossFunction, inputShape: readonly number[], device: Device,
  update: () => unknown,
): (batch: Batch) => number | Promise<number> {
  const params = model.parameters();
  const options = device === 'cpu' ? {} : { device };
  return (batch) => {
    // On 'cuda' the batch is uploaded (the labels too, by the loss); on the CPU it is wrapped.
    const x = new Tensor(batch.x, [batch.size, ...inputShape], options);
    const l = loss(model.forward(x), batch.y as Labels);
    for (const p of params) p.zeroGrad();
    l.backward();
    const u = update();
    if (u instanceof Promise) return u.then(() => l.item());
    return l.item();
  };
}
