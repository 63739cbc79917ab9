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

/** Geometry of the float64 references below: [h, w] pairs and groups. */
export interface RefConv {
  n: number; c: number; h: number; w: number; oc: number; kh: number; kw: number;
  stride?: [number, number]; padding?: [number, number]; dilation?: [number, number]; groups?: number;
}

/** Output [oh, ow] of a RefConv. */
export function refConvOut(g: RefConv): [number, number] {
  const [sh, sw] = g.stride ?? [1, 1], [ph, pw] = g.padding ?? [0, 0], [dh, dw] = g.dilation ?? [1, 1];
  return [Math.floor((g.h + 2 * ph - dh * (g.kh - 1) - 1) / sh) + 1, Math.floor((g.w + 2 * pw - dw * (g.kw - 1) - 1) / sw) + 1];
}

/** torch.nn.functional.conv2d in float64, straight from its definition (zero padding, cross-correlation). */
export function refConv2d(x: ArrayLike<number>, wt: ArrayLike<number>, b: ArrayLike<number> | null, g: RefConv): Float64Array {
  const [sh, sw] = g.stride ?? [1, 1], [ph, pw] = g.padding ?? [0, 0], [dh, dw] = g.dilation ?? [1, 1];
  const groups = g.groups ?? 1, cg = g.c / groups, ocg = g.oc / groups;
  const [oh, ow] = refConvOut(g);
  const y = new Float64Array(g.n * g.oc * oh * ow);
  for (let n = 0; n < g.n; n++) for (let o = 0; o < g.oc; o++) for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
    let s = b ? b[o]! : 0;
    const grp = Math.floor(o / ocg);
    for (let i = 0; i < cg; i++) for (let ky = 0; ky < g.kh; ky++) for (let kx = 0; kx < g.kw; kx++) {
      const iy = oy * sh - ph + ky * dh, ix = ox * sw - pw + kx * dw;
      if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
      s += x[((n * g.c + grp * cg + i) * g.h + iy) * g.w + ix]! * wt[((o * cg + i) * g.kh + ky) * g.kw + kx]!;
    }
    y[((n * g.oc + o) * oh + oy) * ow + ox] = s;
  }
  return y;
}

/** Geometry of the pooling references: planes of h x w, window, stride, padding. */
export interface RefPool { planes: number; h: number; w: number; k: [number, number]; stride?: [number, number]; padding?: [number, number] }

export function refPoolOut(g: RefPool): [number, number] {
  const [sh, sw] = g.stride ?? g.k, [ph, pw] = g.padding ?? [0, 0];
  return [Math.floor((g.h + 2 * ph - g.k[0]) / sh) + 1, Math.floor((g.w + 2 * pw - g.k[1]) / sw) + 1];
}

/** max_pool2d (padding never wins) or avg_pool2d (zero padding; divisor with or without it) in float64. */
export function refPool2d(x: ArrayLike<number>, g: RefPool, mode: 'max' | 'avg', countIncludePad = true): Float64Array {
  const [sh, sw] = g.stride ?? g.k, [ph, pw] = g.padding ?? [0, 0];
  const [oh, ow] = refPoolOut(g);
  const y = new Float64Array(g.planes * oh * ow);
  for (let p = 0; p < g.planes; p++) for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
    let best = -Infinity, s = 0, inside = 0, padded = 0;
    for (let ky = 0; ky < g.k[0]; ky++) for (let kx = 0; kx < g.k[1]; kx++) {
      const iy = oy * sh - ph + ky, ix = ox * sw - pw + kx;
      if (iy < g.h + ph && ix < g.w + pw) padded++;
      if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
      const v = x[(p * g.h + iy) * g.w + ix]!;
      best = Math.max(best, v);
      s += v;
      inside++;
    }
    y[(p * oh + oy) * ow + ox] = mode === 'max' ? best : s / (countIncludePad ? padded : inside);
  }
  return y;
}

/** batch_norm over x [n, c, hw] in float64 with the given (or batch, biased) statistics. */
export function refBatchNorm(x: ArrayLike<number>, gamma: ArrayLike<number> | null, beta: ArrayLike<number> | null, n: number, c: number, hw: number, eps: number,
  stats?: { mean: ArrayLike<number>; var: ArrayLike<number> }): Float64Array {
  const y = new Float64Array(n * c * hw);
  for (let ch = 0; ch < c; ch++) {
    let mean = 0, v = 0;
    if (stats) {
      mean = stats.mean[ch]!;
      v = stats.var[ch]!;
    } else {
      for (let b = 0; b < n; b++) for (let i = 0; i < hw; i++) mean += x[(b * c + ch) * hw + i]!;
      mean /= n * hw;
      for (let b = 0; b < n; b++) for (let i = 0; i < hw; i++) v += (x[(b * c + ch) * hw + i]! - mean) ** 2;
      v /= n * hw;
    }
    for (let b = 0; b < n; b++) for (let i = 0; i < hw; i++) {
      const at = (b * c + ch) * hw + i;
      y[at] = ((x[at]! - mean) / Math.sqrt(v + eps)) * (gamma ? gamma[ch]! : 1) + (beta ? beta[ch]! : 0);
    }
  }
  return y;
}
