// The result of a training run: the object `--json` writes and the final line a person reads.
//
// ARCHITECTURE.md's contract: at least strategy, consistency, trainers, samples, samplesPerSecond
// (training loop only, all trainers together), testAccuracy, wallSeconds (whole command), epochs.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { cpuKernels } from '../tensor/native.js';
import type { TrainOptions } from './options.js';

export interface TrainResult {
  strategy: string;
  consistency: string | null;
  trainers: number;
  epochs: number;
  dataset: string;
  batchSize: number;
  lr: number;
  hidden: number;
  /** The model as given (--model: a preset name or the module's path) and its parameter count. */
  model: string;
  parameters: number;
  seed: number;
  device: string;
  /** Samples trained, all trainers together. */
  samples: number;
  /** Seconds of the training loop alone (no start-up, data loading or evaluation). */
  trainSeconds: number;
  samplesPerSecond: number;
  /** Mean loss over the last epoch's batches. */
  finalLoss: number;
  testAccuracy: number;
  testSamples: number;
  /** Seconds of the whole command, start-up and data loading included. */
  wallSeconds: number;
  /** Kernel path used on the CPU ('avx512', 'avx2', 'scalar'). */
  simd: string;
  /** Tensor payload bytes exchanged between processes (pushes + pulls), all trainers together. */
  bytesSent?: number;
  /** What gradients and parameters travelled as (strategies that honour --precision). */
  precision?: string;
  /** Data-parallel strategies (ddp, zero, fsdp): the largest peak resident memory of one rank, bytes. */
  peakRssBytes?: number;
  /** ddp, zero, fsdp: bytes (and parameter elements) of optimizer state each rank held, in rank order. */
  optimizerStateBytesPerRank?: number[];
  optimizerElementsPerRank?: number[];
  /** fsdp: the largest number of parameter bytes one rank held at once (its shard plus the gathered units). */
  peakParameterBytesPerRank?: number[];
  /** fp16: steps skipped because the reduced gradient overflowed (dynamic loss scaling). */
  skippedSteps?: number;
  zeroStage?: number;
  gradAccum?: number;
  /** ddp: gradient bucket sizes in elements, in launch order. */
  buckets?: number[];
  /** pipeline: stages per pipeline, micro-batches per batch, the schedule, pipelines side by side, recomputation. */
  stages?: number;
  microBatches?: number;
  schedule?: string;
  replicas?: number;
  recompute?: boolean;
  /** pipeline: how the cut was chosen (flops, params, or split by hand), each stage's children [first, end) and parameters. */
  balance?: string;
  stageChildren?: number[][];
  stageParameters?: number[];
  /** pipeline: per stage, the fraction of its step time it did not compute (mean over replicas), and (K - 1) / (M + K - 1). */
  bubblePerStage?: number[];
  theoreticalBubble?: number;
  /** pipeline: per stage, the most activation bytes one process held at once. */
  peakActivationBytesPerStage?: number[];
  /** With --eval-every: test accuracy on a fixed slice over training time. */
  curve?: Array<{ seconds: number; samples: number; accuracy: number }>;
}

/** What a run measured; `resultOf` adds the options, the rate, the wall clock and the SIMD path. */
export interface RunFigures {
  consistency: string | null;
  trainers: number;
  device: string;
  samples: number;
  trainSeconds: number;
  finalLoss: number;
  testAccuracy: number;
  testSamples: number;
  /** The model's name and parameter count. */
  model: { name: string; parameters: number };
  /** Default: the options' strategy and dataset. */
  strategy?: string;
  dataset?: string;
}

/** The result every strategy writes, from its options and what it measured. */
export function resultOf(opts: TrainOptions, run: RunFigures): TrainResult {
  return {
    strategy: run.strategy ?? opts.strategy,
    consistency: run.consistency,
    trainers: run.trainers,
    epochs: opts.epochs,
    dataset: run.dataset ?? opts.dataset,
    batchSize: opts.batchSize,
    lr: opts.lr,
    hidden: opts.hidden,
    model: run.model.name,
    parameters: run.model.parameters,
    seed: opts.seed,
    device: run.device,
    samples: run.samples,
    trainSeconds: run.trainSeconds,
    samplesPerSecond: run.samples / run.trainSeconds,
    finalLoss: run.finalLoss,
    testAccuracy: run.testAccuracy,
    testSamples: run.testSamples,
    wallSeconds: process.uptime(),
    simd: cpuKernels().simd(),
  };
}

/** One line with the figures a person looks for first. */
export function formatResult(r: TrainResult): string {
  // A trainer that is not the first of its world does not evaluate: its accuracy is null.
  const acc = typeof r.testAccuracy === 'number' && Number.isFinite(r.testAccuracy) ? r.testAccuracy.toFixed(4) : 'n/a';
  return `${r.strategy}: epochs=${r.epochs} samples=${r.samples} loss=${r.finalLoss.toFixed(4)} ` +
    `testAccuracy=${acc} samplesPerSecond=${Math.round(r.samplesPerSecond)} ` +
    `wallSeconds=${r.wallSeconds.toFixed(2)}`;
}

export async function writeResult(file: string, r: TrainResult): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(r, null, 2) + '\n');
}
