import test from 'ava';
import { permutation, SeededRandom } from '../../src/data/index.js';

test('same seed, same stream; nearby and large seeds differ', (t) => {
  const draw = (seed: number) => { const r = new SeededRandom(seed); return Array.from({ length: 8 }, () => r.nextUint32()); };
  t.deepEqual(draw(7), draw(7));
  t.notDeepEqual(draw(7), draw(8));
  t.notDeepEqual(draw(0), draw(2 ** 32), 'high bits of the seed matter');
  t.notDeepEqual(draw(-1), draw(2 ** 32 - 1));
});

test('floats are uniform in [0, 1), ints in range, normals standard', (t) => {
  const r = new SeededRandom(1);
  const n = 100_000;
  let sum = 0, nsum = 0, nsq = 0, outside = 0;
  const buckets = new Array(10).fill(0);
  for (let i = 0; i < n; i++) {
    const f = r.nextFloat();
    if (!(f >= 0 && f < 1)) outside++;
    sum += f;
    buckets[r.nextInt(10)]++;
    const z = r.normal();
    nsum += z;
    nsq += z * z;
  }
  t.is(outside, 0);
  t.true(Math.abs(sum / n - 0.5) < 0.01);
  for (const b of buckets) t.true(Math.abs(b - n / 10) < 600, `bucket ${b}`);
  t.true(Math.abs(nsum / n) < 0.02);
  t.true(Math.abs(nsq / n - 1) < 0.03);
});

test('permutation is a permutation, deterministic per seed', (t) => {
  const p = permutation(1000, 5);
  t.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
  t.deepEqual(permutation(1000, 5), p);
  t.notDeepEqual(permutation(1000, 6), p);
  t.deepEqual([...permutation(0, 1)], []);
});
