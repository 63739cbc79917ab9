// The launcher with real child processes (a fixture script standing in for ps-server and trainer):
// the command-line contract, output multiplexing, failure handling, interruption and the result.
import test from 'ava';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main, type MainDeps } from '../../src/cli/psrun.js';
import { describeExit, formatFailure, Launcher } from '../../src/launch/launcher.js';
import { parseTopology, topologyFromFlags } from '../../src/launch/topology.js';
import { Capture, makeFixture, TimerClock, type Fixture } from './fixture.js';

/** psrun in this process; pass `stdout`/`stderr` Captures to watch the output while it runs. */
async function psrun(f: Fixture, args: string[], deps: MainDeps & { stdout?: Capture; stderr?: Capture } = {}) {
  const stdout = deps.stdout ?? new Capture();
  const stderr = deps.stderr ?? new Capture();
  const code = await main(['node', 'psrun', '--progress', 'none', ...args], { resolve: f.resolve, spawn: f.spawn, handleSignals: false, ...deps, stdout, stderr });
  return { code, stdout, stderr };
}

type Run = ReturnType<typeof psrun>;

/** Resolves once psrun's output matches `pattern`; fails (instead of waiting for ever) if psrun ends first. */
function output(run: Run, out: Capture, pattern: RegExp): Promise<void> {
  return Promise.race([
    out.waitFor(pattern),
    run.then((r) => { throw new Error(`psrun exited ${r.code} before its output matched ${pattern}: ${r.stdout.text}${r.stderr.text}`); }),
  ]);
}

/** The fixture's `ready` line of each named process (printed once its handlers are installed). */
function ready(run: Run, out: Capture, ...names: string[]): Promise<unknown> {
  return Promise.all(names.map((n) => output(run, out, new RegExp(`^${n} +\\| ready$`, 'm'))));
}

function running(c: { exitCode: number | null; signalCode: NodeJS.Signals | null }): boolean {
  return c.exitCode === null && c.signalCode === null;
}

function topologyFile(f: Fixture, topo: object): string {
  const path = join(f.dir, 'topology.json');
  writeFileSync(path, JSON.stringify(topo));
  return path;
}

function allExited(f: Fixture): boolean {
  return f.children.every((c) => c.exitCode !== null || c.signalCode !== null);
}

/** The fixture's `args [...]` / `env {...}` lines of one process. */
function reported(out: string, name: string) {
  const pick = (what: string) => {
    const line = out.split('\n').find((l) => l.startsWith(`${name} `) && l.includes(`| ${what} `));
    return JSON.parse(line!.slice(line!.indexOf(`| ${what} `) + what.length + 3));
  };
  return { args: pick('args') as string[], env: pick('env') as Record<string, string | undefined> };
}

test('starts servers then trainers with the contract\'s flags and env, and writes the combined --json', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const json = join(f.dir, 'out', 'result.json');
  const topo = topologyFile(f, {
    strategy: 'centralized', consistency: 'ssp', staleness: 1,
    servers: [{ name: 'ps0', env: { EXTRA: 'yes' } }, 'ps1'],
    trainers: [{ name: 'trainer1', args: ['--extra-flag'] }, 'trainer2'],
    shards: { ps0: 0.75, ps1: 0.25 },
    train: { dataset: 'synthetic', epochs: 2 },
  });
  const r = await psrun(f, ['--topology', topo, '--json', json, '--lr', '0.1']);
  t.is(r.code, 0, r.stderr.text);
  t.true(allExited(f));
  t.is(f.children.length, 4);
  const ps0 = reported(r.stdout.text, 'ps0');
  const t2 = reported(r.stdout.text, 'trainer2');
  const port = ps0.env.MASTER_PORT!;
  t.regex(port, /^\d+$/);
  t.not(port, '0');
  t.deepEqual(ps0.args, ['--name', 'ps0', '--rank', '0', '--world-size', '4', '--master', `127.0.0.1:${port}`, '--servers', '2',
    '--strategy', 'centralized', '--consistency', 'ssp', '--staleness', '1', '--dataset', 'synthetic', '--epochs', '2', '--lr', '0.1']);
  t.deepEqual(ps0.env, { MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, RANK: '0', WORLD_SIZE: '4', PSRPC_SHARDS: '{"ps0":0.75,"ps1":0.25}', PSRPC_SERVERS: '2', EXTRA: 'yes' });
  t.deepEqual(t2.args.slice(0, 8), ['--name', 'trainer2', '--rank', '3', '--world-size', '4', '--master', `127.0.0.1:${port}`]);
  t.deepEqual(t2.args.slice(-4, -1), ['--progress', 'lines', '--json']);
  t.is(t2.env.RANK, '3');
  t.is(reported(r.stdout.text, 'trainer1').args.at(-1), '--extra-flag');
  t.is(reported(r.stdout.text, 'ps1').env.EXTRA, undefined);
  // The combined result: fixture trainer k (rank k) trains 100k samples at 10k samples/s.
  const result = JSON.parse(readFileSync(json, 'utf8'));
  t.is(result.samples, 200 + 300);
  t.is(result.samplesPerSecond, 20 + 30);
  t.is(result.testAccuracy, 0.52);
  t.is(result.trainers, 2);
  t.is(result.servers, 2);
  t.is(result.strategy, 'centralized');
  t.is(result.consistency, 'ssp');
  t.is(result.epochs, 2);
  t.true(result.wallSeconds > 0);
  t.regex(r.stdout.text, /^psrun centralized: epochs=2 samples=500 .*testAccuracy=0\.5200 samplesPerSecond=50 /m);
  // The per-trainer result files lived in psrun's temp dir, which is gone.
  t.false(existsSync(t2.args.at(-1)!));
});

test('output lines come out whole and prefixed, even when written in pieces or left unterminated', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const topo = topologyFile(f, { strategy: 'partitioned', trainers: [{ name: 'w1', env: { FIXTURE_PARTIAL: '1' } }, 'w2'] });
  // w1 writes its next piece of the line only once psrun has read the one before (SIGUSR2 says so),
  // so psrun gets the line in three separate reads.
  let pieces = 0;
  const r = await psrun(f, ['--topology', topo], {
    spawn: (command, args, options) => {
      const child = f.spawn(command, args, options);
      if (options.env?.FIXTURE_PARTIAL) {
        let text = '';
        child.stdout!.on('data', (d: Buffer) => {
          text += d.toString();
          if (/part-[ab] $/.test(text)) {
            pieces++;
            child.kill('SIGUSR2');
          }
        });
      }
      return child;
    },
  });
  t.is(pieces, 2, 'the line arrived in three pieces');
  t.is(r.code, 0, r.stderr.text);
  t.true(r.stdout.lines().includes('w1 | part-a part-b part-c'));
  t.true(r.stderr.lines().includes('w1 | no newline at the end'), r.stderr.text);
  for (const line of [...r.stdout.lines(), ...r.stderr.lines()]) t.regex(line, /^(w1 \| |w2 \| |psrun)/, line);
});

test('a process that exits 3 stops the others; psrun names it with its code and last lines', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const topo = topologyFile(f, {
    strategy: 'centralized',
    servers: [{ name: 'ps0', env: { FIXTURE_FOREVER: '1' } }],
    trainers: [{ name: 'trainer1', env: { FIXTURE_FOREVER: '1' } }, { name: 'trainer2', env: { FIXTURE_EXIT: '3', FIXTURE_LINES: '30', FIXTURE_DELAY_MS: '200' } }],
  });
  const r = await psrun(f, ['--topology', topo, '--kill-grace', '5']);
  t.is(r.code, 1);
  t.true(allExited(f));
  const failed = f.children.filter((c) => c.exitCode === 3);
  t.is(failed.length, 1);
  t.true(f.children.filter((c) => c !== failed[0]).every((c) => c.signalCode === 'SIGTERM'), 'the others were stopped with SIGTERM');
  const lines = r.stderr.lines();
  const head = lines.findIndex((l) => l.startsWith('psrun: trainer2'));
  t.is(lines[head], 'psrun: trainer2 (trainer, rank 2) exited with code 3; stopped the other processes');
  t.is(lines[head + 1], 'psrun: last 20 line(s) of trainer2:');
  t.deepEqual(lines.slice(head + 2), Array.from({ length: 20 }, (_, i) => `  trainer2 | line ${i + 10}`));
});

test('a process that ignores SIGTERM is killed after the grace period', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const started = join(f.dir, 'started');
  mkdirSync(started);
  const topo = topologyFile(f, {
    strategy: 'centralized',
    servers: [{ name: 'ps0', env: { FIXTURE_FOREVER: '1', FIXTURE_IGNORE_TERM: '1', FIXTURE_STARTED: started } }],
    // trainer1 fails (and psrun sends SIGTERM) only once ps0 has its SIGTERM handler
    trainers: [{ name: 'trainer1', env: { FIXTURE_EXIT: '1', FIXTURE_AWAIT: join(started, 'ps0') } }],
  });
  const clock = new TimerClock();
  const stdout = new Capture();
  const run = psrun(f, ['--topology', topo, '--kill-grace', '0.3'], { clock, stdout });
  // The grace period starts when psrun stops the job (SIGTERM to ps0), and ps0 shrugs the SIGTERM off.
  t.is(await clock.nextTimer(), 300);
  await output(run, stdout, /^ps0 +\| ignoring SIGTERM$/m);
  const ps0 = f.children[0]!;
  clock.advance(299);
  t.is(clock.pending, 1, 'no SIGKILL before the grace period is over');
  t.true(running(ps0));
  clock.advance(1);
  const r = await run;
  t.is(r.code, 1);
  t.true(allExited(f));
  t.is(f.children[0]!.signalCode, 'SIGKILL');
  t.regex(r.stderr.text, /psrun: trainer1 \(trainer, rank 1\) exited with code 1/);
  t.regex(r.stdout.text, /ps0 +\| ignoring SIGTERM/);
});

test('a process killed by a signal is reported with the signal', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const topo = topologyFile(f, { strategy: 'partitioned', trainers: [{ name: 'a', env: { FIXTURE_FOREVER: '1', FIXTURE_STARTED: f.dir } }, { name: 'b', env: { FIXTURE_FOREVER: '1' } }] });
  const stdout = new Capture();
  const run = psrun(f, ['--topology', topo], { stdout });
  await ready(run, stdout, 'a');
  process.kill(Number(readFileSync(join(f.dir, 'a'), 'utf8')), 'SIGSEGV');
  const r = await run;
  t.is(r.code, 1);
  t.true(allExited(f));
  t.regex(r.stderr.text, /psrun: a \(trainer, rank 0\) exited with signal SIGSEGV; stopped the other processes/);
});

test('servers still running after the trainers finished are stopped, with a warning, and the job succeeds', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const topo = topologyFile(f, { strategy: 'remote-forward', servers: [{ name: 'ps0', env: { FIXTURE_FOREVER: '1' } }], trainers: 1 });
  const clock = new TimerClock();
  const run = psrun(f, ['--topology', topo, '--server-exit-grace', '0.2'], { clock });
  // The grace period starts when the trainer has exited 0; ps0 is left alone until it is over.
  t.is(await clock.nextTimer(), 200);
  const ps0 = f.children[0]!;
  clock.advance(199);
  t.is(clock.pending, 1, 'ps0 is not stopped before the grace period is over');
  t.true(running(ps0));
  clock.advance(1);
  const r = await run;
  t.is(r.code, 0, r.stderr.text);
  t.true(allExited(f));
  t.regex(r.stderr.text, /psrun: warning: ps0 was still running 0.2s after the trainers finished; stopped it/);
  t.regex(r.stdout.text, /^psrun remote-forward: epochs=1 samples=100 /m);
});

test('a trainer that exits 0 without writing its result fails the job with a clear line', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const topo = topologyFile(f, { strategy: 'partitioned', trainers: [{ name: 'w1', env: { FIXTURE_NO_RESULT: '1' } }] });
  const r = await psrun(f, ['--topology', topo]);
  t.is(r.code, 1);
  t.regex(r.stderr.text, /error: w1 exited 0 but wrote no result to .*w1\.json/);
});

test('a command that cannot be spawned is reported as that process failing', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const r = await psrun(f, ['--strategy', 'partitioned', '--trainers', '2'], { resolve: () => ({ command: join(f.dir, 'no-such-program'), args: [] }) });
  t.is(r.code, 1);
  t.true(allExited(f));
  t.regex(r.stderr.text, /psrun: trainer1 \(trainer, rank 0\) could not run \(spawn .*no-such-program ENOENT\)/);
});

test('interrupting psrun stops every child and exits 128 + the signal number', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const topo = topologyFile(f, { strategy: 'centralized', servers: 1, trainers: 2 });
  let launcher: Launcher | undefined;
  const stdout = new Capture();
  const run = psrun(f, ['--topology', topo], { stdout, env: { ...process.env, FIXTURE_FOREVER: '1' }, onLauncher: (l) => (launcher = l) });
  await ready(run, stdout, 'ps0', 'trainer1', 'trainer2');
  launcher!.interrupt('SIGINT');
  const r = await run;
  t.is(r.code, 130);
  t.true(allExited(f));
  t.is(f.children.length, 3);
  t.true(f.children.every((c) => c.signalCode === 'SIGTERM'));
  t.regex(r.stderr.text, /psrun: interrupted by SIGINT; stopped all processes/);
});

// The command lines, environments and failure reports, without starting a process.

test('argsFor: identity flags, the topology, the training flags, per-trainer --progress/--json, then the process\'s own args', (t) => {
  const topo = topologyFromFlags({ servers: 1, trainers: 2, strategy: 'centralized', consistency: 'ssp', staleness: 2, train: { epochs: 3, lr: 0.1 } });
  const l = new Launcher(topo);
  const [ps0, , trainer2] = l.processes;
  t.deepEqual(l.argsFor(ps0!, 'h', 7, '/r'), ['--name', 'ps0', '--rank', '0', '--world-size', '3', '--master', 'h:7', '--servers', '1',
    '--strategy', 'centralized', '--consistency', 'ssp', '--staleness', '2', '--epochs', '3', '--lr', '0.1']);
  t.deepEqual(l.argsFor(trainer2!, 'h', 7, '/r').slice(0, 2), ['--name', 'trainer2']);
  t.deepEqual(l.argsFor(trainer2!, 'h', 7, '/r').slice(-6), ['--lr', '0.1', '--progress', 'lines', '--json', join('/r', 'trainer2.json')]);
  const custom = parseTopology(JSON.stringify({ strategy: 'partitioned', trainers: [{ name: 'w', args: ['--extra'] }] }), 'x.json');
  const w = new Launcher(custom).processes[0]!;
  t.deepEqual(new Launcher(custom).argsFor(w, 'h', 7, '/r'), ['--name', 'w', '--rank', '0', '--world-size', '1', '--master', 'h:7', '--servers', '0',
    '--strategy', 'partitioned', '--consistency', 'sync', '--progress', 'lines', '--json', join('/r', 'w.json'), '--extra']);
});

test('envFor: the inherited environment plus torchrun\'s variables, the shards, then the process\'s own env', (t) => {
  const topo = parseTopology(JSON.stringify({ strategy: 'centralized', servers: [{ name: 'ps0', env: { EXTRA: 'yes', RANK: 'mine' } }, 'ps1'], trainers: 1, shards: { ps0: 0.5, ps1: 0.5 } }), 'x.json');
  const l = new Launcher(topo, { env: { PATH: '/bin', PSRPC_SHARDS: 'stale', MASTER_PORT: '1' } });
  const [ps0, ps1] = l.processes;
  t.deepEqual(l.envFor(ps0!, 'h', 7), {
    PATH: '/bin', MASTER_ADDR: 'h', MASTER_PORT: '7', RANK: 'mine', WORLD_SIZE: '3', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '3',
    PSRPC_NAME: 'ps0', PSRPC_SERVERS: '2', PSRPC_RESTART_COUNT: '0', PSRPC_SHARDS: '{"ps0":0.5,"ps1":0.5}', EXTRA: 'yes',
  });
  t.is(l.envFor(ps1!, 'h', 7).RANK, '1');
  t.is(l.envFor(ps1!, 'h', 7).EXTRA, undefined);
  // without shards in the topology an inherited PSRPC_SHARDS is not passed on
  const plain = new Launcher(topologyFromFlags({ strategy: 'partitioned', consistency: 'sync', train: {} }), { env: { PSRPC_SHARDS: 'stale' } });
  t.false('PSRPC_SHARDS' in plain.envFor(plain.processes[0]!, 'h', 7));
});

test('formatFailure and describeExit: the process, its code, signal or spawn error, and its last lines', (t) => {
  t.is(describeExit(3, null), 'code 3');
  t.is(describeExit(null, 'SIGKILL'), 'signal SIGKILL');
  t.deepEqual(formatFailure({ name: 'trainer2', role: 'trainer', rank: 2, code: 3, signal: null, lastLines: ['a', 'b'] }), [
    'psrun: trainer2 (trainer, rank 2) exited with code 3; stopped the other processes',
    'psrun: last 2 line(s) of trainer2:',
    '  trainer2 | a',
    '  trainer2 | b',
  ]);
  t.deepEqual(formatFailure({ name: 'ps0', role: 'ps-server', rank: 0, code: null, signal: 'SIGSEGV', lastLines: [] }), [
    'psrun: ps0 (ps-server, rank 0) exited with signal SIGSEGV; stopped the other processes',
    'psrun: ps0 wrote nothing',
  ]);
  t.is(formatFailure({ name: 'w', role: 'trainer', rank: 0, code: null, signal: null, error: 'spawn x ENOENT', lastLines: [] })[0],
    'psrun: w (trainer, rank 0) could not run (spawn x ENOENT); stopped the other processes');
});
