// The `remote-forward` strategy's declaration: one ps-server hosts the shared model behind an
// RRef, trainers run forwards over RPC with distributed autograd (src/trainer/remote-forward.ts).
import type { ServersStrategy } from '../strategy.js';

export const remoteForward: ServersStrategy = {
  name: 'remote-forward',
  description: 'one server hosts the model; trainers run it over RPC with distributed autograd',
  world: 'servers',
  serverRole: 'model',
  fixedServers: { count: 1, reason: 'hosts its one shared model on one server' },
  consistencies: ['sync', 'async'],
  // the host writes them: the model, its buffers and every trainer's optimizer state (docs/FAULTS.md)
  checkpoints: true,
  refusal: (c) => `strategy remote-forward applies each trainer's step as it comes (async, no staleness bound), got consistency ${c}: use centralized for ssp`,
  // every trainer's step lands on the shared model as it comes, no barrier
  resultConsistency: () => 'async',
  async train(opts, ctx) {
    const { trainRemoteForward } = await import('../remote-forward.js');
    const run = await trainRemoteForward(opts, { ...ctx, server: ctx.place.serverNames[0]! });
    return {
      report: run.report,
      ...(run.curve ? { curve: run.curve } : {}),
      resolved: run.resolved,
      parameters: run.parameters,
      async finish() {
        // the server stops once its last trainer has left: read the parameters first
        try {
          return await run.fetchModel();
        } finally {
          await run.leave();
        }
      },
    };
  },
};
