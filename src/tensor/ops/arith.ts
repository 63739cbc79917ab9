// Elementwise add and mul, and the sum / mean reductions.
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend } from '../backend.js';
import { errors } from '../errors.js';
import { Tensor } from '../tensor.js';
import { takeBuffer } from '../pool.js';
import { expectFloat, expectSameDevice } from './validate.js';

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

class AddNode extends Node {
  readonly name = 'add';
  /** cols > 0: b is a row vector broadcast over rows of length cols. */
  constructor(a: Tensor, b: Tensor, private readonly rows: number, private readonly cols: number) {
    super([a, b], a.shape);
  }

  backward(g: Float32Array, sink: GradSink): void {
    if (this.cols > 0) {
      if (this.inputs[1] !== null) {
        const db = sink.target(1);
        getBackend(this.inputs[1].device).kernels.biasGrad(g, db, this.rows, this.cols, !sink.fresh);
      }
      sink.give(0, g);
      return;
    }
    if (this.inputs[0] !== null && this.inputs[1] !== null) sink.give(0, g.slice());
    else sink.give(0, g);
    sink.give(1, g);
  }
}

/**
 * a + b. Shapes must be equal, or `b` may be 1-D with a's last dimension (added to every row,
 * like a bias).
 */
export function add(a: Tensor, b: Tensor): Tensor {
  expectFloat('add', 'a', a);
  expectFloat('add', 'b', b);
  expectSameDevice('add', a, b);
  const k = getBackend(a.device).kernels;
  const y = takeBuffer(a.size);
  let rows = 0, cols = 0;
  if (sameShape(a.shape, b.shape)) {
    k.add(a.data, b.data, y);
  } else if (b.shape.length === 1 && a.shape.length >= 1 && a.shape[a.shape.length - 1] === b.shape[0]) {
    cols = b.shape[0]!;
    rows = cols === 0 ? 0 : a.size / cols;
    y.set(a.data);
    k.biasAdd(y, b.data, rows, cols);
  } else {
    throw errors.shape('add', [a.shape, b.shape], 'equal shapes, or b of shape [last dimension of a]');
  }
  const result = new Tensor(y, a.shape, { device: a.device });
  if (tracks(a, b)) new AddNode(a, b, rows, cols).attach(result);
  return result;
}

class MulNode extends Node {
  readonly name = 'mul';
  constructor(private readonly a: Tensor, private readonly b: Tensor) {
    super([a, b], a.shape);
  }

  backward(g: Float32Array, sink: GradSink): void {
    const k = getBackend(this.a.device).kernels;
    let da: Float32Array | null = null;
    if (this.inputs[0] !== null) {
      da = takeBuffer(g.length);
      k.mul(g, this.b.data, da);
    }
    if (this.inputs[1] !== null) {
      k.mul(g, this.a.data, g);
      sink.give(1, g);
    }
    if (da !== null) sink.give(0, da);
  }
}

/** a * b elementwise (equal shapes). */
export function mul(a: Tensor, b: Tensor): Tensor {
  expectFloat('mul', 'a', a);
  expectFloat('mul', 'b', b);
  expectSameDevice('mul', a, b);
  if (!sameShape(a.shape, b.shape)) throw errors.shape('mul', [a.shape, b.shape], 'equal shapes');
  const y = takeBuffer(a.size);
  getBackend(a.device).kernels.mul(a.data, b.data, y);
  const result = new Tensor(y, a.shape, { device: a.device });
  if (tracks(a, b)) new MulNode(a, b).attach(result);
  return result;
}

class SumNode extends Node {
  readonly name: string;
  constructor(x: Tensor, private readonly factor: number, name: string) {
    super([x], []);
    this.name = name;
  }

  backward(g: Float32Array, sink: GradSink): void {
    const v = g[0]! * this.factor;
    const d = sink.target(0);
    if (sink.fresh) d.fill(v);
    else for (let i = 0; i < d.length; i++) d[i]! += v;
  }
}

/** Sum of all elements, as a scalar tensor (accumulated in double precision). */
export function sum(x: Tensor): Tensor {
  expectFloat('sum', 'input', x);
  const s = getBackend(x.device).kernels.sum(x.data);
  const result = new Tensor(Float32Array.of(s), [], { device: x.device });
  if (tracks(x)) new SumNode(x, 1, 'sum').attach(result);
  return result;
}

/** Mean of all elements, as a scalar tensor. */
export function mean(x: Tensor): Tensor {
  expectFloat('mean', 'input', x);
  if (x.size === 0) throw errors.shape('mean', [x.shape], 'at least one element');
  const s = getBackend(x.device).kernels.sum(x.data) / x.size;
  const result = new Tensor(Float32Array.of(s), [], { device: x.device });
  if (tracks(x)) new SumNode(x, 1 / x.size, 'mean').attach(result);
  return result;
}
