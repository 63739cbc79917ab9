// The `centralized` strategy's declaration: ps-server ranks hold shards of the parameters, each
// trainer pushes gradients and pulls parameters (src/trainer/centralized.ts).
import type { TrainedWorker } from '../centralized.js';
import type { ServerStats } from '../../server/index.js';
import { ANY_CONSISTENCY, type ServersStrategy, type WorldTraining } from '../strategy.js';

export const centralized: ServersStrategy = {
  name: 'centralized',
  description: 'parameter servers hold shards of the parameters; trainers push gradients and pull parameters',
  world: 'servers',
  serverRole: 'shard',
  consistencies: ANY_CONSISTENCY,
  checkpoints: true,
  restartsTrainersAlone: true,
  elastic: true,
  resultConsistency: (opts) => opts.consistency,
  async train(opts, ctx) {
    const { trainCentralized } = await import('../centralized.js');
    const run = fromServers(await trainCentralized(opts, { ...ctx, servers: ctx.place.serverNames }));
    if (!(opts.minTrainers > 0)) return run;
    // elastic: the result says how the first server handed out the job's batches
    let batches: unknown;
    return {
      ...run,
      async finish() {
        const model = await run.finish();
        // loaded here, not at the top: the table is read without loading gRPC
        const { PS_FUNCTIONS } = await import('../../server/index.js');
        const stats = await ctx.agent.call<ServerStats>(ctx.place.serverNames[0]!, PS_FUNCTIONS.stats, []);
        batches = stats.batches;
        return model;
      },
      extras: (reports) => ({ ...(run.extras ? run.extras(reports) : {}), batches }),
    };
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
