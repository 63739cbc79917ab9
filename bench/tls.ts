// TLS cost (InitOptions.tls): small-call latency (p50 over 2,000 echo calls after a warm-up) and
// 16 MiB echo throughput (median of 5 timed round trips) between two processes on 127.0.0.1,
// for plain TCP (the default data plane: native side channel, shared memory), plain TCP on the JS
// side channel (the path TLS takes, so the difference is TLS itself), TLS, and mutual TLS.
//
// Each configuration runs in fresh processes, the configurations interleaved round after round;
// the table shows medians over rounds. The certificate is a throwaway self-signed one made with
// openssl (subjectAltName IP:127.0.0.1, DNS:localhost; its own CA), removed at the end.
// Writes bench/results/tls.json.
//   node --import tsx bench/tls.ts [--rounds 3] [--warm 2000]
//   (GiB/s: 2 x 16 MiB / round trip)
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, type InitOptions } from '../src/rpc/index.js';
import { smallCallLatencies } from './peer.js';

const here = dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const arg = (name: string) => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined; };
const WARM_CALLS = Number(arg('--warm') ?? 2000);
const TIMED_CALLS = 2000;
const ECHO_MIB = 16;
const ECHO_REPS = 5;

const CONFIGS = {
  plain: 'plain TCP, default data plane (native side channel, shm)',
  'plain-js': 'plain TCP, JS side channel (PSRPC_NATIVE_BULK=0)',
  tls: 'TLS (JS side channel on TLS sockets)',
  mtls: 'mutual TLS (requireClientCert)',
} as const;
type Config = keyof typeof CONFIGS;
interface Figures { p50Us: number; echoGiBps: number }

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };

/** Options of config `c` for either process; certDir holds cert.pem and key.pem. */
function agentOptions(c: Config, certDir: string): Partial<InitOptions> {
  if (c !== 'tls' && c !== 'mtls') return {};
  const cert = readFileSync(join(certDir, 'cert.pem'));
  return { tls: { cert, key: readFileSync(join(certDir, 'key.pem')), ca: cert, requireClientCert: c === 'mtls' } };
}

const envOf = (c: Config): NodeJS.ProcessEnv => (c === 'plain' ? { ...process.env } : { ...process.env, PSRPC_NATIVE_BULK: '0' });

async function child(c: Config, certDir: string, master: string): Promise<void> {
  const agent = await Agent.start({ name: 'w1', rank: 1, worldSize: 2, master, timeoutMs: 60_000, ...agentOptions(c, certDir) });
  agent.register('echo', (x: unknown) => x);
  await agent.rendezvous();
  await agent.shutdown({ graceful: true, timeoutMs: 600_000 });
}

async function measure(c: Config, certDir: string): Promise<Figures> {
  const agent = await Agent.start({ name: 'w0', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: 60_000, ...agentOptions(c, certDir) });
  const kid = spawn(process.execPath, [...process.execArgv, self, '--child', c, certDir, agent.address], { stdio: 'inherit', env: envOf(c) });
  const kidExit = new Promise((r) => kid.on('exit', r));
  try {
    await agent.rendezvous();
    const lat = await smallCallLatencies(agent, 'w1', WARM_CALLS, TIMED_CALLS);
    const data = new Float32Array(ECHO_MIB * 262144);
    for (let i = 0; i < data.length; i += 1024) data[i] = i;
    const t = [{ shape: [data.length], dtype: 'float32', data }];
    for (let i = 0; i < 3; i++) await agent.call('w1', 'echo', t); // side links up, pages warm
    const rates: number[] = [];
    for (let i = 0; i < ECHO_REPS; i++) {
      const t0 = performance.now();
      await agent.call('w1', 'echo', t);
      rates.push((2 * ECHO_MIB) / 1024 / ((performance.now() - t0) / 1000));
    }
    return { p50Us: median(lat), echoGiBps: median(rates) };
  } finally {
    await agent.shutdown({ graceful: true }).catch(() => {});
    await kidExit;
  }
}

/** Runs one configuration in fresh processes: this script with --measure, under the config's environment. */
function runOne(c: Config, certDir: string): Promise<Figures> {
  return new Promise((resolve, reject) => {
    const kid = spawn(process.execPath, [...process.execArgv, self, '--measure', c, certDir], { stdio: ['ignore', 'pipe', 'inherit'], env: envOf(c) });
    let out = '';
    kid.stdout.on('data', (b: Buffer) => { out += b; });
    kid.on('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code === 0 && line.startsWith('{')) resolve(JSON.parse(line) as Figures);
      else reject(new Error(`${c}: exited ${code}: ${out}`));
    });
  });
}

async function main(): Promise<void> {
  const rounds = Number(arg('--rounds') ?? 3);
  const certDir = mkdtempSync(join(tmpdir(), 'psrpc-bench-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'), '-subj', '/CN=psrpc bench',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    const perRound: Record<Config, Figures[]> = { plain: [], 'plain-js': [], tls: [], mtls: [] };
    const configs = Object.keys(CONFIGS) as Config[];
    for (let r = 0; r < rounds; r++) {
      for (const c of configs) {
        const f = await runOne(c, certDir);
        perRound[c].push(f);
        console.log(`round ${r + 1}/${rounds} ${c.padEnd(8)} p50 ${f.p50Us.toFixed(0)} us, 16 MiB echo ${f.echoGiBps.toFixed(2)} GiB/s`);
      }
    }
    const medians = Object.fromEntries(configs.map((c) => [c, { p50Us: median(perRound[c].map((f) => f.p50Us)), echoGiBps: median(perRound[c].map((f) => f.echoGiBps)) }])) as Record<Config, Figures>;
    console.log(`\nmedians over ${rounds} round(s), ${new Date().toISOString()}`);
    console.log(`| config | small call p50 (us) | 16 MiB echo (GiB/s) | vs plain-js |`);
    console.log(`| --- | ---: | ---: | --- |`);
    const base = medians['plain-js'];
    for (const c of configs) {
      const m = medians[c];
      const vs = c === 'plain-js' ? '-' : `p50 x${(m.p50Us / base.p50Us).toFixed(2)}, echo x${(m.echoGiBps / base.echoGiBps).toFixed(2)}`;
      console.log(`| ${c}: ${CONFIGS[c]} | ${m.p50Us.toFixed(0)} | ${m.echoGiBps.toFixed(2)} | ${vs} |`);
    }
    mkdirSync(join(here, 'results'), { recursive: true });
    const file = join(here, 'results', 'tls.json');
    writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), rounds, warmCalls: WARM_CALLS, timedCalls: TIMED_CALLS, echoMiB: ECHO_MIB, echoReps: ECHO_REPS, configs: CONFIGS, medians, perRound }, null, 2)}\n`);
    console.log(`wrote ${file}`);
  } finally {
    rmSync(certDir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--child')) {
  const i = process.argv.indexOf('--child');
  await child(process.argv[i + 1] as Config, process.argv[i + 2]!, process.argv[i + 3]!);
} else if (process.argv.includes('--measure')) {
  const i = process.argv.indexOf('--measure');
  process.stdout.write(`${JSON.stringify(await measure(process.argv[i + 1] as Config, process.argv[i + 2]!))}\n`);
} else await main();
