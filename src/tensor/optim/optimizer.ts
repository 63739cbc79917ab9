// Optimizer: the base of SGD and Adam. Holds the parameters and their per-parameter state.
//
// The state is plain typed arrays keyed by parameter, exposed so a parameter server can own it
// (and checkpoint it) next to the shard it updates. For a parameter on another device the
// state lives there too (device storage, allocated through the parameter's backend).
import type { FloatStorage } from '../backend.js';
import { errors } from '../errors.js';
import type { Tensor } from '../tensor.js';

export abstract class Optimizer<State> {
  readonly params: readonly Tensor[];
  /** Per-parameter state (momentum buffers, moments, step counts), created on a parameter's first step. */
  readonly state = new Map<Tensor, State>();

  constructor(params: Iterable<Tensor>, readonly name: string) {
    this.params = [...params];
    for (const [i, p] of this.params.entries()) {
      if (p.dtype !== 'float32') throw errors.dtype(name, `parameter ${i}`, p.dtype, 'float32');
      if (!p.isLeaf) throw errors.type(name, `parameter ${i} is not a leaf (it was produced by an op); optimize leaves only`);
    }
  }

  /** Updates every parameter that has a gradient, in place; parameters without one are skipped. */
  step(): void {
    for (const p of this.params) {
      if (p.grad !== null) this.update(p, p.storage, p.grad.storage);
    }
  }

  /**
   * Updates `param` (its values `data`) with `grad`, creating its state on the first call. Also
   * callable directly with a gradient that did not come from `.grad`, e.g. one pushed to a server.
   * `data` and `grad` are storage on the parameter's device (typed arrays on the CPU).
   */
  abstract update(param: Tensor, data: FloatStorage, grad: FloatStorage): void;

  /** Clears every parameter's gradient (see Tensor.zeroGrad). */
  zeroGrad(setToNone = true): void {
    for (const p of this.params) p.zeroGrad(setToNone);
  }
}

/** Throws a RangeError naming the option when `value` is not a finite number >= `min`. */
export function checkOption(optimizer: string, name: string, value: number, min = 0, maxExclusive = Infinity): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value >= maxExclusive) {
    const range = maxExclusive === Infinity ? `a finite number >= ${min}` : `a number in [${min}, ${maxExclusive})`;
    throw errors.argument(optimizer, name, value, range);
  }
}
