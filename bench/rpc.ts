// RPC benchmark: small-call latency (p50/p99), small calls per second with 5,000 in flight, and
// tensor echo round trips at 1, 16 and 64 MB between two processes on 127.0.0.1, for each
// transport of psrpc's bulk data plane, beside plain grpc-js, PyTorch RPC (TensorPipe, both
// channel settings) and iperf3's loopback limit, measured in the same run.
//
// Every configuration runs in fresh processes (the transport is chosen by environment, in both
// processes), the configurations interleaved round after round; the table shows medians over
// rounds, then issue 16's targets as ratios. Writes bench/results/rpc.json. psrpc's echo is timed
// after as many untimed round trips as timed ones (steady state; see measurePsrpc); the PyTorch
// anchor script is run as it is (one untimed round trip).
//   node --import tsx bench/rpc.ts [--rounds 3] [--warm 5000] [--no-torch] [--only psrpc-tcp,psrpc-shm,...]
//   (GB/s here is GiB/s: 2 x size / round trip; iperf3's bits are converted the same way)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { Agent } from '../src/rpc/index.js';
import { anchorsDir, SMALL_PAYLOAD, smallCallLatencies, torchAvailable } from './peer.js';
import { CONFIGS, medianFigures, parseIperf, parseTorchPing, SIZES_MB, table, targets, type Config, type Figures } from './rpc-report.js';

const here = dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const echo = (x: unknown) => x;
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
const arg = (name: string) => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined; };
/** Untimed small calls before the timed ones, psrpc and grpc-js alike (--warm N; see measurePsrpc). */
const WARM_CALLS = Number(arg('--warm') ?? 5000);

const PSRPC_ENV: Record<string, Record<string, string>> = {
  'psrpc-tcp': { PSRPC_SHM: '0' },
  'psrpc-shm': {},
  'psrpc-js': { PSRPC_NATIVE_BULK: '0' },
};

// ---- psrpc: this process is rank 0, a child is rank 1 ------------------------------------------

async function psrpcChild(master: string): Promise<void> {
  const agent = await Agent.start({ name: 'w1', rank: 1, worldSize: 2, master, timeoutMs: 60_000 });
  agent.register('echo', echo);
  await agent.rendezvous();
  await agent.shutdown({ graceful: true, timeoutMs: 600_000 });
}

async function measurePsrpc(): Promise<Figures> {
  const agent = await Agent.start({ name: 'w0', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: 60_000 });
  agent.register('echo', echo);
  const kid = spawn(process.execPath, [...process.execArgv, self, '--psrpc-child', agent.address], { stdio: 'inherit' });
  const kidExit = new Promise((r) => kid.on('exit', r));
  try {
    await agent.rendezvous();
    const lat = await smallCallLatencies(agent, 'w1', WARM_CALLS, 2000);
    lat.sort((a, b) => a - b);
    let callsPerSecond = 0;
    for (let rep = 0; rep < 3; rep++) {
      const n = 5000;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: n }, () => agent.call('w1', 'echo', SMALL_PAYLOAD)));
      callsPerSecond = Math.max(callsPerSecond, n / ((performance.now() - t0) / 1000));
    }
    const echoGBps: Record<string, number> = {};
    for (const mb of SIZES_MB) {
      const data = new Float32Array(mb * 262144);
      for (let i = 0; i < data.length; i += 1024) data[i] = i;
      const t = { shape: [data.length], dtype: 'float32', data };
      // steady state, as in a training loop: received payloads are returned to their pool or arena
      // when V8 collects them (every ~64 MB of them), so the first few hundred MB touch fresh
      // pages; the timed round trips come after as many untimed ones
      const reps = Math.max(3, 256 / mb);
      for (let i = 0; i < reps; i++) await agent.call('w1', 'echo', [t]);
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) await agent.call('w1', 'echo', [t]);
      echoGBps[String(mb)] = (2 * mb * reps) / 1024 / ((performance.now() - t0) / 1000);
    }
    return { p50Us: pct(lat, 0.5), p99Us: pct(lat, 0.99), callsPerSecond, echoGBps };
  } finally {
    await agent.shutdown({ graceful: true }).catch(() => {});
    await kidExit;
  }
}

// ---- plain grpc-js: a unary echo of bytes, server in a child ------------------------------------

const ECHO_PATH = '/bench.Echo/Echo';
const bytes = (b: Buffer) => b;

async function grpcChild(): Promise<void> {
  const server = new grpc.Server();
  server.register(ECHO_PATH, (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request), bytes, bytes, 'unary');
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  process.stdout.write(`port ${port}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => server.forceShutdown());
}

async function measureGrpc(): Promise<Figures> {
  const kid = spawn(process.execPath, [...process.execArgv, self, '--grpc-child'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    kid.stdout.on('data', (c: Buffer) => { out += c; const m = /port (\d+)/.exec(out); if (m) resolve(Number(m[1])); });
    kid.on('exit', () => reject(new Error('grpc child exited')));
  });
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (b: Buffer) => new Promise<Buffer>((resolve, reject) => client.makeUnaryRequest(ECHO_PATH, bytes, bytes, b, (e, r) => (e ? reject(e) : resolve(r!))));
  try {
    const msg = Buffer.alloc(64, 1); // about what psrpc's one-float call puts on the wire
    for (let i = 0; i < WARM_CALLS; i++) await call(msg);
    const lat: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const t0 = process.hrtime.bigint();
      await call(msg);
      lat.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    lat.sort((a, b) => a - b);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 5000 }, () => call(msg)));
    return { p50Us: pct(lat, 0.5), p99Us: pct(lat, 0.99), callsPerSecond: 5000 / ((performance.now() - t0) / 1000) };
  } finally {
    client.close();
    kid.stdin.end();
    await new Promise((r) => kid.on('exit', r));
  }
}

// ---- the peers ----------------------------------------------------------------------------------

function measureTorch(channels: string | undefined): Figures | undefined {
  const script = process.env.TORCH_RPC_PING ?? (anchorsDir() ? join(anchorsDir()!, 'torch_rpc_ping.py') : '');
  if (!script || !existsSync(script) || !torchAvailable()) return undefined;
  const port = String(29000 + Math.floor(Math.random() * 900));
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: '1' };
  if (channels) env.TP_CHANNELS = channels;
  else delete env.TP_CHANNELS;
  const r = spawnSync('/usr/bin/python3', [script, port], { encoding: 'utf8', timeout: 300_000, env });
  const f = parseTorchPing(r.stdout ?? '');
  if (!f) console.error(`torch_rpc_ping.py (${channels ?? 'default'}) gave no figures (exit ${r.status}): ${(r.stderr ?? '').slice(-300)}`);
  return f;
}

function measureIperf(): Figures | undefined {
  if (spawnSync('sh', ['-c', 'command -v iperf3']).status !== 0) return undefined;
  const port = String(25200 + Math.floor(Math.random() * 700));
  const server = spawn('iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', port], { stdio: 'ignore' });
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      const r = spawnSync('iperf3', ['-c', '127.0.0.1', '-p', port, '-t', '3', '-J'], { encoding: 'utf8', timeout: 60_000 });
      const gbps = parseIperf(r.stdout ?? '');
      if (gbps !== undefined) return { streamGBps: gbps };
      spawnSync('sleep', ['0.2']); // the server was not listening yet
    }
    return undefined;
  } finally {
    server.kill();
  }
}

// ---- the driver ---------------------------------------------------------------------------------

/** Runs one configuration in fresh processes; its figures come back as one JSON line. */
function runConfig(c: Config): Figures | undefined {
  if (c === 'tp-default') return measureTorch(undefined);
  if (c === 'tp-basic') return measureTorch('basic');
  if (c === 'iperf3') return measureIperf();
  const env = { ...process.env, ...(PSRPC_ENV[c] ?? {}) };
  const r = spawnSync(process.execPath, [...process.execArgv, self, '--measure', c, '--warm', String(WARM_CALLS)], { encoding: 'utf8', env, timeout: 600_000, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('{'));
  if (r.status !== 0 || !line) {
    console.error(`${c}: no figures (exit ${r.status})`);
    return undefined;
  }
  return JSON.parse(line) as Figures;
}

async function main(): Promise<void> {
  const rounds = Number(arg('--rounds') ?? 3);
  const only = arg('--only')?.split(',') as Config[] | undefined;
  let configs = (Object.keys(CONFIGS) as Config[]).filter((c) => !only || only.includes(c));
  if (process.argv.includes('--no-torch')) configs = configs.filter((c) => !c.startsWith('tp-'));
  const perRound: Partial<Record<Config, Figures[]>> = {};
  for (let round = 1; round <= rounds; round++) {
    for (const c of configs) {
      const f = runConfig(c);
      console.error(`round ${round}/${rounds} ${c}: ${f ? JSON.stringify(f) : 'skipped'}`);
      if (f) (perRound[c] ??= []).push(f);
    }
  }
  const medians: Partial<Record<Config, Figures>> = {};
  for (const c of configs) if (perRound[c]?.length) medians[c] = medianFigures(perRound[c]!);
  console.log(`\nmedians over ${rounds} round(s), ${new Date().toISOString()}`);
  console.log(table(medians));
  console.log('\ntargets (issue 16):');
  const ts = targets(medians);
  for (const t of ts) console.log(`  ${t.what.padEnd(46)} ${t.value === undefined ? '-' : t.value.toFixed(2)}  (goal ${t.goal})  ${t.met === undefined ? 'not measured' : t.met ? 'met' : 'MISSED'}`);
  for (const c of Object.keys(CONFIGS) as Config[]) if (!medians[c]) console.log(`  (${c}: not run here)`);
  mkdirSync(join(here, 'results'), { recursive: true });
  const file = join(here, 'results', 'rpc.json');
  writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), rounds, configs: CONFIGS, medians, perRound, targets: ts }, null, 2)}\n`);
  console.log(`wrote ${file}`);
}

if (process.argv.includes('--psrpc-child')) await psrpcChild(arg('--psrpc-child')!);
else if (process.argv.includes('--grpc-child')) await grpcChild();
else if (process.argv.includes('--measure')) {
  const c = arg('--measure') as Config;
  const f = c === 'grpc-js' ? await measureGrpc() : await measurePsrpc();
  process.stdout.write(`${JSON.stringify(f)}\n`);
} else await main();
