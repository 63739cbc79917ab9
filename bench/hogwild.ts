// `node --import tsx bench/hogwild.ts`: Hogwild beside local training and
// PyTorch's Hogwild (torch.multiprocessing, 2 processes), all measured in the same run and
// interleaved so that the machine's load hits each side alike. 1 epoch of Fashion-MNIST, MLP
// 784-64-64-10, batch 64, lr 0.05. Every psrpc figure comes from a whole `trainer` command in its
// own process (the compiled dist/src/cli/trainer-main.js that bin/trainer.js runs, when dist/ is
// built, else src/ under tsx; BENCH_FROM=src|dist chooses, BENCH_DIST names another build
// folder). Prints a table and writes bench/results/hogwild.json.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, runAnchor } from './peer.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const dist = process.env.BENCH_DIST ?? join(root, 'dist');
const distMain = join(dist, 'src', 'cli', 'trainer-main.js');
const from = process.env.BENCH_FROM ?? (existsSync(join(dist, 'src', 'hogwild', 'worker.js')) ? 'dist' : 'src');
const command = from === 'dist' ? [distMain] : ['--import', 'tsx', join(root, 'src', 'cli', 'trainer-main.ts')];

interface Run { samples: number; samplesPerSecond: number; testAccuracy: number; wallSeconds: number }

/** One whole `trainer` command, as a user runs it. */
function trainer(args: string[]): Run {
  const out = join(tmpdir(), `psrpc-bench-hogwild-${process.pid}.json`);
  const r = spawnSync(process.execPath, [...command, ...args, '--epochs', '1', '--progress', 'none', '--json', out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`trainer ${args.join(' ')} failed: ${r.stderr}`);
  const res = JSON.parse(readFileSync(out, 'utf8')) as Run;
  rmSync(out, { force: true });
  return res;
}

const hog: Run[] = [];
const local: Run[] = [];
const torch: Record<string, number>[] = [];
for (let i = 0; i < RUNS; i++) {
  hog.push(trainer(['--strategy', 'hogwild', '--workers', String(WORKERS)]));
  local.push(trainer(['--strategy', 'local']));
  const t = runAnchor('torch_train.py', ['hogwild', '--workers', String(WORKERS)]);
  if (t) torch.push(t);
}

const m = (xs: number[]) => median(xs);
const whole = (r: Run) => r.samples / r.wallSeconds;
const ours = {
  loop: m(hog.map((r) => r.samplesPerSecond)),
  whole: m(hog.map(whole)),
  accuracy: m(hog.map((r) => r.testAccuracy)),
  wallSeconds: m(hog.map((r) => r.wallSeconds)),
};
const base = { loop: m(local.map((r) => r.samplesPerSecond)), whole: m(local.map(whole)), accuracy: m(local.map((r) => r.testAccuracy)) };
const peer = torch.length
  ? { loop: m(torch.map((t) => t.samples_per_s!)), whole: m(torch.map((t) => t.with_start_samples_per_s!)), accuracy: m(torch.map((t) => t.test_acc!)) }
  : null;

const fmt = (x: number | null | undefined, d = 0) => (x === null || x === undefined ? 'n/a' : d ? x.toFixed(d) : Math.round(x).toLocaleString('en-US'));
console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model ?? '?'}; psrpc from ${from}; median of ${RUNS} interleaved runs`);
console.log(`1 epoch Fashion-MNIST, MLP 784-64-64-10, batch 64, lr 0.05, ${WORKERS} Hogwild workers\n`);
console.log('                          loop samples/s   whole-command samples/s   test accuracy');
console.log(`psrpc hogwild x${WORKERS}        ${fmt(ours.loop).padStart(14)}   ${fmt(ours.whole).padStart(23)}   ${fmt(ours.accuracy, 4).padStart(13)}`);
console.log(`psrpc local               ${fmt(base.loop).padStart(14)}   ${fmt(base.whole).padStart(23)}   ${fmt(base.accuracy, 4).padStart(13)}`);
console.log(`PyTorch hogwild x${WORKERS}      ${fmt(peer?.loop).padStart(14)}   ${fmt(peer?.whole).padStart(23)}   ${fmt(peer?.accuracy, 4).padStart(13)}`);
const ratios = {
  loopVsTorch: peer ? ours.loop / peer.loop : null,
  loopVsLocal: ours.loop / base.loop,
  wholeVsTorch: peer ? ours.whole / peer.whole : null,
  accuracyVsLocal: ours.accuracy - base.accuracy,
};
console.log(`\nhogwild loop / PyTorch hogwild loop   ${fmt(ratios.loopVsTorch, 2)}x   (target >= 1.2)`);
console.log(`hogwild loop / psrpc local loop       ${fmt(ratios.loopVsLocal, 2)}x   (target >= 1.6)`);
console.log(`hogwild whole / PyTorch whole         ${fmt(ratios.wholeVsTorch, 2)}x   (target >= 3)`);
console.log(`hogwild accuracy - local accuracy     ${ratios.accuracyVsLocal >= 0 ? '+' : ''}${ratios.accuracyVsLocal.toFixed(4)}   (target within 0.01)`);
if (!peer) console.log('PyTorch not measured (needs /usr/bin/python3 with torch and ../shared/anchors)');

const file = join(here, 'results', 'hogwild.json');
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, JSON.stringify({
  date: new Date().toISOString(),
  machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? null },
  from, runs: RUNS, workers: WORKERS,
  hogwild: { ...ours, runs: hog },
  local: { ...base, runs: local },
  torch: peer ? { ...peer, runs: torch } : null,
  ratios,
}, null, 2) + '\n');
console.log(`\nwrote ${file}`);
