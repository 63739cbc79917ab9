// The kernel contract implemented in plain TypeScript.
//
// A reference, not a fast path: it lets the tensor layer run (slowly) where the addon cannot be
// built, and gives a second implementation to check the native one against. Semantics follow
// native/include/psrpc/kernels.h exactly, the dropout generator (Philox4x32-10) included.
import type { Conv2dGeometry, NativeKernels, Pool2dGeometry } from './native.js';
import { conv2dOutput, pool2dOutput } from './ops/conv-shape.js';

function check(cond: boolean, what: string): void {
  if (!cond) throw new RangeError(`js kernels: ${what}`);
}

/** (a * b) as 64 bits for unsigned 32-bit a, b: returns [hi, lo]. */
function mulhilo(a: number, b: number, out: Uint32Array): void {
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  out[0] = (p11 + (p01 >>> 16) + (p10 >>> 16) + Math.floor(mid / 65536)) >>> 0;
  out[1] = Math.imul(a, b) >>> 0;
}

const hl = new Uint32Array(2);

/** Philox4x32-10 first output word for counter (index) and key (seed), as in philox.h. */
function bitsAt(seed: number, index: number): number {
  let c0 = index >>> 0, c1 = Math.floor(index / 4294967296) >>> 0, c2 = 0, c3 = 0;
  let k0 = seed >>> 0, k1 = Math.floor(seed / 4294967296) >>> 0;
  for (let round = 0; round < 10; round++) {
    mulhilo(0xd2511f53, c0, hl);
    const hi0 = hl[0]!, lo0 = hl[1]!;
    mulhilo(0xcd9e8d57, c2, hl);
    const hi1 = hl[0]!, lo1 = hl[1]!;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0, n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  return c0;
}

function uniformAt(seed: number, index: number): number {
  return (bitsAt(seed, index) >>> 8) / 16777216;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function f32ToBf16One(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function f32ToF16One(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

function f16ToF32One(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

const isInt = (v: number | undefined, min: number): boolean => Number.isInteger(v) && v! >= min;

function checkLength(op: string, name: string, a: { length: number } | null, n: number): void {
  check(a !== null && a.length >= n, `${op}: ${name} has ${a?.length} elements; expected at least ${n}`);
}

/** A convolution's geometry, checked as binding.cc checks it, with oh and ow appended. */
function convShape(op: string, g: Conv2dGeometry): number[] {
  check(Array.isArray(g) && g.length === 14, `${op}: geometry must be 14 integers [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups]`);
  for (let i = 0; i < 14; i++) check(isInt(g[i], i === 9 || i === 10 ? 0 : 1), `${op}: geometry[${i}] = ${g[i]} is invalid`);
  check(g[1]! % g[13]! === 0 && g[4]! % g[13]! === 0, `${op}: c = ${g[1]} and oc = ${g[4]} must be divisible by groups = ${g[13]}`);
  const out = conv2dOutput(g);
  check(out !== null, `${op}: the dilated kernel is larger than the padded input`);
  return [...g, ...out!];
}

/** A pooling's geometry, checked, with oh and ow appended. */
function poolShape(op: string, g: Pool2dGeometry): number[] {
  check(Array.isArray(g) && g.length === 9, `${op}: geometry must be 9 integers [planes, h, w, kh, kw, sh, sw, ph, pw]`);
  for (let i = 0; i < 9; i++) check(isInt(g[i], i >= 7 ? 0 : 1), `${op}: geometry[${i}] = ${g[i]} is invalid`);
  check(2 * g[7]! <= g[3]! && 2 * g[8]! <= g[4]!, `${op}: padding [${g[7]}, ${g[8]}] exceeds half the kernel [${g[3]}, ${g[4]}]`);
  const out = pool2dOutput(g);
  check(out !== null, `${op}: the window is larger than the padded input`);
  return [...g, ...out!];
}

function checkNorm(op: string, n: number, c: number, hw: number): number {
  check(isInt(n, 1) && isInt(c, 1) && isInt(hw, 1), `${op}: n = ${n}, c = ${c}, hw = ${hw} must be positive integers`);
  return n * c * hw;
}

/** The kernel contract in TypeScript. */
export function jsKernels(): NativeKernels {
  return {
    simd: () => 'js',
    gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
      check(m >= 0 && n >= 0 && k >= 0, 'gemm: negative size');
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let p = 0; p < k; p++) {
            const av = transA ? a[p * lda + i]! : a[i * lda + p]!;
            const bv = transB ? b[j * ldb + p]! : b[p * ldb + j]!;
            acc += av * bv;
          }
          const idx = i * ldc + j;
          c[idx] = beta === 0 ? alpha * acc : alpha * acc + beta * c[idx]!;
        }
      }
    },
    biasAdd(y, bias, rows, cols) {
      for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) y[r * cols + j]! += bias[j]!;
    },
    biasGrad(dy, dbias, rows, cols, accumulate) {
      for (let j = 0; j < cols; j++) {
        let acc = 0;
        for (let r = 0; r < rows; r++) acc += dy[r * cols + j]!;
        dbias[j] = accumulate ? dbias[j]! + acc : acc;
      }
    },
    reluForward(x, y) {
      for (let i = 0; i < x.length; i++) y[i] = x[i]! > 0 ? x[i]! : 0;
    },
    reluBackward(x, dy, dx) {
      for (let i = 0; i < x.length; i++) dx[i] = x[i]! > 0 ? dy[i]! : 0;
    },
    logSoftmaxForward(x, y, rows, cols) {
      for (let r = 0; r < rows; r++) {
        const o = r * cols;
        let max = -Infinity;
        for (let j = 0; j < cols; j++) max = Math.max(max, x[o + j]!);
        let s = 0;
        for (let j = 0; j < cols; j++) s += Math.exp(x[o + j]! - max);
        const lse = max + Math.log(s);
        for (let j = 0; j < cols; j++) y[o + j] = x[o + j]! - lse;
      }
    },
    logSoftmaxBackward(y, dy, dx, rows, cols) {
      for (let r = 0; r < rows; r++) {
        const o = r * cols;
        let s = 0;
        for (let j = 0; j < cols; j++) s += dy[o + j]!;
        for (let j = 0; j < cols; j++) dx[o + j] = dy[o + j]! - Math.exp(y[o + j]!) * s;
      }
    },
    crossEntropyForward(logits, labels, logp, rows, cols) {
      for (let r = 0; r < rows; r++) check(labels[r]! >= 0 && labels[r]! < cols, `label ${labels[r]} out of range`);
      this.logSoftmaxForward(logits, logp, rows, cols);
      return this.nllForward(logp, labels, rows, cols);
    },
    crossEntropyBackward(logp, labels, dlogits, rows, cols, scale) {
      for (let r = 0; r < rows; r++) {
        const o = r * cols;
        for (let j = 0; j < cols; j++) dlogits[o + j] = (Math.exp(logp[o + j]!) - (j === labels[r] ? 1 : 0)) * scale;
      }
    },
    nllForward(logp, labels, rows, cols) {
      let s = 0;
      for (let r = 0; r < rows; r++) {
        check(labels[r]! >= 0 && labels[r]! < cols, `label ${labels[r]} out of range`);
        s -= logp[r * cols + labels[r]!]!;
      }
      return Math.fround(s / rows);
    },
    nllBackward(labels, dlogp, rows, cols, scale) {
      dlogp.fill(0, 0, rows * cols);
      for (let r = 0; r < rows; r++) dlogp[r * cols + labels[r]!] = -scale;
    },
    dropoutForward(x, y, mask, p, seed, offset) {
      const inv = 1 / (1 - p);
      for (let i = 0; i < x.length; i++) {
        const keep = uniformAt(seed, offset + i) >= p;
        mask[i] = keep ? 1 : 0;
        y[i] = keep ? x[i]! * inv : 0;
      }
    },
    dropoutBackward(dy, mask, dx, p) {
      const inv = 1 / (1 - p);
      for (let i = 0; i < dy.length; i++) dx[i] = mask[i] ? dy[i]! * inv : 0;
    },
    uniformAt,
    axpy(alpha, x, y) {
      for (let i = 0; i < x.length; i++) y[i]! += alpha * x[i]!;
    },
    scale(alpha, x) {
      for (let i = 0; i < x.length; i++) x[i]! *= alpha;
    },
    add(a, b, out) {
      for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
    },
    mul(a, b, out) {
      for (let i = 0; i < a.length; i++) out[i] = a[i]! * b[i]!;
    },
    sum(x) {
      let s = 0;
      for (let i = 0; i < x.length; i++) s += x[i]!;
      return s;
    },
    sgdUpdate(param, grad, buf, lr, momentum, dampening, weightDecay, nesterov, firstStep) {
      for (let i = 0; i < param.length; i++) {
        let g = grad[i]! + weightDecay * param[i]!;
        if (momentum !== 0 && buf) {
          buf[i] = firstStep ? g : momentum * buf[i]! + (1 - dampening) * g;
          g = nesterov ? g + momentum * buf[i]! : buf[i]!;
        }
        param[i]! -= lr * g;
      }
    },
    adamUpdate(param, grad, m, v, lr, beta1, beta2, eps, weightDecay, decoupled, step) {
      const bc1 = 1 - beta1 ** step, bc2 = 1 - beta2 ** step;
      for (let i = 0; i < param.length; i++) {
        let g = grad[i]!;
        if (decoupled) param[i]! *= 1 - lr * weightDecay;
        else g += weightDecay * param[i]!;
        m[i] = beta1 * m[i]! + (1 - beta1) * g;
        v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
        param[i]! -= (lr / bc1) * m[i]! / (Math.sqrt(v[i]! / bc2) + eps);
      }
    },
    f32ToF16(x, y) {
      for (let i = 0; i < x.length; i++) y[i] = f32ToF16One(x[i]!);
    },
    f16ToF32(x, y) {
      for (let i = 0; i < x.length; i++) y[i] = f16ToF32One(x[i]!);
    },
    f32ToBf16(x, y) {
      for (let i = 0; i < x.length; i++) y[i] = f32ToBf16One(x[i]!);
    },
    bf16ToF32(x, y) {
      for (let i = 0; i < x.length; i++) {
        u32[0] = x[i]! << 16;
        y[i] = f32[0]!;
      }
    },
    ...convKernels(),
    ...poolKernels(),
    ...normKernels(),
  };
}

type ConvKernels = Pick<NativeKernels, 'conv2dWorkspace' | 'conv2dForward' | 'conv2dBackwardInput' | 'conv2dBackwardWeight'>;

/** Direct loops (no im2col: the workspace is empty); sums in double. */
function convKernels(): ConvKernels {
  return {
    conv2dWorkspace(geometry) {
      convShape('conv2dWorkspace', geometry);
      return 0;
    },
    conv2dForward(geometry, x, weight, bias, y) {
      const [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups, oh, ow] = convShape('conv2dForward', geometry) as Sixteen;
      const cg = c / groups, ocg = oc / groups;
      checkLength('conv2dForward', 'x', x, n * c * h * w);
      checkLength('conv2dForward', 'weight', weight, oc * cg * kh * kw);
      if (bias !== null) checkLength('conv2dForward', 'bias', bias, oc);
      checkLength('conv2dForward', 'y', y, n * oc * oh * ow);
      for (let b = 0; b < n; b++) {
        for (let o = 0; o < oc; o++) {
          const c0 = Math.floor(o / ocg) * cg;
          for (let oy = 0; oy < oh; oy++) {
            for (let ox = 0; ox < ow; ox++) {
              let acc = bias !== null ? bias[o]! : 0;
              for (let i = 0; i < cg; i++) {
                for (let ky = 0; ky < kh; ky++) {
                  const iy = oy * sh - ph + ky * dh;
                  if (iy < 0 || iy >= h) continue;
                  for (let kx = 0; kx < kw; kx++) {
                    const ix = ox * sw - pw + kx * dw;
                    if (ix < 0 || ix >= w) continue;
                    acc += x[((b * c + c0 + i) * h + iy) * w + ix]! * weight[((o * cg + i) * kh + ky) * kw + kx]!;
                  }
                }
              }
              y[((b * oc + o) * oh + oy) * ow + ox] = acc;
            }
          }
        }
      }
    },
    conv2dBackwardInput(geometry, dy, weight, dx, _col, accumulate) {
      const [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups, oh, ow] = convShape('conv2dBackwardInput', geometry) as Sixteen;
      const cg = c / groups, ocg = oc / groups;
      checkLength('conv2dBackwardInput', 'dy', dy, n * oc * oh * ow);
      checkLength('conv2dBackwardInput', 'weight', weight, oc * cg * kh * kw);
      checkLength('conv2dBackwardInput', 'dx', dx, n * c * h * w);
      // Gathered per input element (each dx written once, summed in double).
      for (let b = 0; b < n; b++) {
        for (let ci = 0; ci < c; ci++) {
          const grp = Math.floor(ci / cg), i = ci - grp * cg;
          for (let iy = 0; iy < h; iy++) {
            for (let ix = 0; ix < w; ix++) {
              let acc = 0;
              for (let ky = 0; ky < kh; ky++) {
                const ty = iy + ph - ky * dh;
                if (ty < 0 || ty % sh !== 0 || ty / sh >= oh) continue;
                const oy = ty / sh;
                for (let kx = 0; kx < kw; kx++) {
                  const tx = ix + pw - kx * dw;
                  if (tx < 0 || tx % sw !== 0 || tx / sw >= ow) continue;
                  const ox = tx / sw;
                  for (let q = 0; q < ocg; q++) {
                    const o = grp * ocg + q;
                    acc += dy[((b * oc + o) * oh + oy) * ow + ox]! * weight[((o * cg + i) * kh + ky) * kw + kx]!;
                  }
                }
              }
              const at = ((b * c + ci) * h + iy) * w + ix;
              dx[at] = accumulate ? dx[at]! + acc : acc;
            }
          }
        }
      }
    },
    conv2dBackwardWeight(geometry, x, dy, dweight, dbias, _col, accumulateWeight, accumulateBias) {
      const [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups, oh, ow] = convShape('conv2dBackwardWeight', geometry) as Sixteen;
      const cg = c / groups, ocg = oc / groups;
      checkLength('conv2dBackwardWeight', 'x', x, n * c * h * w);
      checkLength('conv2dBackwardWeight', 'dy', dy, n * oc * oh * ow);
      checkLength('conv2dBackwardWeight', 'dweight', dweight, oc * cg * kh * kw);
      if (dbias !== null) checkLength('conv2dBackwardWeight', 'dbias', dbias, oc);
      for (let o = 0; o < oc; o++) {
        const c0 = Math.floor(o / ocg) * cg;
        for (let i = 0; i < cg; i++) {
          for (let ky = 0; ky < kh; ky++) {
            for (let kx = 0; kx < kw; kx++) {
              let acc = 0;
              for (let b = 0; b < n; b++) {
                for (let oy = 0; oy < oh; oy++) {
                  const iy = oy * sh - ph + ky * dh;
                  if (iy < 0 || iy >= h) continue;
                  for (let ox = 0; ox < ow; ox++) {
                    const ix = ox * sw - pw + kx * dw;
                    if (ix < 0 || ix >= w) continue;
                    acc += dy[((b * oc + o) * oh + oy) * ow + ox]! * x[((b * c + c0 + i) * h + iy) * w + ix]!;
                  }
                }
              }
              const at = ((o * cg + i) * kh + ky) * kw + kx;
              dweight[at] = accumulateWeight ? dweight[at]! + acc : acc;
            }
          }
        }
        if (dbias !== null) {
          let acc = 0;
          for (let b = 0; b < n; b++) for (let p = 0; p < oh * ow; p++) acc += dy[(b * oc + o) * oh * ow + p]!;
          dbias[o] = accumulateBias ? dbias[o]! + acc : acc;
        }
      }
    },
  };
}

type Sixteen = [number, number, number, number, number, number, number, number, number, number, number, number, number, number, number, number];
type Eleven = [number, number, number, number, number, number, number, number, number, number, number];

type PoolKernels = Pick<NativeKernels, 'maxPool2dForward' | 'maxPool2dBackward' | 'avgPool2dForward' | 'avgPool2dBackward'>;

/** The divisor of the average over window (oy, ox): torch's avg_pool2d rule. */
function avgDivisor(h: number, w: number, kh: number, kw: number, ph: number, pw: number, y0: number, x0: number, countIncludePad: boolean): number {
  const y1 = Math.min(y0 + kh, h + ph), x1 = Math.min(x0 + kw, w + pw);
  if (countIncludePad) return (y1 - y0) * (x1 - x0);
  return (Math.min(y1, h) - Math.max(y0, 0)) * (Math.min(x1, w) - Math.max(x0, 0));
}

function poolKernels(): PoolKernels {
  return {
    maxPool2dForward(geometry, x, y, indices) {
      const [planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow] = poolShape('maxPool2dForward', geometry) as Eleven;
      checkLength('maxPool2dForward', 'x', x, planes * h * w);
      checkLength('maxPool2dForward', 'y', y, planes * oh * ow);
      checkLength('maxPool2dForward', 'indices', indices, planes * oh * ow);
      for (let p = 0; p < planes; p++) {
        for (let oy = 0; oy < oh; oy++) {
          const y0 = Math.max(oy * sh - ph, 0), y1 = Math.min(oy * sh - ph + kh, h);
          for (let ox = 0; ox < ow; ox++) {
            const x0 = Math.max(ox * sw - pw, 0), x1 = Math.min(ox * sw - pw + kw, w);
            // As the native kernels: start at the first in-bounds position (an all -inf window
            // points there), move on a strictly greater value or the first NaN.
            let best = -Infinity, at = y0 * w + x0;
            for (let iy = y0; iy < y1; iy++) {
              for (let ix = x0; ix < x1; ix++) {
                const v = x[p * h * w + iy * w + ix]!;
                if (v > best || (v !== v && best === best)) {
                  best = v;
                  at = iy * w + ix;
                }
              }
            }
            const o = (p * oh + oy) * ow + ox;
            y[o] = best;
            indices[o] = at;
          }
        }
      }
    },
    maxPool2dBackward(geometry, dy, indices, dx, accumulate) {
      const [planes, h, w, , , , , , , oh, ow] = poolShape('maxPool2dBackward', geometry) as Eleven;
      checkLength('maxPool2dBackward', 'dy', dy, planes * oh * ow);
      checkLength('maxPool2dBackward', 'indices', indices, planes * oh * ow);
      checkLength('maxPool2dBackward', 'dx', dx, planes * h * w);
      for (let i = 0; i < planes * oh * ow; i++) check(indices[i]! >= 0 && indices[i]! < h * w, `maxPool2dBackward: indices[${i}] = ${indices[i]} is outside the ${h}x${w} plane`);
      if (!accumulate) dx.fill(0, 0, planes * h * w);
      for (let p = 0; p < planes; p++) {
        for (let o = 0; o < oh * ow; o++) dx[p * h * w + indices[p * oh * ow + o]!]! += dy[p * oh * ow + o]!;
      }
    },
    avgPool2dForward(geometry, x, y, countIncludePad) {
      const [planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow] = poolShape('avgPool2dForward', geometry) as Eleven;
      checkLength('avgPool2dForward', 'x', x, planes * h * w);
      checkLength('avgPool2dForward', 'y', y, planes * oh * ow);
      for (let p = 0; p < planes; p++) {
        for (let oy = 0; oy < oh; oy++) {
          const ys = oy * sh - ph;
          for (let ox = 0; ox < ow; ox++) {
            const xs = ox * sw - pw;
            let acc = 0;
            for (let iy = Math.max(ys, 0); iy < Math.min(ys + kh, h); iy++) {
              for (let ix = Math.max(xs, 0); ix < Math.min(xs + kw, w); ix++) acc += x[p * h * w + iy * w + ix]!;
            }
            y[(p * oh + oy) * ow + ox] = acc / avgDivisor(h, w, kh, kw, ph, pw, ys, xs, countIncludePad);
          }
        }
      }
    },
    avgPool2dBackward(geometry, dy, dx, countIncludePad, accumulate) {
      const [planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow] = poolShape('avgPool2dBackward', geometry) as Eleven;
      checkLength('avgPool2dBackward', 'dy', dy, planes * oh * ow);
      checkLength('avgPool2dBackward', 'dx', dx, planes * h * w);
      if (!accumulate) dx.fill(0, 0, planes * h * w);
      for (let p = 0; p < planes; p++) {
        for (let oy = 0; oy < oh; oy++) {
          const ys = oy * sh - ph;
          for (let ox = 0; ox < ow; ox++) {
            const xs = ox * sw - pw;
            const share = dy[(p * oh + oy) * ow + ox]! / avgDivisor(h, w, kh, kw, ph, pw, ys, xs, countIncludePad);
            for (let iy = Math.max(ys, 0); iy < Math.min(ys + kh, h); iy++) {
              for (let ix = Math.max(xs, 0); ix < Math.min(xs + kw, w); ix++) dx[p * h * w + iy * w + ix]! += share;
            }
          }
        }
      }
    },
  };
}

type NormKernels = Pick<NativeKernels, 'batchNormForward' | 'batchNormBackward'>;

function normKernels(): NormKernels {
  return {
    batchNormForward(x, y, gamma, beta, saveMean, saveInvstd, runningMean, runningVar, n, c, hw, training, momentum, eps) {
      const total = checkNorm('batchNormForward', n, c, hw);
      checkLength('batchNormForward', 'x', x, total);
      checkLength('batchNormForward', 'y', y, total);
      for (const [name, a] of [['saveMean', saveMean], ['saveInvstd', saveInvstd]] as const) checkLength('batchNormForward', name, a, c);
      for (const [name, a] of [['gamma', gamma], ['beta', beta], ['runningMean', runningMean], ['runningVar', runningVar]] as const) {
        if (a !== null) checkLength('batchNormForward', name, a, c);
      }
      check((runningMean === null) === (runningVar === null), 'batchNormForward: runningMean and runningVar must both be given or both be null');
      check(training || runningMean !== null, 'batchNormForward: evaluation needs the running statistics');
      check(Number.isFinite(momentum) && Number.isFinite(eps) && eps >= 0, `batchNormForward: momentum = ${momentum}, eps = ${eps} are invalid`);
      const m = n * hw;
      for (let ch = 0; ch < c; ch++) {
        let mean: number, invstd: number;
        if (training) {
          let s = 0;
          for (let b = 0; b < n; b++) for (let i = 0; i < hw; i++) s += x[(b * c + ch) * hw + i]!;
          mean = s / m;
          let q = 0;
          for (let b = 0; b < n; b++) {
            for (let i = 0; i < hw; i++) {
              const d = x[(b * c + ch) * hw + i]! - mean;
              q += d * d;
            }
          }
          const v = q / m;
          invstd = 1 / Math.sqrt(v + eps);
          if (runningMean !== null && runningVar !== null) {
            runningMean[ch] = (1 - momentum) * runningMean[ch]! + momentum * mean;
            runningVar[ch] = (1 - momentum) * runningVar[ch]! + momentum * (m > 1 ? (v * m) / (m - 1) : v);
          }
        } else {
          mean = runningMean![ch]!;
          invstd = 1 / Math.sqrt(runningVar![ch]! + eps);
        }
        saveMean[ch] = mean;
        saveInvstd[ch] = invstd;
        const scale = gamma !== null ? gamma[ch]! * invstd : invstd;
        const shift = beta !== null ? beta[ch]! : 0;
        for (let b = 0; b < n; b++) {
          for (let i = 0; i < hw; i++) {
            const at = (b * c + ch) * hw + i;
            y[at] = (x[at]! - mean) * scale + shift;
          }
        }
      }
    },
    batchNormBackward(x, dy, gamma, saveMean, saveInvstd, dx, dgamma, dbeta, n, c, hw, training, accumulateDx, accumulateDgamma, accumulateDbeta) {
      const total = checkNorm('batchNormBackward', n, c, hw);
      checkLength('batchNormBackward', 'x', x, total);
      checkLength('batchNormBackward', 'dy', dy, total);
      if (dx !== null) checkLength('batchNormBackward', 'dx', dx, total);
      for (const [name, a] of [['saveMean', saveMean], ['saveInvstd', saveInvstd]] as const) checkLength('batchNormBackward', name, a, c);
      for (const [name, a] of [['gamma', gamma], ['dgamma', dgamma], ['dbeta', dbeta]] as const) {
        if (a !== null) checkLength('batchNormBackward', name, a, c);
      }
      const m = n * hw;
      for (let ch = 0; ch < c; ch++) {
        const mean = saveMean[ch]!, invstd = saveInvstd[ch]!;
        let sdy = 0, sdyx = 0;
        for (let b = 0; b < n; b++) {
          for (let i = 0; i < hw; i++) {
            const at = (b * c + ch) * hw + i;
            sdy += dy[at]!;
            sdyx += dy[at]! * (x[at]! - mean) * invstd;
          }
        }
        if (dbeta !== null) dbeta[ch] = accumulateDbeta ? dbeta[ch]! + sdy : sdy;
        if (dgamma !== null) dgamma[ch] = accumulateDgamma ? dgamma[ch]! + sdyx : sdyx;
        if (dx === null) continue;
        const scale = (gamma !== null ? gamma[ch]! : 1) * invstd;
        const mdy = sdy / m, mdyx = sdyx / m;
        for (let b = 0; b < n; b++) {
          for (let i = 0; i < hw; i++) {
            const at = (b * c + ch) * hw + i;
            const v = training ? scale * (dy[at]! - mdy - (x[at]! - mean) * invstd * mdyx) : scale * dy[at]!;
            dx[at] = accumulateDx ? dx[at]! + v : v;
          }
        }
      }
    },
  };
}
