// The `fsdp` strategy's declaration: parameters, gradients and optimizer state sharded per unit
// (ZeRO stage 3), gathered for each unit's forward and backward (src/trainer/fsdp.ts).
import { collectiveStrategy } from './collective.js';

export const fsdp = collectiveStrategy({
  name: 'fsdp',
  description: 'fully sharded data parallel (ZeRO-3): each unit\'s parameters are gathered for its forward and backward and freed after; gradients reduce-scattered',
  serverless: 'the ranks shard the parameters among themselves',
  checkpoints: true,
  check: (opts) => {
    if (opts.evalEvery > 0) return 'strategy fsdp does not record an accuracy curve (--eval-every): between steps no rank holds the whole model; evaluate the result instead';
    // each rank writes its own shards: they must all take the same step, which only a step count promises
    if (opts.checkpointDir !== undefined && opts.checkpointEvery > 0) return '--checkpoint-every: fsdp checkpoints by step count only (every rank writes its shards of the same step): use --checkpoint-steps N';
    return null;
  },
  train: async (opts, ctx) => (await import('../fsdp.js')).trainFsdp(opts, ctx),
});
