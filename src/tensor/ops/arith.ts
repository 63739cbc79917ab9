// Elementwise add and mul, and the sum / mean reductions.
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend, type FloatStorage } from '../backend.js';
import { errors } from '../errors.js';
import { Tensor } from '../tensor.js';
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

  backward(g: FloatStorage, sink: GradSink): void {
    const b = getBackend(this.device);
    if (this.cols > 0) {
      if (this.inputs[1] !== null) {
        const db = sink.target(1);
        b.kernels.biasGrad(g, db, this.rows, this.cols, !sink.fresh);
      }
      sink.give(0, g);
      return;
    }
    if (this.inputs[0] !== null && this.inputs[1] !== null) {
      const copy = b.take(g.length);
      b.copy(g, copy);
      sink.give(0, copy);
    } else sink.give(0, g);
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
  const be = getBackend(a.device);
  let rows = 0, cols = 0;
  const bias = !sameShape(a.shape, b.shape);
  if (bias) {
    if (!(b.shape.length === 1 && a.shape.length >= 1 && a.shape[a.shape.length - 1] === b.shape[0])) {
      throw errors.shape('add', [a.shape, b.shape], 'equal shapes, or b of shape [last dimension of a]');
    }
    cols = b.shape[0]!;
    rows = cols === 0 ? 0 : a.size / cols;
  }
  const y = be.take(a.size);
  if (!bias) {
    be.kernels.add(a.storage, b.storage, y);
  } else {
    be.copy(a.storage, y);
    be.kernels.biasAdd(y, b.storage, rows, cols);
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

  backward(g: FloatStorage, sink: GradSink): void {
    const be = getBackend(this.device);
    const k = be.kernels;
    let da: FloatStorage | null = null;
    if (this.inputs[0] !== null) {
      da = be.take(g.length);
      k.mul(g, this.b.storage, da);
    }
    if (this.inputs[1] !== null) {
      k.mul(g, this.a.storage, g);
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
  const be = getBackend(a.device);
  const y = be.take(a.size);
  be.kernels.mul(a.storage, b.storage, y);
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

  backward(g: FloatStorage, sink: GradSink): void {
    const b = getBackend(this.device);
    const v = b.first(g) * this.factor;
    const d = sink.target(0);
    if (sink.fresh) b.fill(d, v);
    else b.addScalar(d, v);
  }
}

/** Sum of all elements, as a scalar tensor (accumulated in double precision). */
export function sum(x: Tensor): Tensor {
  expectFloat('sum', 'input', x);
  const s = getBackend(x.device).kernels.sum(x.storage);
  const result = new Tensor(Float32Array.of(s), [], { device: x.device });
  if (tracks(x)) new SumNode(x, 1, 'sum').attach(result);
  return result;
}

/** Mean of all elements, as a scalar tensor. */
export function mean(x: Tensor): Tensor {
  expectFloat('mean', 'input', x);
  if (x.size === 0) throw errors.shape('mean', [x.shape], 'at least one element');
  const s = getBackend(x.device).kernels.sum(x.storage) / x.size;
  const result = new Tensor(Float32Array.of(s), [], { device: x.device });
  if (tracks(x)) new SumNode(x, 1 / x.size, 'mean').attach(result);
  return result;
}
