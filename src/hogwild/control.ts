// The control block the main thread and the workers share: per-worker progress figures, the
// epoch barrier and the stop flag, in two small SharedArrayBuffers so nothing is posted per step.
//
// Barrier k (k = 0 before the first epoch, k = e + 1 after epoch e): each worker adds itself to
// ARRIVED, bumps EVENT (the main thread waits on it with Atomics.waitAsync, so it never blocks its
// event loop) and sleeps in Atomics.wait until GO passes k. The main thread opens barrier k once
// all workers arrived (and, between epochs, after evaluating the shared model).

/** Int32 slots of the control block. */
export const ARRIVED = 0;
export const GO = 1;
export const STOP = 2;
export const EVENT = 3;
const SLOTS = 4;

/**
 * Float64 slots of one worker's stats: samples trained so far, this epoch's loss sum and batch
 * count, the last batch loss, and the epoch loop's start and end (clockMs); with checkpoints, also
 * the batches it has trained since the first run began (its position, resumes included) and its
 * optimizer's step counts (snapshot.ts: rank 0 copies them into a checkpoint). Each worker writes
 * only its own slots, 128 bytes apart from the next worker's, so the slots written every step
 * never share a cache line however the buffer is aligned (a shared counter bumped with
 * Atomics.add would bounce between the cores at every step).
 */
export const STAT_SAMPLES = 0;
export const STAT_LOSS_SUM = 1;
export const STAT_BATCHES = 2;
export const STAT_LAST_LOSS = 3;
export const STAT_START = 4;
export const STAT_END = 5;
export const STAT_POSITION = 6;
/** The first of the optimizer's scalars (Adam's `step`, SGD's `steps`), in OptimizerStateNames order. */
export const STAT_SCALARS = 7;
export const STATS_PER_WORKER = 16;
/** Optimizer scalars a worker's stats have room for. */
export const MAX_SCALARS = STATS_PER_WORKER - STAT_SCALARS;

export interface ControlBlock {
  control: Int32Array;
  /** workers * STATS_PER_WORKER float64 values. */
  stats: Float64Array;
}

export function createControlBlock(workers: number): ControlBlock {
  return {
    control: new Int32Array(new SharedArrayBuffer(SLOTS * 4)),
    stats: new Float64Array(new SharedArrayBuffer(workers * STATS_PER_WORKER * 8)),
  };
}

/** Main side: samples trained by all workers so far. Plain reads: a progress figure may lag a step. */
export function samplesSoFar(stats: Float64Array, workers: number): number {
  let n = 0;
  for (let r = 0; r < workers; r++) n += stats[r * STATS_PER_WORKER + STAT_SAMPLES]!;
  return n;
}

/** Wall-clock milliseconds comparable across threads (performance.now() is per thread). */
export function clockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Worker side: arrives at barrier k and sleeps until it opens. Returns false when the run was stopped. */
export function arriveAndWait(control: Int32Array, k: number): boolean {
  Atomics.add(control, ARRIVED, 1);
  Atomics.add(control, EVENT, 1);
  Atomics.notify(control, EVENT);
  for (;;) {
    if (Atomics.load(control, STOP) !== 0) return false;
    const go = Atomics.load(control, GO);
    if (go > k) return true;
    Atomics.wait(control, GO, go, 1000);
  }
}

// Atomics.waitAsync is in Node since 16, but in TypeScript's lib only from ES2024.
type WaitAsync = (a: Int32Array, index: number, value: number, timeoutMs: number) =>
  { async: false; value: string } | { async: true; value: Promise<string> };
export const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Main side: resolves once `count` arrivals in total were seen (never blocks the event loop). */
export async function waitForArrivals(control: Int32Array, count: number, stopped: () => boolean): Promise<void> {
  for (;;) {
    const event = Atomics.load(control, EVENT);
    if (Atomics.load(control, ARRIVED) >= count || stopped()) return;
    const w = waitAsync(control, EVENT, event, 1000);
    if (w.async) await w.value;
  }
}

/** Main side: lets the workers past barrier k. */
export function openBarrier(control: Int32Array, k: number): void {
  Atomics.store(control, GO, k + 1);
  Atomics.notify(control, GO);
}

/** Main side: asks every worker to stop at its next step or barrier. */
export function stopWorkers(control: Int32Array): void {
  Atomics.store(control, STOP, 1);
  Atomics.notify(control, GO);
  Atomics.add(control, EVENT, 1);
  Atomics.notify(control, EVENT);
}
