import test from 'ava';
import { DataLoader, DataOptionError, DistributedSampler, type Dataset } from '../../src/data/index.js';

// Row i holds i*10 + j in feature j and label i % 7, so a batch row names its sample.
function numbered(length: number, features = 3): Dataset {
  const x = new Float32Array(length * features);
  const y = new Int32Array(length);
  for (let i = 0; i < length; i++) {
    for (let j = 0; j < features; j++) x[i * features + j] = i * 10 + j;
    y[i] = i % 7;
  }
  return { x, y, length, shape: [features], features, classes: 7 };
}

function sampleIds(loader: DataLoader): { sizes: number[]; ids: number[] } {
  const sizes: number[] = [];
  const ids: number[] = [];
  const f = loader.dataset.features;
  for (const b of loader) {
    sizes.push(b.size);
    if (b.x.length !== b.size * f || b.y.length !== b.size) throw new Error('batch arrays do not match size');
    for (let k = 0; k < b.size; k++) {
      const id = b.x[k * f]! / 10;
      for (let j = 0; j < f; j++) if (b.x[k * f + j] !== id * 10 + j) throw new Error('row mixed up');
      if (b.y[k] !== id % 7) throw new Error('label does not follow its row');
      ids.push(id);
    }
  }
  return { sizes, ids };
}

test('sequential batches cover the epoch in order with a short last batch', (t) => {
  const loader = new DataLoader(numbered(10), { batchSize: 4 });
  t.is(loader.length, 3);
  const { sizes, ids } = sampleIds(loader);
  t.deepEqual(sizes, [4, 4, 2]);
  t.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test('dropLast drops the short batch; an exact multiple has none', (t) => {
  const dropped = new DataLoader(numbered(10), { batchSize: 4, dropLast: true });
  t.is(dropped.length, 2);
  t.is(dropped.samples, 8);
  t.deepEqual(sampleIds(dropped).sizes, [4, 4]);
  t.deepEqual(sampleIds(new DataLoader(numbered(12), { batchSize: 4 })).sizes, [4, 4, 4]);
  t.deepEqual(sampleIds(new DataLoader(numbered(3), { batchSize: 8 })).sizes, [3]);
  t.deepEqual(sampleIds(new DataLoader(numbered(3), { batchSize: 8, dropLast: true })).sizes, []);
  t.deepEqual(sampleIds(new DataLoader(numbered(0), { batchSize: 8 })).sizes, []);
});

test('shuffle visits every sample once, differently each epoch, reproducibly', (t) => {
  const loader = new DataLoader(numbered(50), { batchSize: 8, shuffle: true, seed: 4 });
  const e0 = sampleIds(loader).ids;
  const e1 = sampleIds(loader).ids;
  t.deepEqual([...e0].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  t.notDeepEqual(e0, e1, 'the next iteration is the next epoch');
  t.notDeepEqual(e0, Array.from({ length: 50 }, (_, i) => i));
  loader.setEpoch(0);
  t.deepEqual(sampleIds(loader).ids, e0, 'setEpoch(0) replays epoch 0');
  const twin = new DataLoader(numbered(50), { batchSize: 8, shuffle: true, seed: 4 });
  twin.setEpoch(1);
  t.deepEqual(sampleIds(twin).ids, e1);
});

test('with a DistributedSampler each rank sees its share and the shares partition the data', (t) => {
  const data = numbered(40);
  const seen: number[] = [];
  for (let rank = 0; rank < 4; rank++) {
    const sampler = new DistributedSampler(data, { numReplicas: 4, rank, seed: 9 });
    const loader = new DataLoader(data, { batchSize: 3, sampler });
    loader.setEpoch(2);
    const { sizes, ids } = sampleIds(loader);
    t.deepEqual(sizes, [3, 3, 3, 1]);
    t.is(sampler.epoch, 2, 'the loader drives the sampler epoch');
    t.deepEqual(ids, [...sampler.indices()]);
    seen.push(...ids);
  }
  t.is(new Set(seen).size, 40);
});

test('the batch buffers are reused: no new arrays per batch', (t) => {
  const loader = new DataLoader(numbered(100, 5), { batchSize: 16 });
  const xs = new Set<Float32Array>();
  const batches = new Set<object>();
  for (const b of loader) { xs.add(b.x); batches.add(b); }
  t.is(xs.size, 2, 'one full-batch buffer and one view for the short last batch');
  t.is(batches.size, 2);
  for (const b of loader) xs.add(b.x);
  t.is(xs.size, 2, 'the same buffers in the next epoch');
});

test('starting a new iteration ends the previous one', (t) => {
  const loader = new DataLoader(numbered(10), { batchSize: 2 });
  const first = loader[Symbol.iterator]();
  first.next();
  const second = loader[Symbol.iterator]();
  t.false(second.next().done);
  t.throws(() => first.next(), { instanceOf: DataOptionError, message: /superseded/ });
});

test('bad options are refused with the option named', (t) => {
  const data = numbered(10);
  t.throws(() => new DataLoader(data, { batchSize: 0 }), { instanceOf: DataOptionError, message: /batchSize.*got 0/ });
  t.throws(() => new DataLoader(data, { batchSize: 2.5 }), { message: /batchSize.*got 2\.5/ });
  const sampler = new DistributedSampler(data);
  t.throws(() => new DataLoader(data, { batchSize: 2, sampler, shuffle: true }), { message: /shuffle.*sampler/ });
  t.throws(() => new DataLoader(data, { batchSize: 2, sampler: {} as never }), { message: /sampler must be a Sampler/ });
  t.throws(() => new DataLoader(data, { batchSize: 2, batch_size: 3 } as never), { message: /got 'batch_size'/ });
  t.throws(() => new DataLoader({ ...data, length: 11 }, { batchSize: 2 }), { message: /dataset\.x.*Float32Array\(30\)/ });
  t.throws(() => new DataLoader(data, { batchSize: 2 }).setEpoch(-2), { message: /epoch.*got -2/ });
  const tooBig = new DataLoader(data, { batchSize: 2, sampler: new DistributedSampler(20, { shuffle: false }) });
  t.throws(() => [...tooBig], { message: /sampler index must be in \[0, 9\].*got 10/ });
});
