// matmul(a, b) for 2-D tensors: [m, k] x [k, n] -> [m, n], as one GEMM each way.
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend, type FloatStorage } from '../backend.js';
import { errors } from '../errors.js';
import { Tensor } from '../tensor.js';
import { expectFloat, expectSameDevice } from './validate.js';

class MatmulNode extends Node {
  readonly name = 'matmul';
  override consumesGradOut = true;
  constructor(private readonly a: Tensor, private readonly b: Tensor, outputShape: readonly number[]) {
    super([a, b], outputShape);
  }

  backward(g: FloatStorage, sink: GradSink): void {
    const k = getBackend(this.device).kernels;
    const m = this.a.shape[0]!, kk = this.a.shape[1]!, n = this.b.shape[1]!;
    if (this.inputs[0] !== null) {
      const da = sink.target(0); // g[m, n] . b^T[n, k]
      k.gemm(false, true, m, kk, n, 1, g, n, this.b.storage, n, sink.fresh ? 0 : 1, da, kk);
    }
    if (this.inputs[1] !== null) {
      const db = sink.target(1); // a^T[k, m] . g[m, n]
      k.gemm(true, false, kk, n, m, 1, this.a.storage, kk, g, n, sink.fresh ? 0 : 1, db, n);
    }
  }
}

/** Matrix product of two 2-D tensors. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  expectFloat('matmul', 'a', a);
  expectFloat('matmul', 'b', b);
  expectSameDevice('matmul', a, b);
  if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[1] !== b.shape[0]) {
    throw errors.shape('matmul', [a.shape, b.shape], '[m, k] and [k, n]');
  }
  const m = a.shape[0]!, kk = a.shape[1]!, n = b.shape[1]!;
  const be = getBackend(a.device);
  const y = be.take(m * n);
  be.kernels.gemm(false, false, m, n, kk, 1, a.storage, kk, b.storage, n, 0, y, n);
  const shape = [m, n];
  const result = new Tensor(y, shape, { device: a.device });
  if (tracks(a, b)) new MatmulNode(a, b, shape).attach(result);
  return result;
}
