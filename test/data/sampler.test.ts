import test from 'ava';
import { DataOptionError, DistributedSampler } from '../../src/data/index.js';

// torch.utils.data.distributed.DistributedSampler.__iter__, transcribed literally (list concat),
// for shuffle=False: the reference our modulo arithmetic must agree with.
function torchIndices(n: number, R: number, rank: number, dropLast: boolean): number[] {
  const numSamples = dropLast && n % R !== 0 ? Math.ceil((n - R) / R) : Math.ceil(n / R);
  const total = numSamples * R;
  let indices = Array.from({ length: n }, (_, i) => i);
  if (!dropLast) {
    const pad = total - indices.length;
    if (pad <= indices.length) indices = indices.concat(indices.slice(0, pad));
    else {
      let rep: number[] = [];
      for (let k = 0; k < Math.ceil(pad / indices.length); k++) rep = rep.concat(indices);
      indices = indices.concat(rep.slice(0, pad));
    }
  } else indices = indices.slice(0, total);
  const out: number[] = [];
  for (let i = rank; i < total; i += R) out.push(indices[i]!);
  return out;
}

const all = (n: number, R: number, opts: { shuffle?: boolean; dropLast?: boolean; seed?: number }, epoch = 0) =>
  Array.from({ length: R }, (_, rank) => {
    const s = new DistributedSampler(n, { numReplicas: R, rank, ...opts });
    s.setEpoch(epoch);
    return [...s];
  });

test('unshuffled indices match torch arithmetic for padding and dropLast', (t) => {
  for (const n of [0, 1, 2, 5, 10, 11, 12, 13, 100, 101]) {
    for (const R of [1, 2, 3, 4, 5, 7, 16]) {
      for (const dropLast of [false, true]) {
        for (let rank = 0; rank < R; rank++) {
          const s = new DistributedSampler(n, { numReplicas: R, rank, shuffle: false, dropLast });
          const expected = torchIndices(n, R, rank, dropLast);
          t.deepEqual([...s.indices()], expected, `n=${n} R=${R} rank=${rank} dropLast=${dropLast}`);
          t.is(s.length, expected.length);
        }
      }
    }
  }
});

test('known small cases: n=10 over 4 replicas pads with 0,1 or drops 8,9', (t) => {
  t.deepEqual(all(10, 4, { shuffle: false }), [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]]);
  t.deepEqual(all(10, 4, { shuffle: false, dropLast: true }), [[0, 4], [1, 5], [2, 6], [3, 7]]);
  // Padding longer than the dataset repeats it several times.
  t.deepEqual(all(2, 5, { shuffle: false }), [[0], [1], [0], [1], [0]]);
  t.deepEqual(all(3, 4, { shuffle: false, dropLast: true }), [[], [], [], []]);
});

test('a divisible dataset is partitioned: disjoint ranks, complete union, equal lengths', (t) => {
  for (const [n, R] of [[60, 4], [1000, 8], [7, 7], [12, 3]] as const) {
    const parts = all(n, R, { seed: 5 }, 3);
    const lengths = new Set(parts.map((p) => p.length));
    t.deepEqual([...lengths], [n / R]);
    const flat = parts.flat();
    t.is(new Set(flat).size, n, 'no index appears twice');
    t.deepEqual([...flat].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
  }
});

test('shuffled, non-divisible: union covers all, only padding repeats, lengths equal', (t) => {
  const n = 103;
  const R = 4;
  const parts = all(n, R, { seed: 1 });
  const padded = parts.flat();
  t.is(padded.length, 104);
  t.is(new Set(padded).size, n);
  // Rebuild torch's padded list (rank r holds positions r, r+R, ...): its tail repeats its head.
  const full = Array.from({ length: 104 }, (_, p) => parts[p % R]![Math.floor(p / R)]!);
  t.is(full[103], full[0]);
  t.is(new Set(full.slice(0, n)).size, n);
  const dropped = all(n, R, { seed: 1, dropLast: true });
  t.true(dropped.every((p) => p.length === 25));
  t.is(new Set(dropped.flat()).size, 100, 'dropLast gives disjoint ranks');
});

test('setEpoch reshuffles deterministically; same epoch gives the same order', (t) => {
  const a = new DistributedSampler(500, { numReplicas: 2, rank: 1, seed: 42 });
  const b = new DistributedSampler(500, { numReplicas: 2, rank: 1, seed: 42 });
  a.setEpoch(0);
  const e0 = [...a.indices()];
  a.setEpoch(1);
  const e1 = [...a.indices()];
  t.notDeepEqual(e0, e1, 'epochs differ');
  b.setEpoch(1);
  t.deepEqual([...b.indices()], e1, 'another sampler agrees on epoch 1');
  a.setEpoch(0);
  t.deepEqual([...a.indices()], e0, 'back to epoch 0 gives epoch 0 again');
  const otherSeed = new DistributedSampler(500, { numReplicas: 2, rank: 1, seed: 43 });
  t.notDeepEqual([...otherSeed.indices()], e0, 'another seed gives another order');
  t.notDeepEqual(e0, [...new DistributedSampler(500, { numReplicas: 2, rank: 1, shuffle: false })], 'shuffled');
});

test('shuffle=false ignores the epoch', (t) => {
  const s = new DistributedSampler(20, { numReplicas: 3, rank: 2, shuffle: false });
  const first = [...s];
  s.setEpoch(7);
  t.deepEqual([...s], first);
});

test('accepts a dataset-like object for its length and exposes torch numbers', (t) => {
  const s = new DistributedSampler({ length: 11 }, { numReplicas: 4, rank: 0 });
  t.is(s.datasetLength, 11);
  t.is(s.length, 3);
  t.is(s.totalSize, 12);
});

test('bad options throw DataOptionError naming the option and value', (t) => {
  const e = t.throws(() => new DistributedSampler(10, { numReplicas: 4, rank: 4 }), { instanceOf: DataOptionError });
  t.regex(e.message, /DistributedSampler\.rank.*\[0, 3\].*got 4/);
  t.throws(() => new DistributedSampler(10, { numReplicas: 0 }), { message: /numReplicas.*got 0/ });
  t.throws(() => new DistributedSampler(10, { rank: -1, numReplicas: 2 }), { message: /rank.*got -1/ });
  t.throws(() => new DistributedSampler(10, { rank: 0.5, numReplicas: 2 }), { message: /rank.*got 0\.5/ });
  t.throws(() => new DistributedSampler(-1), { message: /dataset length.*got -1/ });
  t.throws(() => new DistributedSampler(10, { shuffle: 'yes' as unknown as boolean }), { message: /shuffle must be a boolean, got 'yes'/ });
  t.throws(() => new DistributedSampler(10, { worldSize: 2 } as never), { message: /got 'worldSize'/ });
  const s = new DistributedSampler(10, { seed: 3 });
  s.setEpoch(2);
  t.throws(() => s.setEpoch(-1), { message: /epoch.*got -1/ });
  t.is(s.epoch, 2, 'a refused epoch leaves the sampler as it was');
});
