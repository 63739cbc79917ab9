import test from 'ava';
import { DataOptionError, shardStream } from '../../src/data/index.js';

function* numbers(n: number): Generator<number> {
  for (let i = 0; i < n; i++) yield i;
}

async function* slowNumbers(n: number): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) {
    await new Promise((r) => setImmediate(r));
    yield i;
  }
}

test('sync: rank r gets items r, r+W, ... and the shards partition the stream', (t) => {
  const W = 3;
  const shards = Array.from({ length: W }, (_, rank) => [...shardStream(numbers(10), { rank, worldSize: W })]);
  t.deepEqual(shards, [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]);
  t.deepEqual(shards.flat().sort((a, b) => a - b), [...numbers(10)]);
});

test('sync: works on arrays and strings, worldSize 1 is the whole stream', (t) => {
  t.deepEqual([...shardStream(['a', 'b', 'c', 'd'], { rank: 1, worldSize: 2 })], ['b', 'd']);
  t.deepEqual([...shardStream('abcde', { rank: 0, worldSize: 2 })], ['a', 'c', 'e']);
  t.deepEqual([...shardStream([1, 2, 3], { rank: 0, worldSize: 1 })], [1, 2, 3]);
  t.deepEqual([...shardStream([1, 2], { rank: 3, worldSize: 4 })], [], 'a rank past the stream gets nothing');
});

test('async: same partition as sync, and the result is an async iterable', async (t) => {
  const W = 4;
  const shards: number[][] = [];
  for (let rank = 0; rank < W; rank++) {
    const s = shardStream(slowNumbers(13), { rank, worldSize: W });
    t.is(typeof (s as AsyncIterable<number>)[Symbol.asyncIterator], 'function');
    const got: number[] = [];
    for await (const v of s) got.push(v);
    shards.push(got);
    t.deepEqual(got, [...shardStream(numbers(13), { rank, worldSize: W })]);
  }
  t.is(new Set(shards.flat()).size, 13);
});

test('lazy, and stopping early closes the source', (t) => {
  let pulled = 0;
  let closed = false;
  function* source(): Generator<number> {
    try {
      for (let i = 0; ; i++) {
        pulled++;
        yield i;
      }
    } finally {
      closed = true;
    }
  }
  const out: number[] = [];
  for (const v of shardStream(source(), { rank: 1, worldSize: 2 })) {
    out.push(v);
    if (out.length === 3) break;
  }
  t.deepEqual(out, [1, 3, 5]);
  t.is(pulled, 6);
  t.true(closed);
});

test('bad options and sources throw at the call', (t) => {
  t.throws(() => shardStream([1], { rank: 2, worldSize: 2 }), { instanceOf: DataOptionError, message: /shardStream\.rank.*\[0, 1\].*got 2/ });
  t.throws(() => shardStream([1], { rank: 0, worldSize: 0 }), { message: /worldSize.*got 0/ });
  t.throws(() => shardStream(42 as unknown as number[], { rank: 0, worldSize: 1 }), { message: /source.*iterable.*got 'number'/ });
});
