// The default Hogwild model module: the trainer's MLP features-H-H-classes, seeded as in `local`.
import { mlp } from '../tensor/index.js';
import type { HogwildModel, ModelContext } from './model.js';

export function createModel(ctx: ModelContext): HogwildModel {
  return mlp([ctx.features, ctx.hidden, ctx.hidden, ctx.classes], { seed: ctx.seed });
}
