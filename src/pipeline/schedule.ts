// Pipeline schedules: the order in which one stage runs the forwards and backwards of a batch's
// micro-batches. Pure functions of (schedule, stages K, micro-batches M, stage i), so every stage
// computes its own list and the lists fit together without a coordinator.
//
// - gpipe (Huang et al., torchgpipe): all M forwards, then all M backwards, the last micro-batch's
//   first (it is the one whose forward the last stage finished last). A stage holds the
//   activations of all M micro-batches at once.
// - 1f1b (PipeDream-flush, Narayanan et al.; Megatron's non-interleaved schedule): stage i runs
//   min(K - i - 1, M) forwards to fill the pipeline, then alternates one forward and one backward,
//   then drains the remaining backwards. Backwards run in micro-batch order, so stage i holds at
//   most min(K - i, M) micro-batches' activations; the bubble is the same as GPipe's.
//
// Both flush at the end of the batch: every stage steps its optimizer once, on the gradients of
// all M micro-batches, so a step equals one step on the whole batch.

import { SCHEDULES, type ScheduleName } from './schedule-names.js';

export { SCHEDULES, type ScheduleName };

/** One operation of a stage: the forward or the backward of micro-batch `micro`. */
export interface StageOp {
  kind: 'forward' | 'backward';
  micro: number;
}

function check(stages: number, micro: number, stage: number): void {
  if (!Number.isSafeInteger(stages) || stages < 1) throw new RangeError(`pipeline schedule: stages must be an integer >= 1, got ${stages}`);
  if (!Number.isSafeInteger(micro) || micro < 1) throw new RangeError(`pipeline schedule: micro-batches must be an integer >= 1, got ${micro}`);
  if (!Number.isSafeInteger(stage) || stage < 0 || stage >= stages) throw new RangeError(`pipeline schedule: stage must be in [0, ${stages}), got ${stage}`);
}

/** The ops stage `stage` of `stages` runs for one batch of `micro` micro-batches, in order. */
export function stageSchedule(name: ScheduleName, stages: number, micro: number, stage: number): StageOp[] {
  check(stages, micro, stage);
  const ops: StageOp[] = [];
  const F = (m: number) => ops.push({ kind: 'forward', micro: m });
  const B = (m: number) => ops.push({ kind: 'backward', micro: m });
  if (name === 'gpipe') {
    for (let m = 0; m < micro; m++) F(m);
    for (let m = micro - 1; m >= 0; m--) B(m);
    return ops;
  }
  if (name !== '1f1b') throw new RangeError(`pipeline schedule: unknown schedule '${String(name)}' (known: ${SCHEDULES.join(', ')})`);
  const warmup = Math.min(stages - stage - 1, micro);
  let f = 0;
  let b = 0;
  for (; f < warmup; f++) F(f);
  while (f < micro) {
    F(f++);
    B(b++);
  }
  while (b < micro) B(b++);
  return ops;
}

/** The most micro-batches whose forward has run and whose backward has not, at any point of `ops`. */
export function peakInFlight(ops: readonly StageOp[]): number {
  let live = 0;
  let peak = 0;
  for (const op of ops) {
    live += op.kind === 'forward' ? 1 : -1;
    peak = Math.max(peak, live);
  }
  return peak;
}

/** The pipeline bubble of an ideal pipeline (equal stages, no communication time): (K - 1) / (M + K - 1). */
export function theoreticalBubble(stages: number, micro: number): number {
  return (stages - 1) / (micro + stages - 1);
}

export interface SimulatedPipeline {
  /** Time units from the first forward's start to the last backward's end. */
  makespan: number;
  /** Per stage: the fraction of the makespan it spent waiting. */
  bubble: number[];
}

/**
 * Runs the stages' schedules against each other with a forward taking `forward` time units and a
 * backward `backward` units on every stage, messages taking no time: the dependency structure of
 * the schedules, checked for deadlock (an op that can never run throws) and measured.
 */
export function simulateSchedule(name: ScheduleName, stages: number, micro: number, forward = 1, backward = 2): SimulatedPipeline {
  const plans = Array.from({ length: stages }, (_, i) => stageSchedule(name, stages, micro, i));
  const fDone = Array.from({ length: stages }, () => new Array<number>(micro).fill(-1));
  const bDone = Array.from({ length: stages }, () => new Array<number>(micro).fill(-1));
  const clock = new Array<number>(stages).fill(0);
  const next = new Array<number>(stages).fill(0);
  let remaining = plans.reduce((n, p) => n + p.length, 0);
  while (remaining > 0) {
    let progressed = false;
    for (let i = 0; i < stages; i++) {
      const op = plans[i]![next[i]!];
      if (!op) continue;
      const m = op.micro;
      // a forward needs the previous stage's forward; a backward its own forward and the next stage's backward
      const needs = op.kind === 'forward'
        ? [i === 0 ? 0 : fDone[i - 1]![m]!]
        : [fDone[i]![m]!, i === stages - 1 ? 0 : bDone[i + 1]![m]!];
      if (needs.some((d) => d < 0)) continue;
      const dep = Math.max(...needs);
      const start = Math.max(clock[i]!, dep);
      const end = start + (op.kind === 'forward' ? forward : backward);
      (op.kind === 'forward' ? fDone : bDone)[i]![m] = end;
      clock[i] = end;
      next[i]!++;
      remaining--;
      progressed = true;
    }
    if (!progressed) throw new Error(`pipeline schedule ${name} deadlocks with ${stages} stages and ${micro} micro-batches`);
  }
  const makespan = Math.max(...clock);
  const busy = micro * (forward + backward);
  return { makespan, bubble: clock.map(() => (makespan - busy) / makespan) };
}
