// Elastic trainers end to end, with the real ps-server and trainer commands: the job starts with
// --min-trainers of the world's trainer ranks, a trainer dies holding a batch (the fault hook, at a
// known step), a trainer with a rank never used before joins mid-run, and every batch of the job is
// trained exactly once (the first server's account of its batch queue, in the result).
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/launch/free-port.js';
import { CheckpointStore } from '../../src/server/index.js';
import { main } from '../../src/cli/psrun.js';
import { Capture } from './fixture.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Ran { code: number | null; signal: string | null; out: string }

const children = new Set<ChildProcess>();
test.after.always(() => { for (const c of children) c.kill('SIGKILL'); });

/** Runs a command; `seen` resolves once its output matches `until` (never without it). */
function run(bin: string, args: string[], env: Record<string, string> = {}, until?: RegExp): Promise<Ran> & { seen: Promise<void> } {
  let saw!: () => void;
  const seen = new Promise<void>((resolve) => { saw = resolve; });
  const done = new Promise<Ran>((resolve) => {
    const clean = { ...process.env };
    for (const k of ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'PSRPC_AUTH_TOKEN', 'PSRPC_REJOIN', 'PSRPC_RESTART_COUNT', 'PSRPC_FAULT_KILL_TRAINER_AT_STEP', 'PSRPC_FAULT_HOLD_TRAINER_AT_STEP']) delete clean[k];
    const child = spawn(process.execPath, [join(ROOT, 'bin', bin), ...args], { cwd: ROOT, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    const hear = (d: Buffer) => { out += d; if (until?.test(out)) saw(); };
    child.stdout!.on('data', hear);
    child.stderr!.on('data', hear);
    child.on('close', (code, signal) => { children.delete(child); resolve({ code, signal, out }); });
  });
  return Object.assign(done, { seen });
}

// 2048 samples / 64 = 32 batches an epoch, 4 epochs: 128 batches
const TOTAL = 128;

test('a trainer dies holding a batch and a new rank joins mid-run: every batch of the job is trained exactly once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-elastic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const master = `127.0.0.1:${await freePort()}`;
  // a world of 1 server and 3 trainer ranks; training starts with 2
  const job = ['--world-size', '4', '--servers', '1', '--master', master, '--strategy', 'centralized', '--consistency', 'async', '--min-trainers', '2',
    '--dataset', 'synthetic', '--train-samples', '2048', '--test-samples', '256', '--epochs', '4', '--batch-size', '64', '--progress', 'none',
    '--heartbeat-ms', '250', '--dead-after-ms', '1000', '--elastic-wait', '0'];
  const json = join(dir, 'result.json');
  const release = join(dir, 'release');
  const server = run('ps-server.js', ['--rank', '0', ...job]);
  const first = run('trainer.js', ['--rank', '1', ...job, '--json', json]);
  // trainer1 (rank 2) stops before the push of its 3rd batch leaves it, holding that batch (the
  // job cannot end meanwhile), and dies when the test says so
  const holding = run('trainer.js', ['--rank', '2', ...job], { PSRPC_FAULT_HOLD_TRAINER_AT_STEP: `trainer1:3:${release}` }, /holding at step 3/);
  await holding.seen;
  // trainer2 (rank 3), never used so far, joins the running job
  const late = run('trainer.js', ['--rank', '3', ...job, '--json', join(dir, 'late.json')], {}, /joined the running elastic job at version \d+/);
  await late.seen;
  writeFileSync(release, '');
  const dying = await holding;
  t.is(dying.signal, 'SIGKILL', dying.out);
  const [s, f, l] = await Promise.all([server, first, late]);
  t.is(s.code, 0, s.out);
  t.is(f.code, 0, f.out);
  t.is(l.code, 0, l.out);
  const result = JSON.parse(readFileSync(json, 'utf8'));
  const b = result.batches;
  t.is(b.perEpoch, 32);
  t.is(b.done, TOTAL, 'every batch done');
  t.is(b.requeued, 1, 'the batch the dead trainer held went back once');
  t.is(b.handed, TOTAL + 1);
  t.is(b.byTrainer.trainer1, 2, 'the dead trainer\'s first two batches count, once');
  t.is(Object.values(b.byTrainer as Record<string, number>).reduce((x, y) => x + y, 0), TOTAL, 'no batch twice, none skipped');
  // the result counts the trainers that finished: every batch but the dead one's two
  t.is(result.samples, (TOTAL - 2) * 64);
  t.true(result.testAccuracy > 0);
});

test('psrun --trainers 2:3: three trainers share the job\'s batches; the result accounts for every one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-elastic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(['node', 'psrun', '--servers', '1', '--trainers', '2:3', '--consistency', 'ssp', '--dataset', 'synthetic', '--train-samples', '2048',
    '--test-samples', '256', '--epochs', '2', '--batch-size', '64', '--progress', 'none', '--json', join(dir, 'r.json')], { stdout, stderr, handleSignals: false });
  t.is(code, 0, stdout.text + stderr.text);
  const r = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
  t.is(r.trainers, 3);
  t.is(r.batches.done, 64);
  t.is(r.batches.requeued, 0);
  t.is(Object.values(r.batches.byTrainer as Record<string, number>).reduce((x, y) => x + y, 0), 64);
  t.is(r.samples, 64 * 64, stdout.text + stderr.text);
});

test('elastic trainers are refused with a reason where they cannot work', async (t) => {
  const stderr = new Capture();
  const go = (args: string[]) => main(['node', 'psrun', '--dry-run', ...args], { stdout: new Capture(), stderr, handleSignals: false });
  t.is(await go(['--strategy', 'ddp', '--trainers', '1:2']), 1);
  t.regex(stderr.text, /--min-trainers \(elastic trainers\): only the centralized strategy/);
  t.is(await go(['--trainers', '3:2']), 1);
  t.regex(stderr.text, /--trainers MIN:MAX needs 1 <= MIN <= MAX/);
});

test('psrun --trainers 2:3, sync: a trainer that dies is let go, the round goes on without it, the others train its batch, and the result counts those that finished', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-elastic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const release = join(dir, 'release');
  let text = '';
  // the servers start once all three have joined, and sync round 0 needs a push of each: trainer3
  // holds its first batch until the test, seeing that in psrun's log as it comes, lets it die
  const watch = { write: (s: string) => { text += s; if (/holding at step 1/.test(text)) writeFileSync(release, ''); return true; } };
  const code = await main(['node', 'psrun', '--servers', '1', '--trainers', '2:3', '--consistency', 'sync', '--dataset', 'synthetic', '--train-samples', '2048',
    '--test-samples', '256', '--epochs', '2', '--batch-size', '64', '--progress', 'none', '--heartbeat-ms', '250', '--dead-after-ms', '1000', '--json', join(dir, 'r.json')],
  { stdout: watch, stderr: watch, handleSignals: false, env: { ...process.env, PSRPC_FAULT_HOLD_TRAINER_AT_STEP: `trainer3:1:${release}` } });
  t.is(code, 0, text);
  t.regex(text, /psrun: trainer3 \(trainer, rank 3\) exited with signal SIGKILL; the elastic job goes on with 2 trainer\(s\) \(at least 2\)/);
  const r = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
  t.is(r.batches.done, 64);
  t.is(r.batches.requeued, 1);
  t.is(r.batches.handed, 65);
  t.is(r.batches.byTrainer.trainer3, undefined, 'trainer3 completed none');
  t.is(r.samples, 64 * 64, 'the two trainers that finished trained every batch, the one trainer3 held included');
  t.deepEqual(r.perTrainer.map((p: { name: string }) => p.name), ['trainer1', 'trainer2']);
});

test('an elastic job checkpoints its batch queue: the server killed after checkpoint 8 restarts the job, which goes on with the batches not done there, each done once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-elastic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = new Capture();
  const code = await main(['node', 'psrun', '--servers', '1', '--trainers', '2:3', '--consistency', 'sync', '--dataset', 'synthetic', '--train-samples', '2048',
    '--test-samples', '256', '--epochs', '2', '--batch-size', '64', '--progress', 'none', '--checkpoint-dir', join(dir, 'ckpt'), '--checkpoint-steps', '4',
    '--max-restarts', '1', '--kill-grace', '2', '--json', join(dir, 'r.json')],
  { stdout: out, stderr: out, handleSignals: false, env: { ...process.env, PSRPC_FAULT_KILL_AFTER_CHECKPOINT: '8' } });
  t.is(code, 0, out.text);
  t.regex(out.text, /psrun: ps0 \(ps-server, rank 0\) exited with signal SIGKILL; restarting the job from the latest checkpoint/);
  t.regex(out.text, /ps0: resuming from checkpoint 8 /);
  const r = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
  t.is(r.restarts, 1);
  // 8 sync rounds of 3 trainers were done at the checkpoint; the rest after the restart
  t.is(r.batches.done, 64, 'every batch done once, counting those done before the checkpoint');
  t.is(Object.values(r.batches.byTrainer as Record<string, number>).reduce((x, y) => x + y, 0), 64);
  t.is(r.samples, (64 - 8 * 3) * 64, 'the last run trained the batches not done at the checkpoint');
  // the checkpoint's queue, as written: every batch below next is done but the pending ones
  const cp = (await new CheckpointStore(join(dir, 'ckpt'), { log: () => {} }).latest())!;
  const q = cp.batches()!;
  t.is(q.next, 64);
  t.deepEqual(q.pending, []);
  t.is(q.done, 64);
});

test('a checkpoint of fixed shares does not resume as an elastic job, nor an elastic one with fixed shares', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-elastic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const job = ['--servers', '1', '--dataset', 'synthetic', '--train-samples', '1024', '--test-samples', '128', '--epochs', '1', '--batch-size', '64', '--progress', 'none'];
  const go = async (d: string, extra: string[]) => {
    const out = new Capture();
    const code = await main(['node', 'psrun', ...job, '--checkpoint-dir', join(dir, d), ...extra], { stdout: out, stderr: out, handleSignals: false });
    return { code, text: out.text };
  };
  t.is((await go('fixed', ['--trainers', '2'])).code, 0);
  const asElastic = await go('fixed', ['--trainers', '1:2', '--resume']);
  t.is(asElastic.code, 1);
  t.regex(asElastic.text, /written by a job whose trainers had fixed shares of the data, not by an elastic one/);
  t.is((await go('elastic', ['--trainers', '1:2'])).code, 0);
  const asFixed = await go('elastic', ['--trainers', '2', '--resume', '--epochs', '2']);
  t.is(asFixed.code, 1);
  t.regex(asFixed.text, /checkpoint \d+ was written by an elastic job \(--min-trainers\), whose batches are handed out; resume it with --min-trainers/);
});
