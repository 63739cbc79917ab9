// What the collective strategies' declarations (ddp, zero, fsdp) share: a peer world, synchronous
// only, each peer receiving collective messages from before the rendezvous completes.
import type { TrainOptions } from '../options.js';
import type { PeersStrategy, WorldTrainerContext, WorldTraining } from '../strategy.js';

export function collectiveStrategy(spec: {
  name: string;
  description: string;
  serverless: string;
  check?: (opts: TrainOptions) => string | null;
  checkpoints?: boolean;
  train: (opts: TrainOptions, ctx: WorldTrainerContext) => Promise<WorldTraining>;
}): PeersStrategy {
  return {
    name: spec.name,
    description: spec.description,
    world: 'peers',
    serverless: spec.serverless,
    consistencies: ['sync'],
    refusal: (c) => `strategy ${spec.name} is synchronous (every step reduces all ranks' gradients), got consistency ${c}: use centralized for async or ssp`,
    resultConsistency: () => 'sync',
    ...(spec.check ? { check: spec.check } : {}),
    ...(spec.checkpoints ? { checkpoints: true } : {}),
    host: {
      serves: 'collective messages',
      async start(agent) {
        return (await import('../ddp.js')).hostCollectives(agent);
      },
    },
    train: spec.train,
  };
}
