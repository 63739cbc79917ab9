// flattenParameters: one contiguous Float32Array for all of a model's parameters (and one for
// their gradients), with every parameter re-pointed to a view of it.
//
// Parameter servers push and pull the whole model as one buffer, Hogwild workers share it as a
// SharedArrayBuffer, and the partitioned strategy slices it by range; none of them copies.
import { errors } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { Module } from './module.js';

/** Where one parameter lives in the flat buffers. */
export interface FlatEntry {
  name: string;
  /** Offset in elements. */
  offset: number;
  size: number;
  shape: readonly number[];
}

/** The flat buffers and their layout. */
export interface FlatParameters {
  /** All parameter values, in `entries` order, contiguous. */
  params: Float32Array;
  /** All gradients, same layout. Gradient storage of every parameter points here. */
  grads: Float32Array;
  entries: FlatEntry[];
}

/** Options of `flattenParameters`. */
export interface FlattenOptions {
  /** Use this buffer for the values (e.g. a view over a SharedArrayBuffer); length must be the parameter count. */
  buffer?: Float32Array;
  /** Use this buffer for the gradients; same length. */
  gradBuffer?: Float32Array;
  /**
   * Copy the current values into `buffer` (default true). false keeps the buffer's content: how a
   * second Hogwild worker attaches to weights another one already initialised.
   */
  copy?: boolean;
}

/**
 * Moves every parameter of `model` (a Module, or a list of tensors) into one flat buffer and
 * returns the layout. Afterwards `param.data` is a view of `params` (writing either is seen by
 * the other) and backward writes gradients into views of `grads`. Call it before building an
 * optimizer or starting a forward whose graph should see the new storage.
 *
 * Note: with `zeroGrad()` (set-to-none) a parameter that gets no gradient in a backward keeps
 * stale values in its slice of `grads`; use `zeroGrad(false)` when reading `grads` as a whole.
 */
export function flattenParameters(model: Module | readonly Tensor[], options: FlattenOptions = {}): FlatParameters {
  const named: [string, Tensor][] = model instanceof Module ? model.namedParameters() : model.map((t, i) => [String(i), t]);
  let total = 0;
  for (const [name, t] of named) {
    if (t.dtype !== 'float32') throw errors.dtype('flattenParameters', `parameter '${name}'`, t.dtype, 'float32');
    if (t.device !== 'cpu') throw errors.device('flattenParameters', [t.device], `flattenParameters: parameter '${name}' is on '${t.device}'; flat buffers are host memory, so flatten before moving the model (or move it with .to('cpu'))`);
    total += t.size;
  }
  const params = options.buffer ?? new Float32Array(total);
  const grads = options.gradBuffer ?? new Float32Array(total);
  if (!(params instanceof Float32Array) || params.length !== total) {
    throw errors.range('flattenParameters', `buffer has ${params.length} elements; expected ${total} (the parameter count)`);
  }
  if (!(grads instanceof Float32Array) || grads.length !== total) {
    throw errors.range('flattenParameters', `gradBuffer has ${grads.length} elements; expected ${total} (the parameter count)`);
  }
  const copy = options.copy ?? true;
  const entries: FlatEntry[] = [];
  let offset = 0;
  for (const [name, t] of named) {
    const view = params.subarray(offset, offset + t.size);
    if (copy && view !== t.data) view.set(t.data);
    t.data = view;
    const gview = grads.subarray(offset, offset + t.size);
    if (t.grad !== null) {
      gview.set(t.grad.data);
      t.attachGrad(gview);
    } else {
      t.gradStorage = gview;
    }
    entries.push({ name, offset, size: t.size, shape: t.shape });
    offset += t.size;
  }
  return { params, grads, entries };
}

/**
 * Moves every buffer of `model` (BatchNorm2d's running statistics, ...) into one flat Float32Array,
 * in `namedBuffers()` order, and returns it; afterwards each buffer's `data` is a view of it. With
 * `buffer` (e.g. over a SharedArrayBuffer) that array is used, and `copy: false` keeps its content:
 * how Hogwild's workers and its main thread share one set of statistics, as they share the parameters.
 */
export function flattenBuffers(model: Module, options: { buffer?: Float32Array; copy?: boolean } = {}): Float32Array {
  const named = model.namedBuffers();
  let total = 0;
  for (const [name, t] of named) {
    if (t.dtype !== 'float32') throw errors.dtype('flattenBuffers', `buffer '${name}'`, t.dtype, 'float32');
    if (t.device !== 'cpu') throw errors.device('flattenBuffers', [t.device], `flattenBuffers: buffer '${name}' is on '${t.device}'; flat buffers are host memory`);
    total += t.size;
  }
  const flat = options.buffer ?? new Float32Array(total);
  if (!(flat instanceof Float32Array) || flat.length !== total) {
    throw errors.range('flattenBuffers', `buffer has ${flat.length} elements; expected ${total} (the model's buffer elements)`);
  }
  const copy = options.copy ?? true;
  let offset = 0;
  for (const [, t] of named) {
    const view = flat.subarray(offset, offset + t.size);
    if (copy && view !== t.data) view.set(t.data);
    t.data = view;
    offset += t.size;
  }
  return flat;
}
