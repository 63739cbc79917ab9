// The `centralized` strategy: parameter servers hold the model; each trainer pulls the parameters,
// computes forward and backward on its DistributedSampler partition and pushes the gradient.
//
// One fused pushPull per server per step: the gradient goes from the model's flat gradient buffer
// (flattenParameters) straight into the call, and each server's answer lands in the flat parameter
// buffer that the model's tensors are views of, so the next forward sees it without a copy.
import { DataLoader, DistributedSampler, type Dataset } from '../data/index.js';
import type { Agent } from '../rpc/index.js';
import { PsClient } from '../server/index.js';
import { crossEntropy, flattenParameters, Tensor, type Sequential } from '../tensor/index.js';
import type { TrainOptions } from './options.js';
import { createProgress } from './progress.js';
import { buildModel } from './setup.js';

/** Where a trainer stands in the world. */
export interface TrainerContext {
  agent: Agent;
  /** The servers' worker names, in shard order. */
  servers: readonly string[];
  /** This trainer's rank among the trainers, in [0, trainers). */
  rank: number;
  trainers: number;
  train: Dataset;
  /** Progress label (default: the agent's name). */
  label?: string;
  /**
   * Leave the servers when training ends (default true). false keeps this trainer in the live set
   * (it must leave later, e.g. after a final pull); it still leaves if training fails.
   */
  leave?: boolean;
}

/** What one trainer did; the first trainer gathers these into the run's result. */
export interface TrainerReport {
  trainer: string;
  samples: number;
  steps: number;
  /** Seconds of the training loop alone. */
  trainSeconds: number;
  /** Loss sum and count over the last epoch's batches. */
  lossSum: number;
  lossCount: number;
  /** The servers' smallest version at the trainer's last pull. */
  version: number;
}

export interface TrainedWorker {
  report: TrainerReport;
  model: Sequential;
  client: PsClient;
}

/**
 * Trains against the servers `ctx.servers` (which must be serving `ps.*` functions) and leaves
 * them at the end, so a sync server never waits for this trainer again. The model it returns holds
 * the parameters of its last pull.
 */
export async function trainCentralized(opts: TrainOptions, ctx: TrainerContext): Promise<TrainedWorker> {
  const { agent, train } = ctx;
  const sampler = new DistributedSampler(train.length, { numReplicas: ctx.trainers, rank: ctx.rank, shuffle: true, seed: opts.seed });
  const loader = new DataLoader(train, { batchSize: opts.batchSize, sampler, dropLast: true });
  if (loader.length === 0) {
    throw new RangeError(`--batch-size ${opts.batchSize} is larger than the ${sampler.length} training samples of trainer ${ctx.rank} of ${ctx.trainers}`);
  }
  const model = buildModel(opts, train.features, train.classes);
  const flat = flattenParameters(model);
  const layout = flat.entries.map((e) => ({ name: e.name, size: e.size }));
  const client = new PsClient(agent, ctx.servers, layout, flat.params, flat.grads);
  await client.join();

  const progress = createProgress({ mode: opts.progress, total: loader.samples * opts.epochs, label: ctx.label ?? agent.name });
  let samples = 0;
  let steps = 0;
  let lossSum = 0;
  let lossCount = 0;
  const t0 = performance.now();
  try {
    for (let epoch = 0; epoch < opts.epochs; epoch++) {
      loader.setEpoch(epoch);
      lossSum = 0;
      lossCount = 0;
      for (const batch of loader) {
        const x = new Tensor(batch.x, [batch.size, train.features]);
        const loss = crossEntropy(model.forward(x), batch.y);
        model.zeroGrad();
        loss.backward();
        await client.pushPull();
        const value = loss.item();
        if (!Number.isFinite(value)) throw new Error(`training diverged: loss is ${value} at epoch ${epoch}, after ${samples} samples (try a smaller --lr)`);
        lossSum += value;
        lossCount++;
        samples += batch.size;
        steps++;
        progress.tick(batch.size, value);
      }
    }
  } catch (e) {
    // leave after a failure, so the other trainers' sync rounds go on without this one
    await client.leave().catch(() => {});
    throw e;
  } finally {
    progress.stop();
  }
  if (ctx.leave ?? true) await client.leave();
  const trainSeconds = (performance.now() - t0) / 1000;
  return {
    report: { trainer: agent.name, samples, steps, trainSeconds, lossSum, lossCount, version: client.version },
    model,
    client,
  };
}
