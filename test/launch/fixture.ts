// Fixture processes for the launcher tests: one small node script standing in for ps-server and
// trainer, driven by environment variables (set per process through a topology's "env"), and a
// spawn wrapper that records every child so each test can make sure none outlives it.
//
// The script never relies on time: a process that runs for ever prints `ready` once its handlers
// are installed (and its pid file, if asked for, is in place), so a test acts on a child when the
// child is in the state the test is about; a child that must wait for another one waits for that
// one's pid file (FIXTURE_AWAIT).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandResolver } from '../../src/launch/commands.js';
import type { SpawnFn } from '../../src/launch/launcher.js';
import { ManualClock, type ClockTimer } from '../../src/rpc/clock.js';

const SCRIPT = String.raw`
import { existsSync, renameSync, watch, writeFileSync } from 'node:fs';
const role = process.argv[2];
const argv = process.argv.slice(3);
const flag = (f) => { const i = argv.indexOf(f); return i >= 0 ? argv[i + 1] : undefined; };
const name = flag('--name');
const rank = Number(flag('--rank'));
const env = process.env;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
console.log('args ' + JSON.stringify(argv));
console.log('env ' + JSON.stringify({ MASTER_ADDR: env.MASTER_ADDR, MASTER_PORT: env.MASTER_PORT, RANK: env.RANK, WORLD_SIZE: env.WORLD_SIZE, PSRPC_SHARDS: env.PSRPC_SHARDS, PSRPC_SERVERS: env.PSRPC_SERVERS, EXTRA: env.EXTRA }));
if (env.FIXTURE_IGNORE_TERM) process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
if (env.FIXTURE_PARTIAL) {
  // One line in three chunks, then (at the end) an unterminated last line. Each chunk is written
  // once the test has seen the one before arrive (it sends SIGUSR2), so they reach psrun apart.
  let go;
  process.on('SIGUSR2', () => go());
  const next = (chunk) => { const seen = new Promise((r) => { go = r; }); process.stdout.write(chunk); return seen; };
  const alive = setInterval(() => {}, 1 << 30); // a signal handler alone does not keep node running
  await next('part-a ');
  await next('part-b ');
  clearInterval(alive);
  process.stdout.write('part-c\n');
}
for (let i = 0; i < Number(env.FIXTURE_LINES ?? 0); i++) console.error('line ' + i);
if (env.FIXTURE_STARTED) {
  // Written whole under a temporary name, then renamed: whoever sees the file can read the pid.
  const file = env.FIXTURE_STARTED + '/' + name;
  writeFileSync(file + '.tmp', String(process.pid));
  renameSync(file + '.tmp', file);
}
if (env.FIXTURE_AWAIT && !existsSync(env.FIXTURE_AWAIT)) {
  // woken by the folder's change events (the pid file appears by a rename), not by a timer
  const file = env.FIXTURE_AWAIT;
  await new Promise((resolve) => {
    const w = watch(file.slice(0, file.lastIndexOf('/')), () => { if (existsSync(file)) { w.close(); resolve(); } });
    if (existsSync(file)) { w.close(); resolve(); } // it appeared before the watch began
  });
}
if (env.FIXTURE_FOREVER) {
  console.log('ready');
  setInterval(() => {}, 1000);
  await new Promise(() => {});
}
await sleep(Number(env.FIXTURE_DELAY_MS ?? 0));
if (env.FIXTURE_EXIT) process.exit(Number(env.FIXTURE_EXIT));
if (role === 'trainer') {
  const total = 100 * rank;
  console.error(name + ' 50.0% ' + total / 2 + '/' + total + ' samples loss=0.5000 samples/s=' + 10 * rank);
  console.error(name + ' 100.0% ' + total + '/' + total + ' samples loss=0.2500 samples/s=' + 10 * rank);
  const result = env.FIXTURE_RESULT ? JSON.parse(env.FIXTURE_RESULT) : { strategy: 'x', trainers: 1, samples: total, samplesPerSecond: 10 * rank, testAccuracy: 0.5 + rank / 100, finalLoss: rank, trainSeconds: rank, simd: 'fixture', device: 'cpu', testSamples: 7 };
  if (!env.FIXTURE_NO_RESULT) writeFileSync(flag('--json'), JSON.stringify(result));
}
console.log('bye');
if (env.FIXTURE_PARTIAL) process.stderr.write('no newline at the end');
`;

export interface Fixture {
  dir: string;
  resolve: CommandResolver;
  spawn: SpawnFn;
  children: ChildProcess[];
  cleanup(): void;
}

export function makeFixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'psrun-test-'));
  const script = join(dir, 'fixture.mjs');
  writeFileSync(script, SCRIPT);
  const children: ChildProcess[] = [];
  return {
    dir,
    children,
    resolve: (role) => ({ command: process.execPath, args: [script, role] }),
    spawn: (command, args, options) => {
      const child = spawn(command, args, options);
      children.push(child);
      return child;
    },
    cleanup() {
      for (const c of children) {
        if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
          try {
            process.kill(-c.pid, 'SIGKILL');
          } catch {
            c.kill('SIGKILL');
          }
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A writable that keeps what is written, for asserting on psrun's output. */
export class Capture {
  text = '';
  isTTY = false;
  columns = 120;
  private waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
  write(s: string | Uint8Array): boolean {
    this.text += typeof s === 'string' ? s : Buffer.from(s).toString();
    this.waiters = this.waiters.filter((w) => {
      if (!w.pattern.test(this.text)) return true;
      w.resolve();
      return false;
    });
    return true;
  }
  /** Resolves once what was written matches `pattern` (at once if it already does). */
  waitFor(pattern: RegExp): Promise<void> {
    if (pattern.test(this.text)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ pattern, resolve }));
  }
  lines(): string[] {
    return this.text.split('\n').filter((l) => l !== '');
  }
}

/**
 * A ManualClock that tells the test when a timer is set: `await clock.nextTimer()` resolves with
 * the delay of the next timer set (at once for one already set and not yet asked for), so a test
 * knows the launcher has started a grace period and ends it by `advance`.
 */
export class TimerClock extends ManualClock {
  private readonly set: number[] = [];
  private readonly waiting: Array<(ms: number) => void> = [];

  override after(ms: number, fn: () => void): ClockTimer {
    const timer = super.after(ms, fn);
    const w = this.waiting.shift();
    if (w) w(ms);
    else this.set.push(ms);
    return timer;
  }

  nextTimer(): Promise<number> {
    const ms = this.set.shift();
    return ms !== undefined ? Promise.resolve(ms) : new Promise((resolve) => this.waiting.push(resolve));
  }
}
