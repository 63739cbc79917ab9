// The result of a training run: the object `--json` writes and the final line a person reads.
//
// ARCHITECTURE.md's contract: at least strategy, consistency, trainers, samples, samplesPerSecond
// (training loop only, all trainers together), testAccuracy, wallSeconds (whole command), epochs.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface TrainResult {
  strategy: string;
  consistency: string | null;
  trainers: number;
  epochs: number;
  dataset: string;
  batchSize: number;
  lr: number;
  hidden: number;
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
  /** With --eval-every: test accuracy on a fixed slice over training time. */
  curve?: Array<{ seconds: number; samples: number; accuracy: number }>;
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
