// Small-call tail harness (issue 16): the latency distribution of bench/rpc.ts's small call (one
// float32 tensor echoed between two agents in two processes on 127.0.0.1), beside the same echo
// over plain grpc-js (unary and bidi stream, bytes in/out, no psrpc code) and over a raw TCP
// socket, all in the same run and against the same child process. Every mode is warmed up first,
// then the timed blocks alternate between modes (so drift on a shared machine hits every mode
// alike; a mode's first block does follow the other modes' warm-up).
//   node --import tsx bench/rpc-tail.ts
// Prints p50/p90/p99/p99.9/max (us) per mode, the minor GCs per 1,000 calls in each process, and
// how much CPU anything else on the machine used meanwhile (rough: /proc jiffies; a co-tenant on
// 2 vCPUs moves the tail more than anything under test); writes bench/results/rpc-tail.json.
// bench/rpc.ts's conditions: TAIL_WARM=500 TAIL_N=2000 TAIL_ROUNDS=1.
//
// Knobs (environment):
//   TAIL_N=4000          timed calls per block          TAIL_ROUNDS=3   blocks per mode
//   TAIL_WARM=500        warm-up calls per mode
//   TAIL_MODES=agent,unary,bidi,tcp                      which paths to measure
//   TAIL_BURST=5000      afterwards, agent calls/s with this many in flight (best of 3, as bench/rpc.ts)
//   TAIL_PIN=split|same  taskset: parent on cpu 0 and child on cpu 1 | both on cpu 0 (the p50 of
//                        two unpinned processes flips between these two with the scheduler)
//   TAIL_CHILD_FLAGS='--single-threaded'                 extra node flags for the child only
//                        (flags before the script name apply to both: node --no-opt --import tsx ...)
//   TAIL_NICE=19         from outside, after the rendezvous: nice value for every thread but the
//                        main one, in both processes (TAIL_NICE_WHICH=early: only the threads node
//                        starts before any JS runs, i.e. not libuv's pool)
//   TAIL_TRACE=1         per-call timestamps on both sides (one CLOCK_MONOTONIC, shared by the
//                        processes): which leg (request: client send -> server handler; reply:
//                        server handler -> client resolve) holds the slowest 1 %, and the GCs
//                        (either process) that overlap those calls
//   TAIL_MARK=1          prints '#block R MODE' as each block starts (to cut --trace-* output by block)
//   TAIL_RAW=1           also write every latency, send time and GC (and, with TAIL_TRACE, every
//                        request leg) to the JSON, e.g. to line them up with `perf sched record -k
//                        CLOCK_MONOTONIC` output
//   TAIL_OUT=file.json   where to write the JSON (default bench/results/rpc-tail.json)
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Agent } from '../src/rpc/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const N = Number(env.TAIL_N ?? 4000);
const ROUNDS = Number(env.TAIL_ROUNDS ?? 3);
const WARM = Number(env.TAIL_WARM ?? 500);
const MODES = (env.TAIL_MODES ?? 'agent,unary,bidi,tcp').split(',').filter(Boolean);
const TRACE = env.TAIL_TRACE === '1';
const BURST = Number(env.TAIL_BURST ?? 0);
const MAX_IDX = WARM + N * ROUNDS + 16;

const now = () => Number(process.hrtime.bigint()) / 1000; // us, CLOCK_MONOTONIC: same scale in both processes
const identity = (b: Buffer) => b;
const bytesMethod = (path: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> => ({
  path, requestStream, responseStream, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity,
});
const echoService: grpc.ServiceDefinition = {
  Echo: bytesMethod('/tail.Echo/Echo', false, false),
  Stream: bytesMethod('/tail.Echo/Stream', true, true),
};

// ---- GC record (both processes) ----
const gcs: Array<[start: number, dur: number, kind: number]> = [];
{
  // PerformanceEntry.startTime is on performance.now()'s scale; map it onto hrtime's
  const origin = now() - performance.now() * 1000;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push([origin + e.startTime * 1000, e.duration * 1000, (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0]);
  }).observe({ entryTypes: ['gc'] });
}

// ---- child: agent w1, plain grpc-js server, TCP echo ----
async function child(master: string): Promise<void> {
  // server-side arrival time per call, indexed by the call's sequence number (carried in the payload)
  const seen: Record<string, Float64Array> = {};
  const mark = (mode: string, i: number) => { if (TRACE && i >= 0 && i < MAX_IDX) (seen[mode] ??= new Float64Array(MAX_IDX))[i] = now(); };

  const server = new grpc.Server();
  server.addService(echoService, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => { mark('unary', call.request.readInt32LE(0)); cb(null, call.request); },
    Stream: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (b: Buffer) => { mark('bidi', b.readInt32LE(0)); call.write(b); });
      call.on('end', () => call.end());
    },
  });
  const grpcPort = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  const tcp = net.createServer((s) => {
    s.setNoDelay(true);
    s.on('data', (b) => { mark('tcp', b.readInt32LE(0)); s.write(b); });
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  const tcpPort = (tcp.address() as net.AddressInfo).port;

  const agent = await Agent.start({ name: 'w1', rank: 1, worldSize: 2, master, timeoutMs: 60_000 });
  agent.register('echo', (x: { data: Float32Array }) => { mark('agent', x.data[0]!); return x; });
  process.send!({ grpcPort, tcpPort });
  process.on('message', (m: { dump?: boolean }) => {
    if (!m.dump) return;
    process.send!({ seen: Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, Array.from(v)])), gcs });
  });
  await agent.rendezvous();
  await agent.shutdown({ graceful: true, timeoutMs: 600_000 });
  server.forceShutdown();
  tcp.close();
  process.disconnect?.();
}

// ---- parent: one client per mode ----
interface Client { call(i: number): Promise<unknown>; close(): void }

function agentClient(agent: Agent): Client {
  const t = { shape: [1], dtype: 'float32', data: new Float32Array(1) };
  return { call: (i) => { t.data[0] = i; return agent.call('w1', 'echo', [t]); }, close() {} };
}

function unaryClient(port: number): Client {
  const c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const b = Buffer.alloc(4);
  return {
    call: (i) => new Promise((res, rej) => {
      b.writeInt32LE(i, 0);
      c.makeUnaryRequest('/tail.Echo/Echo', identity, identity, b, (e, r) => (e ? rej(e) : res(r)));
    }),
    close: () => c.close(),
  };
}

function bidiClient(port: number): Client {
  const c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const s = c.makeBidiStreamRequest('/tail.Echo/Stream', identity, identity);
  let waiting: ((b: Buffer) => void) | undefined;
  s.on('data', (b: Buffer) => { const w = waiting; waiting = undefined; w?.(b); });
  s.on('error', () => {});
  return {
    call: (i) => new Promise((res) => { waiting = res; const b = Buffer.alloc(4); b.writeInt32LE(i, 0); s.write(b); }),
    close: () => { s.end(); c.close(); },
  };
}

async function tcpClient(port: number): Promise<Client> {
  const s = net.connect(port, '127.0.0.1');
  s.setNoDelay(true);
  await new Promise<void>((r) => s.once('connect', () => r()));
  let waiting: ((b: Buffer) => void) | undefined;
  s.on('data', (b) => { const w = waiting; waiting = undefined; w?.(b); });
  return {
    call: (i) => new Promise((res) => { waiting = res; const b = Buffer.alloc(4); b.writeInt32LE(i, 0); s.write(b); }),
    close: () => s.destroy(),
  };
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };

interface Stats { p50: number; p90: number; p99: number; p999: number; max: number; mean: number }
function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: pct(s, 0.5), p90: pct(s, 0.9), p99: pct(s, 0.99), p999: pct(s, 0.999), max: s[s.length - 1]!, mean: s.reduce((a, b) => a + b, 0) / s.length };
}

/** Busy CPU time of the whole machine and of `pids`, in us (from /proc; jiffies of 10 ms). */
function cpuSample(pids: number[]): { at: number; busy: number; own: number; cpus: number } {
  const tick = 10_000;
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const f = lines[0]!.trim().split(/\s+/).slice(1).map(Number);
  const busy = (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) * tick; // user nice system irq softirq steal
  let own = 0;
  for (const p of pids) {
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const g = st.slice(st.lastIndexOf(')') + 2).split(' ');
      own += (Number(g[11]) + Number(g[12])) * tick; // utime stime
    } catch { /* gone */ }
  }
  return { at: now(), busy, own, cpus: lines.filter((l) => /^cpu\d/.test(l)).length };
}

/** Sets the nice value of every thread of `pid` but its main thread (V8's platform workers: compiler and GC helpers; libuv's pool). */
function reniceHelpers(pid: number, nice: number): void {
  // TAIL_NICE_WHICH=early: only the threads node starts before any JS runs (tids just above the
  // main one: V8's platform workers, its delayed-task thread, the inspector's signal thread), not
  // libuv's pool (started later, on first use)
  const early = env.TAIL_NICE_WHICH === 'early';
  const tids = readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => a - b);
  for (const tid of tids) if (tid !== pid && (!early || tid <= pid + 6)) os.setPriority(tid, nice);
}

function taskset(cpu: string | undefined, pid: number): void {
  if (!cpu) return;
  spawn('taskset', ['-a', '-p', '-c', cpu, String(pid)], { stdio: 'ignore' });
}

async function parent(): Promise<void> {
  const pin = env.TAIL_PIN;
  const [myCpu, kidCpu] = pin === 'split' ? ['0', '1'] : pin === 'same' ? ['0', '0'] : [undefined, undefined];
  taskset(myCpu, process.pid);
  const agent = await Agent.start({ name: 'w0', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: 60_000 });
  agent.register('echo', (x: unknown) => x);
  const flags = (env.TAIL_CHILD_FLAGS ?? '').split(' ').filter(Boolean);
  const kid: ChildProcess = spawn(process.execPath, [...flags, ...process.execArgv, fileURLToPath(import.meta.url), '--child', agent.address], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
  const kidExit = new Promise<number | null>((r) => kid.on('exit', r));
  try {
    const ports = await new Promise<{ grpcPort: number; tcpPort: number }>((r) => kid.once('message', (m) => r(m as { grpcPort: number; tcpPort: number })));
    taskset(kidCpu, kid.pid!);
    await agent.rendezvous();
    await new Promise((r) => setTimeout(r, 200)); // let taskset land
    if (env.TAIL_NICE) for (const p of [process.pid, kid.pid!]) reniceHelpers(p, Number(env.TAIL_NICE));

    const clients: Record<string, Client> = {};
    for (const m of MODES) {
      clients[m] = m === 'agent' ? agentClient(agent) : m === 'unary' ? unaryClient(ports.grpcPort) : m === 'bidi' ? bidiClient(ports.grpcPort) : await tcpClient(ports.tcpPort);
    }
    const sent: Record<string, Float64Array> = {};
    const done: Record<string, Float64Array> = {};
    const lat: Record<string, number[]> = {};
    const perRound: Record<string, Stats[]> = {};
    const next: Record<string, number> = {};
    for (const m of MODES) {
      sent[m] = new Float64Array(MAX_IDX); done[m] = new Float64Array(MAX_IDX); lat[m] = []; perRound[m] = []; next[m] = 0;
      for (let i = 0; i < WARM; i++) await clients[m]!.call(next[m]++);
    }
    const windows: Record<string, Array<[number, number]>> = Object.fromEntries(MODES.map((m) => [m, []]));
    const cpuStart = cpuSample([process.pid, kid.pid!]);
    for (let r = 0; r < ROUNDS; r++) {
      for (const m of MODES) {
        const c = clients[m]!;
        const block: number[] = [];
        const w0 = now();
        if (env.TAIL_MARK === '1') console.log(`#block ${r} ${m}`); // separates --trace-opt / --trace-gc output by block
        for (let k = 0; k < N; k++) {
          const i = next[m]++;
          const t0 = now();
          sent[m]![i] = t0;
          await c.call(i);
          const t1 = now();
          done[m]![i] = t1;
          block.push(t1 - t0);
        }
        windows[m]!.push([w0, now()]);
        lat[m]!.push(...block);
        perRound[m]!.push(stats(block));
      }
    }

    const cpuEnd = cpuSample([process.pid, kid.pid!]);
    // many calls in flight (bench/rpc.ts's calls/s): a flush policy must keep batching them
    let burstCallsPerSecond: number | undefined;
    if (BURST > 0 && clients.agent) {
      burstCallsPerSecond = 0;
      for (let rep = 0; rep < 3; rep++) {
        const t0 = now();
        await Promise.all(Array.from({ length: BURST }, () => clients.agent!.call(-1)));
        burstCallsPerSecond = Math.max(burstCallsPerSecond, BURST / ((now() - t0) / 1e6));
      }
    }
    kid.send({ dump: true });
    const remote = await new Promise<{ seen: Record<string, number[]>; gcs: Array<[number, number, number]> }>((r) => kid.once('message', (m) => r(m as typeof remote)));
    for (const c of Object.values(clients)) c.close();
    await agent.shutdown({ graceful: true });
    await kidExit;

    // CPU time the machine spent on anything but these two processes while they were measured: a
    // co-tenant on a 2-vCPU machine moves the tail more than anything under test
    const wall = cpuEnd.at - cpuStart.at;
    const foreignPct = (100 * (cpuEnd.busy - cpuStart.busy - (cpuEnd.own - cpuStart.own))) / (wall * cpuStart.cpus);
    const ownPct = (100 * (cpuEnd.own - cpuStart.own)) / (wall * cpuStart.cpus);
    const gcIn = (list: Array<[number, number, number]>, m: string, major: boolean) =>
      list.filter(([t, , k]) => (major ? k !== 1 : k === 1) && windows[m]!.some(([a, b]) => t >= a && t < b)).length;
    if (burstCallsPerSecond !== undefined) console.log(`agent calls/s with ${BURST} in flight: ${burstCallsPerSecond.toFixed(0)}`);
    const result: Record<string, unknown> = { pids: [process.pid, kid.pid], burstCallsPerSecond, foreignCpuPct: foreignPct, ownCpuPct: ownPct, date: new Date().toISOString(), n: N, rounds: ROUNDS, pin: pin ?? null, childFlags: flags, execArgv: process.execArgv, modes: {} };
    console.log(`cpu: these two processes ${ownPct.toFixed(0)} %, everything else ${foreignPct.toFixed(1)} % of ${cpuStart.cpus} CPUs over ${(wall / 1e6).toFixed(1)} s${foreignPct > 5 ? '  (busy machine: figures are not clean)' : ''}`);
    const head = `${'mode'.padEnd(8)}${['p50', 'p90', 'p99', 'p99.9', 'max', 'p99/p50'].map((h) => h.padStart(9)).join('')}   block p50/p99 (median of ${ROUNDS})  minor GCs/1k calls (parent child)`;
    console.log(head);
    for (const m of MODES) {
      const s = stats(lat[m]!);
      const b50 = median(perRound[m]!.map((x) => x.p50));
      const b99 = median(perRound[m]!.map((x) => x.p99));
      const per1k = (list: Array<[number, number, number]>) => (1000 * gcIn(list, m, false)) / lat[m]!.length;
      const gc = { parentMinor: gcIn(gcs, m, false), childMinor: gcIn(remote.gcs, m, false), parentMajor: gcIn(gcs, m, true), childMajor: gcIn(remote.gcs, m, true) };
      console.log(`${m.padEnd(8)}${[s.p50, s.p90, s.p99, s.p999, s.max].map((v) => v.toFixed(0).padStart(9)).join('')}${(s.p99 / s.p50).toFixed(2).padStart(9)}   ${`${b50.toFixed(0)} / ${b99.toFixed(0)}`.padEnd(27)}${per1k(gcs).toFixed(2)} ${per1k(remote.gcs).toFixed(2)}`);
      const entry: Record<string, unknown> = { ...s, gc, blockP50: perRound[m]!.map((x) => x.p50), blockP99: perRound[m]!.map((x) => x.p99) };
      if (env.TAIL_RAW === '1') { entry.sent = Array.from(sent[m]!.subarray(WARM, next[m])); entry.gcs = { local: gcs, remote: remote.gcs }; entry.raw = lat[m]!.map((x) => Math.round(x)); if (remote.seen[m]) entry.rawReq = Array.from(sent[m]!.subarray(WARM, next[m]), (a, k) => Math.round(remote.seen[m]![WARM + k]! - a)); }
      if (TRACE && remote.seen[m]) entry.legs = legs(m, sent[m]!, remote.seen[m]!, done[m]!, next[m]!, remote.gcs);
      (result.modes as Record<string, unknown>)[m] = entry;
    }
    const out = env.TAIL_OUT ?? join(here, 'results', 'rpc-tail.json');
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${out}`);
  } finally {
    if (kid.exitCode === null) kid.kill('SIGKILL');
    await agent.shutdown({ graceful: false }).catch(() => {});
  }
}

/** Splits each measured call into request leg and reply leg; reports them for all calls and for the slowest 1 %. */
function legs(mode: string, sent: Float64Array, seen: number[], done: Float64Array, count: number, remoteGcs: Array<[number, number, number]>) {
  const rows: Array<{ total: number; req: number; rep: number; gc: boolean }> = [];
  const allGc = [...gcs, ...remoteGcs];
  for (let i = WARM; i < count; i++) {
    const a = sent[i]!, b = seen[i]!, c = done[i]!;
    if (!(a > 0 && b > 0 && c > 0)) continue;
    const gc = allGc.some(([s, d]) => s < c && s + d > a);
    rows.push({ total: c - a, req: b - a, rep: c - b, gc });
  }
  rows.sort((x, y) => x.total - y.total);
  const tail = rows.slice(Math.floor(rows.length * 0.99));
  const body = rows.slice(0, Math.floor(rows.length * 0.9));
  const m = (xs: number[]) => (xs.length ? median(xs) : NaN);
  const summary = {
    calls: rows.length,
    bodyReqP50: m(body.map((r) => r.req)), bodyRepP50: m(body.map((r) => r.rep)),
    tailCalls: tail.length, tailReqP50: m(tail.map((r) => r.req)), tailRepP50: m(tail.map((r) => r.rep)),
    tailReqHeavy: tail.filter((r) => r.req > r.rep).length,
    tailWithGc: tail.filter((r) => r.gc).length, allWithGc: rows.filter((r) => r.gc).length,
  };
  console.log(`  ${mode} legs: body(p0-90) req ${summary.bodyReqP50.toFixed(0)} rep ${summary.bodyRepP50.toFixed(0)} | tail(p99+) n=${tail.length} req ${summary.tailReqP50.toFixed(0)} rep ${summary.tailRepP50.toFixed(0)}, req-heavy ${summary.tailReqHeavy}, overlapping a GC ${summary.tailWithGc} (all calls: ${summary.allWithGc})`);
  return summary;
}

const ci = process.argv.indexOf('--child');
if (ci >= 0) await child(process.argv[ci + 1]!);
else await parent();
