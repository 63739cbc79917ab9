// The job's result: psrun has each trainer write its own `--json` file and combines them into the
// one object ARCHITECTURE.md's contract describes.
//
// Combination rules (docs/TOPOLOGIES.md repeats them):
// - A trainer whose result says `trainers: 1` (or says nothing) reports itself alone: `samples`
//   and `samplesPerSecond` are summed over the trainers, `trainSeconds` is the longest loop.
// - A trainer whose result already says `trainers: T` (it reports the whole job, e.g. after an
//   all-reduce of the counters) is taken as is: the first trainer's figures, not a sum.
//   So are its trainSeconds and finalLoss.
// - testAccuracy, testSamples, simd, device and consistency come from the first trainer (lowest
//   rank); the final loss is the mean over trainers; wallSeconds is psrun's whole run.
import type { TrainResult } from '../trainer/result.js';
import { LaunchError } from './errors.js';
import type { Topology } from './topology.js';

export interface TrainerFigures {
  name: string;
  samples: number;
  samplesPerSecond: number;
  trainSeconds: number;
  testAccuracy: number;
  finalLoss: number;
}

export interface JobResult extends TrainResult {
  /** ps-server processes (0 for partitioned). */
  servers: number;
  /** 'sum': per-trainer figures summed; 'first': the first trainer already reported the job. */
  aggregation: 'sum' | 'first';
  /** Each trainer's own figures, in rank order. */
  perTrainer: TrainerFigures[];
  /** psrun --max-restarts: times the job was restarted after a process failed (absent: none). The figures are the last run's. */
  restarts?: number;
}

function num(name: string, r: Record<string, unknown>, key: string): number {
  const v = r[key];
  if (typeof v !== 'number') throw new LaunchError(`${name}'s result has no numeric '${key}' (got ${JSON.stringify(v)})`);
  return v;
}

/** Combines the trainers' results (in rank order) into the job's result. */
export function combineResults(topology: Topology, results: Array<{ name: string; result: unknown }>, wallSeconds: number): JobResult {
  if (results.length === 0) throw new LaunchError('no trainer result to combine');
  const per: TrainerFigures[] = [];
  const raw: Array<Record<string, unknown>> = [];
  for (const { name, result } of results) {
    if (result === null || typeof result !== 'object' || Array.isArray(result)) throw new LaunchError(`${name}'s result is not a JSON object`);
    const r = result as Record<string, unknown>;
    raw.push(r);
    per.push({
      name,
      samples: num(name, r, 'samples'),
      samplesPerSecond: num(name, r, 'samplesPerSecond'),
      trainSeconds: typeof r.trainSeconds === 'number' ? r.trainSeconds : NaN,
      testAccuracy: typeof r.testAccuracy === 'number' ? r.testAccuracy : NaN,
      finalLoss: typeof r.finalLoss === 'number' ? r.finalLoss : NaN,
    });
  }
  const T = topology.trainers.length;
  const first = raw[0]!;
  const aggregation = T > 1 && first.trainers === T ? 'first' : 'sum';
  const samples = aggregation === 'first' ? per[0]!.samples : per.reduce((a, p) => a + p.samples, 0);
  const samplesPerSecond = aggregation === 'first' ? per[0]!.samplesPerSecond : per.reduce((a, p) => a + p.samplesPerSecond, 0);
  const losses = (aggregation === 'first' ? [per[0]!] : per).map((p) => p.finalLoss).filter(Number.isFinite);
  const loops = (aggregation === 'first' ? [per[0]!] : per).map((p) => (Number.isFinite(p.trainSeconds) ? p.trainSeconds : 0));
  const o = topology.options;
  const bytes = (aggregation === 'first' ? [first] : raw).map((r) => r.bytesSent);
  return {
    strategy: topology.strategy,
    // The process knows what it ran (partitioned, for one, runs sync whatever was asked).
    consistency: typeof first.consistency === 'string' ? first.consistency : topology.consistency,
    trainers: T,
    servers: topology.servers.length,
    epochs: o.epochs,
    dataset: o.dataset,
    batchSize: o.batchSize,
    lr: o.lr,
    hidden: o.hidden,
    model: typeof first.model === 'string' ? first.model : String(o.model),
    parameters: typeof first.parameters === 'number' ? first.parameters : NaN,
    seed: o.seed,
    device: typeof first.device === 'string' ? first.device : o.device,
    samples,
    trainSeconds: Math.max(...loops),
    samplesPerSecond,
    finalLoss: losses.length > 0 ? losses.reduce((a, b) => a + b, 0) / losses.length : NaN,
    testAccuracy: per[0]!.testAccuracy,
    testSamples: typeof first.testSamples === 'number' ? first.testSamples : 0,
    wallSeconds,
    simd: typeof first.simd === 'string' ? first.simd : 'unknown',
    aggregation,
    perTrainer: per,
    // the first trainer's curve and byte count cover the job when it reports for all trainers
    ...(bytes.every((b) => typeof b === 'number') ? { bytesSent: (bytes as number[]).reduce((a, b) => a + b, 0) } : {}),
    ...(Array.isArray(first.curve) ? { curve: first.curve as TrainResult['curve'] } : {}),
    // what a strategy reports beyond the common figures (the data-parallel family's memory and precision), as the first trainer gave it
    ...Object.fromEntries(PASSED_THROUGH.filter((k) => first[k] !== undefined).map((k) => [k, first[k]])),
  };
}

/** Result fields the first trainer computes for the whole job, passed through as they are. */
const PASSED_THROUGH = ['precision', 'peakRssBytes', 'optimizerStateBytesPerRank', 'optimizerElementsPerRank', 'peakParameterBytesPerRank', 'skippedSteps', 'zeroStage', 'gradAccum', 'buckets',
  'batches',
  'stages', 'microBatches', 'schedule', 'replicas', 'recompute', 'balance', 'stageChildren', 'stageParameters', 'bubblePerStage', 'theoreticalBubble', 'peakActivationBytesPerStage'] as const;
