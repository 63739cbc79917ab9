// hogwild.train: lock-free asynchronous SGD on shared memory (Niu et al., 2011) with piscina
// worker threads.
//
// The main thread loads the data once into SharedArrayBuffers, builds the model once and moves
// its parameters into one SharedArrayBuffer; N workers view those same bytes (no copies, no
// messages per step) and apply their SGD updates in place without locks. The main thread only
// polls a shared counter for progress, evaluates the shared model between epochs (the workers
// wait at a barrier meanwhile) and assembles the result. With --checkpoint-dir it also copies out
// the snapshots rank 0 takes and writes them in the background, and one at the end
// (checkpoint.ts, loaded only then); --resume starts every worker at its checkpoint's position.
import type { Dataset } from '../data/index.js';
import { flattenBuffers, flattenParameters, layoutOf } from '../tensor/index.js';
import { AccuracyCurve, type CurvePoint } from '../trainer/curve.js';
import { evaluate } from '../trainer/evaluate.js';
import { resolveOptions, type TrainOptions } from '../trainer/options.js';
import { createProgress } from '../trainer/progress.js';
import { resultOf, type TrainResult } from '../trainer/result.js';
import { chooseDevice, loadTrainingData } from '../trainer/setup.js';
import {
  createControlBlock, openBarrier, samplesSoFar, STAT_BATCHES, STAT_END, STAT_LAST_LOSS, STAT_LOSS_SUM, STAT_START,
  STATS_PER_WORKER, stopWorkers, waitForArrivals,
} from './control.js';
import { HogwildOptionError, HogwildWorkerError } from './errors.js';
import { resolveHogwildModel, type HogwildModel } from './model.js';
import { buildModel, modelContext, type MetricFunction, type ModelRef } from '../trainer/model.js';
import { createWorkerPool, type WorkerPool } from './pool.js';
import type { WorkerReport, WorkerTask } from './worker.js';
import type { HogwildCheckpoints } from './checkpoint.js';

export interface HogwildOptions extends Partial<TrainOptions> {
  /**
   * A preset name, or a module (path relative to the working directory, or URL) exporting
   * `createModel(ctx)` (or a default function) that builds the model; see ModelContext. Not a
   * module object: every worker thread imports the module itself. Default: the mlp preset.
   */
  model?: ModelRef;
  /** Train and test sets to use instead of `dataset`; copied once into shared memory if they are not there already. */
  data?: { train: Dataset; test: Dataset };
  /** Return every worker's batch losses in order (costs one float per step). */
  recordLosses?: boolean;
  /** Receives notes and per-epoch lines that are not progress (default: stderr). */
  log?: (line: string) => void;
}

/** The result object of the trainer command, plus the test accuracy after each epoch. */
export interface HogwildResult extends TrainResult {
  epochAccuracy: number[];
}

export interface HogwildRun {
  result: HogwildResult;
  /** The main thread's model: its parameters are views of `params`, the trained shared weights. */
  model: HogwildModel;
  params: Float32Array;
  /** Per rank, the batch losses in order (with `recordLosses`), else null. */
  losses: Float32Array[] | null;
}

/** Trains a model with N lock-free worker threads sharing its parameters. */
export async function trainHogwild(options: HogwildOptions = {}): Promise<HogwildRun> {
  const { model: modelOption, data: dataOption, recordLosses = false, log: logOption, ...rest } = options;
  const log = logOption ?? ((line: string) => process.stderr.write(line + '\n'));
  // Checked before any thread starts: a bad module path is the caller's mistake, not a worker's.
  const resolved = await resolveHogwildModel(modelOption);
  const modelUrl = resolved.url;
  // the workers get the module's URL (an object cannot cross into a thread)
  const opts = resolveOptions({ ...rest, model: modelUrl, strategy: 'hogwild' });
  const device = chooseDevice(opts, log);
  const workers = opts.workers;

  // The threads start (and load the worker module, tsx and the native addon) while this thread
  // loads the data and builds the model.
  const pool = createWorkerPool(workers);
  try {
    const { train, test } = dataOption ? { train: shareDataset(dataOption.train), test: dataOption.test } : await loadTrainingData(opts, { shared: true });
    // Every worker's partition has ceil(N / workers) samples; fewer than a batch would train nothing.
    const perWorker = Math.ceil(train.length / workers);
    if (perWorker < opts.batchSize) {
      throw new RangeError(`--batch-size ${opts.batchSize} is larger than each worker's ${perWorker} training samples (${train.length} samples, ${workers} workers)`);
    }
    const model = await buildModel(resolved, modelContext(opts, train, { rank: null, role: 'worker', workers })) as HogwildModel;
    const params = new Float32Array(new SharedArrayBuffer(model.parameterCount() * 4));
    flattenParameters(model, { buffer: params });
    // Buffers (BatchNorm2d's running statistics) are shared the same way: every worker updates the
    // one set, Hogwild-style, and the main thread evaluates with it.
    const bufferElements = model.namedBuffers().reduce((n, [, t]) => n + t.size, 0);
    const buffers = flattenBuffers(model, { buffer: new Float32Array(new SharedArrayBuffer(bufferElements * 4)) });
    const control = createControlBlock(workers);
    const batchesPerEpoch = Math.floor(perWorker / opts.batchSize);
    const ckpt = opts.checkpointDir === undefined ? null
      : new (await import('./checkpoint.js')).HogwildCheckpoints({ opts, model, params, buffers, stats: control.stats, workers, batchesPerEpoch, log });
    let run: EpochsRun;
    try {
      if (ckpt && opts.resume) await ckpt.resume();
      const task = { workers, opts, params, buffers, layout: layoutOf(model), train, ...control, recordLosses, checkpoint: ckpt?.block ?? null };
      run = await runWorkers(pool, task, model, test, resolved.metric, logOption, batchesPerEpoch, ckpt);
      // always one at the end: the trained model, on disk before the run returns
      await ckpt?.writeFinal();
    } catch (e) {
      // the checkpoints taken so far reach the disk
      await ckpt?.flush();
      throw e;
    } finally {
      ckpt?.dispose();
    }
    const result: HogwildResult = {
      ...resultOf(opts, {
        strategy: 'hogwild', consistency: null, trainers: workers, dataset: dataOption ? 'custom' : opts.dataset, device,
        samples: run.samples, trainSeconds: run.trainSeconds, finalLoss: run.finalLoss,
        testAccuracy: run.epochAccuracy[run.epochAccuracy.length - 1]!, testSamples: test.length,
        model: { name: resolved.name, parameters: model.parameterCount() },
      }),
      epochAccuracy: run.epochAccuracy,
      ...(opts.evalEvery > 0 ? { curve: run.curve } : {}),
    };
    return { result, model, params, losses: recordLosses ? run.reports.map((r) => r.losses!) : null };
  } finally {
    // Resolves once every worker thread has exited: no thread outlives the run.
    await pool.close();
  }
}

interface EpochsRun {
  samples: number;
  trainSeconds: number;
  finalLoss: number;
  epochAccuracy: number[];
  curve: CurvePoint[];
  reports: WorkerReport[];
}

/**
 * Starts one task per worker and drives the epochs: opens the start barrier once every worker
 * is ready, evaluates the shared model each time all of them finished an epoch, and reports
 * progress from the workers' shared counters. The first worker failure stops the others and is thrown.
 * With checkpoints it copies out rank 0's snapshots meanwhile, and the epochs start where the
 * checkpoint resumed from (`checkpoint.start`).
 */
async function runWorkers(pool: WorkerPool, shared: Omit<WorkerTask, 'rank'>, model: HogwildModel, test: Dataset, metric: MetricFunction,
  logOption: ((line: string) => void) | undefined, batchesPerEpoch: number, ckpt: HogwildCheckpoints | null): Promise<EpochsRun> {
  const { workers, opts, control, stats } = shared;
  const start = shared.checkpoint?.start;
  const firstEpoch = start?.epoch ?? 0;
  const trained = start ? start.positions.reduce((n, p) => n + p, 0) : 0;
  let failure: HogwildWorkerError | null = null;
  const tasks = Array.from({ length: workers }, (_, rank) => {
    const task: WorkerTask = { ...shared, rank };
    return pool.run<WorkerReport>(task).catch((e: unknown) => {
      const err = new HogwildWorkerError(rank, e);
      if (failure === null) {
        failure = err;
        stopWorkers(control);
      }
      throw err;
    });
  });
  // The first failure is the one reported; the others' rejections are handled here.
  for (const t of tasks) t.catch(() => {});
  const stopped = () => failure !== null;

  const progress = createProgress({ mode: opts.progress, total: (batchesPerEpoch * workers * opts.epochs - trained) * opts.batchSize, label: `hogwild x${workers}` });
  let seen = 0;
  // The main thread evaluates the shared model while the workers train on (Hogwild readers see
  // whatever mix of updates is in memory), so the curve's clock does not pause for evaluations.
  let curve: AccuracyCurve | null = null;
  const poll = () => {
    const now = samplesSoFar(stats, workers);
    const delta = now - seen;
    seen = now;
    if (delta > 0) progress.tick(delta, stats[STAT_LAST_LOSS]!);
    curve?.maybeRecord(now);
  };
  // Progress needs 10 looks a second; a finer --eval-every needs more.
  const timer = setInterval(poll, opts.evalEvery > 0 ? Math.min(100, Math.max(5, opts.evalEvery * 1000)) : 100);
  // Through the bar when there is one, so the line does not break it; 'none' means only the final line.
  const logLine = logOption ?? (opts.progress === 'none' ? () => {} : (line: string) => progress.log(line));

  const epochAccuracy: number[] = [];
  let trainSeconds = 0;
  let finalLoss = NaN;
  // Reads the epoch every worker just finished from the stats block (all are past it).
  const closeEpoch = (epoch: number) => {
    let start = Infinity;
    let end = -Infinity;
    let lossSum = 0;
    let batches = 0;
    for (let r = 0; r < workers; r++) {
      const b = r * STATS_PER_WORKER;
      start = Math.min(start, stats[b + STAT_START]!);
      end = Math.max(end, stats[b + STAT_END]!);
      lossSum += stats[b + STAT_LOSS_SUM]!;
      batches += stats[b + STAT_BATCHES]!;
    }
    trainSeconds += (end - start) / 1000;
    finalLoss = batches > 0 ? lossSum / batches : NaN;
    poll();
    const accuracy = evaluate(model, test, metric);
    epochAccuracy.push(accuracy);
    if (opts.epochs > 1) logLine(`hogwild epoch ${epoch + 1}/${opts.epochs}: loss=${finalLoss.toFixed(4)} testAccuracy=${accuracy.toFixed(4)}`);
  };
  const watching = ckpt?.watch();
  try {
    await waitForArrivals(control, workers, stopped);
    if (failure) throw failure;
    curve = new AccuracyCurve(model, test, opts, false, undefined, metric);
    curve.record(0);
    openBarrier(control, 0);
    for (let epoch = firstEpoch; epoch < opts.epochs - 1; epoch++) {
      await waitForArrivals(control, workers * (epoch - firstEpoch + 2), stopped);
      if (failure) throw failure;
      closeEpoch(epoch);
      openBarrier(control, epoch + 1);
    }
    const reports = await Promise.all(tasks);
    // the snapshot rank 0 may have left in the area goes before the checkpoint at the end
    ckpt?.stop();
    closeEpoch(opts.epochs - 1);
    const samples = reports.reduce((n, r) => n + r.samples, 0);
    curve.record(samples);
    return { samples, trainSeconds, finalLoss, epochAccuracy, reports, curve: curve.points };
  } catch (e) {
    stopWorkers(control);
    throw e;
  } finally {
    ckpt?.stop();
    await watching;
    clearInterval(timer);
    progress.stop();
  }
}
/** The dataset with x and y over SharedArrayBuffers (copied once if they are not already). */
function shareDataset(d: Dataset): Dataset {
  if (d === null || typeof d !== 'object' || !(d.x instanceof Float32Array) || !(d.y instanceof Int32Array)) {
    throw new HogwildOptionError('data.train', d, 'a Dataset (x: Float32Array, y: Int32Array)');
  }
  const share = <T extends Float32Array | Int32Array>(a: T, make: (b: SharedArrayBuffer) => T): T => {
    if (a.buffer instanceof SharedArrayBuffer) return a;
    const out = make(new SharedArrayBuffer(a.byteLength));
    out.set(a as never);
    return out;
  };
  return {
    ...d,
    x: share(d.x, (b) => new Float32Array(b)),
    y: share(d.y, (b) => new Int32Array(b)),
  };
}
