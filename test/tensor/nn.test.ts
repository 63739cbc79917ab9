// Module, layers, Sequential and mlp.
import test from 'ava';
import { crossEntropy, Dropout, linear, Linear, LogSoftmax, mlp, Module, noGrad, randn, relu, ReLU, Sequential, SGD, ShapeError, Tensor } from '../../src/tensor/index.js';
import { refLinear, refLogSoftmax } from './gradcheck.js';

test('Linear is initialised like torch: weight and bias in (-1/sqrt(in), 1/sqrt(in)), reproducible per seed', (t) => {
  const l = new Linear(100, 30, { seed: 1 });
  t.deepEqual(l.weight.shape, [30, 100]);
  t.deepEqual(l.bias!.shape, [30]);
  const bound = 0.1;
  t.true(l.weight.data.every((v) => Math.abs(v) < bound));
  t.true(l.bias!.data.every((v) => Math.abs(v) < bound));
  const spread = Math.max(...l.weight.data) - Math.min(...l.weight.data);
  t.true(spread > 1.8 * bound, 'values fill the interval');
  t.deepEqual(Array.from(new Linear(100, 30, { seed: 1 }).weight.data), Array.from(l.weight.data));
  t.notDeepEqual(Array.from(new Linear(100, 30, { seed: 2 }).weight.data), Array.from(l.weight.data));
  t.true(l.weight.requiresGrad && l.weight.isLeaf);
  t.is(new Linear(3, 2, { bias: false }).bias, null);
  t.throws(() => new Linear(0, 2), { instanceOf: RangeError, message: /inFeatures = 0/ });
});

test('mlp has torch-style parameter names and returns logits', (t) => {
  const m = mlp([784, 64, 64, 10], { seed: 0 });
  t.deepEqual(m.namedParameters().map(([n, p]) => `${n}:${p.shape.join('x')}`), ['0.weight:64x784', '0.bias:64', '2.weight:64x64', '2.bias:64', '4.weight:10x64', '4.bias:10']);
  t.is(m.parameterCount(), 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10);
  t.deepEqual(m.forward(randn([3, 784], { seed: 1 })).shape, [3, 10]);
  t.is(mlp([4, 8, 2], { dropout: 0.5 }).namedChildren().map(([, c]) => c.constructor.name).join(','), 'Linear,ReLU,Dropout,Linear');
});

test('mlp forward matches a plain float64 reference', (t) => {
  const m = mlp([5, 7, 6, 3], { seed: 4 });
  const x = randn([4, 5], { seed: 2 });
  const y = m.forward(x);
  const [w0, b0, w1, b1, w2, b2] = m.parameters().map((p) => Float64Array.from(p.data));
  let h = refLinear(Float64Array.from(x.data), w0!, b0!, 4, 5, 7).map((v) => Math.max(v, 0));
  h = refLinear(h, w1!, b1!, 4, 7, 6).map((v) => Math.max(v, 0));
  const want = refLinear(h, w2!, b2!, 4, 6, 3);
  y.data.forEach((v, i) => t.true(Math.abs(v - want[i]!) < 1e-5, `logit ${i}: ${v} vs ${want[i]}`));
  const lsm = new LogSoftmax().forward(y);
  const wantLsm = refLogSoftmax(want, 4, 3);
  lsm.data.forEach((v, i) => t.true(Math.abs(v - wantLsm[i]!) < 1e-5));
});

test('train()/eval() reach every descendant; Dropout is the identity in eval mode and advances its stream in training', (t) => {
  const d = new Dropout(0.5, { seed: 3 });
  const m = new Sequential(new Linear(4, 4), new ReLU(), d);
  m.eval();
  t.false(d.training);
  const x = randn([2, 4], { seed: 1 });
  t.is(d.forward(x), x);
  m.train();
  t.true(d.training);
  const a = d.forward(x), b = d.forward(x);
  t.is(d.offset, 16);
  t.notDeepEqual(Array.from(a.data), Array.from(b.data));
  t.throws(() => new Dropout(1), { instanceOf: RangeError });
});

test('zeroGrad clears every parameter gradient; a shape error in forward leaves gradients intact', (t) => {
  const m = mlp([3, 4, 2], { seed: 1 });
  crossEntropy(m.forward(randn([5, 3], { seed: 2 })), Int32Array.from([0, 1, 0, 1, 1])).backward();
  t.true(m.parameters().every((p) => p.grad !== null));
  const before = m.parameters().map((p) => Array.from(p.grad!.data));
  t.throws(() => m.forward(randn([5, 4])), { instanceOf: ShapeError });
  t.deepEqual(m.parameters().map((p) => Array.from(p.grad!.data)), before);
  m.zeroGrad();
  t.true(m.parameters().every((p) => p.grad === null));
});

test('a custom Module registers parameters and children under stable names', (t) => {
  class Net extends Module {
    readonly scale: Tensor;
    readonly body: Linear;
    constructor() {
      super();
      this.scale = this.registerParameter('scale', randn([1], { seed: 1 }));
      this.body = this.registerModule('body', new Linear(2, 2));
    }
    forward(x: Tensor): Tensor {
      return this.body.forward(x);
    }
  }
  const n = new Net();
  t.deepEqual(n.namedParameters().map(([k]) => k), ['scale', 'body.weight', 'body.bias']);
  t.true(n.scale.requiresGrad);
  t.deepEqual(noGrad(() => n.forward(randn([1, 2]))).shape, [1, 2]);
});

test('Sequential (fused linear+relu, recycled activations) trains exactly like the same ops called one by one', (t) => {
  const a = mlp([6, 8, 8, 3], { seed: 5 });
  const b = mlp([6, 8, 8, 3], { seed: 5 });
  const pb = b.parameters();
  const optA = new SGD(a.parameters(), { lr: 0.1, momentum: 0.9 });
  const optB = new SGD(pb, { lr: 0.1, momentum: 0.9 });
  const y = Int32Array.from([0, 1, 2, 0, 1]);
  const kept: Tensor[] = [];
  for (let s = 0; s < 4; s++) {
    const x = randn([5, 6], { seed: 10 + s });
    const la = crossEntropy(a.forward(x), y);
    const logitsB = linear(relu(linear(relu(linear(x, pb[0]!, pb[1]!)), pb[2]!, pb[3]!)), pb[4]!, pb[5]!);
    kept.push(logitsB);
    const lb = crossEntropy(logitsB, y);
    t.is(la.item(), lb.item(), `loss at step ${s}`);
    optA.zeroGrad();
    optB.zeroGrad();
    la.backward();
    lb.backward();
    optA.step();
    optB.step();
  }
  a.parameters().forEach((p, i) => t.deepEqual(Array.from(p.data), Array.from(pb[i]!.data), `parameter ${i}`));
  // Outputs handed to the caller are never recycled.
  const first = kept[0]!.data.slice();
  noGrad(() => a.forward(randn([5, 6], { seed: 1 })));
  t.deepEqual(Array.from(kept[0]!.data), Array.from(first));
});

test('outputs returned by a Sequential stay valid across later steps and evaluation passes', (t) => {
  const m = mlp([4, 8, 8, 2], { seed: 1 });
  const x = randn([3, 4], { seed: 2 });
  const out1 = m.forward(x);
  const copy = Array.from(out1.data);
  crossEntropy(out1, Int32Array.from([0, 1, 0])).backward();
  for (let i = 0; i < 3; i++) {
    const e = noGrad(() => m.forward(randn([3, 4], { seed: 3 + i })));
    crossEntropy(m.forward(x), Int32Array.from([1, 1, 0])).backward();
    t.is(e.size, 6);
  }
  t.deepEqual(Array.from(out1.data), copy);
  t.deepEqual(Array.from(noGrad(() => m.forward(x)).data), Array.from(noGrad(() => m.forward(x)).data));
});

test('stateDict / loadStateDict copy values by name; a bad state writes nothing', (t) => {
  const a = mlp([3, 4, 2], { seed: 1 });
  const b = mlp([3, 4, 2], { seed: 2 });
  const state = a.stateDict();
  t.deepEqual([...state.keys()], ['0.weight', '0.bias', '2.weight', '2.bias']);
  state.get('0.bias')![0] = 123; // a copy: the model is unchanged
  t.not(a.parameters()[1]!.data[0], 123);
  const before = b.parameters().map((p) => Array.from(p.data));
  const short = new Map(state);
  short.set('2.bias', new Float32Array(5));
  t.throws(() => b.loadStateDict(short), { instanceOf: ShapeError, message: /loadStateDict/ });
  t.throws(() => b.loadStateDict({ ...Object.fromEntries(state), extra: new Float32Array(1) }), { instanceOf: RangeError, message: /unknown parameter 'extra'/ });
  t.deepEqual(b.parameters().map((p) => Array.from(p.data)), before);
  b.loadStateDict(state);
  t.deepEqual(b.parameters().map((p) => Array.from(p.data)), [...state.values()].map((v) => Array.from(v)));
});
