// The `local` strategy's declaration: one process, one model, the reference loop (src/trainer/local.ts).
import { ANY_CONSISTENCY, type SingleProcessStrategy } from '../strategy.js';

export const local: SingleProcessStrategy = {
  name: 'local',
  description: 'one process trains the model on the whole training split',
  world: 'single',
  consistencies: ANY_CONSISTENCY,
  checkpoints: true,
  resultConsistency: () => null,
  run: async (opts) => (await import('../local.js')).trainLocal(opts),
};
