// Tensor: a shape, a dtype, a device and a storage, plus the autograd fields.
//
// On the CPU the storage is whatever typed array the tensor is built around, never a copy, so a
// tensor can be a view into a SharedArrayBuffer (Hogwild), a slice of one flat parameter buffer
// (parameter servers), or a buffer that arrived from the wire (RPC); `.data` is that array. On
// 'cuda' the storage is a DeviceArray (device memory) that stays there between ops: `.data`
// throws, and values cross to the host only when read (`item`, `toArray`, `toTypedArray`,
// `to('cpu')` / `cpu()`), as in torch. Tensors are dense and row-major.
import { getBackend, type Device, type FloatStorage, type IntStorage } from './backend.js';
import './backend-cuda.js';
import { DeviceArray } from './device-array.js';
import { errors, fmtShape } from './errors.js';
import { backward as runBackward, Node, noGrad, tracks, type GradSink } from './autograd.js';
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
   * The storage on the tensor's device: the typed array on the CPU, a DeviceArray on 'cuda'.
   * Ops and backends use it; user code reads `.data` (CPU) or `toTypedArray()`. @internal
   */
  storage: StorageOf<D> | DeviceArray;
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
  gradStorage: FloatStorage | null = null;
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
  /**
   * On the CPU, wraps `data` (no copy) as a tensor of the given shape (default: 1-D). The dtype
   * follows the array type: Float32Array is float32, Int32Array is int32. With `device: 'cuda'`
   * a typed array is uploaded (a copy); a DeviceArray is wrapped as is (it must be float32 or
   * int32 and on that device).
   */
  constructor(data: StorageOf<D> | DeviceArray, shape?: Shape, options: { requiresGrad?: boolean; device?: Device } = {}) {
    let device: Device = options.device ?? 'cpu';
    let dtype = (data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : undefined) as D | undefined;
    if (dtype === undefined && data instanceof DeviceArray) {
      if (data.dtype === 'uint8') throw errors.type('Tensor', 'device data must hold float32 or int32 elements, got uint8');
      if (options.device !== undefined && options.device !== data.device) {
        throw errors.device('Tensor', [data.device, options.device], `the data is on '${data.device}' but device '${options.device}' was asked for; move it with .to()`);
      }
      dtype = data.dtype as D;
      device = data.device;
    }
    if (dtype === undefined) {
      throw errors.type('Tensor', `data must be a Float32Array or an Int32Array, got ${Object.prototype.toString.call(data)}`);
    }
    const s = shape ?? [data.length];
    const size = shapeSize(s);
    if (size !== data.length) throw errors.shape('Tensor', [s], `a shape of ${data.length} elements (the length of the data)`);
    const requiresGrad = options.requiresGrad ?? false;
    if (requiresGrad && dtype !== 'float32') throw errors.dtype('Tensor', 'a tensor that requires grad', dtype, 'float32');
    if (device !== 'cpu' && !(data instanceof DeviceArray)) data = upload(device, data as Float32Array | Int32Array) as DeviceArray;
    this.shape = Object.freeze(s.slice());
    this.size = size;
    this.dtype = dtype;
    this.device = device;
    this.storage = data;
    this.requiresGrad = requiresGrad;
  }

  /**
   * The storage, exactly `size` elements, row-major. Writable in place; re-pointed (not copied)
   * by `flattenParameters`, so hold the tensor rather than this array across such calls.
   * CPU tensors only: on another device it throws (use `toTypedArray()`, `toArray()` or `.cpu()`).
   */
  get data(): StorageOf<D> {
    if (this.device === 'cpu') return this.storage as StorageOf<D>;
    throw errors.device('data', [this.device], `.data is host memory, but this tensor lives on '${this.device}'; read it with .toTypedArray(), .toArray() or .cpu().data`);
  }

  set data(value: StorageOf<D>) {
    if (this.device !== 'cpu') throw errors.device('data', [this.device], `cannot point a '${this.device}' tensor at host memory; use .to('cpu') first`);
    this.storage = value;
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
    return this.device === 'cpu' ? (this.storage as StorageOf<D>)[0]! : this.toTypedArray()[0]!;
  }

  /** The elements as a plain array (a copy), row-major; downloads from a device. */
  toArray(): number[] {
    return Array.from(this.toTypedArray());
  }

  /** A copy of the elements in a fresh typed array (Float32Array or Int32Array); downloads from a device. */
  toTypedArray(): StorageOf<D> {
    const s = this.storage;
    if (!(s instanceof DeviceArray)) return s.slice() as StorageOf<D>;
    const b = getBackend(this.device);
    return (s.dtype === 'int32' ? b.toHostInt(s) : b.toHost(s)) as StorageOf<D>;
  }

  /**
   * This tensor on `device`: itself when already there, else a copy (upload or download).
   * Tracked like an op: the gradient flows back to this tensor's device.
   */
  to(device: Device): Tensor<D> {
    if (device === this.device) return this;
    const host = this.toTypedArray();
    const moved = device === 'cpu' ? new Tensor<D>(host, this.shape) : new Tensor<D>(upload(device, host) as DeviceArray, this.shape);
    if (this.dtype === 'float32' && tracks(this)) new ToDeviceNode(this as Tensor<DType> as Tensor, this.device).attach(moved as Tensor<DType> as Tensor);
    return moved;
  }

  /** `to('cpu')`. */
  cpu(): Tensor<D> {
    return this.to('cpu');
  }

  /** `to('cuda')`. */
  cuda(): Tensor<D> {
    return this.to('cuda');
  }

  /**
   * Moves this tensor's storage (and its gradient) to `device` in place, keeping the object:
   * how `Module.to` moves parameters that layers hold. Leaves only. @internal
   */
  moveTo(device: Device): void {
    if (device === this.device) return;
    if (!this.isLeaf) throw errors.autograd(`to('${device}'): only leaves can move in place; use .to() on results of ops`);
    const grad = this.grad;
    const moved = noGrad(() => this.to(device));
    (this as { device: Device }).device = device;
    this.storage = moved.storage;
    this.grad = null;
    this.gradTensor = null;
    this.gradStorage = null;
    if (grad !== null) this.attachGrad(grad.to(device).storage as FloatStorage);
  }

  /** A tensor sharing this storage, cut from the graph. */
  detach(): Tensor<D> {
    return new Tensor<D>(this.storage, this.shape, { device: this.device });
  }

  /** A copy of the data in fresh storage, cut from the graph. */
  clone(): Tensor<D> {
    const s = this.storage;
    if (!(s instanceof DeviceArray)) return new Tensor<D>(s.slice() as StorageOf<D>, this.shape, { device: this.device });
    const b = getBackend(this.device);
    if (s.dtype === 'int32') return new Tensor<D>(b.fromHostInt(b.toHostInt(s)) as DeviceArray, this.shape);
    const copy = b.take(this.size);
    b.copy(s, copy);
    return new Tensor<D>(copy as DeviceArray, this.shape);
  }

  /** The same storage seen under another shape of the same size; tracked like an op. */
  reshape(shape: Shape): Tensor<D> {
    if (shapeSize(shape, 'reshape') !== this.size) throw errors.shape('reshape', [this.shape, shape], `a shape of ${this.size} elements`);
    const view = new Tensor<D>(this.storage, shape, { device: this.device });
    if (this.dtype === 'float32' && tracks(this)) new ReshapeNode(this as Tensor<DType> as Tensor, shape).attach(view as Tensor<DType> as Tensor);
    return view;
  }

  /**
   * Makes `buf` (this tensor's size, on its device) the gradient storage: `.grad` becomes a
   * tensor over it. Used by the autograd engine and by `flattenParameters`. @internal
   */
  attachGrad(buf: FloatStorage): void {
    if (buf.length !== this.size) throw errors.shape('attachGrad', [this.shape, [buf.length]], `a gradient of ${this.size} elements`);
    this.gradStorage = buf;
    const cached = this.gradTensor;
    this.grad = cached !== null && cached.storage === buf ? cached : (this.gradTensor = new Tensor(buf as Float32Array, this.shape, { device: this.device }));
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
      this.gradStorage = this.grad.storage as FloatStorage;
      this.grad = null;
    } else {
      getBackend(this.device).fill(this.grad.storage as FloatStorage, 0);
    }
  }

  toString(): string {
    const values = this.device === 'cpu' ? (this.storage as StorageOf<D>) : this.toTypedArray();
    const head = Array.from(values.subarray(0, 6), (v) => +v.toPrecision(4)).join(', ');
    const device = this.device === 'cpu' ? '' : `, ${this.device}`;
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${device}${this.requiresGrad ? ', requiresGrad' : ''}, [${head}${this.size > 6 ? ', ...' : ''}])`;
  }
}

/** A copy of `host` in `device`'s storage. */
function upload(device: Device, host: Float32Array | Int32Array): FloatStorage | IntStorage {
  const b = getBackend(device);
  return host instanceof Int32Array ? b.fromHostInt(host) : b.fromHost(host);
}

/** A device transfer's backward: the gradient goes back to the input's device. */
class ToDeviceNode extends Node {
  readonly name = 'to';
  override consumesGradOut = false;
  constructor(x: Tensor, private readonly from: Device) {
    super([x], x.shape);
  }

  backward(g: FloatStorage, sink: GradSink): void {
    let host: Float32Array;
    if (g instanceof DeviceArray) {
      const b = getBackend(g.device);
      host = b.toHost(g);
      b.recycle(g);
    } else host = g;
    sink.give(0, this.from === 'cpu' ? host : getBackend(this.from).fromHost(host));
  }
}

/** A reshape's backward: the gradient is the same numbers under the input's shape. */
class ReshapeNode extends Node {
  readonly name = 'reshape';
  constructor(x: Tensor, shape: Shape) {
    super([x], shape);
  }

  backward(g: FloatStorage, sink: GradSink): void {
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
  const n = shapeSize(shape, 'zeros');
  if (options.device !== undefined && options.device !== 'cpu' && dtype === 'float32') {
    return new Tensor<D>(getBackend(options.device).zeros(n) as DeviceArray, shape, options);
  }
  return new Tensor<D>(alloc(dtype, n), shape, options);
}

/** A tensor filled with `value`. */
export function full<D extends DType = 'float32'>(shape: Shape, value: number, options: TensorOptions<D> = {}): Tensor<D> {
  const { device, requiresGrad, ...host } = options;
  const t = zeros<D>(shape, host as TensorOptions<D>);
  t.data.fill(value);
  const moved = device === undefined || device === 'cpu' ? t : t.to(device);
  if (requiresGrad) moved.setRequiresGrad(true);
  return moved;
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

/** Creates on the host, then moves to `options.device` (random factories draw on the host). */
function onDevice(shape: Shape, options: RandomOptions, fill: (t: Tensor) => void): Tensor {
  const { device, requiresGrad, ...rest } = options;
  const t = zeros(shape, { ...rest, dtype: 'float32' });
  fill(t);
  const moved = device === undefined || device === 'cpu' ? t : t.to(device);
  if (requiresGrad) moved.setRequiresGrad(true);
  return moved;
}

function generatorOf(options: RandomOptions): Generator {
  return options.generator ?? new Generator(options.seed ?? 0);
}

/** Standard normal draws (times `std`, plus `mean`) from a seeded generator. */
export function randn(shape: Shape, options: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  return onDevice(shape, options, (t) => generatorOf(options).fillNormal(t.data, options.mean ?? 0, options.std ?? 1));
}

/** Uniform draws in [low, high) from a seeded generator. */
export function uniform(shape: Shape, low = 0, high = 1, options: RandomOptions = {}): Tensor {
  if (!(high >= low)) throw errors.argument('uniform', 'high', high, `a number >= low (${low})`);
  return onDevice(shape, options, (t) => generatorOf(options).fillUniform(t.data, low, high));
}

/** Integers uniform in [0, high) as an int32 tensor (e.g. random labels). */
export function randint(shape: Shape, high: number, options: Omit<RandomOptions, 'dtype' | 'requiresGrad'> = {}): Tensor<'int32'> {
  if (!Number.isInteger(high) || high < 1) throw errors.argument('randint', 'high', high, 'a positive integer');
  const t = zeros<'int32'>(shape, { dtype: 'int32' });
  const g = generatorOf(options);
  for (let i = 0; i < t.size; i++) t.data[i] = g.int(high);
  return t;
}
