// The `fsdp` strategy's declaration: parameters, gradients and optimizer state sharded per unit
// (ZeRO stage 3), gathered for each unit's forward and backward (src/trainer/fsdp.ts).
import { collectiveStrategy } from './collective.js';

export const fsdp = collectiveStrategy({
  name: 'fsdp',
  description: 'fully sharded data parallel (ZeRO-3): each unit\'s parameters are gathered for its forward and backward and freed after; gradients reduce-scattered',
  serverless: 'the ranks shard the parameters among themselves',
  check: (opts) => (opts.evalEvery > 0 ? 'strategy fsdp does not record an accuracy curve (--eval-every): between steps no rank holds the whole model; evaluate the result instead' : null),
  train: async (opts, ctx) => (await import('../fsdp.js')).trainFsdp(opts, ctx),
});
