// SharedBatches: a worker's batches from shared memory, identical to the DataLoader's.
import test from 'ava';
import { DataLoader, DistributedSampler, type Dataset } from '../../src/data/index.js';
import { SharedBatches } from '../../src/hogwild/batches.js';

function sharedDataset(n: number, f: number): Dataset {
  const x = new Float32Array(new SharedArrayBuffer(n * f * 4));
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i) * 3;
  // Values a copy through arithmetic could change: -0, NaN, infinities, a subnormal.
  x.set([-0, NaN, Infinity, -Infinity, 1e-45], f);
  const y = new Int32Array(n).map((_, i) => i % 7);
  return { x, y, length: n, features: f, classes: 7 };
}

test('batches match the DataLoader over the same sampler bit for bit, epoch by epoch', (t) => {
  const data = sharedDataset(103, 5);
  for (const [numReplicas, rank] of [[1, 0], [3, 2]] as const) {
    const ours = new SharedBatches(data, new DistributedSampler(data.length, { numReplicas, rank, shuffle: true, seed: 9 }), 8);
    const loader = new DataLoader(data, { batchSize: 8, sampler: new DistributedSampler(data.length, { numReplicas, rank, shuffle: true, seed: 9 }), dropLast: true });
    t.is(ours.length, loader.length);
    t.is(ours.samples, loader.samples);
    for (let epoch = 0; epoch < 2; epoch++) {
      loader.setEpoch(epoch);
      const expected = [...loader].map((b) => ({ x: [...b.x], y: [...b.y] }));
      const got = [...ours.epoch(epoch)].map((b) => ({ x: [...b.x], y: [...b.y] }));
      t.is(got.length, expected.length);
      // deepEqual tells -0 from 0 and compares NaN with NaN, so the copy must be exact.
      t.deepEqual(got, expected);
    }
  }
});

test('an index outside the dataset is refused with the index', (t) => {
  const data = sharedDataset(20, 3);
  const sampler = { length: 4, setEpoch() {}, indices: () => Int32Array.of(0, 1, 25, 3) } as unknown as DistributedSampler;
  const batches = new SharedBatches(data, sampler, 4);
  t.throws(() => [...batches.epoch(0)], { instanceOf: RangeError, message: /sampler index 25 is outside the 20 training samples/ });
});
