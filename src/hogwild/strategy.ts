// The `hogwild` strategy's declaration, registered in the trainer layer's table when this module
// is imported (src/cli/strategies.ts and src/hogwild/index.ts import it). Hogwild is a layer above
// the trainer, so the table takes this registration instead of importing upward. Light on purpose:
// the piscina pool is loaded only when a run starts.
import { registerStrategy } from '../trainer/strategies/index.js';
import { ANY_CONSISTENCY, type SingleProcessStrategy } from '../trainer/strategy.js';

export const hogwildStrategy: SingleProcessStrategy = {
  name: 'hogwild',
  description: 'worker threads train one model in a SharedArrayBuffer without locks',
  world: 'single',
  consistencies: ANY_CONSISTENCY,
  // the shared model, its buffers and every worker's optimizer state and position (checkpoint.ts)
  checkpoints: true,
  resultConsistency: () => null,
  run: async (opts) => (await (await import('./train.js')).trainHogwild(opts)).result,
};

registerStrategy(hogwildStrategy);
