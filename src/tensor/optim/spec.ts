// One description of an optimizer and one factory for it. Every place that turns the training
// options into an optimizer (a local model's, a parameter server's shard, a Hogwild worker's, the
// owners of a DistributedOptimizer) goes through these, so they all build the same one.
import { Adam } from './adam.js';
import type { Optimizer } from './optimizer.js';
import { SGD } from './sgd.js';
import type { Tensor } from '../tensor.js';

/** An optimizer and its hyper-parameters (torch.optim semantics, fused native kernels). */
export type OptimizerSpec =
  | { kind: 'sgd'; lr: number; momentum?: number; weightDecay?: number; nesterov?: boolean }
  | { kind: 'adam'; lr: number; betas?: [number, number]; eps?: number; weightDecay?: number };

/** Builds the optimizer `spec` describes over `params` (its constructor checks every hyper-parameter). */
export function createOptimizer(params: Iterable<Tensor>, spec: OptimizerSpec): Optimizer<unknown> {
  if (spec.kind === 'adam') {
    return new Adam(params, { lr: spec.lr, ...(spec.betas ? { betas: spec.betas } : {}), ...(spec.eps !== undefined ? { eps: spec.eps } : {}), weightDecay: spec.weightDecay ?? 0 });
  }
  if (spec.kind !== 'sgd') throw new RangeError(`optimizer kind must be 'sgd' or 'adam', got ${JSON.stringify((spec as { kind: unknown }).kind)}`);
  return new SGD(params, { lr: spec.lr, momentum: spec.momentum ?? 0, weightDecay: spec.weightDecay ?? 0, nesterov: spec.nesterov ?? false });
}

/** The spec's options as a DistributedOptimizer takes them: `[kind, options]`. */
export function optimizerArgs(spec: OptimizerSpec): [string, Record<string, unknown>] {
  const { kind, ...options } = spec;
  return [kind, options];
}
