// Hogwild's public API: `hogwild.train` (also `trainHogwild`), the model-module contract and errors.
//
//   // my-model.ts (a module, because each worker thread imports it: closures cannot cross threads)
//   export function createModel(ctx: ModelContext) { return mlp([ctx.features, 128, ctx.classes], { seed: ctx.seed }); }
//
//   const { result, model } = await hogwild.train({ workers: 4, model: './my-model.js', epochs: 2 });
import { trainHogwild } from './train.js';

export { trainHogwild };
export type { HogwildOptions, HogwildResult, HogwildRun } from './train.js';
export type { HogwildModel, ModelContext, ModelFactory } from './model.js';
export { DEFAULT_MODEL_URL } from './model.js';
export { HogwildWorkerError, HogwildOptionError } from './errors.js';

/** The namespace form: `hogwild.train({ workers: 4, model: './my-model.js' })`. */
export const hogwild = { train: trainHogwild } as const;
