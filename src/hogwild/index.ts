// Hogwild's public API: `hogwild.train` (also `trainHogwild`) and its errors; the model contract is the trainer's (src/trainer/model.ts).
//
//   // my-model.ts (a module, because each worker thread imports it: closures cannot cross threads)
//   export function createModel(ctx: ModelContext) { return mlp([ctx.features, 128, ctx.classes], { seed: ctx.seed }); }
//
//   const { result, model } = await hogwild.train({ workers: 4, model: './my-model.js', epochs: 2 });
import { trainHogwild } from './train.js';

export { trainHogwild };
export type { HogwildOptions, HogwildResult, HogwildRun } from './train.js';
export type { HogwildModel, ModelContext, ModelFactory } from './model.js';
export { HogwildWorkerError, HogwildOptionError } from './errors.js';
// importing the API registers hogwild in the strategy table (resolveOptions then accepts it)
export { hogwildStrategy } from './strategy.js';

/** The namespace form: `hogwild.train({ workers: 4, model: './my-model.js' })`. */
export const hogwild = { train: trainHogwild } as const;
