// RPC benchmark: two agents in two processes on 127.0.0.1 (this process and one child).
// Measures small-call round-trip latency (p50/p99), small calls per second with many in flight,
// and tensor echo round-trip throughput at 1, 16 and 64 MB; prints a table and writes
// bench/results/rpc.json. With --torch (default when /usr/bin/python3 can import torch) it also
// runs /work/shared/anchors/torch_rpc_ping.py (or $TORCH_RPC_PING) for a same-run comparison.
// Large payloads take the bulk side channel (src/rpc/bulk-socket.ts); PSRPC_BULK_SOCKET=0 measures
// the gRPC-only path instead (the JSON records which one ran as bulkTransport).
//   node --import tsx bench/rpc.ts [--no-torch]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sideChannelEnabled } from '../src/rpc/bulk-socket.js';
import { Agent } from '../src/rpc/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const echo = (x: unknown) => x;

async function child(master: string): Promise<void> {
  const agent = await Agent.start({ name: 'w1', rank: 1, worldSize: 2, master, timeoutMs: 60_000 });
  agent.register('echo', echo);
  await agent.rendezvous();
  await agent.shutdown({ graceful: true, timeoutMs: 600_000 });
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

async function parent(): Promise<void> {
  const agent = await Agent.start({ name: 'w0', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: 60_000 });
  agent.register('echo', echo);
  const kid = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', agent.address], { stdio: 'inherit' });
  const kidExit = new Promise<number | null>((r) => kid.on('exit', r));
  try {
    await agent.rendezvous();
    const small = [{ shape: [1], dtype: 'float32', data: new Float32Array(1) }];

    for (let i = 0; i < 500; i++) await agent.call('w1', 'echo', small);
    const lat: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const t0 = process.hrtime.bigint();
      await agent.call('w1', 'echo', small);
      lat.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    lat.sort((a, b) => a - b);
    const p50Us = pct(lat, 0.5);
    const p99Us = pct(lat, 0.99);

    let callsPerSecond = 0;
    for (let rep = 0; rep < 3; rep++) {
      const n = 5000;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: n }, () => agent.call('w1', 'echo', small)));
      callsPerSecond = Math.max(callsPerSecond, n / ((performance.now() - t0) / 1000));
    }

    const echoGBps: Record<string, number> = {};
    for (const mb of [1, 16, 64]) {
      const data = new Float32Array(mb * 262144);
      for (let i = 0; i < data.length; i += 1024) data[i] = i;
      const t = { shape: [data.length], dtype: 'float32', data };
      await agent.call('w1', 'echo', [t]);
      const reps = Math.max(3, 256 / mb);
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) await agent.call('w1', 'echo', [t]);
      const dt = (performance.now() - t0) / 1000;
      echoGBps[String(mb)] = (2 * mb * reps) / 1024 / dt;
    }
    await agent.shutdown({ graceful: true });
    await kidExit;

    const result: Record<string, unknown> = { p50Us, p99Us, callsPerSecond, echoGBps, bulkTransport: sideChannelEnabled() ? 'socket' : 'grpc' };
    const torch = process.argv.includes('--no-torch') ? undefined : runTorch();
    if (torch) result.torch = torch;
    result.date = new Date().toISOString();

    const rows: [string, string, string][] = [
      ['small call p50 (us)', p50Us.toFixed(0), torch?.p50Us?.toFixed(0) ?? '-'],
      ['small call p99 (us)', p99Us.toFixed(0), torch?.p99Us?.toFixed(0) ?? '-'],
      ['calls/s in flight', callsPerSecond.toFixed(0), torch?.callsPerSecond?.toFixed(0) ?? '-'],
      ...[1, 16, 64].map((mb): [string, string, string] => [`echo ${mb} MB (GB/s)`, echoGBps[String(mb)]!.toFixed(2), torch?.echoGBps?.[String(mb)]?.toFixed(2) ?? '-']),
    ];
    console.log(`${'measure'.padEnd(22)}${'psrpc'.padStart(10)}${'torch-rpc'.padStart(12)}`);
    for (const [k, a, b] of rows) console.log(`${k.padEnd(22)}${a.padStart(10)}${b.padStart(12)}`);
    mkdirSync(join(here, 'results'), { recursive: true });
    writeFileSync(join(here, 'results', 'rpc.json'), `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${join(here, 'results', 'rpc.json')}`);
  } finally {
    if (kid.exitCode === null) kid.kill('SIGKILL');
    await agent.shutdown({ graceful: false }).catch(() => {});
  }
}

interface TorchFigures { p50Us?: number; p99Us?: number; callsPerSecond?: number; echoGBps?: Record<string, number> }

function runTorch(): TorchFigures | undefined {
  const script = process.env.TORCH_RPC_PING ?? '/work/shared/anchors/torch_rpc_ping.py';
  if (!existsSync(script) || !existsSync('/usr/bin/python3')) return undefined;
  if (spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status !== 0) return undefined;
  const port = String(29000 + Math.floor(Math.random() * 900));
  const r = spawnSync('/usr/bin/python3', [script, port], { encoding: 'utf8', timeout: 300_000, env: { ...process.env, OPENBLAS_NUM_THREADS: '1' } });
  const out = `${r.stdout ?? ''}`;
  const num = (re: RegExp) => { const m = re.exec(out); return m ? Number(m[1]) : undefined; };
  const f: TorchFigures = {
    p50Us: num(/p50_us=([\d.]+)/),
    p99Us: num(/p99_us=([\d.]+)/),
    callsPerSecond: num(/calls_per_s=([\d.]+)/),
    echoGBps: {},
  };
  for (const mb of [1, 16, 64]) {
    const v = num(new RegExp(`echo ${mb}MB roundtrip GBps=([\\d.]+)`));
    if (v !== undefined) f.echoGBps![String(mb)] = v;
  }
  if (f.p50Us === undefined) {
    console.error(`torch anchor gave no figures (exit ${r.status}): ${(r.stderr ?? '').slice(-500)}`);
    return undefined;
  }
  return f;
}

const i = process.argv.indexOf('--child');
if (i >= 0) await child(process.argv[i + 1]!);
else await parent();
