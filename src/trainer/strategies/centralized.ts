// The `centralized` strategy's declaration: ps-server ranks hold shards of the parameters, each
// trainer pushes gradients and pulls parameters (src/trainer/centralized.ts).
import type { TrainedWorker } from '../centralized.js';
import { ANY_CONSISTENCY, type ServersStrategy, type WorldTraining } from '../strategy.js';

export const centralized: ServersStrategy = {
  name: 'centralized',
  description: 'parameter servers hold shards of the parameters; trainers push gradients and pull parameters',
  world: 'servers',
  serverRole: 'shard',
  consistencies: ANY_CONSISTENCY,
  checkpoints: true,
  restartsTrainersAlone: true,
  resultConsistency: (opts) => opts.consistency,
  async train(opts, ctx) {
    const { trainCentralized } = await import('../centralized.js');
    return fromServers(await trainCentralized(opts, { ...ctx, servers: ctx.place.serverNames }));
  },
};

/**
 * A worker trained against parameter servers (centralized and partitioned): its final model is
 * its own copy after one last pull of every shard.
 */
export function fromServers(run: TrainedWorker): WorldTraining {
  return {
    report: run.report,
    ...(run.curve ? { curve: run.curve } : {}),
    resolved: run.resolved,
    parameters: run.model.parameterCount(),
    async finish() {
      await run.client.pull(false);
      if (run.finalCheckpoint) await run.finalCheckpoint();
      await run.client.leave();
      return run.model;
    },
  };
}
