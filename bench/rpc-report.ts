// The pure parts of bench/rpc.ts: what each configuration measures, parsing the peers' output,
// medians over rounds, the table and the targets of issue 16. Tested in test/bench/rpc.test.ts.
import { median } from './peer.js';

export const SIZES_MB = [1, 16, 64] as const;

/** One configuration's figures from one round (absent where it does not measure them). */
export interface Figures {
  p50Us?: number;
  p99Us?: number;
  callsPerSecond?: number;
  /** Tensor echo round trip, 2 x size / time, in GiB/s, by size in MB. */
  echoGBps?: Record<string, number>;
  /** One-way stream throughput (iperf3), GiB/s. */
  streamGBps?: number;
}

export const CONFIGS = {
  'psrpc-tcp': 'psrpc, native transport over TCP (PSRPC_SHM=0)',
  'psrpc-shm': 'psrpc, native transport, shared memory on one host (default)',
  'psrpc-js': 'psrpc, JS side channel on net sockets (PSRPC_NATIVE_BULK=0)',
  'grpc-js': 'plain grpc-js unary echo (bytes in, bytes out)',
  'tp-default': 'PyTorch RPC, TensorPipe default channels (cma on one host)',
  'tp-basic': 'PyTorch RPC, TensorPipe over TCP only (TP_CHANNELS=basic)',
  iperf3: 'loopback TCP, one stream (iperf3)',
} as const;
export type Config = keyof typeof CONFIGS;

/** The figures in a torch_rpc_ping.py output. */
export function parseTorchPing(out: string): Figures | undefined {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : undefined;
  };
  const f: Figures = {
    p50Us: num(/p50_us=([\d.]+)/),
    p99Us: num(/p99_us=([\d.]+)/),
    callsPerSecond: num(/calls_per_s=([\d.]+)/),
    echoGBps: {},
  };
  for (const mb of SIZES_MB) {
    const v = num(new RegExp(`echo ${mb}MB roundtrip GBps=([\\d.]+)`));
    if (v !== undefined) f.echoGBps![String(mb)] = v;
  }
  return f.p50Us === undefined ? undefined : f;
}

/** GiB/s received by an iperf3 client run (`-J` output), or undefined. */
export function parseIperf(json: string): number | undefined {
  try {
    const bps = (JSON.parse(json) as { end?: { sum_received?: { bits_per_second?: number } } }).end?.sum_received?.bits_per_second;
    return typeof bps === 'number' && bps > 0 ? bps / 8 / 2 ** 30 : undefined;
  } catch {
    return undefined;
  }
}

/** The median over rounds of every figure (rounds that lack a figure are left out of it). */
export function medianFigures(rounds: Figures[]): Figures {
  const pick = (get: (f: Figures) => number | undefined) => {
    const xs = rounds.map(get).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
    return xs.length ? median(xs) : undefined;
  };
  const out: Figures = {};
  const p50 = pick((f) => f.p50Us);
  if (p50 !== undefined) out.p50Us = p50;
  const p99 = pick((f) => f.p99Us);
  if (p99 !== undefined) out.p99Us = p99;
  const cps = pick((f) => f.callsPerSecond);
  if (cps !== undefined) out.callsPerSecond = cps;
  const stream = pick((f) => f.streamGBps);
  if (stream !== undefined) out.streamGBps = stream;
  for (const mb of SIZES_MB) {
    const v = pick((f) => f.echoGBps?.[String(mb)]);
    if (v !== undefined) (out.echoGBps ??= {})[String(mb)] = v;
  }
  return out;
}

export interface Target {
  what: string;
  value: number | undefined;
  goal: number;
  met: boolean | undefined;
}

/** Issue 16's targets from the medians (a target whose figures are missing is undefined, not met). */
export function targets(m: Partial<Record<Config, Figures>>): Target[] {
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
  const t = (what: string, value: number | undefined, goal: number, atMost = false): Target => ({
    what, value, goal, met: value === undefined ? undefined : atMost ? value <= goal : value >= goal,
  });
  const echo = (c: Config, mb: number) => m[c]?.echoGBps?.[String(mb)];
  const out: Target[] = [];
  for (const mb of [16, 64]) {
    out.push(t(`TCP echo ${mb} MB / loopback limit (iperf3)`, ratio(echo('psrpc-tcp', mb), m.iperf3?.streamGBps), 0.8));
    out.push(t(`TCP echo ${mb} MB / TensorPipe over TCP`, ratio(echo('psrpc-tcp', mb), echo('tp-basic', mb)), 1.5));
    out.push(t(`shm echo ${mb} MB / TensorPipe default`, ratio(echo('psrpc-shm', mb), echo('tp-default', mb)), 1.5));
  }
  out.push(t('small-call p50 / grpc-js unary p50', ratio(m['psrpc-shm']?.p50Us, m['grpc-js']?.p50Us), 1, true));
  out.push(t('small-call p99 / p50', ratio(m['psrpc-shm']?.p99Us, m['psrpc-shm']?.p50Us), 3, true));
  return out;
}

/** The table: one row per measure, one column per configuration that ran. */
export function table(m: Partial<Record<Config, Figures>>): string {
  const cols = (Object.keys(CONFIGS) as Config[]).filter((c) => m[c]);
  const fmt = (v: number | undefined, digits: number) => (v === undefined ? '-' : v.toFixed(digits));
  const rows: Array<[string, (f: Figures) => string]> = [
    ['small call p50 (us)', (f) => fmt(f.p50Us, 0)],
    ['small call p99 (us)', (f) => fmt(f.p99Us, 0)],
    ['calls/s, 5000 in flight', (f) => fmt(f.callsPerSecond, 0)],
    ...SIZES_MB.map((mb): [string, (f: Figures) => string] => [`echo ${mb} MB (GB/s)`, (f) => fmt(f.echoGBps?.[String(mb)], 2)]),
    ['one-way stream (GB/s)', (f) => fmt(f.streamGBps, 2)],
  ];
  const w = 12;
  const lines = [`${'measure'.padEnd(26)}${cols.map((c) => c.padStart(w)).join('')}`];
  for (const [name, get] of rows) lines.push(`${name.padEnd(26)}${cols.map((c) => get(m[c]!).padStart(w)).join('')}`);
  return lines.join('\n');
}
