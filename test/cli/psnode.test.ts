// The `psnode` command: the flags it computes from each scheduler's environment, its one-line
// refusals, and real small worlds started as child processes with exactly the variables Slurm's
// srun, torchrun and a Kubernetes Indexed Job give each rank (plus what the docs' scripts export).
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main, type PsnodeRole } from '../../src/cli/psnode.js';
import { freePort } from '../../src/launch/free-port.js';

const PSNODE = fileURLToPath(new URL('../../src/cli/psnode-main.ts', import.meta.url));

class Capture {
  text = '';
  write(s: string) {
    this.text += s;
    return true;
  }
}

/** Runs psnode in this process with `env`; the role's command is recorded instead of run. */
async function dry(env: Record<string, string>, args: string[]) {
  const stderr = new Capture();
  const runs: Array<{ role: PsnodeRole; argv: string[] }> = [];
  const code = await main(['node', 'psnode', ...args], { env, stderr, run: async (role, argv) => { runs.push({ role, argv }); return 0; } });
  return { code, stderr: stderr.text, runs };
}

const SLURM = { SLURM_JOB_ID: '7', SLURM_PROCID: '3', SLURM_LOCALID: '1', SLURM_NTASKS: '4', SLURM_JOB_NODELIST: 'node[01-02]', SLURM_NODELIST: 'node[01-02]' };

test('under srun: prints what it found and runs the trainer with the computed flags, then the user\'s unchanged', async (t) => {
  const r = await dry({ ...SLURM, PSRPC_SERVERS: '2' }, ['--strategy', 'centralized', '--epochs', '1', '--json', 'r.json']);
  t.is(r.code, 0);
  t.is(r.stderr, 'psnode: slurm rank 3 of 4 (trainer trainer2), master node01:29500\n');
  t.deepEqual(r.runs, [{ role: 'trainer', argv: ['node', 'trainer', '--name', 'trainer2', '--rank', '3', '--world-size', '4', '--master', 'node01:29500', '--servers', '2',
    '--strategy', 'centralized', '--epochs', '1', '--json', 'r.json'] }]);
});

test('a server rank runs ps-server; psrun\'s default strategy is added when none is given', async (t) => {
  const r = await dry({ ...SLURM, SLURM_PROCID: '0', PSRPC_SERVERS: '1' }, ['--epochs', '1']);
  t.is(r.code, 0);
  t.is(r.runs[0]!.role, 'server');
  t.deepEqual(r.runs[0]!.argv.slice(1), ['ps-server', '--name', 'ps0', '--rank', '0', '--world-size', '4', '--master', 'node01:29500', '--servers', '1', '--strategy', 'centralized', '--epochs', '1']);
});

test('--metrics-port reaches server ranks only, so one command line serves every rank', async (t) => {
  const env = { JOB_COMPLETION_INDEX: '0', PSRPC_WORLD_SIZE: '3', PSRPC_MASTER: 'job-0.svc:29500', PSRPC_SERVERS: '1' };
  const server = await dry(env, ['--metrics-port', '9100', '--epochs', '1']);
  t.is(server.runs[0]!.role, 'server');
  t.deepEqual(server.runs[0]!.argv.slice(-4), ['--metrics-port', '9100', '--epochs', '1']);
  for (const args of [['--metrics-port', '9100', '--epochs', '1'], ['--metrics-port=9100', '--epochs', '1']]) {
    const trainer = await dry({ ...env, JOB_COMPLETION_INDEX: '2' }, args);
    t.is(trainer.runs[0]!.role, 'trainer');
    t.false(trainer.runs[0]!.argv.some((a) => a.startsWith('--metrics-port')));
    t.deepEqual(trainer.runs[0]!.argv.slice(-2), ['--epochs', '1']);
  }
});

test('a peer strategy makes every rank a trainer', async (t) => {
  const r = await dry({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: '10.1.2.3', MASTER_PORT: '29500' }, ['--strategy', 'ddp']);
  t.is(r.code, 0);
  t.is(r.stderr, 'psnode: torchrun rank 0 of 2 (trainer trainer1), master 10.1.2.3:29500\n');
  t.is(r.runs[0]!.role, 'trainer');
  t.true(r.runs[0]!.argv.join(' ').includes('--servers 0'));
});

const refusals: Array<[string, Record<string, string>, string[], RegExp]> = [
  ['no cluster environment', { PATH: '/bin' }, ['--epochs', '1'], /^error: psnode found no cluster environment; it reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT .*SLURM_PROCID.*JOB_COMPLETION_INDEX.*PSRPC_RANK, PSRPC_WORLD_SIZE, PSRPC_MASTER\n$/],
  ['a malformed variable', { ...SLURM, SLURM_NTASKS: 'four' }, [], /^error: SLURM_NTASKS='four' is not a positive integer\n$/],
  ['a role contradicting the rank', { ...SLURM, PSRPC_SERVERS: '1', PSRPC_ROLE: 'server' }, [], /^error: PSRPC_ROLE='server' contradicts rank 3/],
  ['--rank by hand', SLURM, ['--rank', '1'], /^error: psnode takes --rank from the scheduler .*; leave --rank out\n$/],
  ['--master by hand', SLURM, ['--master=h:1'], /^error: psnode takes --master from the scheduler/],
  ['--servers by hand', SLURM, ['--servers', '1'], /^error: psnode takes --servers from PSRPC_SERVERS/],
  ['--name by hand', SLURM, ['--name', 'x'], /^error: psnode takes --name from PSRPC_NAME/],
  ['a one-process strategy', SLURM, ['--strategy', 'local'], /^error: psnode runs the strategies with ranks \(.*centralized.*\); --strategy local runs in one process: use trainer\n$/],
  ['servers for a peer strategy', { ...SLURM, PSRPC_SERVERS: '1' }, ['--strategy', 'partitioned'], /^error: PSRPC_SERVERS='1' but strategy partitioned has no separate servers/],
  ['a bad flag', SLURM, ['--epochs', '0'], /--epochs must be an integer >= 1, got '0'/],
];

for (const [what, env, args, message] of refusals) {
  test(`refuses with one line and exit 1, running nothing: ${what}`, async (t) => {
    const r = await dry(env, args);
    t.is(r.code, 1);
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.deepEqual(r.runs, []);
  });
}

// ---- real worlds ----------------------------------------------------------------------------------

/** Every variable a scheduler or psrun could have left in this test's own environment. */
const PLACE_VARS = /^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|GROUP_RANK|ROLE_RANK|MASTER_ADDR|MASTER_PORT|JOB_COMPLETION_INDEX|SLURM_.*|PET_.*|PSRPC_.*|TORCHELASTIC_.*)$/;

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!PLACE_VARS.test(k)) env[k] = v;
  return { ...env, ...extra };
}

const live = new Set<ChildProcess>();
// a child still running when the test process leaves (a failed or timed-out test) is killed
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function psnode(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', PSNODE, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    child.on('close', (code) => {
      live.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

const TINY = ['--dataset', 'synthetic', '--train-samples', '512', '--test-samples', '128', '--hidden', '16', '--batch-size', '32', '--epochs', '1', '--progress', 'none'];

/**
 * Starts one psnode per rank with its scheduler's environment and the same flags (each trainer
 * its own --json, as `--json r-$SLURM_PROCID.json` gives it), waits for all, and returns the
 * first trainer's result.
 */
async function world(t: import('ava').ExecutionContext, envs: Array<Record<string, string>>, args: string[], firstTrainer: number) {
  const dir = mkdtempSync(join(tmpdir(), 'psnode-'));
  t.teardown(() => {
    for (const c of live) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const runs = await Promise.all(envs.map((env, rank) => psnode([...args, ...TINY, '--json', join(dir, `r-${rank}.json`)], env)));
  for (const [rank, r] of runs.entries()) t.is(r.code, 0, `rank ${rank}: ${r.stderr}`);
  return { runs, result: JSON.parse(readFileSync(join(dir, `r-${firstTrainer}.json`), 'utf8')) };
}

test.serial('a Slurm world (srun --ntasks=3, PSRPC_SERVERS=1): one ps-server and two trainers train together', async (t) => {
  const port = String(await freePort());
  const envs = [0, 1, 2].map((rank) => ({
    SLURM_JOB_ID: '4242', SLURM_JOB_NAME: 'psrpc', SLURM_NTASKS: '3', SLURM_NPROCS: '3', SLURM_NNODES: '1', SLURM_JOB_NUM_NODES: '1',
    SLURM_JOB_NODELIST: 'localhost', SLURM_NODELIST: 'localhost', SLURM_STEP_NODELIST: 'localhost', SLURMD_NODENAME: 'localhost',
    SLURM_STEP_ID: '0', SLURM_STEP_NUM_TASKS: '3', SLURM_TASKS_PER_NODE: '3', SLURM_NODEID: '0',
    SLURM_PROCID: String(rank), SLURM_LOCALID: String(rank), SLURM_GTIDS: '0,1,2',
    // what the sbatch script exports (docs/CLUSTERS.md)
    PSRPC_SERVERS: '1', MASTER_PORT: port,
  }));
  const { runs, result } = await world(t, envs, ['--strategy', 'centralized'], 1);
  t.regex(runs[0]!.stderr, new RegExp(`^psnode: slurm rank 0 of 3 \\(server ps0\\), master localhost:${port}$`, 'm'));
  t.regex(runs[2]!.stderr, new RegExp(`^psnode: slurm rank 2 of 3 \\(trainer trainer2\\), master localhost:${port}$`, 'm'));
  t.regex(runs[0]!.stdout, /^ps-server ps0: steps=\d+ .*trainers=2 dropped=0$/m);
  t.is(result.strategy, 'centralized');
  t.is(result.trainers, 2);
  t.true(result.samples > 0, `samples ${result.samples}`);
});

test.serial('a torchrun world (2 partitioned workers, torchrun\'s agent store on MASTER_PORT): the rendezvous takes the next port', async (t) => {
  const port = await freePort();
  const envs = [0, 1].map((rank) => ({
    LOCAL_RANK: String(rank), RANK: String(rank), GROUP_RANK: '0', ROLE_RANK: String(rank), ROLE_NAME: 'default',
    LOCAL_WORLD_SIZE: '2', WORLD_SIZE: '2', GROUP_WORLD_SIZE: '1', ROLE_WORLD_SIZE: '2',
    MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port - 1),
    TORCHELASTIC_RESTART_COUNT: '0', TORCHELASTIC_MAX_RESTARTS: '0', TORCHELASTIC_RUN_ID: 'none', TORCHELASTIC_USE_AGENT_STORE: 'True',
  }));
  const { runs, result } = await world(t, envs, ['--strategy', 'partitioned'], 0);
  t.regex(runs[1]!.stderr, new RegExp(`^psnode: torchrun rank 1 of 2 \\(trainer trainer2\\), master 127\\.0\\.0\\.1:${port}$`, 'm'));
  t.is(result.strategy, 'partitioned');
  t.is(result.trainers, 2);
  t.true(result.samples > 0, `samples ${result.samples}`);
});

test.serial('a Kubernetes Indexed Job (3 pods, one manifest, --metrics-port for the server): one ps-server and two trainers', async (t) => {
  const port = await freePort();
  const envs = [0, 1, 2].map((index) => ({
    JOB_COMPLETION_INDEX: String(index), HOSTNAME: `psrpc-${index}`, KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443',
    // the manifest's env (docs/CLUSTERS.md), with the test's host for the headless Service's name
    PSRPC_WORLD_SIZE: '3', PSRPC_SERVERS: '1', PSRPC_MASTER: `127.0.0.1:${port}`,
  }));
  const { runs, result } = await world(t, envs, ['--strategy', 'centralized', '--metrics-port', '0'], 1);
  t.regex(runs[0]!.stderr, /^psnode: kubernetes rank 0 of 3 \(server ps0\)/m);
  t.regex(runs[0]!.stderr, /ps0: metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/);
  t.regex(runs[1]!.stderr, /^psnode: kubernetes rank 1 of 3 \(trainer trainer1\)/m);
  t.is(result.trainers, 2);
  t.true(result.samples > 0, `samples ${result.samples}`);
  t.is(result.testSamples, 128);
});
