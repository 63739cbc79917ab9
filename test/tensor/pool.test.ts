import test from 'ava';
import { clearBufferPool, isPooled, recycleBuffer, takeBuffer } from '../../src/tensor/pool.js';

test('a recycled buffer is handed out again; user arrays and double recycles are ignored', (t) => {
  clearBufferPool();
  const a = takeBuffer(37);
  t.true(isPooled(a));
  recycleBuffer(a);
  t.false(isPooled(a));
  recycleBuffer(a); // second time: ignored
  const b = takeBuffer(37);
  t.is(b, a);
  const c = takeBuffer(37);
  t.not(c, a, 'only one copy of a was in the free list');
  const mine = new Float32Array(37);
  recycleBuffer(mine);
  t.not(takeBuffer(37), mine, 'arrays the pool did not issue never enter it');
});

test('buffers of other sizes are not mixed up', (t) => {
  clearBufferPool();
  const a = takeBuffer(8);
  recycleBuffer(a);
  t.is(takeBuffer(9).length, 9);
  t.is(takeBuffer(8), a);
});
