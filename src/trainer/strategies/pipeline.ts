// The `pipeline` strategy's declaration: the model's Sequential cut into --stages stages, one
// process each, micro-batches flowing through them under a GPipe or 1F1B schedule; --replicas
// pipelines side by side with each stage's gradients all-reduced (src/trainer/pipeline.ts).
import type { TrainOptions } from '../options.js';
import type { PeersStrategy } from '../strategy.js';
import { collectiveStrategy } from './collective.js';

/** Why these options cannot run as a pipeline, or null. */
function check(opts: TrainOptions): string | null {
  if (opts.evalEvery > 0) return 'strategy pipeline does not record an accuracy curve (--eval-every): between steps no process holds the whole model; evaluate the result instead';
  if (opts.precision !== 'fp32') return `strategy pipeline sends activations and gradients in fp32, got --precision ${opts.precision}: use --precision fp32 (16-bit wires are for ddp, zero, fsdp and centralized)`;
  if (opts.gradAccum > 1) return `strategy pipeline accumulates its micro-batches' gradients already, got --grad-accum ${opts.gradAccum}: use --micro-batches (and a larger --batch-size) instead`;
  if (opts.microBatches > opts.batchSize) return `--micro-batches ${opts.microBatches} is more than --batch-size ${opts.batchSize}: a micro-batch would be empty`;
  if (opts.split !== undefined && opts.split.length !== opts.stages - 1) return `--split gives ${opts.split.length} index(es) for --stages ${opts.stages}: give ${opts.stages - 1}, the child index at which each stage after the first starts`;
  // each stage writes its own parameters: they must all take the same step, which only a step count promises
  if (opts.checkpointDir !== undefined && opts.checkpointEvery > 0) return '--checkpoint-every: pipeline checkpoints by step count only (every stage writes its own layers of the same step): use --checkpoint-steps N';
  return null;
}

export const pipeline: PeersStrategy = {
  ...collectiveStrategy({
    name: 'pipeline',
    description: 'pipeline parallel: the model cut into stages on separate processes, micro-batches through them (gpipe or 1f1b); --replicas pipelines all-reduce per stage',
    serverless: 'the stages pass activations and gradients to each other',
    checkpoints: true,
    check,
    train: async (opts, ctx) => (await import('../pipeline.js')).trainPipeline(opts, ctx),
  }),
  refusal: (c) => `strategy pipeline is synchronous (every stage steps once per batch, on all its micro-batches), got consistency ${c}: use centralized for async or ssp`,
  peers: (opts) => ({ count: opts.stages * opts.replicas, because: `--stages ${opts.stages} x --replicas ${opts.replicas}` }),
  dataShard: (index, _peers, opts) => ({ rank: Math.floor(index / opts.stages), worldSize: opts.replicas }),
  async checkModel(model, ctx, opts) {
    const { planPipeline } = await import('../../pipeline/split.js');
    try {
      planPipeline(model, opts.stages, { inputShape: ctx.inputShape, balance: opts.balance, ...(opts.split ? { split: opts.split } : {}) });
      return null;
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  },
};
