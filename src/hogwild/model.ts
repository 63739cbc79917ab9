// How a Hogwild run gets its model: the model contract of src/trainer/model.ts, given as a module
// (a preset name, a path or a URL) and never as an object, because every worker thread imports
// the module itself: a closure cannot cross into a thread.
//
// The main thread's instance is built first and its parameters are copied into the shared buffer;
// each worker then builds its own instance (its own graph, activations and gradients) and points
// its parameters at that buffer without copying, so all of them train the same weights.
import type { Module, Tensor } from '../tensor/index.js';
import { resolveModel, type ModelRef, type ResolvedModel } from '../trainer/model.js';
import { HogwildOptionError } from './errors.js';

export type { ModelContext, ModelFactory } from '../trainer/model.js';

/** A model Hogwild can train: a module whose forward maps a batch of samples to logits. */
export interface HogwildModel extends Module {
  forward(x: Tensor): Tensor;
}

/** The model of a Hogwild run, with the URL its workers import. */
export async function resolveHogwildModel(ref: ModelRef | undefined): Promise<ResolvedModel & { url: string }> {
  if (ref !== undefined && typeof ref === 'object' && !(ref instanceof URL)) {
    throw new HogwildOptionError('model', '(module object)', 'a preset name, a module path or a URL (each worker thread imports the model itself)');
  }
  const resolved = await resolveModel(ref);
  return resolved as ResolvedModel & { url: string };
}
