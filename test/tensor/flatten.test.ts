import test from 'ava';
import { crossEntropy, flattenParameters, mlp, randn, SGD } from '../../src/tensor/index.js';

test('flattenParameters makes every parameter a view of one buffer: writes through either side are seen by the other', (t) => {
  const m = mlp([4, 5, 3], { seed: 1 });
  const before = m.parameters().map((p) => Array.from(p.data));
  const flat = flattenParameters(m);
  t.is(flat.params.length, m.parameterCount());
  t.deepEqual(flat.entries.map((e) => [e.name, e.offset, e.size]), [['0.weight', 0, 20], ['0.bias', 20, 5], ['2.weight', 25, 15], ['2.bias', 40, 3]]);
  t.deepEqual(m.parameters().map((p) => Array.from(p.data)), before, 'values preserved');
  flat.params[21] = 42;
  t.is(m.parameters()[1]!.data[1], 42);
  m.parameters()[2]!.data[0] = -3;
  t.is(flat.params[25], -3);
  t.is(m.parameters()[0]!.data.buffer, flat.params.buffer);
});

test('gradients land in the flat gradient buffer, and optimizers update the flat buffer in place', (t) => {
  const m = mlp([4, 5, 3], { seed: 1 });
  const flat = flattenParameters(m);
  const x = randn([6, 4], { seed: 2 });
  const y = Int32Array.from([0, 1, 2, 0, 1, 2]);
  crossEntropy(m.forward(x), y).backward();
  m.parameters().forEach((p, i) => {
    const e = flat.entries[i]!;
    t.is(p.grad!.data.buffer, flat.grads.buffer);
    t.is(p.grad!.data.byteOffset, flat.grads.byteOffset + 4 * e.offset);
  });
  t.true(flat.grads.some((v) => v !== 0));
  const snapshot = flat.params.slice();
  new SGD(m.parameters(), { lr: 0.5 }).step();
  flat.params.forEach((v, i) => t.true(Math.abs(v - (snapshot[i]! - 0.5 * flat.grads[i]!)) < 1e-6));
});

test('flattenParameters over a SharedArrayBuffer; copy: false attaches to values already there (a second Hogwild worker)', (t) => {
  const a = mlp([3, 2], { seed: 1 });
  const b = mlp([3, 2], { seed: 99 });
  const shared = new Float32Array(new SharedArrayBuffer(4 * a.parameterCount()));
  flattenParameters(a, { buffer: shared });
  flattenParameters(b, { buffer: shared, copy: false });
  t.deepEqual(b.parameters().map((p) => Array.from(p.data)), a.parameters().map((p) => Array.from(p.data)));
  a.parameters()[0]!.data[0] = 5;
  t.is(b.parameters()[0]!.data[0], 5);
  t.true(b.parameters()[0]!.data.buffer instanceof SharedArrayBuffer);
});

test('a buffer of the wrong length is rejected and the model is left as it was', (t) => {
  const m = mlp([3, 2], { seed: 1 });
  const before = m.parameters().map((p) => p.data);
  t.throws(() => flattenParameters(m, { buffer: new Float32Array(3) }), { instanceOf: RangeError, message: /buffer has 3 elements; expected 8/ });
  t.deepEqual(m.parameters().map((p) => p.data), before);
});
