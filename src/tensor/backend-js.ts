// The kernel contract implemented in plain TypeScript.
//
// A reference, not a fast path: it lets the tensor layer run (slowly) where the addon cannot be
// built, and gives a second implementation to check the native one against. Semantics follow
// native/include/psrpc/kernels.h exactly, the dropout generator (Philox4x32-10) included.
import type { NativeKernels } from './native.js';

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
  };
}
