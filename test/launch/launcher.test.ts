// The launcher with real child processes (a fixture script standing in for ps-server and trainer):
// the command-line contract, output multiplexing, failure handling, interruption and the result.
import test from 'ava';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main, type MainDeps } from '../../src/launch/cli.js';
import type { Launcher } from '../../src/launch/launcher.js';
import { Capture, makeFixture, type Fixture } from './fixture.js';

async function psrun(f: Fixture, args: string[], deps: MainDeps = {}) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(['node', 'psrun', '--progress', 'none', ...args], { resolve: f.resolve, spawn: f.spawn, stdout, stderr, handleSignals: false, ...deps });
  return { code, stdout, stderr };
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
  const r = await psrun(f, ['--topology', topo]);
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
  const topo = topologyFile(f, {
    strategy: 'centralized',
    servers: [{ name: 'ps0', env: { FIXTURE_FOREVER: '1', FIXTURE_IGNORE_TERM: '1' } }],
    trainers: [{ name: 'trainer1', env: { FIXTURE_EXIT: '1', FIXTURE_DELAY_MS: '300' } }],
  });
  const r = await psrun(f, ['--topology', topo, '--kill-grace', '0.3']);
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
  const r = await psrun(f, ['--topology', topo], {
    onLauncher: () => {
      const poll = setInterval(() => {
        if (!existsSync(join(f.dir, 'a'))) return;
        clearInterval(poll);
        process.kill(Number(readFileSync(join(f.dir, 'a'), 'utf8')), 'SIGSEGV');
      }, 20);
    },
  });
  t.is(r.code, 1);
  t.true(allExited(f));
  t.regex(r.stderr.text, /psrun: a \(trainer, rank 0\) exited with signal SIGSEGV; stopped the other processes/);
});

test('servers still running after the trainers finished are stopped, with a warning, and the job succeeds', async (t) => {
  const f = makeFixture();
  t.teardown(() => f.cleanup());
  const topo = topologyFile(f, { strategy: 'remote-forward', servers: [{ name: 'ps0', env: { FIXTURE_FOREVER: '1' } }], trainers: 1 });
  const r = await psrun(f, ['--topology', topo, '--server-exit-grace', '0.2']);
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
  const started = join(f.dir, 'started');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(started);
  const topo = topologyFile(f, { strategy: 'centralized', servers: 1, trainers: 2 });
  let launcher: Launcher | undefined;
  const poll = setInterval(() => {
    if (launcher && readdirSync(started).length === 3) {
      clearInterval(poll);
      launcher.interrupt('SIGINT');
    }
  }, 20);
  t.teardown(() => clearInterval(poll));
  const r = await psrun(f, ['--topology', topo], { env: { ...process.env, FIXTURE_FOREVER: '1', FIXTURE_STARTED: started }, onLauncher: (l) => (launcher = l) });
  t.is(r.code, 130);
  t.true(allExited(f));
  t.is(f.children.length, 3);
  t.true(f.children.every((c) => c.signalCode === 'SIGTERM'));
  t.regex(r.stderr.text, /psrun: interrupted by SIGINT; stopped all processes/);
});
