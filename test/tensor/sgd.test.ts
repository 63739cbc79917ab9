import test from 'ava';
import { SGD, zeros, randn } from '../../src/tensor/index.js';
import { runSteps } from './optimfixture.js';

function torchSgd(lr: number, momentum = 0, dampening = 0, wd = 0, nesterov = false) {
  let buf: Float64Array | null = null;
  return (p: Float64Array, grad: Float64Array, step: number): void => {
    const g = grad.map((v, i) => v + wd * p[i]!);
    if (momentum !== 0) {
      buf = step === 1 ? g.slice() : buf!.map((b, i) => momentum * b + (1 - dampening) * g[i]!);
      for (let i = 0; i < g.length; i++) g[i] = nesterov ? g[i]! + momentum * buf[i]! : buf[i]!;
    }
    for (let i = 0; i < p.length; i++) p[i]! -= lr * g[i]!;
  };
}

test('plain SGD matches torch for three steps', (t) => {
  runSteps(t, (ps) => new SGD(ps, { lr: 0.1 }), torchSgd(0.1));
});

test('SGD with momentum, dampening and weight decay matches torch', (t) => {
  runSteps(t, (ps) => new SGD(ps, { lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 0.01 }), torchSgd(0.05, 0.9, 0.1, 0.01));
});

test('SGD with Nesterov momentum matches torch', (t) => {
  runSteps(t, (ps) => new SGD(ps, { lr: 0.05, momentum: 0.8, nesterov: true }), torchSgd(0.05, 0.8, 0, 0, true));
});

test('SGD exposes per-parameter state and skips parameters without gradients', (t) => {
  const a = randn([3], { seed: 1, requiresGrad: true });
  const b = randn([3], { seed: 2, requiresGrad: true });
  const before = Array.from(b.data);
  const opt = new SGD([a, b], { lr: 0.1, momentum: 0.9 });
  a.attachGrad(Float32Array.of(1, 1, 1));
  opt.step();
  t.deepEqual(Array.from(b.data), before);
  t.deepEqual(Array.from(opt.state.get(a)!.momentumBuffer!), [1, 1, 1]);
  t.is(opt.state.get(a)!.steps, 1);
  t.false(opt.state.has(b));
});

test('SGD rejects bad options, naming them', (t) => {
  const p = [zeros([2], { requiresGrad: true })];
  t.throws(() => new SGD(p, { lr: -1 }), { instanceOf: RangeError, message: /SGD: lr = -1 is invalid/ });
  t.throws(() => new SGD(p, { lr: NaN }), { instanceOf: RangeError });
  t.throws(() => new SGD(p, { lr: 0.1, nesterov: true }), { instanceOf: RangeError, message: /nesterov/ });
});
