// Module: the base of every layer and model, in torch.nn.Module's vocabulary.
//
// A module owns named parameters, named buffers and named child modules; `namedParameters()` walks
// them in registration order and names them by path ("0.weight", "2.bias"), so two processes that
// build the same model agree on the names and on the order (parameter servers shard by them).
//
// Buffers are state that is not trained: BatchNorm2d's running statistics, as torch's
// register_buffer. They never require grad and are not parameters: `namedParameters`,
// `parameters` and `parameterCount` (what optimizers step and parameter servers shard) leave them
// out. `namedBuffers` walks them like parameters ("1.running_mean"); `stateDict` and
// `loadStateDict` carry both, in torch's order (module by module: its parameters, its buffers,
// then its children), and `to(device)` moves both.
import { getBackend, type Device, type FloatStorage } from '../backend.js';
import { errors } from '../errors.js';
import type { Tensor } from '../tensor.js';

export abstract class Module {
  /** Training mode (dropout active). Set with train() / eval(). */
  training = true;
  private readonly ownParams = new Map<string, Tensor>();
  private readonly ownBuffers = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();

  /** The module's computation. */
  abstract forward(x: Tensor): Tensor;

  /** Registers a parameter (a leaf that requires grad) under `name`; returns it. */
  protected registerParameter(name: string, t: Tensor): Tensor {
    this.checkFree(name);
    t.setRequiresGrad(true);
    this.ownParams.set(name, t);
    return t;
  }

  /**
   * Registers a buffer under `name`: a float32 tensor of state that is saved, loaded and moved with
   * the module but not trained (it must not require grad). Returns it.
   */
  protected registerBuffer(name: string, t: Tensor): Tensor {
    this.checkFree(name);
    if (t.dtype !== 'float32') throw errors.dtype(this.constructor.name, `buffer '${name}'`, t.dtype, 'float32');
    if (t.requiresGrad) throw errors.range(this.constructor.name, `buffer '${name}' requires grad; a buffer is not trained (register a parameter instead)`);
    this.ownBuffers.set(name, t);
    return t;
  }

  /** Registers a child module under `name`; returns it. */
  protected registerModule<M extends Module>(name: string, m: M): M {
    this.checkFree(name);
    this.children.set(name, m);
    return m;
  }

  private checkFree(name: string): void {
    if (this.ownParams.has(name) || this.ownBuffers.has(name) || this.children.has(name)) throw errors.range(this.constructor.name, `'${name}' is already registered`);
  }

  /** [name, parameter] pairs, depth first in registration order, names joined with '.'. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, t] of this.ownParams) out.push([prefix + name, t]);
    for (const [name, m] of this.children) out.push(...m.namedParameters(`${prefix}${name}.`));
    return out;
  }

  /** [name, buffer] pairs, depth first in registration order, named like parameters ("1.running_mean"). */
  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, t] of this.ownBuffers) out.push([prefix + name, t]);
    for (const [name, m] of this.children) out.push(...m.namedBuffers(`${prefix}${name}.`));
    return out;
  }

  /** All buffers, in `namedBuffers` order. */
  buffers(): Tensor[] {
    return this.namedBuffers().map(([, t]) => t);
  }

  /** Parameters and buffers by name in torch's state_dict order: per module, parameters, buffers, then children. */
  private namedState(prefix: string, out: [string, Tensor, 'parameter' | 'buffer'][]): [string, Tensor, 'parameter' | 'buffer'][] {
    for (const [name, t] of this.ownParams) out.push([prefix + name, t, 'parameter']);
    for (const [name, t] of this.ownBuffers) out.push([prefix + name, t, 'buffer']);
    for (const [name, m] of this.children) m.namedState(`${prefix}${name}.`, out);
    return out;
  }

  /** All parameters, in `namedParameters` order. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Total number of parameter elements. */
  parameterCount(): number {
    let n = 0;
    for (const t of this.parameters()) n += t.size;
    return n;
  }

  /** [name, module] pairs of the direct children. */
  namedChildren(): [string, Module][] {
    return [...this.children];
  }

  /** Sets training mode on this module and every descendant. */
  train(flag = true): this {
    this.training = flag;
    for (const m of this.children.values()) m.train(flag);
    return this;
  }

  /** Evaluation mode: train(false). */
  eval(): this {
    return this.train(false);
  }

  /**
   * Moves every parameter (and its gradient) and every buffer to `device` in place, as torch's
   * `module.to`: the tensor objects stay the same, their storage changes. Build optimizers after moving.
   */
  to(device: Device): this {
    getBackend(device); // fails here, before anything moves, when the device has no backend
    for (const t of this.parameters()) t.moveTo(device);
    for (const t of this.buffers()) t.moveTo(device);
    return this;
  }

  /**
   * Copies of every parameter's and buffer's values by name (a checkpoint; downloads from a
   * device), in torch's state_dict order: module by module, its parameters, its buffers, then its
   * children ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", ...).
   */
  stateDict(): Map<string, Float32Array> {
    return new Map(this.namedState('', []).map(([name, t]) => [name, t.toTypedArray()]));
  }

  /**
   * Copies values into the parameters and buffers by name (in place: views and flat buffers stay
   * shared). Every name and length is checked first; on any mismatch nothing is written.
   */
  loadStateDict(state: ReadonlyMap<string, Float32Array> | Readonly<Record<string, Float32Array>>): void {
    const get = (name: string): Float32Array | undefined => (state instanceof Map ? state.get(name) : (state as Record<string, Float32Array>)[name]);
    const named = this.namedState('', []);
    const known = new Set(named.map(([n]) => n));
    for (const name of state instanceof Map ? state.keys() : Object.keys(state)) {
      if (!known.has(name)) throw errors.range('loadStateDict', `unknown parameter '${name}' (neither a parameter nor a buffer); the model has ${[...known].join(', ')}`);
    }
    for (const [name, t, kind] of named) {
      const v = get(name);
      if (v === undefined) throw errors.range('loadStateDict', `${kind} '${name}' is missing`);
      if (!(v instanceof Float32Array)) throw errors.type('loadStateDict', `'${name}' must be a Float32Array, got ${Object.prototype.toString.call(v)}`);
      if (v.length !== t.size) throw errors.shape('loadStateDict', [t.shape, [v.length]], `${t.size} values for '${name}'`);
    }
    for (const [name, t] of named) getBackend(t.device).upload(t.storage as FloatStorage, get(name)!);
  }

  /** Clears every parameter's gradient (see Tensor.zeroGrad). */
  zeroGrad(setToNone = true): void {
    for (const t of this.parameters()) t.zeroGrad(setToNone);
  }
}
