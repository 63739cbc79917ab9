// The strategy benchmark (bench/strategies.ts): a --quick run on a tiny slice writes a well-formed
// strategies.json (every figure present and finite, curves ordered in time, each row's figures
// equal to its strategy's own --json result) and the two charts as SVG and PNG; a failing
// strategy becomes a failed row with its error line. No timing assertions.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseWorkers, planRuns, selectStrategies, STRATEGY_SPECS } from '../../bench/strategies-matrix.js';
import { commandLine, commonFlags, medianRow, rowFromResult, runOne, timeToTarget, type RunRow } from '../../bench/strategies-run.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const script = join(root, 'bench', 'strategies.ts');

test('timeToTarget interpolates between the points around the target, null when never reached', (t) => {
  const curve = [{ seconds: 0, samples: 0, accuracy: 0.1 }, { seconds: 1, samples: 10, accuracy: 0.5 }, { seconds: 2, samples: 20, accuracy: 0.9 }];
  t.is(timeToTarget(curve, 0.7), 1.5);
  t.is(timeToTarget(curve, 0.05), 0);
  t.is(timeToTarget(curve, 0.95), null);
  t.is(timeToTarget([], 0.5), null);
});

test('selectStrategies and parseWorkers accept the documented names and reject others by name', (t) => {
  t.deepEqual(selectStrategies('centralized').map((s) => s.id), ['centralized-sync', 'centralized-async', 'centralized-ssp2', 'centralized-ssp8']);
  t.is(selectStrategies('all').length, STRATEGY_SPECS.length);
  t.throws(() => selectStrategies('local,bogus'), { message: /unknown strategy 'bogus'/ });
  t.deepEqual(parseWorkers('4,1,2,2'), [1, 2, 4]);
  t.throws(() => parseWorkers('1,zero'), { message: /--workers/ });
  // local runs once whatever the worker counts; the others once per count
  const runs = planRuns(selectStrategies('local,hogwild'), [1, 2, 4]);
  t.deepEqual(runs.map((r) => `${r.strategy.id}x${r.workers}`), ['localx1', 'hogwildx1', 'hogwildx2', 'hogwildx4']);
});

test('the pipeline rows: M = 1, 4, 8 on 2 stages, run once, without the accuracy curve\'s flags', (t) => {
  const rows = selectStrategies('pipeline-m1,pipeline-m4,pipeline-m8');
  t.deepEqual(rows.map((s) => s.id), ['pipeline-m1', 'pipeline-m4', 'pipeline-m8']);
  t.deepEqual(planRuns(rows, [1, 2, 4]).map((r) => r.workers), [1, 1, 1]);
  const common = ['--epochs', '1', '--eval-every', '0.01', '--eval-samples', '500', '--model', 'mlp'];
  t.deepEqual(commonFlags(common, false), ['--epochs', '1', '--model', 'mlp']);
  t.deepEqual(commonFlags(common, true), common);
  const args = commandLine({ root: '/r', common, targetAccuracy: 0.8, tmpDir: '/t' }, { strategy: rows[1]!, workers: 1 }, '/t/r.json');
  t.false(args.includes('--eval-every'));
  t.deepEqual(args.slice(args.indexOf('--strategy'), args.indexOf('--strategy') + 8), ['--strategy', 'pipeline', '--servers', '0', '--stages', '2', '--micro-batches', '4']);
  // the other rows keep the curve
  const ddp = commandLine({ root: '/r', common, targetAccuracy: 0.8, tmpDir: '/t' }, { strategy: selectStrategies('ddp')[0]!, workers: 2 }, '/t/r.json');
  t.true(ddp.includes('--eval-every'));
});

test('rowFromResult takes bytes per sample from the result, 0 for one process, n/a otherwise', (t) => {
  const [local, sync] = selectStrategies('local,centralized-sync');
  const r = { samples: 100, samplesPerSecond: 50, testAccuracy: 0.8, trainSeconds: 2, curve: [{ seconds: 0, samples: 0, accuracy: 0.1 }, { seconds: 1, samples: 100, accuracy: 0.9 }] };
  const a = rowFromResult({ strategy: local!, workers: 1 }, r, 0.5);
  t.is(a.bytesPerSample, 0);
  t.is(a.bytesSource, 'single-process');
  t.is(a.timeToTarget, 0.5);
  const b = rowFromResult({ strategy: sync!, workers: 2 }, r, 0.5);
  t.is(b.bytesPerSample, null);
  const c = rowFromResult({ strategy: sync!, workers: 2 }, { ...r, bytesSent: 2500, curve: undefined }, 0.5);
  t.is(c.bytesPerSample, 25);
  t.is(c.bytesSource, 'result');
  t.is(c.timeToTarget, null);
  t.is(c.curve, null);
});

test('medianRow keeps the median run by samples/s, whole, and lists every repeat', (t) => {
  const [local] = selectStrategies('local');
  const row = (sps: number, acc: number): RunRow => ({
    ...rowFromResult({ strategy: local!, workers: 1 }, { samples: 10, samplesPerSecond: sps, testAccuracy: acc }, 0.5),
    command: 'x', commandSeconds: 1,
  });
  const m = medianRow([row(300, 0.3), row(100, 0.1), row(200, 0.2)]);
  t.is(m.samplesPerSecond, 200);
  t.is(m.finalAccuracy, 0.2);
  t.deepEqual(m.repeats!.map((r) => r.samplesPerSecond), [300, 100, 200]);
});

test('a strategy command that fails becomes a failed row with its error line', async (t) => {
  const tmp = await mkdtemp(join(tmpdir(), 'psrpc-bench-test-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const bogus = { id: 'bogus', command: 'trainer' as const, args: ['--strategy', 'no-such-strategy'], scales: false, workerArgs: () => [] };
  const row = await runOne({ root, common: [], targetAccuracy: 0.8, tmpDir: tmp }, { strategy: bogus, workers: 1 }, 0);
  t.is(row.status, 'failed');
  t.regex(row.error ?? '', /no-such-strategy/);
  t.is(row.samplesPerSecond, null);
});

test('a bad flag exits 1 naming it, before running anything', (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--strategies', 'local,warp-drive'], { cwd: root, encoding: 'utf8' });
  t.is(r.status, 1);
  t.regex(r.stderr, /unknown strategy 'warp-drive'/);
});

test('--quick on a tiny slice writes well-formed strategies.json and SVG + PNG charts', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'psrpc-bench-test-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [
    '--import', 'tsx', script, '--quick', '--strategies', 'local,centralized-sync', '--workers', '1,2',
    '--train-samples', '2000', '--test-samples', '500', '--eval-samples', '200', '--out', out,
  ], { cwd: root, encoding: 'utf8', timeout: 110_000 });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /samples\/s/);
  t.regex(r.stderr, /\[3\/3\] centralized-sync x2/);

  const report = JSON.parse(await readFile(join(out, 'strategies.json'), 'utf8')) as {
    date: string; machine: { cores: number; cpu: string }; command: string; totalSeconds: number;
    settings: { targetAccuracy: number; trainSamples: number }; rows: RunRow[];
  };
  t.false(Number.isNaN(Date.parse(report.date)));
  t.true(report.machine.cores >= 1);
  t.true(report.machine.cpu.length > 0);
  t.regex(report.command, /^npm run bench -- --quick/);
  t.true(Number.isFinite(report.totalSeconds) && report.totalSeconds > 0);
  t.is(report.settings.targetAccuracy, 0.8);
  t.deepEqual(report.rows.map((row) => `${row.strategy}x${row.workers}`), ['localx1', 'centralized-syncx1', 'centralized-syncx2']);
  for (const row of report.rows) {
    const name = `${row.strategy} x${row.workers}`;
    t.is(row.status, 'ok', `${name}: ${row.error}`);
    const res = row.result!;
    // the row's figures are the strategy's own --json result
    t.is(row.samplesPerSecond, res.samplesPerSecond as number, name);
    t.is(row.finalAccuracy, res.testAccuracy as number, name);
    t.is(row.samples, res.samples as number, name);
    t.is(res.trainers, row.workers, name);
    t.is(res.testSamples, 500, name);
    for (const v of [row.samplesPerSecond, row.finalAccuracy, row.samples, row.trainSeconds, row.commandSeconds]) {
      t.true(typeof v === 'number' && Number.isFinite(v) && v > 0, `${name}: ${String(v)}`);
    }
    t.true(row.finalAccuracy! <= 1);
    // 2,000 samples of batch 64, short last batch dropped by every trainer
    t.true(row.samples! <= 2000 && row.samples! >= 2000 - 64 * row.workers, `${name}: ${row.samples}`);
    if (row.bytesPerSample !== null) t.true(Number.isFinite(row.bytesPerSample) && row.bytesPerSample >= 0, name);
    if (row.strategy === 'local') {
      t.is(row.bytesPerSample, 0);
      t.truthy(row.curve, 'local records its curve');
    }
    if (row.curve) {
      t.true(row.curve.length >= 2, name);
      for (const [i, p] of row.curve.entries()) {
        t.true(Number.isFinite(p.seconds) && p.seconds >= 0 && Number.isFinite(p.samples) && p.accuracy >= 0 && p.accuracy <= 1, `${name} point ${i}`);
        if (i > 0) {
          t.true(p.seconds >= row.curve[i - 1]!.seconds, `${name}: curve goes back in time at point ${i}`);
          t.true(p.samples >= row.curve[i - 1]!.samples, `${name}: curve samples go back at point ${i}`);
        }
      }
      t.is(row.timeToTarget, timeToTarget(row.curve, 0.8));
    } else {
      t.is(row.timeToTarget, null);
    }
  }
  for (const chart of ['strategies-accuracy', 'strategies-throughput']) {
    const svg = await readFile(join(out, `${chart}.svg`), 'utf8');
    t.regex(svg, /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/, chart);
    t.regex(svg, /<\/svg>\s*$/, chart);
    t.regex(svg, /local/, `${chart} has a legend entry for local`);
    const png = await readFile(join(out, `${chart}.png`));
    t.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${chart}.png signature`);
    t.true(png.length > 5000, `${chart}.png is an actual image`);
  }
});

test('docs/BENCHMARKS.md has the figures block, and updateDoc replaces only what is inside it', async (t) => {
  const { BEGIN, END, docBlock, updateDoc } = await import('../../bench/strategies-doc.js');
  const doc = await readFile(join(root, 'docs', 'BENCHMARKS.md'), 'utf8');
  t.true(doc.includes(BEGIN) && doc.indexOf(END) > doc.indexOf(BEGIN), 'docs/BENCHMARKS.md keeps its markers');
  const tmp = await mkdtemp(join(tmpdir(), 'psrpc-bench-test-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const file = join(tmp, 'B.md');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(file, `head\n${BEGIN}\nold\n${END}\ntail\n`);
  const [local] = selectStrategies('local');
  const row: RunRow = { ...rowFromResult({ strategy: local!, workers: 1 }, { samples: 10, samplesPerSecond: 1234, testAccuracy: 0.8123 }, 0.8), command: 'x', commandSeconds: 1 };
  const failed: RunRow = { ...row, strategy: 'remote-forward', status: 'failed', error: 'ps0 | error: nope' };
  await updateDoc(file, docBlock({
    date: '2026-01-01T00:00:00.000Z', machine: { cores: 2, cpu: 'CPU X', memoryGiB: 1, node: 'v20', platform: 'linux-x64' },
    command: 'npm run bench', totalSeconds: 100, targetAccuracy: 0.8, settingsLine: 's', rows: [row, failed],
  }));
  const text = await readFile(file, 'utf8');
  t.true(text.startsWith('head\n') && text.endsWith('tail\n'));
  t.false(text.includes('old'));
  t.regex(text, /\| local \| 1 \| 1,234 \| n\/a \(no curve\) \| 0\.8123 \| 0 \|/);
  t.regex(text, /\| remote-forward \| 1 \| failed: ps0 \\\| error: nope \|/);
  t.regex(text, /2 cores, CPU X/);
  await writeFile(file, 'no markers\n');
  await t.throwsAsync(updateDoc(file, 'x'), { message: /no .* block/ });
  t.is(await readFile(file, 'utf8'), 'no markers\n');
});
