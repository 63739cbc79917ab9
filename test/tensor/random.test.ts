import test from 'ava';
import { Generator } from '../../src/tensor/index.js';

test('the same seed gives the same stream; different seeds differ', (t) => {
  const a = new Generator(123), b = new Generator(123), c = new Generator(124);
  const sa = Array.from({ length: 20 }, () => a.nextU32());
  t.deepEqual(sa, Array.from({ length: 20 }, () => b.nextU32()));
  t.notDeepEqual(sa, Array.from({ length: 20 }, () => c.nextU32()));
});

test('uniform draws lie in [0, 1) with mean near 1/2; normal draws have mean near 0 and variance near 1', (t) => {
  const g = new Generator(5);
  let s = 0, n = 20000;
  for (let i = 0; i < n; i++) {
    const u = g.uniform();
    t.true(u >= 0 && u < 1);
    s += u;
  }
  t.true(Math.abs(s / n - 0.5) < 0.01);
  let m = 0, v = 0;
  for (let i = 0; i < n; i++) {
    const x = g.normal();
    m += x;
    v += x * x;
  }
  t.true(Math.abs(m / n) < 0.03, `mean ${m / n}`);
  t.true(Math.abs(v / n - 1) < 0.05, `variance ${v / n}`);
});

test('a non-finite seed is rejected', (t) => {
  t.throws(() => new Generator(NaN), { instanceOf: RangeError, message: /seed = NaN/ });
});
