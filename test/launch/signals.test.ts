// psrun itself receiving SIGTERM or SIGINT (Ctrl-C): every child is stopped before psrun exits.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeFixture } from './fixture.js';

const runner = fileURLToPath(new URL('./run-psrun.ts', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
  test(`psrun stops every child on ${signal} and exits ${code}`, async (t) => {
    const f = makeFixture();
    const started = join(f.dir, 'started');
    mkdirSync(started);
    const pids = () => readdirSync(started).map((n) => Number(readFileSync(join(started, n), 'utf8')));
    t.teardown(() => {
      for (const pid of pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
      f.cleanup();
    });
    const topo = join(f.dir, 'topology.json');
    writeFileSync(topo, JSON.stringify({ strategy: 'centralized', servers: 1, trainers: 2 }));
    const psrun = spawn(process.execPath, ['--import', 'tsx', runner, '--topology', topo, '--progress', 'none'], {
      env: { ...process.env, PSRUN_FIXTURE_SCRIPT: join(f.dir, 'fixture.mjs'), FIXTURE_FOREVER: '1', FIXTURE_STARTED: started },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.teardown(() => { if (psrun.exitCode === null) psrun.kill('SIGKILL'); });
    let stderr = '';
    let stdout = '';
    psrun.stderr.on('data', (d) => (stderr += d));
    const exit = new Promise<number | null>((resolve) => psrun.once('exit', (c) => resolve(c)));
    // Each child prints `ready` (psrun forwards it as `NAME | ready`) after writing its pid file.
    const names = ['ps0', 'trainer1', 'trainer2'];
    const allReady = () => names.every((n) => new RegExp(`^${n} +\\| ready$`, 'm').test(stdout));
    const ready = new Promise<boolean>((resolve) => {
      psrun.stdout.on('data', (d) => {
        stdout += d;
        if (allReady()) resolve(true);
      });
      void exit.then(() => resolve(allReady()));
    });
    if (!(await ready)) return t.fail(`children did not start: ${stdout}${stderr}`);
    const children = pids();
    t.is(children.length, 3);
    t.true(children.every(alive));
    psrun.kill(signal);
    t.is(await exit, code, stderr);
    t.deepEqual(children.filter(alive), [], 'no child outlives psrun');
    t.regex(stderr, new RegExp(`psrun: ${signal}: stopping all processes`));
    t.regex(stderr, new RegExp(`psrun: interrupted by ${signal}; stopped all processes`));
  });
}
