// IDX folders (`--dataset idx:FOLDER`): fixtures written by the test, gzipped and not, one and three
// channels, against a plain reference of the format; and one clear error per kind of bad file.
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  datasetShape, DatasetFileError, DatasetSourceError, encodeIdx, loadDataset, pixelStats,
} from '../../src/data/index.js';

const dirs: string[] = [];
test.after.always(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Fixture { rows: number; cols: number; channels: number; train: number; test: number; gz: boolean }

/** Pixel c of pixel position p of image n, in the file's HWC order: a value naming all three. */
const pixel = (n: number, p: number, c: number): number => (n * 7 + p * 3 + c * 101) % 256;
const label = (n: number, split: number): number => (n * 3 + split) % 5;

/** Writes an IDX folder; returns its path. Labels are n*3+split mod 5, so classes = 5. */
async function folder(f: Fixture, edit: (files: Record<string, Buffer>) => void = () => {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'psrpc-idx-'));
  dirs.push(dir);
  const files: Record<string, Buffer> = {};
  for (const [prefix, count, split] of [['train', f.train, 0], ['t10k', f.test, 1]] as const) {
    const plane = f.rows * f.cols;
    const pixels = new Uint8Array(count * plane * f.channels);
    for (let n = 0; n < count; n++) {
      for (let p = 0; p < plane; p++) for (let c = 0; c < f.channels; c++) pixels[(n * plane + p) * f.channels + c] = pixel(n, p, c);
    }
    const dims = f.channels === 1 ? [count, f.rows, f.cols] : [count, f.rows, f.cols, f.channels];
    const d = f.channels === 1 ? 3 : 4;
    files[`${prefix}-images-idx${d}-ubyte`] = encodeIdx(dims, pixels);
    files[`${prefix}-labels-idx1-ubyte`] = encodeIdx([count], Uint8Array.from({ length: count }, (_, n) => label(n, split)));
  }
  edit(files);
  for (const [name, data] of Object.entries(files)) {
    await writeFile(join(dir, f.gz ? `${name}.gz` : name), f.gz ? gzipSync(data) : data);
  }
  return dir;
}

for (const f of [
  { rows: 4, cols: 3, channels: 1, train: 9, test: 5, gz: false },
  { rows: 4, cols: 3, channels: 1, train: 9, test: 5, gz: true },
  { rows: 2, cols: 5, channels: 3, train: 7, test: 3, gz: true },
  { rows: 2, cols: 5, channels: 3, train: 7, test: 3, gz: false },
]) {
  const what = `${f.channels} channel${f.channels > 1 ? 's' : ''}${f.gz ? ', gzipped' : ''}`;
  test(`an IDX folder (${what}) loads as CHW samples normalised with the training split's statistics`, async (t) => {
    const dir = await folder(f);
    const split = await loadDataset(`idx:${dir}`, { seed: 9 });
    const shape = [f.channels, f.rows, f.cols];
    const plane = f.rows * f.cols;
    const features = plane * f.channels;
    t.deepEqual(split.train.shape, shape);
    t.like(split.train, { length: f.train, features, classes: 5 });
    t.like(split.test, { length: f.test, features, classes: 5 });
    // reference statistics: every training pixel / 255, in doubles
    let sum = 0, sq = 0;
    for (let n = 0; n < f.train; n++) for (let p = 0; p < plane; p++) for (let c = 0; c < f.channels; c++) {
      const v = pixel(n, p, c) / 255;
      sum += v; sq += v * v;
    }
    const count = f.train * features;
    const mean = sum / count;
    const std = Math.sqrt(sq / count - mean * mean);
    for (const [d, split0] of [[split.train, 0], [split.test, 1]] as const) {
      for (let n = 0; n < d.length; n++) {
        t.is(d.y[n], label(n, split0));
        for (let c = 0; c < f.channels; c++) {
          for (let p = 0; p < plane; p++) {
            const want = Math.fround((pixel(n, p, c) / 255 - mean) / std);
            const got = d.x[n * features + c * plane + p]!;
            if (Math.abs(got - want) > 1e-5) return t.fail(`sample ${n} channel ${c} pixel ${p}: ${got}, expected ${want}`);
          }
        }
      }
    }
    t.deepEqual(await datasetShape(`idx:${dir}`), { shape, features, classes: 5 });
  });
}

test('pixelStats is the mean and std of pixel/255, and a constant set keeps std 1', (t) => {
  const s = pixelStats(Uint8Array.from([0, 255, 0, 255]));
  t.is(s.mean, 0.5);
  t.is(s.std, 0.5);
  t.deepEqual(pixelStats(new Uint8Array(10).fill(51)), { mean: 0.2, std: 1 });
});

test('normalize: false keeps pixel/255', async (t) => {
  const dir = await folder({ rows: 2, cols: 2, channels: 1, train: 2, test: 1, gz: false });
  const split = await loadDataset(`idx:${dir}`, { normalize: false });
  t.is(split.train.x[1], Math.fround(pixel(0, 1, 0) / 255));
});

const small = { rows: 2, cols: 2, channels: 1, train: 3, test: 2, gz: false };
const bad: Array<[string, (files: Record<string, Buffer>) => void, RegExp, string]> = [
  ['a wrong magic', (f) => { f['train-images-idx3-ubyte']![0] = 0x50; }, /not an IDX file: magic 0x50000803/, 'train-images-idx3-ubyte'],
  ['an unsupported element type', (f) => { f['t10k-images-idx3-ubyte']![2] = 0x0d; }, /unsupported IDX element type 0x0d \(float\)/, 't10k-images-idx3-ubyte'],
  ['a truncated body', (f) => { f['train-images-idx3-ubyte'] = f['train-images-idx3-ubyte']!.subarray(0, 20); }, /truncated IDX body: 4 bytes, dimensions \[3, 2, 2\] need 12/, 'train-images-idx3-ubyte'],
  ['a truncated header', (f) => { f['train-labels-idx1-ubyte'] = f['train-labels-idx1-ubyte']!.subarray(0, 6); }, /truncated IDX header: 6 bytes/, 'train-labels-idx1-ubyte'],
  ['images and labels of different counts', (f) => { f['t10k-labels-idx1-ubyte'] = encodeIdx([3], new Uint8Array(3)); }, /2 images but 3 labels in .*t10k-labels-idx1-ubyte/, 't10k-images-idx3-ubyte'],
  ['labels with two dimensions', (f) => { f['train-labels-idx1-ubyte'] = encodeIdx([3, 1], new Uint8Array(3)); }, /labels must have 1 dimension \(count\), got \[3, 1\]/, 'train-labels-idx1-ubyte'],
  ['images with two dimensions', (f) => { f['train-images-idx3-ubyte'] = encodeIdx([3, 4], new Uint8Array(12)); }, /images must have 3 dimensions/, 'train-images-idx3-ubyte'],
  ['train and test images of different sizes', (f) => { f['t10k-images-idx3-ubyte'] = encodeIdx([2, 2, 3], new Uint8Array(12)); }, /training images are \[1, 2, 2\] but test images \[1, 2, 3\]/, ''],
];

for (const [what, edit, message, file] of bad) {
  test(`an IDX folder with ${what} is refused with one error naming the file`, async (t) => {
    const dir = await folder(small, edit);
    const err = await t.throwsAsync(loadDataset(`idx:${dir}`), { instanceOf: DatasetFileError, message });
    t.true(err!.message.includes(join(dir, file)), err!.message);
    t.false(err!.message.includes('\n'));
  });
}

test('a corrupt gzip file is refused naming the file', async (t) => {
  const dir = await folder({ ...small, gz: true });
  await writeFile(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(encodeIdx([3], new Uint8Array(3))).subarray(0, 15));
  await t.throwsAsync(loadDataset(`idx:${dir}`), { instanceOf: DatasetFileError, message: /corrupt or truncated gzip data.*train-labels-idx1-ubyte\.gz/ });
});

test('a missing file is refused, listing the files an IDX folder holds', async (t) => {
  const dir = await folder(small, (f) => { delete f['t10k-labels-idx1-ubyte']; });
  const err = await t.throwsAsync(loadDataset(`idx:${dir}`), { instanceOf: DatasetSourceError });
  t.regex(err!.message, /no t10k-labels file \(t10k-labels-idx1-ubyte\[\.gz\]\)/);
  t.regex(err!.message, /train-images-idx3-ubyte\[\.gz\] or train-images-idx4-ubyte\[\.gz\], train-labels-idx1-ubyte\[\.gz\]/);
  t.true(err!.message.endsWith(`(${dir})`));
  await t.throwsAsync(datasetShape(`idx:${dir}`), { message: /no t10k-labels file/ });
});

test('a folder that does not exist is refused naming it', async (t) => {
  await t.throwsAsync(loadDataset('idx:/nonexistent/psrpc-idx'), { instanceOf: DatasetSourceError, message: /cannot read the folder: ENOENT \(\/nonexistent\/psrpc-idx\)/ });
});

test('options an IDX folder cannot honour are refused', async (t) => {
  const dir = await folder(small);
  await t.throwsAsync(loadDataset(`idx:${dir}`, { testSize: 1 }), { message: /loadDataset\.testSize must be absent for idx datasets \(the IDX files are the split\)/ });
  await t.throwsAsync(loadDataset(`idx:${dir}`, { shard: { rank: 0, worldSize: 2 } }), { message: /loadDataset\.shard must be absent for idx datasets/ });
});
