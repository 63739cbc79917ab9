// The `partitioned` strategy's declaration: every rank is a worker and the server of 1/N of the
// parameters, stepping in lock-step (src/trainer/partitioned.ts).
import type { PeersStrategy } from '../strategy.js';
import { fromServers } from './centralized.js';

export const partitioned: PeersStrategy = {
  name: 'partitioned',
  description: 'every worker serves 1/N of the parameters and their optimizer state; synchronous',
  world: 'peers',
  serverless: 'each trainer serves 1/N of the parameters',
  consistencies: ['sync'],
  refusal: (c) => `strategy partitioned is synchronous (every worker's shard steps once per round with the averaged gradients), got consistency ${c}: use centralized for async or ssp`,
  checkpoints: true,
  resultConsistency: () => 'sync',
  host: {
    serves: 'their own shards',
    async start(agent, opts, place) {
      const { partitionServer, partitionCheckpoints } = await import('../partitioned.js');
      return partitionServer(agent, opts, place.index, place.trainers, await partitionCheckpoints(opts, agent.name));
    },
  },
  async train(opts, ctx) {
    const { trainPartitioned } = await import('../partitioned.js');
    return fromServers(await trainPartitioned(opts, { ...ctx, workerNames: ctx.place.trainerNames }));
  },
};
