// Tensor: a shape, a dtype, a device and a typed-array storage, plus the autograd fields.
//
// The storage is whatever typed array the tensor is built around, never a copy, so a tensor can
// be a view into a SharedArrayBuffer (Hogwild), a slice of one flat parameter buffer (parameter
// servers), or a buffer that arrived from the wire (RPC). Tensors are dense and row-major.
import type { Device } from './backend.js';
import { errors, fmtShape } from './errors.js';
import { backward as runBackward, Node, tracks, type GradSink } from './autograd.js';
import { Generator } from './random.js';

export type { Device } from './backend.js';

/** Element types. Labels are int32. */
export type DType = 'float32' | 'int32';
/** The typed array that stores a dtype. */
export type StorageOf<D extends DType> = D extends 'int32' ? Int32Array : Float32Array;
/** Anything a shape can be given as. */
export type Shape = readonly number[];

/** Options shared by the factories. */
export interface TensorOptions<D extends DType = 'float32'> {
  dtype?: D;
  /** Make the tensor a leaf that collects gradients. Float32 only. */
  requiresGrad?: boolean;
  device?: Device;
}

/** Options of the random factories. */
export interface RandomOptions extends TensorOptions<'float32'> {
  /** Seed of a fresh generator (ignored when `generator` is given). Default 0. */
  seed?: number;
  /** Draw from this generator, advancing it. */
  generator?: Generator;
}

/** The number of elements of a shape; throws on negative or fractional sizes. */
export function shapeSize(shape: Shape, op = 'tensor'): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw errors.shape(op, [shape], 'non-negative integer dimensions');
    n *= d;
  }
  return n;
}

export class Tensor<D extends DType = 'float32'> {
  /** Dimensions, outermost first. */
  readonly shape: Shape;
  /** Number of elements (the product of the shape). */
  readonly size: number;
  readonly dtype: D;
  readonly device: Device;
  /**
   * The storage, exactly `size` elements, row-major. Writable in place; re-pointed (not copied)
   * by `flattenParameters`, so hold the tensor rather than this array across such calls.
   */
  data: StorageOf<D>;
  /** Whether autograd tracks this tensor: a leaf that collects `.grad`, or the output of a tracked op. */
  requiresGrad: boolean;
  /** Accumulated gradient of a leaf (same shape, float32); null until a backward reaches it or after `zeroGrad()`. */
  grad: Tensor<'float32'> | null = null;
  /** The graph node that produced this tensor; null for leaves and untracked tensors. */
  gradFn: Node | null = null;
  /**
   * Gradient storage kept by `zeroGrad()` (set-to-none) so the next backward writes into it
   * instead of allocating; also where `flattenParameters` points a flat gradient view.
   * @internal
   */
  gradStorage: Float32Array | null = null;
  private gradTensor: Tensor<'float32'> | null = null;
  /**
   * Set by Sequential on its intermediate activations: the storage goes back to the buffer pool
   * when a backward releases the graph that saved the tensor. @internal
   */
  releaseWithGraph = false;

  /**
   * Wraps `data` (no copy) as a tensor of the given shape (default: 1-D). The dtype follows the
   * array type: Float32Array is float32, Int32Array is int32.
   */
  constructor(data: StorageOf<D>, shape?: Shape, options: { requiresGrad?: boolean; device?: Device } = {}) {
    const dtype = (data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : undefined) as D | undefined;
    if (dtype === undefined) {
      throw errors.type('Tensor', `data must be a Float32Array or an Int32Array, got ${Object.prototype.toString.call(data)}`);
    }
    const s = shape ?? [data.length];
    const size = shapeSize(s);
    if (size !== data.length) throw errors.shape('Tensor', [s], `a shape of ${data.length} elements (the length of the data)`);
    const requiresGrad = options.requiresGrad ?? false;
    if (requiresGrad && dtype !== 'float32') throw errors.dtype('Tensor', 'a tensor that requires grad', dtype, 'float32');
    this.shape = Object.freeze(s.slice());
    this.size = size;
    this.dtype = dtype;
    this.device = options.device ?? 'cpu';
    this.data = data;
    this.requiresGrad = requiresGrad;
  }

  get ndim(): number {
    return this.shape.length;
  }

  /** True for tensors not produced by a tracked op (parameters, inputs, detached values). */
  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw errors.shape('item', [this.shape], 'a tensor with exactly one element');
    return this.data[0]!;
  }

  /** The elements as a plain array (a copy), row-major. */
  toArray(): number[] {
    return Array.from(this.data);
  }

  /** A tensor sharing this storage, cut from the graph. */
  detach(): Tensor<D> {
    return new Tensor<D>(this.data, this.shape, { device: this.device });
  }

  /** A copy of the data in fresh storage, cut from the graph. */
  clone(): Tensor<D> {
    return new Tensor<D>(this.data.slice() as StorageOf<D>, this.shape, { device: this.device });
  }

  /** The same storage seen under another shape of the same size; tracked like an op. */
  reshape(shape: Shape): Tensor<D> {
    if (shapeSize(shape, 'reshape') !== this.size) throw errors.shape('reshape', [this.shape, shape], `a shape of ${this.size} elements`);
    const view = new Tensor<D>(this.data, shape, { device: this.device });
    if (this.dtype === 'float32' && tracks(this)) new ReshapeNode(this as Tensor<DType> as Tensor, shape).attach(view as Tensor<DType> as Tensor);
    return view;
  }

  /**
   * Makes `buf` (this tensor's size) the gradient storage: `.grad` becomes a tensor over it.
   * Used by the autograd engine and by `flattenParameters`. @internal
   */
  attachGrad(buf: Float32Array): void {
    if (buf.length !== this.size) throw errors.shape('attachGrad', [this.shape, [buf.length]], `a gradient of ${this.size} elements`);
    this.gradStorage = buf;
    const cached = this.gradTensor;
    this.grad = cached !== null && cached.data === buf ? cached : (this.gradTensor = new Tensor(buf, this.shape, { device: this.device }));
  }

  /** Marks a leaf as collecting gradients (or not). Returns this. */
  setRequiresGrad(flag = true): this {
    if (!this.isLeaf) throw errors.autograd('setRequiresGrad: only leaves can change requiresGrad; use detach() to cut a tensor from the graph');
    if (flag && this.dtype !== 'float32') throw errors.dtype('setRequiresGrad', 'the tensor', this.dtype, 'float32');
    this.requiresGrad = flag;
    return this;
  }

  /**
   * Backpropagates from this tensor. Without `grad` the tensor must hold one element (a loss);
   * with `grad` (same shape) it is the gradient of some scalar with respect to this tensor.
   * Leaf gradients accumulate into `.grad` until zeroed.
   */
  backward(grad?: Tensor | Float32Array): void {
    runBackward([this as Tensor<DType> as Tensor], grad === undefined ? undefined : [grad]);
  }

  /**
   * Clears the gradient. By default the gradient becomes null (PyTorch's set-to-none) and its
   * storage is kept for the next backward to overwrite; `setToNone: false` fills it with zeros.
   */
  zeroGrad(setToNone = true): void {
    if (this.grad === null) return;
    if (setToNone) {
      this.gradStorage = this.grad.data;
      this.grad = null;
    } else {
      this.grad.data.fill(0);
    }
  }

  toString(): string {
    const head = Array.from(this.data.subarray(0, 6), (v) => +v.toPrecision(4)).join(', ');
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''}, [${head}${this.size > 6 ? ', ...' : ''}])`;
  }
}

/** A reshape's backward: the gradient is the same numbers under the input's shape. */
class ReshapeNode extends Node {
  readonly name = 'reshape';
  constructor(x: Tensor, shape: Shape) {
    super([x], shape);
  }

  backward(g: Float32Array, sink: GradSink): void {
    sink.give(0, g);
  }
}

function alloc<D extends DType>(dtype: D, n: number): StorageOf<D> {
  return (dtype === 'int32' ? new Int32Array(n) : new Float32Array(n)) as StorageOf<D>;
}

/**
 * Wraps an existing typed array (no copy): `tensor(sabView, [10, 784])`. An Int32Array gives an
 * int32 tensor (labels), a Float32Array a float32 one.
 */
export function tensor(data: Int32Array, shape?: Shape): Tensor<'int32'>;
export function tensor(data: Float32Array, shape?: Shape, options?: { requiresGrad?: boolean }): Tensor<'float32'>;
export function tensor(data: Float32Array | Int32Array, shape?: Shape, options: { requiresGrad?: boolean } = {}): Tensor<DType> {
  return new Tensor<DType>(data, shape, options);
}

/** A tensor of zeros. */
export function zeros<D extends DType = 'float32'>(shape: Shape, options: TensorOptions<D> = {}): Tensor<D> {
  const dtype = (options.dtype ?? 'float32') as D;
  return new Tensor<D>(alloc(dtype, shapeSize(shape, 'zeros')), shape, options);
}

/** A tensor filled with `value`. */
export function full<D extends DType = 'float32'>(shape: Shape, value: number, options: TensorOptions<D> = {}): Tensor<D> {
  const t = zeros<D>(shape, options);
  t.data.fill(value);
  return t;
}

/** A tensor of ones. */
export function ones<D extends DType = 'float32'>(shape: Shape, options: TensorOptions<D> = {}): Tensor<D> {
  return full<D>(shape, 1, options);
}

/** A scalar (shape []) float32 tensor. */
export function scalar(value: number, options: TensorOptions<'float32'> = {}): Tensor {
  return new Tensor(Float32Array.of(value), [], options);
}

/** Nested arrays of numbers, as `fromArray` accepts them. */
export type NestedArray = number | readonly NestedArray[];

/**
 * Copies plain numbers into a new tensor. Either nested arrays (the shape is read from them) or a
 * flat array plus a shape.
 */
export function fromArray<D extends DType = 'float32'>(values: NestedArray, shape?: Shape, options: TensorOptions<D> = {}): Tensor<D> {
  const flat: number[] = [];
  const inferred: number[] = [];
  const walk = (v: NestedArray, depth: number): void => {
    if (typeof v === 'number') {
      if (depth !== inferred.length && shape === undefined) throw errors.shape('fromArray', [inferred], 'nested arrays of equal lengths');
      flat.push(v);
      return;
    }
    if (depth === inferred.length) inferred.push(v.length);
    else if (inferred[depth] !== v.length && shape === undefined) throw errors.shape('fromArray', [inferred], `rows of length ${inferred[depth]} at depth ${depth}, got one of ${v.length}`);
    for (const x of v) walk(x, depth + 1);
  };
  walk(values, 0);
  const dtype = (options.dtype ?? 'float32') as D;
  const data = alloc(dtype, flat.length);
  for (let i = 0; i < flat.length; i++) data[i] = flat[i]!;
  return new Tensor<D>(data, shape ?? inferred, options);
}

function generatorOf(options: RandomOptions): Generator {
  return options.generator ?? new Generator(options.seed ?? 0);
}

/** Standard normal draws (times `std`, plus `mean`) from a seeded generator. */
export function randn(shape: Shape, options: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  const t = zeros(shape, { ...options, dtype: 'float32' });
  generatorOf(options).fillNormal(t.data, options.mean ?? 0, options.std ?? 1);
  return t;
}

/** Uniform draws in [low, high) from a seeded generator. */
export function uniform(shape: Shape, low = 0, high = 1, options: RandomOptions = {}): Tensor {
  if (!(high >= low)) throw errors.argument('uniform', 'high', high, `a number >= low (${low})`);
  const t = zeros(shape, { ...options, dtype: 'float32' });
  generatorOf(options).fillUniform(t.data, low, high);
  return t;
}

/** Integers uniform in [0, high) as an int32 tensor (e.g. random labels). */
export function randint(shape: Shape, high: number, options: Omit<RandomOptions, 'dtype' | 'requiresGrad'> = {}): Tensor<'int32'> {
  if (!Number.isInteger(high) || high < 1) throw errors.argument('randint', 'high', high, 'a positive integer');
  const t = zeros<'int32'>(shape, { dtype: 'int32' });
  const g = generatorOf(options);
  for (let i = 0; i < t.size; i++) t.data[i] = g.int(high);
  return t;
}
