// The psdata command end to end, as separate processes: convert any spec, inspect the file, and
// one clear line with exit code 1 for every bad flag or bad file.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeIdx, loadDataset } from '../../src/data/index.js';

const PSDATA = fileURLToPath(new URL('../../src/cli/psdata-main.ts', import.meta.url));
const MODULE = fileURLToPath(new URL('../data/fixtures/tiny-dataset.mjs', import.meta.url));

let dir = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'psrpc-psdata-'));
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function psdata(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', PSDATA, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

const same = (a: Float32Array | Int32Array, b: Float32Array | Int32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

test('convert writes synthetic data that loads back as the same split; inspect prints the header', async (t) => {
  const out = join(dir, 'synthetic.psds');
  const r = await psdata(['convert', '--from', 'synthetic', '--train-samples', '30', '--seed', '5', '--out', out, '--page-samples', '8']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^wrote .*synthetic\.psds: 30 train \+ 10000 test samples of \[784\] float32, 10 classes, 1254 pages of 8 samples, [\d.]+ MB in [\d.]+ s\n$/);
  t.is(r.stderr, '', 'no progress bar when stderr is not a terminal');
  const want = await loadDataset('synthetic', { trainSamples: 30, seed: 5 });
  const got = await loadDataset(`file:${out}`);
  t.true(same(got.train.x, want.train.x) && same(got.train.y, want.train.y));
  t.true(same(got.test.x, want.test.x) && same(got.test.y, want.test.y));

  const i = await psdata(['inspect', out, '--verify']);
  t.is(i.code, 0, i.stderr);
  const lines = i.stdout.trim().split('\n');
  t.deepEqual(lines.slice(1, 12), [
    'version 1', 'dtype float32', 'shape [784]', 'features 784', 'classes 10', 'train 30', 'test 10000',
    'page-samples 8', 'train-pages 4', 'test-pages 1250', 'normalize none (float32 values are stored as used)',
  ]);
  t.is(lines.at(-1), 'verified every page');
});

test('convert reads an IDX folder and a dataset module', async (t) => {
  const idx = join(dir, 'idx');
  await import('node:fs/promises').then((fs) => fs.mkdir(idx));
  const img = (n: number) => encodeIdx([n, 2, 2, 3], Uint8Array.from({ length: n * 12 }, (_, k) => k * 5));
  await writeFile(join(idx, 'train-images-idx4-ubyte'), img(5));
  await writeFile(join(idx, 'train-labels-idx1-ubyte'), encodeIdx([5], Uint8Array.from([0, 1, 2, 1, 0])));
  await writeFile(join(idx, 't10k-images-idx4-ubyte'), img(2));
  await writeFile(join(idx, 't10k-labels-idx1-ubyte'), encodeIdx([2], Uint8Array.from([2, 2])));
  const out = join(dir, 'idx.psds');
  const r = await psdata(['convert', '--from', `idx:${idx}`, '--out', out, '--page-samples', '2']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /5 train \+ 2 test samples of \[3, 2, 2\] uint8, 3 classes, 4 pages of 2 samples/);
  const want = await loadDataset(`idx:${idx}`);
  const got = await loadDataset(`file:${out}`);
  t.deepEqual(got.train.shape, [3, 2, 2]);
  t.true(same(got.train.x, want.train.x) && same(got.train.y, want.train.y));
  t.true(same(got.test.x, want.test.x) && same(got.test.y, want.test.y));

  const mod = join(dir, 'module.psds');
  const m = await psdata(['convert', '--from', MODULE, '--out', mod]);
  t.is(m.code, 0, m.stderr);
  t.regex(m.stdout, /10 train \+ 4 test samples of \[2, 3, 2\] float32, 3 classes/);
});

test('--progress bar draws the conversion\'s progress on stderr, even on a pipe', async (t) => {
  const out = join(dir, 'progress.psds');
  const r = await psdata(['convert', '--from', 'synthetic', '--train-samples', '40', '--out', out, '--page-samples', '4', '--progress', 'bar']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /psdata convert \[#+\] 100% \| 2510\/2510 pages/);
  t.regex(r.stdout, /^wrote /);
});

test('inspect of a corrupt file exits 1 with one line naming the file', async (t) => {
  const out = join(dir, 'corrupt.psds');
  t.is((await psdata(['convert', '--from', 'synthetic', '--train-samples', '16', '--out', out, '--page-samples', '8'])).code, 0);
  const b = await readFile(out);
  b[Number(b.readBigUInt64LE(128 + 16)) + 5] ^= 1; // training page 1, at the offset its index entry gives
  await writeFile(out, b);
  t.is((await psdata(['inspect', out])).code, 0, 'the header alone is intact');
  const r = await psdata(['inspect', out, '--verify']);
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.is(r.stderr, `error: corrupt dataset file: checksum mismatch in training page 1 (page 1 of the index) (${out})\n`);
});

const bad: Array<[string[], RegExp]> = [
  [['convert', '--from', 'cifar', '--out', 'x.psds'], /--from must be one of fashion-mnist, mnist, synthetic, idx:FOLDER, file:PATH or a dataset module path .*got 'cifar'/],
  [['convert', '--from', 'mnist', '--out', 'x.psds', '--page-samples', '0'], /--page-samples must be an integer in \[1, 2147483647\], got '0'/],
  [['convert', '--from', 'mnist', '--out', 'x.psds', '--page-samples', 'many'], /--page-samples must be an integer .*got 'many'/],
  [['convert', '--from', 'mnist'], /required option '--out <file>' not specified/],
  [['convert', '--out', 'x.psds'], /required option '--from <dataset>' not specified/],
  [['convert', '--from', 'mnist', '--out', 'x.psds', '--progress', 'loud'], /--progress <mode>' argument 'loud' is invalid/],
  [['convert', '--from', 'mnist', '--out', 'x.psds', '--bogus'], /unknown option '--bogus'/],
  [['convert', '--from', 'mnist', '--out', 'x.psds', '--train-samples', '5'], /^error: --train-samples applies to --from synthetic only, got --from mnist\n$/],
  [['convert', '--from', 'idx:./data', '--seed', '3', '--out', 'x.psds'], /^error: --seed has no effect on --from idx:\.\/data: its files are the split\n$/],
  [['convert', '--from', 'mnist', '--seed', '-1', '--out', 'x.psds'], /--seed must be an integer in \[0, 4294967295\], got '-1'/],
  [['convert', '--from', 'idx:/nonexistent/idx', '--out', 'x.psds'], /idx: cannot read the folder: ENOENT \(\/nonexistent\/idx\)/],
  [['convert', '--from', 'synthetic', '--train-samples', '1', '--out', '/nonexistent/dir/x.psds'], /cannot write the dataset file: ENOENT \(\/nonexistent\/dir\/x\.psds\)/],
  [['inspect'], /missing required argument 'file'/],
  [['inspect', '/nonexistent/x.psds'], /cannot read the dataset file: ENOENT/],
  [['frob'], /unknown command 'frob'/],
];

for (const [args, message] of bad) {
  test(`psdata ${args.join(' ')} exits 1 with one clear line`, async (t) => {
    const r = await psdata(args);
    t.is(r.code, 1);
    t.is(r.stdout, '');
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  });
}
