import test from 'ava';
import { Adam, AdamW, zeros } from '../../src/tensor/index.js';
import { runSteps } from './optimfixture.js';

function torchAdam(lr: number, b1: number, b2: number, eps: number, wd: number, decoupled: boolean) {
  let m: Float64Array | null = null, v: Float64Array | null = null;
  return (p: Float64Array, grad: Float64Array, step: number): void => {
    m ??= new Float64Array(p.length);
    v ??= new Float64Array(p.length);
    for (let i = 0; i < p.length; i++) {
      let g = grad[i]!;
      if (decoupled) p[i]! *= 1 - lr * wd;
      else g += wd * p[i]!;
      m[i] = b1 * m[i]! + (1 - b1) * g;
      v[i] = b2 * v[i]! + (1 - b2) * g * g;
      const mhat = m[i]! / (1 - b1 ** step), vhat = v[i]! / (1 - b2 ** step);
      p[i]! -= (lr * mhat) / (Math.sqrt(vhat) + eps);
    }
  };
}

test('Adam with defaults matches torch for three steps', (t) => {
  runSteps(t, (ps) => new Adam(ps, { lr: 0.01 }), torchAdam(0.01, 0.9, 0.999, 1e-8, 0, false));
});

test('Adam with L2 weight decay matches torch', (t) => {
  runSteps(t, (ps) => new Adam(ps, { lr: 0.02, betas: [0.8, 0.99], eps: 1e-6, weightDecay: 0.1 }), torchAdam(0.02, 0.8, 0.99, 1e-6, 0.1, false));
});

test('AdamW (decoupled weight decay, default 0.01) matches torch', (t) => {
  runSteps(t, (ps) => new AdamW(ps, { lr: 0.01 }), torchAdam(0.01, 0.9, 0.999, 1e-8, 0.01, true));
});

test('Adam state holds the step count and both moments', (t) => {
  const p = zeros([2], { requiresGrad: true });
  const opt = new Adam([p]);
  p.attachGrad(Float32Array.of(1, -2));
  opt.step();
  opt.step();
  const s = opt.state.get(p)!;
  t.is(s.step, 2);
  t.true(Math.abs(s.m[1]! - -2 * (1 - 0.9 ** 2)) < 1e-6);
  t.true(Math.abs(s.v[0]! - (1 - 0.999 ** 2)) < 1e-6);
});

test('Adam rejects betas outside [0, 1)', (t) => {
  t.throws(() => new Adam([zeros([1], { requiresGrad: true })], { betas: [1, 0.9] }), { instanceOf: RangeError, message: /Adam: betas\[0\] = 1 is invalid/ });
});
