// Plain TypeScript reference implementations of the kernel contract (native/include/psrpc/kernels.h).
//
// Written for clarity, not speed: every reduction is accumulated in double, the optimizers follow
// torch.optim step by step, and the conversions are computed from the numeric value (not by the bit
// tricks the kernels use), so a kernel that agrees with them agrees for an independent reason.
// The Philox generator is re-derived here from the published algorithm so that both backends can be
// checked against the same bits.

/** C = alpha * op(A) * op(B) + beta * C in double; returns the m x n result (dense, row-major). */
export function gemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
  a: ArrayLike<number>, lda: number, b: ArrayLike<number>, ldb: number, beta: number,
  c: ArrayLike<number>, ldc: number): Float64Array {
  const out = new Float64Array(m * n);
  const opA = (i: number, p: number): number => (transA ? a[p * lda + i] : a[i * lda + p]);
  const opB = (p: number, j: number): number => (transB ? b[j * ldb + p] : b[p * ldb + j]);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += opA(i, p) * opB(p, j);
      out[i * n + j] = alpha * acc + (beta === 0 ? 0 : beta * c[i * ldc + j]);
    }
  }
  return out;
}

/** The magnitude a GEMM result's rounding error scales with: |alpha| sum_p |a b| + |beta c|. */
export function gemmMagnitude(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
  a: ArrayLike<number>, lda: number, b: ArrayLike<number>, ldb: number, beta: number,
  c: ArrayLike<number>, ldc: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) {
        acc += Math.abs((transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j]));
      }
      out[i * n + j] = Math.abs(alpha) * acc + (beta === 0 ? 0 : Math.abs(beta * c[i * ldc + j]));
    }
  }
  return out;
}

export function biasAdd(y: ArrayLike<number>, bias: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = y[r * cols + c] + bias[c];
  return out;
}

export function biasGrad(dy: ArrayLike<number>, rows: number, cols: number, initial?: ArrayLike<number>): Float64Array {
  const out = new Float64Array(cols);
  for (let c = 0; c < cols; c++) {
    let acc = initial ? initial[c] : 0;
    for (let r = 0; r < rows; r++) acc += dy[r * cols + c];
    out[c] = acc;
  }
  return out;
}

export function reluForward(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v) => (v > 0 ? v : 0));
}

export function reluBackward(x: ArrayLike<number>, dy: ArrayLike<number>): Float64Array {
  return Float64Array.from(dy, (v, i) => (x[i] > 0 ? v : 0));
}

function logSumExp(x: ArrayLike<number>, start: number, cols: number): number {
  let max = -Infinity;
  for (let c = 0; c < cols; c++) max = Math.max(max, x[start + c]);
  let s = 0;
  for (let c = 0; c < cols; c++) s += Math.exp(x[start + c] - max);
  return max + Math.log(s);
}

export function logSoftmaxForward(x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const lse = logSumExp(x, r * cols, cols);
    for (let c = 0; c < cols; c++) out[r * cols + c] = x[r * cols + c] - lse;
  }
  return out;
}

export function logSoftmaxBackward(y: ArrayLike<number>, dy: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += dy[r * cols + c];
    for (let c = 0; c < cols; c++) out[r * cols + c] = dy[r * cols + c] - Math.exp(y[r * cols + c]) * s;
  }
  return out;
}

/** Log-probabilities and the mean negative log-likelihood of the labels. */
export function crossEntropyForward(logits: ArrayLike<number>, labels: ArrayLike<number>, rows: number, cols: number):
  { logp: Float64Array; loss: number } {
  const logp = logSoftmaxForward(logits, rows, cols);
  return { logp, loss: nllForward(logp, labels, rows, cols) };
}

export function crossEntropyBackward(logp: ArrayLike<number>, labels: ArrayLike<number>, rows: number, cols: number,
  scale: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      out[r * cols + c] = (Math.exp(logp[r * cols + c]) - (c === labels[r] ? 1 : 0)) * scale;
    }
  }
  return out;
}

export function nllForward(logp: ArrayLike<number>, labels: ArrayLike<number>, rows: number, cols: number): number {
  let s = 0;
  for (let r = 0; r < rows; r++) s -= logp[r * cols + labels[r]];
  return s / rows;
}

export function nllBackward(labels: ArrayLike<number>, rows: number, cols: number, scale: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) out[r * cols + labels[r]] = -scale;
  return out;
}

// ---- Philox4x32-10 (Salmon et al., SC'11), the generator behind dropout ----------------------

/** The high and low 32 bits of the 64-bit product of two unsigned 32-bit integers. */
function mulHiLo(a: number, b: number): [number, number] {
  const lo = Math.imul(a, b) >>> 0;
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const t = al * bl, m1 = ah * bl, m2 = al * bh;
  const carry = ((t >>> 16) + (m1 & 0xffff) + (m2 & 0xffff)) >>> 16;
  const hi = (ah * bh + Math.floor(m1 / 65536) + Math.floor(m2 / 65536) + carry) >>> 0;
  return [hi, lo];
}

function split53(x: number): [number, number] {
  return [x % 4294967296 >>> 0, Math.floor(x / 4294967296) >>> 0];
}

/** The first 32-bit word of Philox4x32-10 with counter (index, 0) and key seed. */
export function philoxBits(seed: number, index: number): number {
  let [c0, c1] = split53(index);
  let c2 = 0, c3 = 0;
  let [k0, k1] = split53(seed);
  for (let round = 0; round < 10; round++) {
    const [hi0, lo0] = mulHiLo(0xd2511f53, c0);
    const [hi1, lo1] = mulHiLo(0xcd9e8d57, c2);
    const n0 = (hi1 ^ c1 ^ k0) >>> 0, n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  return c0;
}

/** Uniform in [0, 1) from the top 24 bits of the draw. */
export function uniformAt(seed: number, index: number): number {
  return (philoxBits(seed, index) >>> 8) / 16777216;
}

export function dropoutForward(x: ArrayLike<number>, p: number, seed: number, offset: number):
  { y: Float64Array; mask: Uint8Array } {
  const q = Math.fround(1 - Math.fround(p));
  const fp = Math.fround(p);
  const mask = new Uint8Array(x.length);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const keep = uniformAt(seed, offset + i) >= fp;
    mask[i] = keep ? 1 : 0;
    y[i] = keep ? x[i] / q : 0;
  }
  return { y, mask };
}

export function dropoutBackward(dy: ArrayLike<number>, mask: ArrayLike<number>, p: number): Float64Array {
  const q = Math.fround(1 - Math.fround(p));
  return Float64Array.from(dy, (v, i) => (mask[i] ? v / q : 0));
}

// ---- arithmetic -------------------------------------------------------------------------------

export function sum(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s;
}

// ---- optimizers (torch.optim semantics, in double) ---------------------------------------------

export interface SgdOptions { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean }

/** One torch.optim.SGD step on plain arrays; buf is the momentum buffer (ignored when momentum is 0). */
export function sgdStep(param: Float64Array, grad: ArrayLike<number>, buf: Float64Array, firstStep: boolean,
  o: SgdOptions): void {
  for (let i = 0; i < param.length; i++) {
    let g = grad[i] + o.weightDecay * param[i];
    if (o.momentum !== 0) {
      buf[i] = firstStep ? g : o.momentum * buf[i] + (1 - o.dampening) * g;
      g = o.nesterov ? g + o.momentum * buf[i] : buf[i];
    }
    param[i] -= o.lr * g;
  }
}

export interface AdamOptions {
  lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; decoupled: boolean;
}

/** One torch.optim.Adam (or AdamW when decoupled) step; step is 1-based. */
export function adamStep(param: Float64Array, grad: ArrayLike<number>, m: Float64Array, v: Float64Array, step: number,
  o: AdamOptions): void {
  const bc1 = 1 - o.beta1 ** step;
  const bc2 = 1 - o.beta2 ** step;
  for (let i = 0; i < param.length; i++) {
    let g = grad[i];
    if (o.weightDecay !== 0) {
      if (o.decoupled) param[i] *= 1 - o.lr * o.weightDecay;
      else g += o.weightDecay * param[i];
    }
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
    const denom = Math.sqrt(v[i]) / Math.sqrt(bc2) + o.eps;
    param[i] -= (o.lr / bc1) * (m[i] / denom);
  }
}

// ---- conversions (from the numeric value) -----------------------------------------------------

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** floor(log2(x)) for x > 0, exact. */
function exponentOf(x: number): number {
  let e = Math.floor(Math.log2(x));
  while (2 ** e > x) e--;
  while (2 ** (e + 1) <= x) e++;
  return e;
}

/** IEEE binary16 bits of a float32 value, round to nearest even (NaN: 0x7e00 with the sign). */
export function f32ToF16(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  if (Number.isNaN(x)) return 0x7e00;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;  // 65520 is halfway between 65504 and 2^16: ties to even go up
  if (a < 2 ** -14) return sign | roundHalfEven(a / 2 ** -24);  // a carry into 0x400 is the smallest normal
  const e = exponentOf(a);
  const mant = roundHalfEven(a / 2 ** (e - 10));  // in [1024, 2048]; 2048 carries into the exponent
  return sign | (((e + 15) << 10) + (mant - 1024));
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

const bitsView = new DataView(new ArrayBuffer(4));

export function float32Bits(x: number): number {
  bitsView.setFloat32(0, x);
  return bitsView.getUint32(0);
}

export function float32FromBits(bits: number): number {
  bitsView.setUint32(0, bits >>> 0);
  return bitsView.getFloat32(0);
}

/** bfloat16 bits of a float32 value: 8 significant bits, round to nearest even. */
export function f32ToBf16(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7f80;
  if (a === 0) return sign;
  const e = Math.max(exponentOf(a), -126);  // float32 subnormals share the quantum 2^-133
  const r = roundHalfEven(a / 2 ** (e - 7)) * 2 ** (e - 7);
  if (r >= 2 ** 128) return sign | 0x7f80;
  return sign | (float32Bits(r) >>> 16);
}

export function bf16ToF32(h: number): number {
  return float32FromBits(h << 16);
}

// ---- convolution, pooling, batch normalisation (torch.nn semantics, direct loops in double) -----

/** kernels.h's Conv2dShape with oh and ow: the geometry list of native.ts, named. */
export interface ConvShape {
  n: number; c: number; h: number; w: number; oc: number; kh: number; kw: number;
  sh: number; sw: number; ph: number; pw: number; dh: number; dw: number; groups: number; oh: number; ow: number;
}

export function convShape(g: readonly number[]): ConvShape {
  const [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups] = g as [number, number, number, number, number,
    number, number, number, number, number, number, number, number, number];
  const oh = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  return { n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups, oh, ow };
}

/** Visits every (image, output channel, output pixel, input channel of its group, tap) with the input index or -1 in the padding. */
function eachTap(s: ConvShape, visit: (yi: number, xi: number, wi: number) => void): void {
  const cg = s.c / s.groups, og = s.oc / s.groups;
  for (let n = 0; n < s.n; n++) {
    for (let o = 0; o < s.oc; o++) {
      const g = Math.floor(o / og);
      for (let oy = 0; oy < s.oh; oy++) {
        for (let ox = 0; ox < s.ow; ox++) {
          const yi = ((n * s.oc + o) * s.oh + oy) * s.ow + ox;
          for (let ci = 0; ci < cg; ci++) {
            for (let ky = 0; ky < s.kh; ky++) {
              const iy = oy * s.sh - s.ph + ky * s.dh;
              for (let kx = 0; kx < s.kw; kx++) {
                const ix = ox * s.sw - s.pw + kx * s.dw;
                const inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
                const xi = inside ? ((n * s.c + g * cg + ci) * s.h + iy) * s.w + ix : -1;
                visit(yi, xi, ((o * cg + ci) * s.kh + ky) * s.kw + kx);
              }
            }
          }
        }
      }
    }
  }
}

/** y = conv2d(x, weight) + bias, and |x| . |weight| + |bias| per output (what its rounding error scales with). */
export function conv2dForward(g: readonly number[], x: ArrayLike<number>, weight: ArrayLike<number>,
  bias: ArrayLike<number> | null): { y: Float64Array; magnitude: Float64Array } {
  const s = convShape(g);
  const y = new Float64Array(s.n * s.oc * s.oh * s.ow), magnitude = new Float64Array(y.length);
  eachTap(s, (yi, xi, wi) => {
    if (xi < 0) return;
    y[yi] += x[xi] * weight[wi];
    magnitude[yi] += Math.abs(x[xi] * weight[wi]);
  });
  if (bias) {
    const p = s.oh * s.ow;
    for (let i = 0; i < y.length; i++) {
      const o = Math.floor(i / p) % s.oc;
      y[i] += bias[o];
      magnitude[i] += Math.abs(bias[o]);
    }
  }
  return { y, magnitude };
}

/** dx of conv2d for dy, and its magnitude sum |dy w|. */
export function conv2dBackwardInput(g: readonly number[], dy: ArrayLike<number>, weight: ArrayLike<number>):
  { dx: Float64Array; magnitude: Float64Array } {
  const s = convShape(g);
  const dx = new Float64Array(s.n * s.c * s.h * s.w), magnitude = new Float64Array(dx.length);
  eachTap(s, (yi, xi, wi) => {
    if (xi < 0) return;
    dx[xi] += dy[yi] * weight[wi];
    magnitude[xi] += Math.abs(dy[yi] * weight[wi]);
  });
  return { dx, magnitude };
}

/** dweight and dbias of conv2d for dy, with the magnitude of each dweight element. */
export function conv2dBackwardWeight(g: readonly number[], x: ArrayLike<number>, dy: ArrayLike<number>):
  { dweight: Float64Array; dbias: Float64Array; magnitude: Float64Array; biasMagnitude: Float64Array } {
  const s = convShape(g);
  const dweight = new Float64Array(s.oc * (s.c / s.groups) * s.kh * s.kw), magnitude = new Float64Array(dweight.length);
  eachTap(s, (yi, xi, wi) => {
    if (xi < 0) return;
    dweight[wi] += x[xi] * dy[yi];
    magnitude[wi] += Math.abs(x[xi] * dy[yi]);
  });
  const dbias = new Float64Array(s.oc), biasMagnitude = new Float64Array(s.oc);
  const p = s.oh * s.ow;
  for (let i = 0; i < dy.length && i < s.n * s.oc * p; i++) {
    const o = Math.floor(i / p) % s.oc;
    dbias[o] += dy[i];
    biasMagnitude[o] += Math.abs(dy[i]);
  }
  return { dweight, dbias, magnitude, biasMagnitude };
}

export interface PoolShape { planes: number; h: number; w: number; kh: number; kw: number; sh: number; sw: number; ph: number; pw: number; oh: number; ow: number }

export function poolShape(g: readonly number[]): PoolShape {
  const [planes, h, w, kh, kw, sh, sw, ph, pw] = g as [number, number, number, number, number, number, number, number, number];
  return { planes, h, w, kh, kw, sh, sw, ph, pw, oh: Math.floor((h + 2 * ph - kh) / sh) + 1, ow: Math.floor((w + 2 * pw - kw) / sw) + 1 };
}

/** Calls visit(output index, plane offset, iy0, iy1, ix0, ix1, window start y, start x) for each output (window clipped to the input). */
function eachWindow(s: PoolShape, visit: (o: number, base: number, y0: number, y1: number, x0: number, x1: number, ys: number, xs: number) => void): void {
  for (let p = 0; p < s.planes; p++) {
    for (let oy = 0; oy < s.oh; oy++) {
      for (let ox = 0; ox < s.ow; ox++) {
        const ys = oy * s.sh - s.ph, xs = ox * s.sw - s.pw;
        visit((p * s.oh + oy) * s.ow + ox, p * s.h * s.w, Math.max(0, ys), Math.min(s.h, ys + s.kh),
          Math.max(0, xs), Math.min(s.w, xs + s.kw), ys, xs);
      }
    }
  }
}

/** Max pooling: the maximum of each window and its in-plane index (first on ties; a NaN wins, the first one). */
export function maxPool2dForward(g: readonly number[], x: ArrayLike<number>): { y: Float64Array; indices: Int32Array } {
  const s = poolShape(g);
  const y = new Float64Array(s.planes * s.oh * s.ow), indices = new Int32Array(y.length);
  eachWindow(s, (o, base, y0, y1, x0, x1) => {
    let best = -Infinity, at = -1;
    for (let iy = y0; iy < y1; iy++) {
      for (let ix = x0; ix < x1; ix++) {
        const v = x[base + iy * s.w + ix];
        if (at < 0 || v > best || (Number.isNaN(v) && !Number.isNaN(best))) { best = v; at = iy * s.w + ix; }
      }
    }
    y[o] = best;
    indices[o] = at;
  });
  return { y, indices };
}

export function maxPool2dBackward(g: readonly number[], dy: ArrayLike<number>, indices: ArrayLike<number>): Float64Array {
  const s = poolShape(g);
  const dx = new Float64Array(s.planes * s.h * s.w);
  const per = s.oh * s.ow;
  for (let o = 0; o < s.planes * per; o++) dx[Math.floor(o / per) * s.h * s.w + indices[o]] += dy[o];
  return dx;
}

function avgDivisor(s: PoolShape, y0: number, y1: number, x0: number, x1: number, ys: number, xs: number,
  countIncludePad: boolean): number {
  if (!countIncludePad) return (y1 - y0) * (x1 - x0);
  return (Math.min(ys + s.kh, s.h + s.ph) - ys) * (Math.min(xs + s.kw, s.w + s.pw) - xs);
}

export function avgPool2dForward(g: readonly number[], x: ArrayLike<number>, countIncludePad: boolean): Float64Array {
  const s = poolShape(g);
  const y = new Float64Array(s.planes * s.oh * s.ow);
  eachWindow(s, (o, base, y0, y1, x0, x1, ys, xs) => {
    let acc = 0;
    for (let iy = y0; iy < y1; iy++) for (let ix = x0; ix < x1; ix++) acc += x[base + iy * s.w + ix];
    y[o] = acc / avgDivisor(s, y0, y1, x0, x1, ys, xs, countIncludePad);
  });
  return y;
}

export function avgPool2dBackward(g: readonly number[], dy: ArrayLike<number>, countIncludePad: boolean): Float64Array {
  const s = poolShape(g);
  const dx = new Float64Array(s.planes * s.h * s.w);
  eachWindow(s, (o, base, y0, y1, x0, x1, ys, xs) => {
    const share = dy[o] / avgDivisor(s, y0, y1, x0, x1, ys, xs, countIncludePad);
    for (let iy = y0; iy < y1; iy++) for (let ix = x0; ix < x1; ix++) dx[base + iy * s.w + ix] += share;
  });
  return dx;
}

export interface BatchNormResult {
  y: Float64Array; saveMean: Float64Array; saveInvstd: Float64Array;
  runningMean: Float64Array | null; runningVar: Float64Array | null;
}

/** torch.nn.functional.batch_norm over x [n, c, hw]: batch statistics (biased variance) in training, running ones in eval. */
export function batchNormForward(x: ArrayLike<number>, gamma: ArrayLike<number> | null, beta: ArrayLike<number> | null,
  runningMean: ArrayLike<number> | null, runningVar: ArrayLike<number> | null, n: number, c: number, hw: number,
  training: boolean, momentum: number, eps: number): BatchNormResult {
  const m = n * hw;
  const y = new Float64Array(n * c * hw), saveMean = new Float64Array(c), saveInvstd = new Float64Array(c);
  const rm = runningMean ? Float64Array.from(runningMean) : null, rv = runningVar ? Float64Array.from(runningVar) : null;
  for (let ch = 0; ch < c; ch++) {
    let mean: number, variance: number;
    if (training) {
      let s = 0;
      for (let i = 0; i < n; i++) for (let j = 0; j < hw; j++) s += x[(i * c + ch) * hw + j];
      mean = s / m;
      let q = 0;
      for (let i = 0; i < n; i++) for (let j = 0; j < hw; j++) q += (x[(i * c + ch) * hw + j] - mean) ** 2;
      variance = q / m;
      if (rm && rv) {
        rm[ch] = (1 - momentum) * rm[ch] + momentum * mean;
        rv[ch] = (1 - momentum) * rv[ch] + momentum * (m > 1 ? (variance * m) / (m - 1) : variance);
      }
    } else {
      mean = runningMean![ch];
      variance = runningVar![ch];
    }
    saveMean[ch] = mean;
    saveInvstd[ch] = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < hw; j++) {
        const at = (i * c + ch) * hw + j;
        y[at] = (x[at] - mean) * saveInvstd[ch] * (gamma ? gamma[ch] : 1) + (beta ? beta[ch] : 0);
      }
    }
  }
  return { y, saveMean, saveInvstd, runningMean: rm, runningVar: rv };
}

/** The gradients of batch norm given its saved statistics (kernels.h's formulas, torch's batch_norm_backward). */
export function batchNormBackward(x: ArrayLike<number>, dy: ArrayLike<number>, gamma: ArrayLike<number> | null,
  saveMean: ArrayLike<number>, saveInvstd: ArrayLike<number>, n: number, c: number, hw: number, training: boolean):
  { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const m = n * hw;
  const dx = new Float64Array(n * c * hw), dgamma = new Float64Array(c), dbeta = new Float64Array(c);
  for (let ch = 0; ch < c; ch++) {
    const xhat = (i: number): number => (x[i] - saveMean[ch]) * saveInvstd[ch];
    let sdy = 0, sdyx = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < hw; j++) {
        const at = (i * c + ch) * hw + j;
        sdy += dy[at];
        sdyx += dy[at] * xhat(at);
      }
    }
    dbeta[ch] = sdy;
    dgamma[ch] = sdyx;
    const k = (gamma ? gamma[ch] : 1) * saveInvstd[ch];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < hw; j++) {
        const at = (i * c + ch) * hw + j;
        dx[at] = training ? k * (dy[at] - sdy / m - (xhat(at) * sdyx) / m) : k * dy[at];
      }
    }
  }
  return { dx, dgamma, dbeta };
}
