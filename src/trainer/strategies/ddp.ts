// The `ddp` strategy's declaration: every rank trains a full replica; gradients are averaged by
// bucketed all-reduces that start during backward (src/trainer/ddp.ts).
import type { PeersStrategy } from '../strategy.js';

export const ddp: PeersStrategy = {
  name: 'ddp',
  description: 'data parallel: every rank trains a full replica; gradients are all-reduced in buckets during backward',
  world: 'peers',
  serverless: 'the ranks all-reduce their gradients among themselves',
  consistencies: ['sync'],
  refusal: (c) => `strategy ddp is synchronous (every step averages all ranks' gradients), got consistency ${c}: use centralized for async or ssp`,
  resultConsistency: () => 'sync',
  host: {
    serves: 'collective messages',
    async start(agent) {
      return (await import('../ddp.js')).hostCollectives(agent);
    },
  },
  async train(opts, ctx) {
    return (await import('../ddp.js')).trainDataParallel(opts, ctx, 'ddp');
  },
};
