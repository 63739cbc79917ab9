// The `fsdp` strategy's declaration: parameters, gradients and optimizer state sharded per unit
// (ZeRO stage 3), gathered for each unit's forward and backward (src/trainer/fsdp.ts).
import type { PeersStrategy } from '../strategy.js';

export const fsdp: PeersStrategy = {
  name: 'fsdp',
  description: 'fully sharded data parallel (ZeRO-3): each unit\'s parameters are gathered for its forward and backward and freed after; gradients reduce-scattered',
  world: 'peers',
  serverless: 'the ranks shard the parameters among themselves',
  consistencies: ['sync'],
  refusal: (c) => `strategy fsdp is synchronous (every step reduces all ranks' gradients), got consistency ${c}: use centralized for async or ssp`,
  resultConsistency: () => 'sync',
  check: (opts) => (opts.evalEvery > 0 ? 'strategy fsdp does not record an accuracy curve (--eval-every): between steps no rank holds the whole model; evaluate the result instead' : null),
  host: {
    serves: 'collective messages',
    async start(agent) {
      return (await import('../ddp.js')).hostCollectives(agent);
    },
  },
  async train(opts, ctx) {
    return (await import('../fsdp.js')).trainFsdp(opts, ctx);
  },
};
