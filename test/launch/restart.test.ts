// psrun --max-restarts with --checkpoint-dir, end to end with the real ps-server and trainer: a
// process dies at a known point (the fault hooks PSRPC_FAULT_KILL_AFTER_CHECKPOINT and
// PSRPC_FAULT_KILL_TRAINER_AT_STEP: no clock is raced), psrun starts the job again with --resume,
// and the sync run ends with the parameters of the run that was never interrupted, bit for bit.
import test from 'ava';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/psrun.js';
import { checkpointJob } from './checkpoint-job.js';
import { Capture } from './fixture.js';

// 2 trainers x 512 samples / 64 = 8 steps an epoch, 16 in all; a checkpoint every 4 steps
const JOB = ['--servers', '1', '--trainers', '2', '--dataset', 'synthetic', '--train-samples', '1024', '--test-samples', '256', '--epochs', '2',
  '--batch-size', '64', '--momentum', '0.9', '--checkpoint-steps', '4', '--progress', 'none', '--kill-grace', '2'];

const run = checkpointJob(JOB);

const finalShard = (dir: string) => readFileSync(join(dir, 'ckpt', 'ckpt-000000016', 'shard-0-of-1.safetensors'));

let reference: Buffer | undefined;
async function uninterrupted(): Promise<Buffer> {
  if (reference) return reference;
  const dir = mkdtempSync(join(tmpdir(), 'psrun-ref-'));
  try {
    const r = await run(dir, []);
    if (r.code !== 0) throw new Error(r.out);
    // the last 3 complete checkpoints are kept
    if (readdirSync(join(dir, 'ckpt')).join() !== 'ckpt-000000008,ckpt-000000012,ckpt-000000016') throw new Error(readdirSync(join(dir, 'ckpt')).join());
    return (reference = finalShard(dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test.serial('the server killed right after checkpoint 8: the job restarts, resumes at step 8 and ends as the uninterrupted run, bit for bit', async (t) => {
  const ref = await uninterrupted();
  const dir = mkdtempSync(join(tmpdir(), 'psrun-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await run(dir, ['--max-restarts', '1'], { PSRPC_FAULT_KILL_AFTER_CHECKPOINT: '8' });
  t.is(r.code, 0, r.out);
  t.regex(r.out, /psrun: ps0 \(ps-server, rank 0\) exited with signal SIGKILL; restarting the job from the latest checkpoint in .* \(restart 1 of 1\)/);
  t.regex(r.out, /ps0: resuming from checkpoint 8 /);
  t.regex(r.out, /trainer1: resuming at step 8 \(epoch 1, batch 0\)/);
  t.is(r.result.restarts, 1);
  t.true(finalShard(dir).equals(ref), 'the final parameters and optimizer state equal the uninterrupted run\'s');
});

test.serial('a trainer killed before step 11 is restarted alone: the server and the other trainer wait, it goes on at step 10, and the run ends as the uninterrupted one, bit for bit', async (t) => {
  const ref = await uninterrupted();
  const dir = mkdtempSync(join(tmpdir(), 'psrun-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await run(dir, ['--max-restarts', '2'], { PSRPC_FAULT_KILL_TRAINER_AT_STEP: 'trainer2:11' });
  t.is(r.code, 0, r.out);
  t.regex(r.out, /psrun: trainer2 \(trainer, rank 2\) exited with signal SIGKILL; restarting it alone \(restart 1 of 2\): the others wait for it up to 60 s/);
  // its 10 pushes were applied; the 11th never left it
  t.regex(r.out, /trainer2: rejoined the running job \(restart 1\): resuming at step 10 \(epoch 1, batch 2\)/);
  // nothing else was restarted: the server never resumed from a checkpoint, the job never restarted whole
  t.notRegex(r.out, /restarting the job|resuming from checkpoint/);
  t.is(r.result.restarts, 1);
  t.true(finalShard(dir).equals(ref));
});

test.serial('async: a trainer restarted alone goes on after its own pushes the server applied', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrun-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await run(dir, ['--consistency', 'async', '--max-restarts', '1', '--restart-timeout', '120'], { PSRPC_FAULT_KILL_TRAINER_AT_STEP: 'trainer1:6' });
  t.is(r.code, 0, r.out);
  t.regex(r.out, /psrun: trainer1 \(trainer, rank 1\) exited with signal SIGKILL; restarting it alone \(restart 1 of 1\): the others wait for it up to 120 s/);
  t.regex(r.out, /trainer1: rejoined the running job \(restart 1\): resuming at step 5 \(epoch 0, batch 5\)/);
  t.is(r.result.restarts, 1);
  t.is(r.result.trainers, 2);
  // the result counts the last process of each trainer: trainer0's 16 steps and the new trainer1's 11
  t.is(r.result.samples, (16 + 11) * 64);
  t.true(r.result.testAccuracy > 0);
});

test.serial('without --max-restarts a failure still stops the job; the checkpoints written stay for a later --resume', async (t) => {
  const ref = await uninterrupted();
  const dir = mkdtempSync(join(tmpdir(), 'psrun-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const failed = await run(dir, [], { PSRPC_FAULT_KILL_AFTER_CHECKPOINT: '12' });
  t.is(failed.code, 1);
  t.regex(failed.out, /ps0 \(ps-server, rank 0\) exited with signal SIGKILL; stopped the other processes/);
  // the user runs it again with --resume: it goes on from checkpoint 12
  const resumed = await run(dir, ['--resume']);
  t.is(resumed.code, 0, resumed.out);
  t.regex(resumed.out, /ps0: resuming from checkpoint 12 /);
  t.true(finalShard(dir).equals(ref));
});

// ddp: rank 0 writes the replica, every rank reads it back (each has its own optimizer state)
const DDP = ['--strategy', 'ddp', '--servers', '0', '--trainers', '2', '--dataset', 'synthetic', '--train-samples', '1024', '--test-samples', '256',
  '--epochs', '2', '--batch-size', '64', '--momentum', '0.9', '--checkpoint-steps', '4', '--progress', 'none', '--kill-grace', '2'];

async function runDdp(dir: string, extra: string[], env: Record<string, string> = {}) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(['node', 'psrun', ...DDP, '--checkpoint-dir', join(dir, 'ckpt'), ...extra], { stdout, stderr, handleSignals: false, env: { ...process.env, ...env } });
  return { code, out: stdout.text + stderr.text };
}

test.serial('ddp: a rank killed before step 7 restarts the job from the newest complete checkpoint (4), which ends as the uninterrupted run, bit for bit', async (t) => {
  const ref = mkdtempSync(join(tmpdir(), 'psrun-ddp-ref-'));
  const dir = mkdtempSync(join(tmpdir(), 'psrun-ddp-'));
  t.teardown(() => { rmSync(ref, { recursive: true, force: true }); rmSync(dir, { recursive: true, force: true }); });
  const a = await runDdp(ref, []);
  t.is(a.code, 0, a.out);
  const b = await runDdp(dir, ['--max-restarts', '1'], { PSRPC_FAULT_KILL_TRAINER_AT_STEP: 'trainer2:7' });
  t.is(b.code, 0, b.out);
  t.regex(b.out, /psrun: trainer2 \(trainer, rank 1\) exited with signal SIGKILL; restarting the job/);
  // checkpoint 4 is on disk unless rank 0's write of it had not finished when the job was stopped
  // (a very loaded machine: its flush on failure or SIGTERM ran out of --kill-grace); then from 0.
  // Either way the run ends bit for bit as the uninterrupted one
  t.regex(b.out, /trainer1: (resuming from checkpoint 4 |--resume: no complete checkpoint)/);
  t.true(finalShard(dir).equals(finalShard(ref)));
});

// partitioned, zero and fsdp: every rank writes shards of its own (its shard server's, the
// optimizer segments it owns, its units' shards), so the killed rank's queued shards of the newest checkpoint die with it, and a
// set missing a shard is skipped (said): the job resumes from 8 or 4 (from 0 if even 4's shards
// were still being written: a very loaded machine); every way ends the same
const sharded: Array<[string, string]> = [
  ['partitioned', 'every worker writes its shard server\'s shard'],
  ['zero', 'every rank writes the optimizer shards it owns'],
  ['fsdp', 'every rank writes the unit shards it owns (parameters and optimizer state)'],
];
for (const [strategy, what] of sharded) {
  test.serial(`${strategy}: ${what}; a rank killed before step 11 restarts the job from the newest complete checkpoint, ending as the uninterrupted run, bit for bit`, async (t) => {
    const args = DDP.map((a) => (a === 'ddp' ? strategy : a));
    const ref = mkdtempSync(join(tmpdir(), `psrun-${strategy}-ref-`));
    const dir = mkdtempSync(join(tmpdir(), `psrun-${strategy}-`));
    t.teardown(() => { rmSync(ref, { recursive: true, force: true }); rmSync(dir, { recursive: true, force: true }); });
    const run = async (d: string, extra: string[], env: Record<string, string> = {}) => {
      const stdout = new Capture();
      const stderr = new Capture();
      const code = await main(['node', 'psrun', ...args, '--checkpoint-dir', join(d, 'ckpt'), ...extra], { stdout, stderr, handleSignals: false, env: { ...process.env, ...env } });
      return { code, out: stdout.text + stderr.text };
    };
    const a = await run(ref, []);
    t.is(a.code, 0, a.out);
    const files = (d: string) => readdirSync(join(d, 'ckpt', 'ckpt-000000016')).filter((f) => f.endsWith('.safetensors')).sort();
    t.true(files(ref).length >= 2, files(ref).join());
    const b = await run(dir, ['--max-restarts', '1'], { PSRPC_FAULT_KILL_TRAINER_AT_STEP: 'trainer2:11' });
    t.is(b.code, 0, b.out);
    t.regex(b.out, /restarting the job from the latest checkpoint/);
    t.regex(b.out, /trainer1: (resuming from checkpoint (8|4) |--resume: no complete checkpoint)/);
    for (const f of files(ref)) t.true(readFileSync(join(dir, 'ckpt', 'ckpt-000000016', f)).equals(readFileSync(join(ref, 'ckpt', 'ckpt-000000016', f))), f);
  });
}

test.serial('a job checkpointed on 2 servers resumes on 3 and ends with the parameters of an uninterrupted 1-server run, bit for bit', async (t) => {
  const { loadCheckpoint } = await import('../../src/server/index.js');
  const base = JOB.filter((_, i, a) => a[i] !== '--servers' && a[i - 1] !== '--servers' && a[i] !== '--epochs' && a[i - 1] !== '--epochs');
  const go = async (d: string, extra: string[]) => {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(['node', 'psrun', ...base, '--checkpoint-dir', join(d, 'ckpt'), ...extra], { stdout, stderr, handleSignals: false });
    return { code, out: stdout.text + stderr.text };
  };
  const ref = mkdtempSync(join(tmpdir(), 'psrun-reshard-ref-'));
  const dir = mkdtempSync(join(tmpdir(), 'psrun-reshard-'));
  t.teardown(() => { rmSync(ref, { recursive: true, force: true }); rmSync(dir, { recursive: true, force: true }); });
  const a = await go(ref, ['--servers', '1', '--epochs', '2']);
  t.is(a.code, 0, a.out);
  // the first epoch on 2 servers (its checkpoint at the end: step 8), the second on 3
  const b = await go(dir, ['--servers', '2', '--epochs', '1']);
  t.is(b.code, 0, b.out);
  const c = await go(dir, ['--servers', '3', '--epochs', '2', '--resume']);
  t.is(c.code, 0, c.out);
  t.regex(c.out, /ps2: resuming from checkpoint 8 /);
  const one = await loadCheckpoint(join(ref, 'ckpt', 'ckpt-000000016'));
  const three = await loadCheckpoint(join(dir, 'ckpt', 'ckpt-000000016'));
  t.is(three.manifest.shards.length, 3);
  const total = one.manifest.total;
  const [x, y] = [one.read(0, total), three.read(0, total)];
  t.deepEqual([...y.values], [...x.values]);
  t.deepEqual([...y.state!.arrays.momentumBuffer!], [...x.state!.arrays.momentumBuffer!]);
});
