// `npm run bench` (node --import tsx bench/strategies.ts): which strategy trains the model fastest
// to a target accuracy, and how does it scale? Runs local, centralized sync / async / ssp(2, 8),
// remote-forward, partitioned and Hogwild on the same data, model and flags, with 1, 2 and 4
// trainers or workers, each as a whole user command (`trainer` / `psrun` from source, --json), and
// writes a table, <out>/strategies.json and the charts <out>/strategies-accuracy.{svg,png} and
// <out>/strategies-throughput.{svg,png}. A strategy that fails (e.g. not available) is reported
// with its error line and the suite goes on. docs/BENCHMARKS.md explains the figures.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { accuracySpec, throughputSpec, writeChart } from './strategies-charts.js';
import { docBlock, updateDoc } from './strategies-doc.js';
import { parseWorkers, planRuns, selectStrategies } from './strategies-matrix.js';
import { medianRow, runOne, type RunRow } from './strategies-run.js';
import { formatTable } from './strategies-table.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_OUT = join(root, 'bench', 'results');
const DOC = join(root, 'docs', 'BENCHMARKS.md');

function int(flag: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || n < min) throw new InvalidArgumentError(`${flag} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
}
function real(flag: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be a number in [${min}, ${max}], got '${v}'`);
    return n;
  };
}
function wrap<T>(f: (v: string) => T) {
  return (v: string): T => {
    try {
      return f(v);
    } catch (e) {
      throw new InvalidArgumentError(e instanceof Error ? e.message : String(e));
    }
  };
}

interface BenchFlags {
  quick?: boolean;
  strategies: string;
  workers?: number[];
  epochs: number;
  targetAccuracy: number;
  out: string;
  dataset: string;
  trainSamples?: number;
  testSamples?: number;
  evalEvery: number;
  evalSamples?: number;
  runs?: number;
  model: string;
  modelOptions?: string;
  hidden?: number;
  depth?: number;
}

export function benchCommand(): Command {
  return new Command('bench')
    .description('Compare psrpc training strategies: samples/s, time to a target accuracy, bytes per sample, accuracy curves')
    .addOption(new Option('--quick', 'a short run: workers 1,2, 30,000 training and 2,000 test samples, 500-sample curve slice'))
    .addOption(new Option('--strategies <list>', 'comma-separated: all, centralized, local, centralized-sync, centralized-async, centralized-ssp2, centralized-ssp8, remote-forward, partitioned, ddp, zero, pipeline-m1, pipeline-m4, pipeline-m8, hogwild').default('all'))
    .addOption(new Option('--workers <list>', 'trainer / worker counts (default 1,2,4; --quick 1,2)').argParser(wrap(parseWorkers)))
    .addOption(new Option('--epochs <n>', 'epochs per run').argParser(int('--epochs', 1)).default(1))
    .addOption(new Option('--target-accuracy <x>', 'test accuracy the time-to-target figure measures').argParser(real('--target-accuracy', 0, 1)).default(0.8))
    .addOption(new Option('--out <dir>', 'where strategies.json and the charts go (only a run into the default folder updates docs/BENCHMARKS.md)').default(DEFAULT_OUT))
    .addOption(new Option('--dataset <name>', 'dataset every run trains on').choices(['fashion-mnist', 'mnist', 'synthetic']).default('fashion-mnist'))
    .addOption(new Option('--train-samples <n>', 'train on the first N training samples (0: all; --quick 30000)').argParser(int('--train-samples', 0)))
    .addOption(new Option('--test-samples <n>', 'final accuracy on the first N test samples (0: all; --quick 2000)').argParser(int('--test-samples', 0)))
    .addOption(new Option('--eval-every <seconds>', 'seconds of training between two accuracy-curve points').argParser(real('--eval-every', 0.001, 60)).default(0.01))
    .addOption(new Option('--eval-samples <n>', 'test samples of each curve point (default 1000; --quick 500)').argParser(int('--eval-samples', 1)))
    .addOption(new Option('--model <file|preset>', 'the model every run trains (a preset or a module exporting createModel)').default('mlp'))
    .addOption(new Option('--model-options <json>', "JSON object handed to the model's createModel (checked by each run)"))
    .addOption(new Option('--hidden <n>', 'mlp preset: width of the hidden layers (default: the trainer\'s, 64)').argParser(int('--hidden', 1)))
    .addOption(new Option('--depth <n>', 'mlp preset: hidden layers (default: the trainer\'s, 2)').argParser(int('--depth', 0)))
    .addOption(new Option('--runs <n>', 'runs per cell, interleaved; the table shows the median run by samples/s (default 3; --quick 1)').argParser(int('--runs', 1)))
    .exitOverride()
    .allowExcessArguments(false);
}

function fmtS(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}

function summary(r: RunRow): string {
  if (r.status === 'failed') return `FAILED: ${r.error}`;
  const sps = r.samplesPerSecond === null ? 'n/a' : Math.round(r.samplesPerSecond).toLocaleString('en-US');
  const acc = r.finalAccuracy === null ? 'n/a' : r.finalAccuracy.toFixed(4);
  const ttt = r.curve === null ? 'no curve' : r.timeToTarget === null ? 'target not reached' : `target at ${r.timeToTarget.toFixed(3)} s`;
  return `${sps} samples/s, accuracy ${acc}, ${ttt}`;
}

export async function main(argv: string[]): Promise<number> {
  const cmd = benchCommand();
  try {
    cmd.parse(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    throw e;
  }
  const f = cmd.opts<BenchFlags>();
  let strategies;
  try {
    strategies = selectStrategies(f.strategies);
  } catch (e) {
    process.stderr.write(`error: ${(e as Error).message}\n`);
    return 1;
  }
  const quick = f.quick === true;
  const workers = f.workers ?? (quick ? [1, 2] : [1, 2, 4]);
  const trainSamples = f.trainSamples ?? (quick ? 30_000 : 0);
  const testSamples = f.testSamples ?? (quick ? 2_000 : 0);
  const evalSamples = f.evalSamples ?? (quick ? 500 : 1000);
  const repeats = f.runs ?? (quick ? 1 : 3);
  const out = resolve(f.out);
  const common = [
    '--dataset', f.dataset, '--epochs', String(f.epochs),
    '--train-samples', String(trainSamples), '--test-samples', String(testSamples),
    '--eval-every', String(f.evalEvery), '--eval-samples', String(evalSamples),
    '--model', f.model,
    ...(f.modelOptions !== undefined ? ['--model-options', f.modelOptions] : []),
    ...(f.hidden !== undefined ? ['--hidden', String(f.hidden)] : []),
    ...(f.depth !== undefined ? ['--depth', String(f.depth)] : []),
  ];
  const runs = planRuns(strategies, workers);
  const tmpDir = await mkdtemp(join(tmpdir(), 'psrpc-bench-strategies-'));
  const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform}-${process.arch}` };
  const log = (line: string) => process.stderr.write(line + '\n');
  log(`psrpc strategy benchmark: ${runs.length} cells x ${repeats} run(s) on ${machine.cores} cores (${machine.cpu}); ${f.dataset}, ${f.epochs} epoch(s), workers ${workers.join(',')}`);
  log(`every run: ${common.join(' ')}`);

  const t0 = performance.now();
  // Repetitions are interleaved (the whole matrix, then again), so a change in the machine's load
  // hits every strategy alike; a cell that fails is not tried again.
  const results: RunRow[][] = runs.map(() => []);
  let total = runs.length * repeats;
  let done = 0;
  try {
    for (let rep = 0; rep < repeats; rep++) {
      for (const [i, run] of runs.entries()) {
        if (results[i]!.some((r) => r.status === 'failed')) {
          total--;
          continue;
        }
        const elapsed = (performance.now() - t0) / 1000;
        const eta = done > 0 ? ` (elapsed ${fmtS(elapsed)}, about ${fmtS((elapsed / done) * (total - done))} left)` : '';
        const tag = `[${done + 1}/${total}] ${run.strategy.id} x${run.workers}${repeats > 1 ? ` run ${rep + 1}/${repeats}` : ''}`;
        log(`${tag}...${eta}`);
        const row = await runOne({ root, common, targetAccuracy: f.targetAccuracy, tmpDir }, run, done);
        results[i]!.push(row);
        done++;
        log(`${tag}: ${summary(row)} (${row.commandSeconds.toFixed(1)} s)`);
      }
    }
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
  const rows = results.map((r) => medianRow(r));

  await mkdir(out, { recursive: true });
  const accuracy = await writeChart(out, 'strategies-accuracy', accuracySpec(rows, f.targetAccuracy, evalSamples));
  const throughput = await writeChart(out, 'strategies-throughput', throughputSpec(rows));
  const totalSeconds = (performance.now() - t0) / 1000;
  const rel = (p: string) => relative(root, p);
  const report = {
    date: new Date().toISOString(),
    machine,
    command: `npm run bench${argv.length > 2 ? ' -- ' + argv.slice(2).join(' ') : ''}`,
    settings: { quick, runs: repeats, strategies: strategies.map((s) => s.id), workers, epochs: f.epochs, dataset: f.dataset, trainSamples, testSamples, evalEvery: f.evalEvery, evalSamples, targetAccuracy: f.targetAccuracy, commonFlags: common },
    totalSeconds,
    charts: { accuracy: { svg: rel(accuracy.svg), png: rel(accuracy.png) }, throughput: { svg: rel(throughput.svg), png: rel(throughput.png) } },
    // the strategy's own result is kept whole, less its curve (the row holds it)
    rows: rows.map((r) => ({ ...r, result: r.result ? Object.fromEntries(Object.entries(r.result).filter(([k]) => k !== 'curve')) : null })),
  };
  const file = join(out, 'strategies.json');
  await writeFile(file, JSON.stringify(report, null, 2) + '\n');

  if (out === resolve(DEFAULT_OUT)) {
    const settingsLine = `${f.dataset}, ${f.epochs} epoch(s), ${trainSamples || 'all'} training / ${testSamples || 'all'} test samples, ` +
      `curve every ${f.evalEvery} s on ${evalSamples} test samples, median of ${repeats} run(s) by samples/s`;
    await updateDoc(DOC, docBlock({ date: report.date, machine, command: report.command, totalSeconds, targetAccuracy: f.targetAccuracy, settingsLine, rows }))
      .then(() => log(`updated ${rel(DOC)}`), (e: Error) => log(`warning: ${e.message}`));
  }
  process.stdout.write(`\n${formatTable(rows, f.targetAccuracy)}\n\n`);
  const noCurve = rows.filter((r) => r.status === 'ok' && r.curve === null).map((r) => `${r.strategy} x${r.workers}`);
  if (noCurve.length) process.stdout.write(`no accuracy curve in the result of: ${noCurve.join(', ')} (time to target n/a)\n`);
  process.stdout.write(`total ${fmtS(totalSeconds)}; wrote ${rel(file)}, ${rel(accuracy.png)}, ${rel(throughput.png)} (and .svg)\n`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv);
}
