// The `mlp` preset (the default model): inputs -> `depth` hidden layers of `hidden` units with
// ReLU -> one logit per class, initialised from the run's seed. With the defaults (--hidden 64,
// --depth 2) it is the MLP 784-64-64-10 every figure of this project was measured with.
// `--model-options '{"hidden": H, "depth": D}'` overrides the flags.
import { mlp, type Sequential } from '../../tensor/index.js';
import type { ModelContext } from '../model.js';

function size(options: Record<string, unknown>, key: 'hidden' | 'depth', fallback: number, min: number): number {
  const v = options[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new RangeError(`mlp: ${key} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return v;
}

export function createModel(ctx: ModelContext): Sequential {
  const hidden = size(ctx.options, 'hidden', ctx.hidden, 1);
  const depth = size(ctx.options, 'depth', ctx.depth, 0);
  return mlp([ctx.features, ...Array.from({ length: depth }, () => hidden), ctx.classes], { seed: ctx.seed });
}
