// 2-D max and average pooling over NCHW images (torch.nn.functional.max_pool2d / avg_pool2d with
// ceil_mode=False), and global average pooling (torch's AdaptiveAvgPool2d(1)).
//
// Max pooling saves the int32 position of each window's maximum for its backward. Those index
// buffers come from a small free list per backend (the Backend contract pools only float
// storage) and go back once the backward that read them releases the graph, so a training step
// allocates none.
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend, type Backend, type FloatStorage, type IntStorage } from '../backend.js';
import { errors } from '../errors.js';
import { BufferPool } from '../pool.js';
import { Tensor } from '../tensor.js';
import { pool2dOutput, pool2dParams, type Pool2dGeometry, type Pool2dOptions, type Size2d } from './conv-shape.js';
import { expectFloat } from './validate.js';

export type { Pool2dOptions, Size2d } from './conv-shape.js';

/** Options of `avgPool2d`. */
export interface AvgPool2dOptions extends Pool2dOptions {
  /** Count the padding in each window's divisor (default true, as torch). */
  countIncludePad?: boolean;
}

const intPools = new WeakMap<Backend, BufferPool<IntStorage>>();

function intPool(b: Backend): BufferPool<IntStorage> {
  let pool = intPools.get(b);
  if (pool === undefined) intPools.set(b, (pool = new BufferPool<IntStorage>((n) => b.allocInt(n))));
  return pool;
}

/** Checks a pooling's input and options; returns its geometry and output shape ([n, c, oh, ow]). */
function poolGeometry(op: string, x: Tensor, kernelSize: Size2d, options: Pool2dOptions): [Pool2dGeometry, number[]] {
  expectFloat(op, 'input', x);
  const { kernel, stride, padding } = pool2dParams(op, kernelSize, options);
  if (x.shape.length !== 4) throw errors.shape(op, [x.shape], 'input of shape [batch, channels, height, width]');
  const [n, c, h, w] = x.shape as [number, number, number, number];
  if (n < 1 || c < 1 || h < 1 || w < 1) throw errors.shape(op, [x.shape], 'an input with no empty dimension');
  const geometry = [n * c, h, w, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1]];
  const out = pool2dOutput(geometry);
  if (out === null) {
    throw errors.shape(op, [x.shape], `a padded input of at least ${kernel[0]}x${kernel[1]} (the window); it is ${h + 2 * padding[0]}x${w + 2 * padding[1]}`);
  }
  return [geometry, [n, c, out[0], out[1]]];
}

class MaxPool2dNode extends Node {
  readonly name = 'maxPool2d';
  override consumesGradOut = true;
  constructor(x: Tensor, private readonly geometry: Pool2dGeometry, outputShape: readonly number[], private readonly indices: IntStorage) {
    super([x], outputShape);
  }

  backward(g: FloatStorage, sink: GradSink): void {
    const b = getBackend(this.device);
    const dx = sink.target(0);
    b.kernels.maxPool2dBackward(this.geometry, g, this.indices, dx, !sink.fresh);
    if (!sink.retainGraph) intPool(b).recycle(this.indices);
  }
}

/**
 * Max over each kernelSize window of `x` [n, c, h, w] (stride defaults to the kernel size;
 * padding never wins): [n, c, oh, ow], oh = floor((h + 2 padding - kernel) / stride) + 1.
 */
export function maxPool2d(x: Tensor, kernelSize: Size2d, options: Pool2dOptions = {}): Tensor {
  const [geometry, shape] = poolGeometry('maxPool2d', x, kernelSize, options);
  const b = getBackend(x.device);
  const size = shape[0]! * shape[1]! * shape[2]! * shape[3]!;
  const y = b.take(size);
  const pool = intPool(b);
  const indices = pool.take(size);
  b.kernels.maxPool2dForward(geometry, x.storage, y, indices);
  const result = new Tensor(y, shape, { device: x.device });
  if (tracks(x)) new MaxPool2dNode(x, geometry, shape, indices).attach(result);
  else pool.recycle(indices);
  return result;
}

class AvgPool2dNode extends Node {
  readonly name: string;
  override consumesGradOut = true;
  constructor(x: Tensor, private readonly geometry: Pool2dGeometry, outputShape: readonly number[], private readonly countIncludePad: boolean, name: string) {
    super([x], outputShape);
    this.name = name;
  }

  backward(g: FloatStorage, sink: GradSink): void {
    const dx = sink.target(0);
    getBackend(this.device).kernels.avgPool2dBackward(this.geometry, g, dx, this.countIncludePad, !sink.fresh);
  }
}

function average(op: string, x: Tensor, geometry: Pool2dGeometry, shape: number[], countIncludePad: boolean): Tensor {
  const b = getBackend(x.device);
  const y = b.take(shape[0]! * shape[1]! * shape[2]! * shape[3]!);
  b.kernels.avgPool2dForward(geometry, x.storage, y, countIncludePad);
  const result = new Tensor(y, shape, { device: x.device });
  if (tracks(x)) new AvgPool2dNode(x, geometry, shape, countIncludePad, op).attach(result);
  return result;
}

/**
 * Mean over each kernelSize window of `x` [n, c, h, w] (stride defaults to the kernel size; zero
 * padding, counted in the divisor unless countIncludePad is false): [n, c, oh, ow].
 */
export function avgPool2d(x: Tensor, kernelSize: Size2d, options: AvgPool2dOptions = {}): Tensor {
  const countIncludePad = options.countIncludePad ?? true;
  if (typeof countIncludePad !== 'boolean') throw errors.argument('avgPool2d', 'countIncludePad', countIncludePad, 'a boolean');
  const [geometry, shape] = poolGeometry('avgPool2d', x, kernelSize, options);
  return average('avgPool2d', x, geometry, shape, countIncludePad);
}

/** Mean over each whole plane of `x` [n, c, h, w]: [n, c, 1, 1] (torch's adaptive_avg_pool2d(x, 1)). */
export function globalAvgPool2d(x: Tensor): Tensor {
  expectFloat('globalAvgPool2d', 'input', x);
  if (x.shape.length !== 4) throw errors.shape('globalAvgPool2d', [x.shape], 'input of shape [batch, channels, height, width]');
  const [n, c, h, w] = x.shape as [number, number, number, number];
  if (n < 1 || c < 1 || h < 1 || w < 1) throw errors.shape('globalAvgPool2d', [x.shape], 'an input with no empty dimension');
  // One window covering the plane: the pooling kernels do it, on every backend.
  return average('globalAvgPool2d', x, [n * c, h, w, h, w, h, w, 0, 0], [n, c, 1, 1], true);
}
