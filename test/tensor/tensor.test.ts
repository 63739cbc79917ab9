import test from 'ava';
import { fromArray, full, ones, randint, randn, scalar, ShapeError, Tensor, tensor, uniform, zeros } from '../../src/tensor/index.js';

test('a tensor wraps an existing Float32Array (also over a SharedArrayBuffer) without copying', (t) => {
  const sab = new SharedArrayBuffer(4 * 12);
  const view = new Float32Array(sab, 8, 6);
  const x = tensor(view, [2, 3]);
  t.is(x.data, view);
  x.data[4] = 7;
  t.is(new Float32Array(sab)[6], 7);
  t.deepEqual(x.shape, [2, 3]);
  t.is(x.dtype, 'float32');
  t.is(x.device, 'cpu');
  t.is(x.size, 6);
});

test('dtype follows the array: Int32Array gives int32 tensors (labels)', (t) => {
  const y = tensor(Int32Array.of(1, 2, 3));
  t.is(y.dtype, 'int32');
  t.deepEqual(y.shape, [3]);
  t.throws(() => new Tensor<'int32'>(Int32Array.of(1), [1], { requiresGrad: true }), { message: /int32; expected float32/ });
  t.throws(() => new Tensor(new Float64Array(2) as unknown as Float32Array), { instanceOf: TypeError });
});

test('a shape that does not match the data length is a ShapeError', (t) => {
  t.throws(() => tensor(new Float32Array(6), [4, 2]), { instanceOf: ShapeError, message: /Tensor: got shape \[4, 2\]; expected a shape of 6 elements/ });
  t.throws(() => zeros([2, -1]), { instanceOf: ShapeError });
  t.throws(() => zeros([1.5]), { instanceOf: ShapeError });
});

test('item() reads one-element tensors only', (t) => {
  t.is(scalar(2.5).item(), 2.5);
  t.deepEqual(scalar(1).shape, []);
  t.is(ones([1, 1]).item(), 1);
  t.throws(() => zeros([2]).item(), { instanceOf: ShapeError, message: /item/ });
});

test('factories: zeros, ones, full, fromArray (nested and flat), int32 variants', (t) => {
  t.deepEqual(Array.from(zeros([2, 2]).data), [0, 0, 0, 0]);
  t.deepEqual(Array.from(full([3], 4).data), [4, 4, 4]);
  const a = fromArray([[1, 2, 3], [4, 5, 6]]);
  t.deepEqual(a.shape, [2, 3]);
  t.deepEqual(a.toArray(), [1, 2, 3, 4, 5, 6]);
  t.deepEqual(fromArray([1, 2, 3, 4], [2, 2]).shape, [2, 2]);
  const l = fromArray([1, 2], undefined, { dtype: 'int32' });
  t.true(l.data instanceof Int32Array);
  t.throws(() => fromArray([[1, 2], [3]]), { instanceOf: ShapeError });
  t.true(zeros([2], { dtype: 'int32' }).data instanceof Int32Array);
});

test('random factories are reproducible for a seed and differ across seeds', (t) => {
  t.deepEqual(Array.from(randn([10], { seed: 3 }).data), Array.from(randn([10], { seed: 3 }).data));
  t.notDeepEqual(Array.from(randn([10], { seed: 3 }).data), Array.from(randn([10], { seed: 4 }).data));
  const u = uniform([1000], -2, 3, { seed: 1 });
  t.true(u.data.every((v) => v >= -2 && v < 3));
  const r = randint([1000], 10, { seed: 1 });
  t.true(r.data.every((v) => v >= 0 && v < 10 && Number.isInteger(v)));
  t.throws(() => uniform([2], 1, 0), { instanceOf: RangeError });
});

test('detach shares storage and cuts the graph; clone copies; reshape is a view', (t) => {
  const x = randn([2, 3], { seed: 1 });
  const tracked = randn([2], { requiresGrad: true });
  const d = tracked.detach();
  t.is(d.data, tracked.data);
  t.false(d.requiresGrad);
  const c = x.clone();
  t.not(c.data, x.data);
  t.deepEqual(Array.from(c.data), Array.from(x.data));
  const r = x.reshape([3, 2]);
  t.is(r.data, x.data);
  t.throws(() => x.reshape([4]), { instanceOf: ShapeError });
});

test('reshape of a tracked tensor passes gradients through', (t) => {
  const x = randn([2, 3], { seed: 1, requiresGrad: true });
  const y = x.reshape([6]);
  t.is(y.gradFn!.name, 'reshape');
  y.backward(Float32Array.of(1, 2, 3, 4, 5, 6));
  t.deepEqual(Array.from(x.grad!.data), [1, 2, 3, 4, 5, 6]);
  t.deepEqual(x.grad!.shape, [2, 3]);
});
