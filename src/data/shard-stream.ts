// Round-robin sharding of a stream across ranks, for data sources with no length (where a
// DistributedSampler cannot partition indices): rank r keeps items r, r + W, r + 2W, ... of the
// stream. Every rank reads the whole stream and skips the others' items, so all ranks must see
// the same items in the same order (a file, a seeded generator), as with torch's IterableDataset
// sharding by worker id.
import { checkInteger, DataOptionError } from './errors.js';

export interface ShardOptions {
  /** This rank, in [0, worldSize). */
  rank: number;
  /** Number of ranks sharing the stream. */
  worldSize: number;
}

function check(options: ShardOptions): { rank: number; worldSize: number } {
  if (options === null || typeof options !== 'object') throw new DataOptionError('shardStream options', options, 'an object {rank, worldSize}');
  const worldSize = checkInteger('shardStream.worldSize', options.worldSize, 1);
  const { rank } = options;
  if (typeof rank !== 'number' || !Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new DataOptionError('shardStream.rank', rank, `an integer in [0, ${worldSize - 1}] (worldSize is ${worldSize})`);
  }
  return { rank, worldSize };
}

function* shardSync<T>(source: Iterable<T>, rank: number, worldSize: number): Generator<T, void, undefined> {
  let i = 0;
  for (const item of source) {
    if (i === rank) yield item;
    if (++i === worldSize) i = 0;
  }
}

async function* shardAsync<T>(source: AsyncIterable<T>, rank: number, worldSize: number): AsyncGenerator<T, void, undefined> {
  let i = 0;
  for await (const item of source) {
    if (i === rank) yield item;
    if (++i === worldSize) i = 0;
  }
}

/**
 * Items rank, rank + worldSize, rank + 2*worldSize, ... of `source`. A sync iterable gives a sync
 * iterable, an async one an async iterable; both are lazy, and stopping early (break) closes the
 * source. Options are checked at the call, not at the first item.
 */
export function shardStream<T>(source: AsyncIterable<T>, options: ShardOptions): AsyncIterable<T>;
export function shardStream<T>(source: Iterable<T>, options: ShardOptions): Iterable<T>;
export function shardStream<T>(source: Iterable<T> | AsyncIterable<T>, options: ShardOptions): Iterable<T> | AsyncIterable<T> {
  const { rank, worldSize } = check(options);
  if (source != null && typeof (source as AsyncIterable<T>)[Symbol.asyncIterator] === 'function') {
    return shardAsync(source as AsyncIterable<T>, rank, worldSize);
  }
  if (source != null && typeof (source as Iterable<T>)[Symbol.iterator] === 'function') {
    return shardSync(source as Iterable<T>, rank, worldSize);
  }
  throw new DataOptionError('shardStream source', source === null ? null : typeof source, 'an iterable or an async iterable');
}
