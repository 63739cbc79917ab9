// Test support: compares an op's forward and autograd gradients with a float64 reference
// implementation in plain TypeScript, differentiated by central finite differences.
import type { ExecutionContext } from 'ava';
import { Generator, Tensor, type Shape } from '../../src/tensor/index.js';

export interface GradCase {
  /** Shapes of the float inputs. */
  shapes: Shape[];
  /** The op under test on tensors. */
  op: (xs: Tensor[]) => Tensor;
  /** The same function in float64 on flat arrays; returns the flat output. */
  ref: (xs: Float64Array[]) => Float64Array;
  /** Draws input values (default uniform in [-1, 1)). */
  draw?: (g: Generator) => number;
  seed?: number;
  /** Relative/absolute tolerance (default 2e-3). */
  tol?: number;
}

export function close(t: ExecutionContext, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  t.is(got.length, want.length, `${what}: length`);
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!));
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  t.true(worst <= tol, `${what}: worst relative error ${worst} at ${at} (got ${got[at]}, want ${want[at]})`);
}

/** Checks forward values and the gradients of every input against the reference. */
export function gradCheck(t: ExecutionContext, c: GradCase): void {
  const g = new Generator(c.seed ?? 7);
  const draw = c.draw ?? ((gen: Generator) => gen.uniformIn(-1, 1));
  const tensors = c.shapes.map((s) => {
    const x = new Tensor(new Float32Array(s.reduce((a, b) => a * b, 1)), s, { requiresGrad: true });
    for (let i = 0; i < x.size; i++) x.data[i] = draw(g);
    return x;
  });
  const xs64 = tensors.map((x) => Float64Array.from(x.data));
  const out = c.op(tensors);
  const want = c.ref(xs64);
  const tol = c.tol ?? 2e-3;
  close(t, out.data, want, tol, 'forward');
  // L = sum(w * out) with random weights, so every output element matters.
  const w = new Float32Array(out.size);
  for (let i = 0; i < w.length; i++) w[i] = g.uniformIn(-1, 1);
  out.backward(w);
  const L = (xs: Float64Array[]): number => {
    const y = c.ref(xs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += w[i]! * y[i]!;
    return s;
  };
  const h = 1e-6;
  xs64.forEach((x, k) => {
    const num = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const v = x[i]!;
      x[i] = v + h;
      const up = L(xs64);
      x[i] = v - h;
      const down = L(xs64);
      x[i] = v;
      num[i] = (up - down) / (2 * h);
    }
    const grad = tensors[k]!.grad;
    t.truthy(grad, `input ${k} got a gradient`);
    if (grad) close(t, grad.data, num, tol, `gradient of input ${k}`);
  });
}

/** y = x W^T + b in float64. */
export function refLinear(x: Float64Array, w: Float64Array, b: Float64Array | null, rows: number, inF: number, out: number): Float64Array {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i]! * w[o * inF + i]!;
      y[r * out + o] = s;
    }
  }
  return y;
}

export function refLogSoftmax(x: Float64Array, rows: number, cols: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let j = 0; j < cols; j++) max = Math.max(max, x[r * cols + j]!);
    let s = 0;
    for (let j = 0; j < cols; j++) s += Math.exp(x[r * cols + j]! - max);
    for (let j = 0; j < cols; j++) y[r * cols + j] = x[r * cols + j]! - max - Math.log(s);
  }
  return y;
}
