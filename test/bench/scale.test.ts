// The scale benchmark's pure parts (bench/scale.ts): widths and parameter counts, flags, the bytes
// per step, reading psrun's and PyTorch's results, medians and ratios, the table and the chart
// spec, plus its peak-memory watcher on one real child. No timing assertions, no torch needed.
import test from 'ava';
import { spawn } from 'node:child_process';
import type { JobResult } from '../../src/launch/job-result.js';
import {
  bytesPerStep, chartSpec, formatTable, growthPerParameter, makeRow, mlpParameters, parseFlags, parseTorch, psrpcArgs, psrpcFigures,
  psrpcRoles, torchFigures, watchPeaks, widthFor, type RunFigures, type SeenProcess, type Size,
} from '../../bench/scale.js';

test('mlpParameters counts weights and biases of 784-H x depth-10', (t) => {
  t.is(mlpParameters(64, 2), 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10);
  t.is(mlpParameters(0, 0), 7850);
  t.is(mlpParameters(128, 1), 101_770);
});

test('widthFor picks the width closest to each size the issue names', (t) => {
  const targets = [1e5, 1e6, 1e7, 5e7];
  t.deepEqual(targets.map((n) => [widthFor(n), mlpParameters(widthFor(n), 2)]), [[110, 99_670], [678, 999_382], [2789, 9_998_575], [6684, 49_996_330]]);
  for (const target of targets) {
    const w = widthFor(target);
    const off = (h: number) => Math.abs(mlpParameters(h, 2) - target);
    t.true(off(w) <= off(w + 1) && off(w) <= off(w - 1), `${target}: width ${w}`);
  }
  t.is(widthFor(mlpParameters(300, 3), 3), 300);
  t.throws(() => widthFor(1e5, 0), { message: /depth must be >= 1/ });
});

test('flags: defaults, a subset of sizes, a fixed step count, and bad values named', (t) => {
  const d = parseFlags([]);
  t.is(d.rounds, 2);
  t.true(d.torch && d.build);
  t.deepEqual(d.sizes.map((s) => [s.label, s.hidden, s.depth, s.steps]), [['0.1M', 110, 2, 200], ['1M', 678, 2, 100], ['10M', 2789, 2, 30], ['50M', 6684, 2, 10]]);
  const q = parseFlags(['--sizes', '50m,0.1M', '--steps', '3', '--rounds', '1', '--no-torch', '--no-build', '--out', 'x.json', '--chart', 'x.svg']);
  t.deepEqual(q.sizes.map((s) => [s.label, s.steps]), [['50M', 3], ['0.1M', 3]]);
  t.like(q, { rounds: 1, torch: false, build: false, out: 'x.json', chart: 'x.svg' });
  t.throws(() => parseFlags(['--sizes', '2M']), { message: /--sizes: unknown size '2M'/ });
  t.throws(() => parseFlags(['--rounds', '0']), { message: /--rounds must be an integer >= 1, got '0'/ });
  t.throws(() => parseFlags(['--steps']), { message: /--steps needs a value/ });
  t.throws(() => parseFlags(['--quick']), { message: /unknown flag --quick/ });
});

test('bytes per step: PS push + pull, ddp ring all-reduce sent + received', (t) => {
  t.is(bytesPerStep('ps', 1000), 8000);
  t.is(bytesPerStep('ddp', 1000), 8000);
  t.is(bytesPerStep('ddp', 1000, 4), 12_000);
});

const size: Size = { label: '0.1M', hidden: 110, depth: 2, parameters: 99_670, steps: 20 };

test('psrun is asked for the steps by --train-samples (steps x batch x trainers)', (t) => {
  const a = psrpcArgs('ps', size, '/tmp/j.json');
  const at = (k: string) => a[a.indexOf(k) + 1];
  t.like({ s: at('--strategy'), v: at('--servers'), c: at('--consistency'), h: at('--hidden'), n: at('--train-samples'), d: at('--dataset') },
    { s: 'centralized', v: '1', c: 'sync', h: '110', n: '2560', d: 'synthetic' });
  const d = psrpcArgs('ddp', size, '/tmp/j.json');
  t.is(d[d.indexOf('--strategy') + 1], 'ddp');
  t.false(d.includes('--consistency'));
});

test("psrun's job result gives the step time, and a wrong run is refused", (t) => {
  const r = { parameters: 99_670, samples: 2560, trainSeconds: 0.5, wallSeconds: 2, bytesSent: 123, simd: 'avx2' } as JobResult;
  const f = psrpcFigures(r, size);
  t.is(f.stepSeconds, 0.025);
  t.like(f.own, { bytesSent: 123, peakRssBytes: null });
  t.throws(() => psrpcFigures({ ...r, samples: 1280 }, size), { message: /trained 1280 samples, expected 2560/ });
  t.throws(() => psrpcFigures({ ...r, parameters: 5 }, size), { message: /trained 5 parameters/ });
});

test("roles come from psrun's children's command lines; PyTorch's from its own report", (t) => {
  const seen: SeenProcess[] = [
    { pid: 10, cmdline: ['/usr/bin/node', '/r/bin/psrun.js', '--strategy', 'centralized'], peakRssBytes: 50 },
    { pid: 13, cmdline: ['/usr/bin/node', '/r/bin/trainer.js', '--name', 'trainer10'], peakRssBytes: 300 },
    { pid: 11, cmdline: ['/usr/bin/node', '/r/bin/ps-server.js', '--name', 'ps0'], peakRssBytes: 100, shmemBytes: 40 },
    { pid: 12, cmdline: ['/usr/bin/node', '/r/bin/trainer.js', '--name', 'trainer2'], peakRssBytes: 200 },
  ];
  t.deepEqual(psrpcRoles(seen, 10), { server: 100, trainers: [200, 300], launcher: 50, shmem: { server: 40, trainers: [0, 0] } });
  t.deepEqual(psrpcRoles(seen.slice(1, 2), 10), { server: null, trainers: [300], launcher: null, shmem: { server: null, trainers: [0] } });

  const line = JSON.stringify({ parameters: 99_670, steps: 20, stepSeconds: 0.004, stepSecondsMedian: 0.003, launcherPid: 20,
    processes: [{ role: 'server', rank: 0, pid: 21, peakRssBytes: 400 }, { role: 'trainer', rank: 1, pid: 22, peakRssBytes: 500 }, { role: 'trainer', rank: 2, pid: 23, peakRssBytes: 600 }] });
  const o = parseTorch(`I20261203 tensorpipe_agent.cpp:1142] shutting down\n${line}\n`)!;
  t.is(o.stepSeconds, 0.004);
  const tf = torchFigures(o, [{ pid: 20, cmdline: [], peakRssBytes: 70 }, { pid: 22, cmdline: [], peakRssBytes: 499, shmemBytes: 9 }], size);
  t.deepEqual(tf.peaks, { server: 400, trainers: [500, 600], launcher: 70, shmem: { server: 0, trainers: [9, 0] } });
  t.deepEqual((tf.own.polledPeakRssBytes as Array<{ polled: number | null }>).map((p) => p.polled), [null, 499, null]);
  t.is(parseTorch('Traceback (most recent call last):'), null);
  t.is(parseTorch('{"stepSeconds": null}'), null);
  t.throws(() => torchFigures({ ...o, parameters: 1 }, [], size), { message: /built 1 parameters/ });
});

const fig = (ms: number, server: number | null, trainers: number[], shmem = 0): RunFigures =>
  ({ stepSeconds: ms / 1000, peaks: { server, trainers, launcher: 1, shmem: { server: server === null ? null : shmem, trainers: trainers.map(() => shmem) } }, own: {} });

test('rows: medians over rounds, failed rounds listed, the speed-up is torch time over psrpc time', (t) => {
  const r = makeRow(size, 'ps', [fig(10, 100, [200, 210], 8), fig(30, 120, [220, 230], 12), { error: 'transport: boom' }], [fig(40, 300, [400, 400])]);
  t.is(r.psrpc!.stepMs, 20);
  t.is(r.psrpc!.serverPeakBytes, 110);
  t.is(r.psrpc!.trainerPeakBytes, 220);
  t.is(r.psrpc!.serverShmemBytes, 10);
  t.is(r.torch!.trainerShmemBytes, 0);
  t.deepEqual(r.psrpc!.errors, ['transport: boom']);
  t.is(r.speedup, 2);
  t.is(r.psrpc!.gbps, (8 * 99_670) / 0.02 / 1e9);
  const none = makeRow(size, 'ddp', [{ error: 'x' }], undefined);
  t.is(none.torch, null);
  t.is(none.speedup, null);
  t.true(Number.isNaN(none.psrpc!.stepMs));
  const table = formatTable([r, none]);
  t.regex(table, /torch\/psrpc/);
  t.regex(table, /PS vs batch PS .* 2\.00x/);
  t.regex(table, /ddp vs DDP .* n\/a/);
});

test('growth per parameter: between the smallest and the largest model of a strategy', (t) => {
  const big: Size = { ...size, label: '1M', parameters: 1_099_670 };
  const rows = [makeRow(size, 'ps', [fig(1, 100e6, [50e6])], undefined), makeRow(big, 'ps', [fig(1, 116e6, [58e6])], undefined)];
  t.is(growthPerParameter(rows, 'ps', 'psrpc', 'server'), 16);
  t.is(growthPerParameter(rows, 'ps', 'psrpc', 'trainer'), 8);
  t.is(growthPerParameter(rows, 'ps', 'torch', 'server'), null);
  t.is(growthPerParameter(rows, 'ddp', 'psrpc', 'trainer'), null);
});

test('the chart spec has one step-time point per side and size, and memory per role', (t) => {
  const spec = chartSpec([makeRow(size, 'ps', [fig(10, 100, [200])], [fig(20, 300, [400])]), makeRow(size, 'ddp', [fig(5, null, [200])], [{ error: 'x' }])]) as unknown as { hconcat: Array<{ data: { values: Array<{ series: string; role?: string }> } }> };
  t.deepEqual(spec.hconcat[0]!.data.values.map((v) => v.series), ['psrpc PS', 'PyTorch batch PS', 'psrpc ddp']);
  t.deepEqual(spec.hconcat[1]!.data.values.map((v) => `${v.series}/${v.role}`), ['psrpc PS/server', 'psrpc PS/trainer', 'PyTorch batch PS/server', 'PyTorch batch PS/trainer', 'psrpc ddp/trainer']);
});

test('watchPeaks sees the high-water mark of a child that grew and shrank', async (t) => {
  // the child touches 96 MiB, frees it, says so and waits for its stdin to close: its RSS falls
  // back, its VmHWM does not; stop() samples once more while it is still alive (no timing involved)
  const child = spawn(process.execPath, ['-e', "let b = Buffer.alloc(96 * 2 ** 20, 1); b = null; globalThis.gc?.(); process.stdout.write('ready\\n'); process.stdin.resume();"], { stdio: ['pipe', 'pipe', 'ignore'] });
  const watch = watchPeaks(child.pid!, 20);
  await new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); }));
  const seen = watch.stop();
  child.stdin!.end();
  await new Promise((r) => child.on('close', r));
  const p = seen.find((s) => s.pid === child.pid);
  t.truthy(p, 'the child was seen');
  t.true(p!.peakRssBytes >= 96 * 2 ** 20, `peak ${p!.peakRssBytes}`);
  t.true(p!.cmdline.includes('-e'));
  t.is(p!.shmemBytes, 0);
});
