// Parameter-server benchmark: 1 epoch of Fashion-MNIST, MLP 784-64-64-10, batch 64, lr 0.05, as
// separate processes on 127.0.0.1: centralized sync and async (1 ps-server + 2 trainers) and
// partitioned (2 workers), remote-forward (1 ps-server + 1 or 2 trainers), and PyTorch's version of
// the same exercise in the same run, interleaved with ours (../shared/anchors: the batch-updating
// PS in sync and async mode, the RPC-centralized exercise with 1 trainer), then writes
// bench/results/ps.json.
//   node --import tsx bench/ps.ts [--runs 3] [--dataset fashion-mnist] [--epochs 1] [--only remote-forward]
// Each configuration runs `--runs` times; the table shows the best and the median samples/s, and
// the ratio of our median to PyTorch's median of the same run (the target is checked on it).
// Without /usr/bin/python3 + torch (or with other data flags) the anchors README's ranges stand in.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TrainResult } from '../src/trainer/result.js';
import { median as medianOf, runAnchor } from './peer.js';
import { freePort } from '../src/launch/free-port.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SERVER = join(root, 'src/cli/ps-server-main.ts');
const TRAINER = join(root, 'src/cli/trainer-main.ts');

interface Config {
  label: string;
  strategy: 'centralized' | 'partitioned' | 'remote-forward';
  consistency: 'sync' | 'async' | 'ssp';
  servers: number;
  trainers: number;
  /** PyTorch's figure for the same exercise in the anchors README, samples/s (used when it cannot run here). */
  torch?: [number, number];
  /** The PyTorch anchor script and its arguments (the port is added) run in the same benchmark. */
  peer?: [string, string[]];
  /** The figures this project aims at. */
  target: { accuracy?: number; speedup?: number };
}

const CONFIGS: Config[] = [
  { label: 'centralized sync, 1 ps + 2 trainers', strategy: 'centralized', consistency: 'sync', servers: 1, trainers: 2, torch: [41_000, 57_000], peer: ['torch_batch_ps.py', ['--mode', 'sync', '--trainers', '2']], target: { accuracy: 0.82, speedup: 1.2 } },
  { label: 'centralized async, 1 ps + 2 trainers', strategy: 'centralized', consistency: 'async', servers: 1, trainers: 2, torch: [40_000, 49_000], peer: ['torch_batch_ps.py', ['--mode', 'async', '--trainers', '2']], target: { speedup: 1.2 } },
  { label: 'centralized ssp(2), 1 ps + 2 trainers', strategy: 'centralized', consistency: 'ssp', servers: 1, trainers: 2, target: {} },
  { label: 'partitioned, 2 workers', strategy: 'partitioned', consistency: 'sync', servers: 0, trainers: 2, target: { accuracy: 0.82 } },
  // the model on the server behind an RRef; PyTorch's RPC exercise (anchors: torch_train.py rpc)
  // reaches 23,500-27,000 samples/s with 1 trainer and fails with 2
  { label: 'remote-forward, 1 ps + 1 trainer', strategy: 'remote-forward', consistency: 'async', servers: 1, trainers: 1, torch: [23_500, 27_000], peer: ['torch_train.py', ['rpc', '--workers', '1']], target: { speedup: 2 } },
  { label: 'remote-forward, 1 ps + 2 trainers', strategy: 'remote-forward', consistency: 'async', servers: 1, trainers: 2, target: {} },
];

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}


function runProcess(script: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('close', (code) => resolve({ code, out }));
  });
}

async function runOnce(c: Config, train: string[]): Promise<TrainResult> {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-bench-ps-'));
  try {
    // every trainer writes its own result; the first trainer's covers the whole run
    const json = (rank: number) => join(dir, `result-${rank}.json`);
    const world = c.servers + c.trainers;
    const master = `127.0.0.1:${await freePort()}`;
    const common = ['--strategy', c.strategy, '--consistency', c.consistency, '--servers', String(c.servers), '--world-size', String(world), '--master', master, '--progress', 'none', ...train];
    const runs: Promise<{ code: number | null; out: string }>[] = [];
    for (let rank = 0; rank < world; rank++) {
      const isServer = rank < c.servers;
      runs.push(runProcess(isServer ? SERVER : TRAINER, [...common, '--rank', String(rank), ...(isServer ? [] : ['--json', json(rank)])]));
    }
    const done = await Promise.all(runs);
    for (const d of done) if (d.code !== 0) throw new Error(`${c.label}: a process exited with ${d.code}:\n${d.out}`);
    return JSON.parse(readFileSync(json(c.servers), 'utf8')) as TrainResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const runsPer = Number(flag('--runs', '3'));
  const train = ['--dataset', flag('--dataset', 'fashion-mnist'), '--epochs', flag('--epochs', '1'), '--batch-size', '64', '--lr', '0.05', '--hidden', '64'];
  const rows: Array<Record<string, unknown>> = [];
  // --only TEXT: the configurations whose strategy or label contains TEXT (e.g. remote-forward)
  const only = flag('--only', '');
  // the anchors train exactly this exercise; other data flags have no peer figure
  const peerComparable = flag('--dataset', 'fashion-mnist') === 'fashion-mnist' && flag('--epochs', '1') === '1';
  for (const c of CONFIGS.filter((x) => !only || x.strategy.includes(only) || x.label.includes(only))) {
    const results: TrainResult[] = [];
    const peerRates: number[] = [];
    for (let i = 0; i < runsPer; i++) {
      results.push(await runOnce(c, train));
      if (c.peer && peerComparable) {
        const r = runAnchor(c.peer[0], [...c.peer[1], '--port', String(await freePort())]);
        if (r?.samples_per_s) peerRates.push(r.samples_per_s);
      }
    }
    const rates = results.map((r) => r.samplesPerSecond).sort((a, b) => a - b);
    const best = rates[rates.length - 1]!;
    const median = rates[Math.floor(rates.length / 2)]!;
    const accuracy = results.map((r) => r.testAccuracy);
    // same run when PyTorch could run here, else the high end of the anchors README's range
    const peerMedian = peerRates.length ? medianOf(peerRates) : undefined;
    const vsTorch = peerMedian ? median / peerMedian : c.torch ? best / c.torch[1] : undefined;
    const accOk = c.target.accuracy === undefined || Math.min(...accuracy) >= c.target.accuracy;
    const speedOk = c.target.speedup === undefined || (vsTorch !== undefined && vsTorch >= c.target.speedup);
    rows.push({
      label: c.label, strategy: c.strategy, consistency: c.consistency, servers: c.servers, trainers: c.trainers,
      samplesPerSecondBest: best, samplesPerSecondMedian: median, samplesPerSecondAll: rates,
      testAccuracy: accuracy, samples: results[0]!.samples,
      torchSameRun: peerRates.length ? { samplesPerSecondAll: peerRates, samplesPerSecondMedian: peerMedian } : null,
      torchAnchorRange: c.torch ?? null,
      vsTorch: vsTorch ?? null, vsTorchBasis: peerMedian ? 'median / PyTorch median, same run' : c.torch ? 'best / anchors README high' : null,
      target: c.target, met: accOk && speedOk,
    });
    const torch = peerMedian ? `${Math.round(peerMedian)}/s same run (x${vsTorch!.toFixed(2)} median/median)`
      : c.torch ? `${c.torch[0] / 1000}k-${c.torch[1] / 1000}k README (x${vsTorch!.toFixed(2)} of its high)` : '-';
    process.stdout.write(`${c.label.padEnd(40)} best ${Math.round(best).toString().padStart(7)}/s  median ${Math.round(median).toString().padStart(7)}/s  ` +
      `acc ${accuracy.map((a) => a.toFixed(4)).join(',')}  torch ${torch}  ${accOk && speedOk ? 'target met' : 'TARGET MISSED'}\n`);
  }
  // a partial run (--only) does not overwrite the full table's file
  const out = join(root, only ? `bench/results/ps-${only.replace(/[^a-z0-9-]+/gi, '_')}.json` : 'bench/results/ps.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), runsPer, train, rows }, null, 2) + '\n');
  process.stdout.write(`wrote ${out}\n`);
}

await main();
