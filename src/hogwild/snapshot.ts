// The shared memory behind Hogwild checkpoints: what the workers and the main thread share so that
// a checkpoint costs a worker one memory copy and never a wait for the disk (checkpoint.ts is the
// main thread's side: the files).
//
// With checkpoints on, each worker's optimizer state (SGD's momentum, Adam's moments) lives in
// shared memory like the weights: its optimizer works in views of `live[rank]` rather than in
// arrays of its own, and after every step the worker stores its position (batches trained since
// the first run began) and its optimizer's step counts in its stats slots (control.ts). Without
// checkpoints none of this exists and the workers keep their state to themselves.
//
// A snapshot: rank 0, at the end of a step that is due, copies the shared parameters and buffers
// and every worker's state, step counts and position into the snapshot area, then bumps OPEN. The
// main thread, waiting on OPEN with Atomics.waitAsync, copies the area out, bumps TAKEN and writes
// its copy in the background. The area holds one snapshot: rank 0 waits for TAKEN to catch up
// before it copies the next, which is at most the main thread's memory copy of the previous one.
//
// Rank 0 is between two of its own steps when it copies, so its state, its position and the
// weights agree (with one worker the snapshot is exact). The other workers train on meanwhile:
// their state and position are read as they are at that moment, and a step of theirs in flight is
// in the copied weights in part or not at all (Hogwild's own races, no worse).
import type { Optimizer, Tensor } from '../tensor/index.js';
import { STAT_POSITION, STAT_SCALARS, STATS_PER_WORKER, STOP } from './control.js';

/** Int32 slots of the snapshot signal: snapshots rank 0 has copied, and those the main thread has copied out. */
export const OPEN = 0;
export const TAKEN = 1;

/** The optimizer's per-parameter state, by name: its arrays (momentumBuffer; m, v) and its numbers (steps; step). */
export interface OptimizerStateNames {
  arrays: string[];
  scalars: string[];
}

/** A checkpoint's contents in memory: the area rank 0 copies into, or a copy of it. */
export interface SnapshotData {
  params: Float32Array;
  /** Every buffer (running statistics), flat in namedBuffers() order. */
  buffers: Float32Array;
  /** Per worker, per state array: the array over all the flat parameters. */
  states: Array<Record<string, Float32Array>>;
  /** Per worker, `1 + names.scalars.length` numbers: its position, then its optimizer's scalars. */
  figures: Float64Array;
}

/** Where the workers start: at the beginning, or at a checkpoint's positions (checkpoint.ts). */
export interface WorkerStart {
  /**
   * The epoch the run starts in. Every worker's position is in it or at its end: one that had
   * finished it when the checkpoint was copied waits at its end barrier with the others first.
   */
  epoch: number;
  /** Per worker: the batches it had trained. */
  positions: number[];
  /** Per worker: its optimizer's step counts, by name. */
  scalars: Array<Record<string, number>>;
}

/** What the main thread hands every worker when checkpoints are on. Typed arrays are views of SharedArrayBuffers. */
export interface SnapshotBlock {
  names: OptimizerStateNames;
  signal: Int32Array;
  /** Per worker, per state array: its live optimizer state over the flat parameters. */
  live: Array<Record<string, Float32Array>>;
  area: SnapshotData;
  start: WorkerStart;
}

const sharedF32 = (n: number) => new Float32Array(new SharedArrayBuffer(n * 4));

/** The block of a run of `workers` (starting at the beginning; a resume sets `start` and the live state). */
export function createSnapshotBlock(names: OptimizerStateNames, workers: number, parameters: number, bufferElements: number): SnapshotBlock {
  const perWorker = () => Array.from({ length: workers }, () => Object.fromEntries(names.arrays.map((k) => [k, sharedF32(parameters)])));
  return {
    names,
    start: {
      epoch: 0,
      positions: Array.from({ length: workers }, () => 0),
      scalars: Array.from({ length: workers }, () => Object.fromEntries(names.scalars.map((k) => [k, 0]))),
    },
    signal: new Int32Array(new SharedArrayBuffer(2 * 4)),
    live: perWorker(),
    area: {
      params: sharedF32(parameters),
      buffers: sharedF32(bufferElements),
      states: perWorker(),
      figures: new Float64Array(new SharedArrayBuffer(workers * (1 + names.scalars.length) * 8)),
    },
  };
}

/**
 * Worker side: sets `optimizer`'s state of every parameter to views of `live` (flat, in parameter
 * order) with `scalars`, so that from now on it updates the shared arrays in place. importState
 * checks the names and lengths first. Returns the first parameter's state object, whose step
 * counts publish() reads.
 */
export function adoptSharedState(optimizer: Optimizer<unknown>, params: readonly Tensor[], live: Record<string, Float32Array>, scalars: Record<string, number>): Record<string, unknown> {
  let at = 0;
  for (const p of params) {
    const arrays: Record<string, Float32Array> = {};
    for (const [k, flat] of Object.entries(live)) arrays[k] = flat.subarray(at, at + p.size);
    optimizer.importState(p, { arrays, scalars });
    // importState keeps copies; the optimizer works in the shared views instead
    const s = optimizer.state.get(p) as Record<string, unknown>;
    for (const [k, v] of Object.entries(arrays)) s[k] = v;
    at += p.size;
  }
  return optimizer.state.get(params[0]!) as Record<string, unknown>;
}

/** Worker side, after each step: its position and its optimizer's step counts, in its own stats slots. */
export function publish(stats: Float64Array, rank: number, position: number, state: Record<string, unknown>, names: OptimizerStateNames): void {
  const base = rank * STATS_PER_WORKER;
  stats[base + STAT_POSITION] = position;
  for (const [i, k] of names.scalars.entries()) stats[base + STAT_SCALARS + i] = state[k] as number;
}

/** Every worker's figures (position, scalars) as the stats say now. */
export function readFigures(stats: Float64Array, workers: number, names: OptimizerStateNames, into: Float64Array): void {
  const n = 1 + names.scalars.length;
  for (let r = 0; r < workers; r++) {
    const base = r * STATS_PER_WORKER;
    into[r * n] = stats[base + STAT_POSITION]!;
    for (let i = 0; i < names.scalars.length; i++) into[r * n + 1 + i] = stats[base + STAT_SCALARS + i]!;
  }
}

/**
 * Rank 0, between two of its steps: copies the shared weights, buffers, every worker's state and
 * figures into the area and opens snapshot OPEN + 1. Waits first (Atomics.wait: this is a worker
 * thread) until the main thread has copied out the previous one. False when the run was stopped meanwhile.
 */
export function takeSnapshot(block: SnapshotBlock, live: { params: Float32Array; buffers: Float32Array; stats: Float64Array; control: Int32Array }): boolean {
  const { signal, area } = block;
  const k = Atomics.load(signal, OPEN) + 1;
  for (;;) {
    const taken = Atomics.load(signal, TAKEN);
    if (taken >= k - 1) break;
    if (Atomics.load(live.control, STOP) !== 0) return false;
    Atomics.wait(signal, TAKEN, taken, 1000);
  }
  area.params.set(live.params);
  area.buffers.set(live.buffers);
  for (const [r, state] of block.live.entries()) for (const [name, a] of Object.entries(state)) area.states[r]![name]!.set(a);
  readFigures(live.stats, block.live.length, block.names, area.figures);
  Atomics.store(signal, OPEN, k);
  Atomics.notify(signal, OPEN);
  return true;
}

/** Main side: a private copy of `d` (the area, or the live arrays once the workers are done). */
export function copySnapshot(d: SnapshotData): SnapshotData {
  return {
    params: d.params.slice(),
    buffers: d.buffers.slice(),
    states: d.states.map((s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.slice()]))),
    figures: d.figures.slice(),
  };
}
