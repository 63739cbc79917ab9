// The `zero` strategy's declaration: ZeRO stage 1 or 2 (--zero-stage): optimizer state (and the
// reduced gradient) sharded over the ranks by equal element counts (src/trainer/ddp.ts).
import type { PeersStrategy } from '../strategy.js';

export const zero: PeersStrategy = {
  name: 'zero',
  description: 'data parallel with the optimizer state sharded (ZeRO stage 1, or 2 with the gradients): reduce-scatter, step the shard, all-gather',
  world: 'peers',
  serverless: 'the ranks shard the optimizer state among themselves',
  consistencies: ['sync'],
  refusal: (c) => `strategy zero is synchronous (every step reduces all ranks' gradients), got consistency ${c}: use centralized for async or ssp`,
  resultConsistency: () => 'sync',
  host: {
    serves: 'collective messages',
    async start(agent) {
      return (await import('../ddp.js')).hostCollectives(agent);
    },
  },
  async train(opts, ctx) {
    return (await import('../ddp.js')).trainDataParallel(opts, ctx, 'zero');
  },
};
