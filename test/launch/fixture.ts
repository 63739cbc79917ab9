// Fixture processes for the launcher tests: one small node script standing in for ps-server and
// trainer, driven by environment variables (set per process through a topology's "env"), and a
// spawn wrapper that records every child so each test can make sure none outlives it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandResolver } from '../../src/launch/commands.js';
import type { SpawnFn } from '../../src/launch/launcher.js';

const SCRIPT = String.raw`
import { writeFileSync } from 'node:fs';
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
  // One line in three chunks with pauses, then an unterminated last line.
  process.stdout.write('part-a ');
  await sleep(30);
  process.stdout.write('part-b ');
  await sleep(30);
  process.stdout.write('part-c\n');
}
for (let i = 0; i < Number(env.FIXTURE_LINES ?? 0); i++) console.error('line ' + i);
if (env.FIXTURE_STARTED) writeFileSync(env.FIXTURE_STARTED + '/' + name, String(process.pid));
if (env.FIXTURE_FOREVER) { setInterval(() => {}, 1000); await new Promise(() => {}); }
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
  write(s: string | Uint8Array): boolean {
    this.text += typeof s === 'string' ? s : Buffer.from(s).toString();
    return true;
  }
  lines(): string[] {
    return this.text.split('\n').filter((l) => l !== '');
  }
}
