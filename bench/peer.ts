// The PyTorch peer figures, measured in the same run as ours (../shared/anchors beside the checkout).
//
// The anchors read a raw export of the same npm data packages; it is written once to
// $PSRPC_ANCHOR_DATA (default /tmp/anchor-data). Without /usr/bin/python3 + torch, or without the
// anchors folder, every function returns null and the benchmark says so instead of failing.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Agent } from '../src/rpc/index.js';
import { packageRoot } from '../src/tensor/native.js';

const python = '/usr/bin/python3';

export function anchorsDir(): string | null {
  const dir = process.env.PSRPC_ANCHORS ?? join(packageRoot(), '..', 'shared', 'anchors');
  return existsSync(join(dir, 'torch_train.py')) ? dir : null;
}

export function torchAvailable(): boolean {
  if (!existsSync(python) || !anchorsDir()) return false;
  return spawnSync(python, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0;
}

/** Path prefix of the exported Fashion-MNIST (`<prefix>.x.u8`, `<prefix>.y.u8`), exported on first use. */
export function anchorData(): string | null {
  const dir = anchorsDir();
  if (!dir) return null;
  const out = process.env.PSRPC_ANCHOR_DATA ?? '/tmp/anchor-data';
  if (!existsSync(join(out, 'fashion.x.u8'))) {
    const r = spawnSync(process.execPath, [join(dir, 'export_data.cjs'), join(packageRoot(), 'node_modules'), out], { stdio: 'ignore' });
    if (r.status !== 0) return null;
  }
  return join(out, 'fashion');
}

/** Runs one anchor script and returns its figures as key=value pairs, or null when it cannot run. */
export function runAnchor(script: string, args: string[], timeoutMs = 300_000): Record<string, number> | null {
  const dir = anchorsDir();
  const data = anchorData();
  if (!dir || !data || !torchAvailable()) return null;
  const r = spawnSync(python, [join(dir, script), ...args, '--data', data], {
    encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, OPENBLAS_NUM_THREADS: '1' },
  });
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('torch'));
  if (r.status !== 0 || !line) return null;
  const figures: Record<string, number> = {};
  for (const m of line.matchAll(/(\w+)=([\d.eE+-]+)/g)) figures[m[1]!] = Number(m[2]);
  return figures;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The value after `name` in `argv` (undefined when the flag is absent); a flag without one throws. */
export function flagValue(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new RangeError(`${name} needs a value`);
  return v;
}

/** The command line parsed by `parse`; a bad flag prints one `error:` line and exits 1. */
export function flagsOrExit<F>(parse: (argv: string[]) => F): F {
  try {
    return parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`error: ${(e as Error).message}\n`);
    process.exit(1);
  }
}

/** A one-float tensor: the payload of the small-call measurements. */
export const SMALL_PAYLOAD = [{ shape: [1], dtype: 'float32', data: new Float32Array(1) }];

/**
 * Round-trip times in microseconds of `timed` small `echo` calls to worker `to`, one at a time,
 * after `warm` untimed ones (the warm-up must be long enough for V8 to compile the call path in
 * both processes, about 5,000 round trips: with 500 the timed calls measure the JIT's warm-up).
 */
export async function smallCallLatencies(agent: Agent, to: string, warm: number, timed: number): Promise<number[]> {
  for (let i = 0; i < warm; i++) await agent.call(to, 'echo', SMALL_PAYLOAD);
  const lat: number[] = [];
  for (let i = 0; i < timed; i++) {
    const t0 = process.hrtime.bigint();
    await agent.call(to, 'echo', SMALL_PAYLOAD);
    lat.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return lat;
}
