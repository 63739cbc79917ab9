// npm run bench:faults: what a failure costs a psrun job (docs/FAULTS.md).
//
//  1. samples/s with and without checkpoints: the same sync job, `--checkpoint-every S` against no
//     checkpoint directory, interleaved, medians over rounds (the target: at most 3% lost).
//  2. a server and a trainer killed at a random moment (SIGKILL from outside, at a uniformly random
//     time between 20% and 80% of the training time of the uninterrupted runs): psrun --max-restarts 1
//     restarts the job from the latest checkpoint (the server) or the trainer alone while the others
//     wait (the trainer). Measured from psrun's own output, timestamped as it arrives: kill -> psrun's
//     restart line (detection), kill -> the first trainer's "resuming" line (resume), the job's exit
//     status and its test accuracy against the uninterrupted run's.
//  3. checkpoint size on disk and the time to write one (the servers' own figure, from the files'
//     timestamps is too coarse: measured by writing the same shard with CheckpointStore here).
//  4. elastic trainers: samples/s of an async job whose first server hands out the batches
//     (--min-trainers 1) against the same job with fixed shares, interleaved, median of the ratios.
//
// Flags: --rounds N (default 3), --epochs N (default 6), --every S (default 2), --json FILE.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointStore } from '../src/server/index.js';
import { flagsOrExit, flagValue, median } from './peer.js';

interface Flags { rounds: number; epochs: number; every: number; json?: string }

const flags = flagsOrExit<Flags>((argv) => {
  const num = (name: string, d: number, min: number) => {
    const v = flagValue(argv, name);
    const n = v === undefined ? d : Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}, got '${v}'`);
    return n;
  };
  return { rounds: num('--rounds', 3, 1), epochs: num('--epochs', 6, 1), every: num('--every', 2, 0.1), json: flagValue(argv, '--json') };
});

const ROOT = new URL('..', import.meta.url).pathname;
const PSRUN = join(ROOT, 'bin', 'psrun.js');

interface Line { at: number; text: string }
interface Run { code: number | null; lines: Line[]; result?: Record<string, any>; started: number }

/** Runs psrun (the built commands), timestamping every output line; `during` may act on the running job. */
function psrun(args: string[], during?: (started: number, lines: Line[]) => void): Promise<Run> {
  return new Promise((resolve) => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-faults-'));
    const json = join(dir, 'r.json');
    const started = performance.now();
    const child = spawn(process.execPath, [PSRUN, ...args, '--progress', 'lines', '--json', json], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Line[] = [];
    for (const s of [child.stdout, child.stderr]) {
      let rest = '';
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => {
        const at = performance.now();
        const parts = (rest + chunk).split('\n');
        rest = parts.pop()!;
        for (const text of parts) lines.push({ at, text });
      });
    }
    during?.(started, lines);
    child.on('close', (code) => {
      let result: Record<string, any> | undefined;
      try { result = JSON.parse(readFileSync(json, 'utf8')); } catch { /* failed run */ }
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, lines, result, started });
    });
  });
}

/** The pid of the job's process named `name` (psrun's children: node .../bin/<role>.js --name NAME ...). */
function pidOf(name: string): number | null {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      const i = cmd.indexOf('--name');
      if (i >= 0 && cmd[i + 1] === name && cmd.some((a) => a.endsWith('ps-server.js') || a.endsWith('trainer.js'))) return Number(d);
    } catch { /* gone */ }
  }
  return null;
}

const job = (epochs: number) => ['--servers', '1', '--trainers', '2', '--epochs', String(epochs), '--momentum', '0.9'];

async function main(): Promise<void> {
  const ckRoot = mkdtempSync(join(tmpdir(), 'bench-faults-ck-'));
  const out: Record<string, unknown> = { epochs: flags.epochs, every: flags.every, rounds: flags.rounds };
  try {
    // 1. the cost of checkpoints
    // each round: without, with, without again (the A/A pair shows the noise the A/B ratio sits in)
    const plain: number[] = [];
    const ckpt: number[] = [];
    const ratios: number[] = [];
    const noise: number[] = [];
    const accuracy: number[] = [];
    let ckDir = '';
    for (let r = 0; r < flags.rounds; r++) {
      const a = await psrun(job(flags.epochs));
      ckDir = join(ckRoot, `cost-${r}`);
      const b = await psrun([...job(flags.epochs), '--checkpoint-dir', ckDir, '--checkpoint-every', String(flags.every)]);
      const a2 = await psrun(job(flags.epochs));
      if (a.code !== 0 || b.code !== 0 || a2.code !== 0) throw new Error(`a run failed:\n${[...a.lines, ...b.lines, ...a2.lines].map((l) => l.text).slice(-20).join('\n')}`);
      const [x, y, x2] = [a.result!.samplesPerSecond as number, b.result!.samplesPerSecond as number, a2.result!.samplesPerSecond as number];
      plain.push(x, x2);
      ckpt.push(y);
      ratios.push(y / ((x + x2) / 2));
      noise.push(x2 / x);
      accuracy.push(a.result!.testAccuracy);
      console.log(`round ${r + 1}: samples/s without checkpoints ${x.toFixed(0)} and ${x2.toFixed(0)}, with --checkpoint-every ${flags.every} ${y.toFixed(0)} (${readdirSync(ckDir).length} checkpoints kept)`);
    }
    const cost = 1 - median(ratios);
    out.samplesPerSecond = { without: median(plain), with: median(ckpt), cost, ratios, noise };
    console.log(`checkpoints every ${flags.every} s cost ${(cost * 100).toFixed(1)}% of samples/s (median over rounds of with / mean of the two without; medians ${median(ckpt).toFixed(0)} vs ${median(plain).toFixed(0)}; target <= 3%); the two runs without differ by a median ${(Math.abs(1 - median(noise)) * 100).toFixed(1)}% (largest ${(Math.max(...noise.map((n) => Math.abs(1 - n))) * 100).toFixed(1)}%)`);
    // how long training lasts: the kills below land in [20%, 80%] of it
    const trainMs = 1000 * (plain.length > 0 ? (flags.epochs * 60_000) / median(plain) : 10);

    // 3. size and write time of one checkpoint of this job's model
    const latest = readdirSync(ckDir).sort().at(-1)!;
    const shardPath = join(ckDir, latest, 'shard-0-of-1.safetensors');
    const bytes = statSync(shardPath).size;
    const cp = (await new CheckpointStore(ckDir, { log: () => {} }).latest())!;
    const range = cp.read(0, cp.manifest.total);
    const store = new CheckpointStore(join(ckRoot, 'write'), { keep: 1, log: () => {} });
    const writes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await store.writeShard({ id: i, shard: 0, shards: 1, start: 0, length: cp.manifest.total, total: cp.manifest.total, version: i,
        layout: cp.manifest.layout.map(({ offset: _o, ...p }) => p), consistency: 'sync', trainers: 2, optimizer: cp.manifest.optimizer, values: range.values, state: range.state });
      writes.push(r.ms);
    }
    out.checkpoint = { parameters: cp.manifest.total, bytes, writeMs: median(writes) };
    console.log(`checkpoint: ${cp.manifest.total} parameters + optimizer state, ${(bytes / 1024).toFixed(0)} KiB, written (fsync, rename) in ${median(writes).toFixed(1)} ms (median of 5)`);

    // 2. kills at a random moment
    const uninterrupted = median(accuracy);
    const killRuns: Array<Record<string, unknown>> = [];
    for (const victim of ['ps0', 'trainer1']) {
      for (let r = 0; r < flags.rounds; r++) {
        let killedAt = 0;
        let killDelay = 0;
        const run = await psrun([...job(flags.epochs), '--checkpoint-dir', join(ckRoot, `kill-${victim}-${r}`), '--checkpoint-every', String(flags.every), '--max-restarts', '1'], (started, lines) => {
          // somewhere in the middle of training: after the first checkpoint could exist, before the end
          const trainStart = () => lines.find((l) => / \d+\/\d+ samples loss=/.test(l.text))?.at;
          const tick = setInterval(() => {
            const t0 = trainStart();
            if (t0 === undefined) return;
            clearInterval(tick);
            killDelay = trainMs * (0.2 + Math.random() * 0.6);
            setTimeout(() => {
              const pid = pidOf(victim);
              if (pid === null) return;
              killedAt = performance.now();
              process.kill(pid, 'SIGKILL');
            }, killDelay);
          }, 20);
          void started;
        });
        const restartLine = run.lines.find((l) => l.text.includes('restarting the job') || l.text.includes('restarting it alone'));
        // a kill before the first checkpoint restarts from the beginning: no "resuming" line, the first progress line instead
        const resumeLine = run.lines.find((l) => l.at > (restartLine?.at ?? Infinity) && /trainer1: (rejoined the running job .*: )?resuming at step/.test(l.text))
          ?? run.lines.find((l) => l.at > (restartLine?.at ?? Infinity) && /^trainer1 +\| trainer1 [\d.]+% /.test(l.text));
        const rec = {
          victim, code: run.code, killed: killedAt > 0, restarted: restartLine?.text.includes('alone') ? 'alone' : restartLine ? 'job' : null,
          detectMs: restartLine && killedAt ? restartLine.at - killedAt : null,
          resumeMs: resumeLine && killedAt ? resumeLine.at - killedAt : null,
          resumedAt: resumeLine ? (/resuming at (step \d+)/.exec(resumeLine.text)?.[1] ?? 'step 0') : null,
          testAccuracy: run.result?.testAccuracy ?? null,
          accuracyDelta: run.result ? run.result.testAccuracy - uninterrupted : null,
        };
        killRuns.push(rec);
        console.log(`kill ${victim} ${(killDelay / 1000).toFixed(1)} s into training: exit ${rec.code}, restarted ${rec.restarted ?? '-'}, detected in ${rec.detectMs?.toFixed(0) ?? '-'} ms, resumed (${rec.resumedAt}) ${rec.resumeMs?.toFixed(0) ?? '-'} ms after the kill, accuracy ${rec.testAccuracy?.toFixed(4) ?? '-'} (uninterrupted ${uninterrupted.toFixed(4)})`);
      }
    }
    out.kills = killRuns;
    const ok = killRuns.filter((k) => k.code === 0 && typeof k.accuracyDelta === 'number' && Math.abs(k.accuracyDelta as number) <= 0.01).length;
    console.log(`kills: ${ok} of ${killRuns.length} jobs finished with status 0 and accuracy within 0.01; median detection ${median(killRuns.map((k) => k.detectMs as number).filter(Number.isFinite)).toFixed(0)} ms, median resume ${median(killRuns.map((k) => k.resumeMs as number).filter(Number.isFinite)).toFixed(0)} ms (targets 5,000 and 10,000 ms)`);

    // 4. elastic trainers: the batches handed out with each push's reply against fixed shares
    const elasticRatios: number[] = [];
    const fixedRates: number[] = [];
    const elasticRates: number[] = [];
    const async = [...job(Math.max(1, Math.round(flags.epochs / 4))), '--consistency', 'async'];
    for (let r = 0; r < flags.rounds; r++) {
      const fixed = await psrun(async);
      const elastic = await psrun([...async, '--min-trainers', '1']);
      if (fixed.code !== 0 || elastic.code !== 0) throw new Error(`a run failed:\n${[...fixed.lines, ...elastic.lines].map((l) => l.text).slice(-20).join('\n')}`);
      const [f, e] = [fixed.result!.samplesPerSecond as number, elastic.result!.samplesPerSecond as number];
      fixedRates.push(f);
      elasticRates.push(e);
      elasticRatios.push(e / f);
      console.log(`elastic round ${r + 1}: samples/s fixed shares ${f.toFixed(0)}, batches handed out ${e.toFixed(0)} (${elastic.result!.batches?.done} batches, ${JSON.stringify(elastic.result!.batches?.byTrainer)})`);
    }
    out.elastic = { fixed: median(fixedRates), elastic: median(elasticRates), ratios: elasticRatios };
    console.log(`elastic trainers: ${(median(elasticRatios) * 100).toFixed(0)}% of the samples/s of fixed shares (median of ${flags.rounds} interleaved pairs, async, 2 trainers)`);
    if (flags.json) (await import('node:fs')).writeFileSync(flags.json, JSON.stringify(out, null, 2) + '\n');
  } finally {
    rmSync(ckRoot, { recursive: true, force: true });
  }
}

await main();
