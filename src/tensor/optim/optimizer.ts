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

  /**
   * `param`'s state as named arrays and numbers (copies: a checkpoint taken now stays as it is
   * while training goes on), or null before its first step. Host (CPU) state only.
   */
  exportState(param: Tensor): OptimizerState | null {
    const s = this.state.get(param) as Record<string, unknown> | undefined;
    if (s === undefined) return null;
    const out: OptimizerState = { arrays: {}, scalars: {} };
    for (const [k, v] of Object.entries(s)) {
      if (v instanceof Float32Array) out.arrays[k] = v.slice();
      else if (typeof v === 'number') out.scalars[k] = v;
      else if (v !== null) throw errors.type(this.name, `state "${k}" of a parameter is not on the CPU; only host state can be exported`);
    }
    return out;
  }

  /**
   * Sets `param`'s state from exportState's form (a checkpoint): every array must have the
   * parameter's length, and the names must be this optimizer's (refused otherwise, nothing set).
   */
  importState(param: Tensor, state: OptimizerState): void {
    const fresh = this.freshState(param.size) as unknown as Record<string, unknown>;
    const out: Record<string, unknown> = { ...fresh };
    for (const [k, v] of Object.entries(state.arrays)) {
      if (!(k in fresh)) throw errors.type(this.name, `a checkpoint's optimizer state "${k}" is not ${this.name}'s (it has ${Object.keys(fresh).join(', ')})`);
      if (!(v instanceof Float32Array) || v.length !== param.size) throw errors.type(this.name, `a checkpoint's optimizer state "${k}" has ${v?.length} elements; the parameter has ${param.size}`);
      out[k] = Float32Array.from(v);
    }
    for (const [k, v] of Object.entries(state.scalars)) {
      if (!(k in fresh) || typeof fresh[k] !== 'number') throw errors.type(this.name, `a checkpoint's optimizer scalar "${k}" is not ${this.name}'s`);
      if (!Number.isFinite(v)) throw errors.type(this.name, `a checkpoint's optimizer scalar "${k}" is ${v}`);
      out[k] = v;
    }
    for (const [k, v] of Object.entries(fresh)) {
      if (v instanceof Float32Array && !(k in state.arrays)) throw errors.type(this.name, `a checkpoint has no optimizer state "${k}"`);
    }
    this.state.set(param, out as unknown as State);
  }

  /** The state of a parameter of `size` elements before its first step (arrays zeroed). */
  protected abstract freshState(size: number): State;

  /** Clears every parameter's gradient (see Tensor.zeroGrad). */
  zeroGrad(setToNone = true): void {
    for (const p of this.params) p.zeroGrad(setToNone);
  }
}

/** An optimizer's state of one parameter, by name: arrays (moments, momentum) and numbers (steps). */
export interface OptimizerState {
  arrays: Record<string, Float32Array>;
  scalars: Record<string, number>;
}

/** Throws a RangeError naming the option when `value` is not a finite number >= `min`. */
export function checkOption(optimizer: string, name: string, value: number, min = 0, maxExclusive = Infinity): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value >= maxExclusive) {
    const range = maxExclusive === Infinity ? `a finite number >= ${min}` : `a number in [${min}, ${maxExclusive})`;
    throw errors.argument(optimizer, name, value, range);
  }
}
