// The paged dataset file: convert -> load gives the source's split exactly, sharded reads cover
// the training split once across ranks without touching the other ranks' pages, and every kind of
// damage is one DatasetFileError naming the file.
import test from 'ava';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import {
  datasetRows, datasetShape, DataOptionError, DatasetFileError, loadDataset, loadDatasetFile, readDatasetFileHeader,
  shardPages, writeDatasetFile, type Dataset,
} from '../../src/data/index.js';

let dir = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'psrpc-psds-'));
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});
let n = 0;
const tmpFile = (): string => join(dir, `d${n++}.psds`);

const bytes = (a: Float32Array | Int32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Same samples, same order, same float bits. */
function sameData(t: import('ava').ExecutionContext, got: Dataset, want: Dataset, what: string): void {
  t.deepEqual(got.shape, want.shape, `${what} shape`);
  t.is(got.length, want.length, `${what} length`);
  t.is(got.classes, want.classes, `${what} classes`);
  t.true(bytes(got.x).equals(bytes(want.x)), `${what} x`);
  t.true(bytes(got.y).equals(bytes(want.y)), `${what} y`);
}

const SYNTH = { seed: 4, trainSamples: 50 };

for (const pageSamples of [1, 7, 50, 1000]) {
  test(`synthetic data (float32) converted with ${pageSamples} samples a page loads back bit for bit`, async (t) => {
    const path = tmpFile();
    const h = await writeDatasetFile(path, await datasetRows('synthetic', SYNTH), { pageSamples });
    t.like(h, { dtype: 'float32', trainCount: 50, testCount: 10_000, pageSamples, trainPages: Math.ceil(50 / pageSamples) });
    const want = await loadDataset('synthetic', SYNTH);
    const got = await loadDataset(`file:${path}`, { seed: 123 });
    sameData(t, got.train, want.train, 'train');
    sameData(t, got.test, want.test, 'test');
  });
}

test('a built-in dataset converted with a seed is the split `loadDataset(name, { seed })` gives, bit for bit', async (t) => {
  const cacheDir = join(dir, 'cache');
  const path = tmpFile();
  const h = await writeDatasetFile(path, await datasetRows('mnist', { seed: 3, cacheDir }), { pageSamples: 333 });
  t.like(h, { dtype: 'uint8', trainCount: 8000, testCount: 2000, classes: 10, mean: 0.1307, std: 0.3081 });
  t.deepEqual(h.shape, [1, 28, 28]);
  const want = await loadDataset('mnist', { seed: 3, cacheDir });
  const got = await loadDataset(`file:${path}`);
  sameData(t, got.train, want.train, 'train');
  sameData(t, got.test, want.test, 'test');
  t.deepEqual(await datasetShape(`file:${path}`), { shape: [1, 28, 28], features: 784, classes: 10 });
  // a file converted from the file is the same file
  const again = tmpFile();
  await writeDatasetFile(again, await datasetRows(`file:${path}`), { pageSamples: 333 });
  t.true((await readFile(again)).equals(await readFile(path)));
});

test('a dataset module converted loads back as the module\'s split', async (t) => {
  const mod = fileURLToPath(new URL('fixtures/tiny-dataset.mjs', import.meta.url));
  const path = tmpFile();
  await writeDatasetFile(path, await datasetRows(mod, { seed: 1 }), { pageSamples: 3 });
  const want = await loadDataset(mod, { seed: 1 });
  const got = await loadDataset(`file:${path}`);
  sameData(t, got.train, want.train, 'train');
  sameData(t, got.test, want.test, 'test');
});

/** A uint8 file of `train` + `test` samples of shape [2, 3] whose pixel values name the sample. */
async function uint8File(train: number, test: number, pageSamples: number): Promise<string> {
  const f = 6;
  const chunk = (count: number, base: number) => ({
    count,
    values: Uint8Array.from({ length: count * f }, (_, i) => (base + Math.floor(i / f) * 3 + (i % f)) % 256),
    labels: Int32Array.from({ length: count }, (_, i) => (base + i) % 4),
  });
  const path = tmpFile();
  await writeDatasetFile(path, {
    shape: [2, 3], features: f, classes: 4, dtype: 'uint8', normalize: { mean: 0.5, std: 0.25 },
    train: [chunk(train, 0)], test: [chunk(test, 100)],
  }, { pageSamples });
  return path;
}

test('uint8 pages become (v/255 - mean)/std with the header\'s normalisation, or another one asked for', async (t) => {
  const path = await uint8File(5, 2, 2);
  const d = await loadDatasetFile(path);
  t.is(d.train.x[7], Math.fround(((3 + 1) / 255 - 0.5) / 0.25));
  t.deepEqual([...d.test.y], [0, 1]);
  const raw = await loadDatasetFile(path, { normalize: false });
  t.is(raw.train.x[7], Math.fround(4 / 255));
  t.true((await loadDatasetFile(path, { shared: true })).train.x.buffer instanceof SharedArrayBuffer);
  await t.throwsAsync(loadDatasetFile(path, { normalize: { mean: 0, std: 0 } }), { instanceOf: DataOptionError, message: /normalize\.std must be a finite number > 0/ });
});

test('shard pages are contiguous, page-aligned and cover every page once', (t) => {
  for (const pages of [1, 2, 7, 10, 59]) {
    for (let w = 1; w <= Math.min(pages, 8); w++) {
      let next = 0;
      for (let r = 0; r < w; r++) {
        const [from, to] = shardPages(pages, r, w);
        t.is(from, next);
        t.true(to - from >= Math.floor(pages / w) && to - from <= Math.ceil(pages / w));
        next = to;
      }
      t.is(next, pages);
    }
  }
});

for (const worldSize of [1, 2, 3, 5]) {
  test(`sharded loads over ${worldSize} ranks cover the training split exactly once, each with the whole test split`, async (t) => {
    const path = await uint8File(23, 4, 3); // 8 training pages, the last one short
    const full = await loadDatasetFile(path);
    const ys: number[] = [];
    const xs: number[] = [];
    for (let rank = 0; rank < worldSize; rank++) {
      const part = await loadDatasetFile(path, { shard: { rank, worldSize } });
      const [p0, p1] = shardPages(8, rank, worldSize);
      t.deepEqual(part.file.trainPages, [p0, p1]);
      t.deepEqual(part.file.pagesRead, [...Array.from({ length: p1 - p0 }, (_, i) => p0 + i), 8, 9]);
      const [s0, s1] = part.file.trainSamples;
      t.is(s0, p0 * 3);
      t.is(part.train.length, s1 - s0);
      t.deepEqual([...part.train.x], [...full.train.x.subarray(s0 * 6, s1 * 6)]);
      sameData(t, part.test, full.test, `rank ${rank} test`);
      ys.push(...part.train.y);
      xs.push(...part.train.x);
    }
    t.deepEqual(ys, [...full.train.y]);
    t.deepEqual(xs, [...full.train.x]);
  });
}

/** Flips one byte of a file in place. */
async function flip(path: string, at: number): Promise<void> {
  const b = await readFile(path);
  b[at] ^= 0xff;
  await writeFile(path, b);
}

test('a rank reads only its pages: another rank\'s corrupt page does not stop it, and fails the whole load', async (t) => {
  const path = await uint8File(24, 4, 3); // 8 training pages: rank 1 of 2 owns pages 4..7
  const h = await readDatasetFileHeader(path);
  t.is(h.trainPages, 8);
  const page5 = 4096 * (1 + 5); // the index fits in the first 4 KiB, pages follow one per 4 KiB
  await flip(path, page5 + 2);
  const rank0 = await loadDatasetFile(path, { shard: { rank: 0, worldSize: 2 } });
  t.is(rank0.train.length, 12);
  // the first 4 KiB (header and index), pages 0..3 (one read, 3 pages of 4 KiB and 36 bytes),
  // the two test pages (4 KiB and a page of one sample: 6 value bytes, 2 of padding, a label)
  t.is(rank0.file.bytesRead, 4096 + (3 * 4096 + 36) + (4096 + 12));
  const e1 = await t.throwsAsync(loadDatasetFile(path, { shard: { rank: 1, worldSize: 2 } }), { instanceOf: DatasetFileError });
  t.is(e1!.message, `corrupt dataset file: checksum mismatch in training page 5 (page 5 of the index) (${path})`);
  await t.throwsAsync(loadDataset(`file:${path}`), { instanceOf: DatasetFileError, message: /checksum mismatch in training page 5/ });
});

test('a load streams blocks of pages: a corrupt page in a later block fails it, naming the page', async (t) => {
  const path = tmpFile();
  // 40 training pages of 100 float32 samples (313,600 bytes each): about 3 blocks of 4 MiB
  await writeDatasetFile(path, await datasetRows('synthetic', { seed: 1, trainSamples: 4000 }), { pageSamples: 100 });
  const whole = await loadDatasetFile(path);
  const want = await loadDataset('synthetic', { seed: 1, trainSamples: 4000 });
  sameData(t, whole.train, want.train, 'train');
  const b = await readFile(path);
  b[Number(b.readBigUInt64LE(128 + 16 * 31)) + 99] ^= 0x10;
  await writeFile(path, b);
  await t.throwsAsync(loadDatasetFile(path), { instanceOf: DatasetFileError, message: /checksum mismatch in training page 31 \(page 31 of the index\)/ });
  const rank0 = await loadDatasetFile(path, { shard: { rank: 0, worldSize: 2 } });
  t.deepEqual(rank0.file.trainSamples, [0, 2000]);
  t.true(bytes(rank0.train.x).equals(bytes(want.train.x.subarray(0, 2000 * 784))));
});

test('more ranks than training pages is refused, saying how to fix it', async (t) => {
  const path = await uint8File(6, 1, 3);
  await t.throwsAsync(loadDatasetFile(path, { shard: { rank: 0, worldSize: 3 } }), {
    instanceOf: DataOptionError, message: /shard\.worldSize must be at most the file's 2 training pages \(3 samples each\); convert it again with a smaller --page-samples/,
  });
  await t.throwsAsync(loadDatasetFile(path, { shard: { rank: 2, worldSize: 2 } }), { message: /shard\.rank must be an integer in \[0, 1\], got 2/ });
  await t.throwsAsync(loadDataset(`file:${path}`, { testSize: 1 }), { message: /loadDataset\.testSize must be absent for file datasets/ });
});

/** Rewrites the header's checksum after an edit, so a test reaches the check after it. */
async function editHeader(path: string, edit: (b: Buffer) => void): Promise<void> {
  const b = await readFile(path);
  edit(b);
  b.writeUInt32LE(crc32(b.subarray(0, 124)), 124);
  await writeFile(path, b);
}

const damage: Array<[string, (path: string) => Promise<void>, RegExp]> = [
  ['a bad magic', (p) => editHeader(p, (b) => b.write('NOTADATA', 0, 'latin1')), /not a valid psrpc dataset file: bad magic 'NOTADATA', expected 'PSRPCDSF'/],
  ['an unsupported version', (p) => editHeader(p, (b) => b.writeUInt32LE(7, 8)), /unsupported format version 7 \(this psrpc reads version 1\)/],
  ['a header checksum mismatch', (p) => flip(p, 56), /header checksum mismatch/],
  ['an index checksum mismatch', (p) => flip(p, 128 + 8), /index checksum mismatch/],
  ['a truncated file', async (p) => truncate(p, 4096 * 2 + 10), /truncated dataset file: 8202 bytes, the header says \d+/],
  ['a file shorter than its header', async (p) => truncate(p, 100), /truncated header: 100 bytes, expected 128/],
  ['an empty file', async (p) => truncate(p, 0), /truncated header: 0 bytes/],
  ['bytes past its end', async (p) => writeFile(p, Buffer.alloc(5), { flag: 'a' }), /oversized dataset file/],
  ['a page count that disagrees with the samples', (p) => editHeader(p, (b) => b.writeUInt32LE(9, 72)), /page counts 9 \+ 2 do not match 24 \+ 4 samples in pages of 3/],
  ['a corrupt test page', (p) => flip(p, 4096 * 9 + 1), /checksum mismatch in test page 0 \(page 8 of the index\)/],
  ['a label out of range (checksum intact)', async (p) => {
    const b = await readFile(p);
    const page = 4096 * 1;
    b.writeInt32LE(9, page + 24); // the labels of a page of 3 samples of 6 bytes start at 24
    const entry = 128; // index entry 0: its CRC32 at +12, then the index checksum in the header
    b.writeUInt32LE(crc32(b.subarray(page, page + 24 + 12)), entry + 12);
    b.writeUInt32LE(crc32(b.subarray(128, 128 + 16 * 10)), 108);
    b.writeUInt32LE(crc32(b.subarray(0, 124)), 124);
    await writeFile(p, b);
  }, /label 9 in training page 0 is outside \[0, 4\)/],
];

for (const [what, harm, message] of damage) {
  test(`a dataset file with ${what} is refused with one line naming it`, async (t) => {
    const path = await uint8File(24, 4, 3);
    await harm(path);
    const err = await t.throwsAsync(loadDataset(`file:${path}`), { instanceOf: DatasetFileError, message });
    t.true(err!.message.endsWith(`(${path})`), err!.message);
    t.false(err!.message.includes('\n'));
  });
}

test('a missing dataset file is refused naming it', async (t) => {
  await t.throwsAsync(loadDataset('file:/nonexistent/x.psds'), { message: 'cannot read the dataset file: ENOENT (/nonexistent/x.psds)' });
});
