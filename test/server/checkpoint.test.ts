// Checkpoints of the parameter servers: the files (safetensors layout, manifest, checksums, the
// last K kept), and a sync run resumed from one, with another number of servers, ending with the
// same parameters, bit for bit, as the run that was never interrupted.
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointStore, loadCheckpoint, PsClient, type LoadedCheckpoint, type ParameterSpec, type ShardSnapshot } from '../../src/server/index.js';
import { startPsWorld } from './ps-world.js';

const LAYOUT: ParameterSpec[] = [{ name: 'w', size: 10, shape: [2, 5] }, { name: 'b', size: 3, shape: [3] }];
const TOTAL = 13;

async function tempDir(t: { teardown(f: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'psrpc-ckpt-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function snap(id: number, shard: number, shards: number, start: number, length: number, fill: (i: number) => number): ShardSnapshot {
  const values = Float32Array.from({ length }, (_, i) => fill(start + i));
  const momentumBuffer = Float32Array.from({ length }, (_, i) => -fill(start + i));
  return {
    id, shard, shards, start, length, total: TOTAL, version: id, layout: LAYOUT, consistency: 'sync', trainers: 1, optimizer: 'sgd',
    values, state: { arrays: { momentumBuffer }, scalars: { steps: id } },
  };
}

/** A reader of the safetensors layout written from its description alone (not psrpc's decoder). */
function plainRead(bytes: Buffer): { header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>; meta: Record<string, string>; tensor(name: string): Float32Array } {
  const n = Number(bytes.readBigUInt64LE(0));
  const json = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const meta = json.__metadata__ ?? {};
  delete json.__metadata__;
  return {
    header: json,
    meta,
    tensor(name) {
      const [a, b] = json[name].data_offsets as [number, number];
      const raw = bytes.subarray(8 + n + a, 8 + n + b);
      const out = new Float32Array(raw.length / 4);
      for (let i = 0; i < out.length; i++) out[i] = raw.readFloatLE(i * 4);
      return out;
    },
  };
}

test('a shard file is plain safetensors: a reader of the layout finds the parameters, the optimizer state and where the slice sits', async (t) => {
  const dir = await tempDir(t);
  const store = new CheckpointStore(dir, { log: () => {} });
  const r = await store.writeShard(snap(7, 0, 1, 0, TOTAL, (i) => i * 0.5));
  t.true(r.completed);
  const bytes = await readFile(r.file);
  t.is(Number(bytes.readBigUInt64LE(0)) % 8, 0, 'the header is padded so the data starts 8-byte aligned');
  const f = plainRead(bytes);
  t.deepEqual(Object.keys(f.header).sort(), ['optimizer.momentumBuffer', 'parameters']);
  t.deepEqual(f.header.parameters!.shape, [TOTAL]);
  t.is(f.header.parameters!.dtype, 'F32');
  t.deepEqual([...f.tensor('parameters')], Array.from({ length: TOTAL }, (_, i) => i * 0.5));
  t.deepEqual([...f.tensor('optimizer.momentumBuffer')], Array.from({ length: TOTAL }, (_, i) => -i * 0.5));
  t.is(f.meta['psrpc.start'], '0');
  t.is(f.meta['psrpc.version'], '7');
  t.deepEqual(JSON.parse(f.meta['psrpc.layout']!), LAYOUT);
  const manifest = JSON.parse(await readFile(join(dir, 'ckpt-000000007', 'manifest.json'), 'utf8'));
  t.deepEqual(manifest.layout.map((p: { name: string; offset: number }) => [p.name, p.offset]), [['w', 0], ['b', 10]]);
  t.deepEqual(manifest.shards.map((s: { file: string; start: number; length: number }) => [s.file, s.start, s.length]), [['shard-0-of-1.safetensors', 0, TOTAL]]);
});

test('the manifest is written by the shard that completes the set; a set missing a shard is skipped, saying so', async (t) => {
  const dir = await tempDir(t);
  const lines: string[] = [];
  const store = new CheckpointStore(dir, { log: (l) => lines.push(l) });
  const fill = (i: number) => i + 1;
  t.false((await store.writeShard(snap(5, 1, 2, 7, 6, fill))).completed);
  t.true((await store.writeShard(snap(5, 0, 2, 0, 7, fill))).completed);
  // checkpoint 9: only shard 0 of 2 reached the disk (its server died)
  t.false((await store.writeShard(snap(9, 0, 2, 0, 7, (i) => i * 100))).completed);
  const cp = await store.latest();
  t.is(cp?.id, 5);
  t.is(lines.length, 1);
  t.regex(lines[0]!, /skipping checkpoint .*ckpt-000000009: incomplete \(no manifest\.json/);
  // resharded: elements [4, 10) span both old shards
  const r = cp!.read(4, 6);
  t.deepEqual([...r.values], [5, 6, 7, 8, 9, 10]);
  t.deepEqual([...r.state!.arrays.momentumBuffer!], [-5, -6, -7, -8, -9, -10]);
  t.deepEqual(r.state!.scalars, { steps: 5 });
  t.throws(() => cp!.read(10, 4), { message: /outside its 13 parameters/ });
});

test('a corrupt or truncated shard fails its checksum or its header and the previous checkpoint is used', async (t) => {
  const dir = await tempDir(t);
  const lines: string[] = [];
  const store = new CheckpointStore(dir, { log: (l) => lines.push(l) });
  await store.writeShard(snap(1, 0, 1, 0, TOTAL, (i) => i));
  const two = await store.writeShard(snap(2, 0, 1, 0, TOTAL, (i) => 2 * i));
  const three = await store.writeShard(snap(3, 0, 1, 0, TOTAL, (i) => 3 * i));
  const bytes = await readFile(three.file);
  bytes[bytes.length - 3]! ^= 0x40; // one bit of the data flipped
  await writeFile(three.file, bytes);
  await writeFile(two.file, (await readFile(two.file)).subarray(0, 100)); // torn
  const cp = await store.latest();
  t.is(cp?.id, 1);
  t.deepEqual([...cp!.read(0, 3).values], [0, 1, 2]);
  t.is(lines.length, 2);
  t.regex(lines[0]!, /ckpt-000000003: .*checksum mismatch .*corrupt/);
  t.regex(lines[1]!, /ckpt-000000002: .*(past the end|does not fit|truncated)/);
  await t.throwsAsync(loadCheckpoint(join(dir, 'ckpt-000000003')), { message: /checksum mismatch/ });
});

test('only the newest K complete checkpoints are kept, with anything older removed', async (t) => {
  const dir = await tempDir(t);
  const store = new CheckpointStore(dir, { keep: 2, log: () => {} });
  await store.writeShard(snap(1, 0, 2, 0, 7, (i) => i)); // never completed
  for (const id of [2, 3, 4]) {
    await store.writeShard(snap(id, 0, 2, 0, 7, (i) => i));
    await store.writeShard(snap(id, 1, 2, 7, 6, (i) => i));
  }
  t.deepEqual((await readdir(dir)).sort(), ['ckpt-000000003', 'ckpt-000000004']);
  t.throws(() => new CheckpointStore(dir, { keep: 0 }), { message: /keep must be an integer >= 1/ });
});

/** Deterministic gradients: trainer k's at step s. */
function gradient(out: Float32Array, k: number, s: number): void {
  for (let i = 0; i < out.length; i++) out[i] = Math.sin(s * 13 + i * 0.7 + k * 2.1);
}

/** Trains `steps` sync steps on a world of `servers` servers and 2 trainers; returns the final parameters. */
async function train(servers: number, from: number, to: number, opts: { store?: CheckpointStore; restore?: LoadedCheckpoint; checkpointAt?: number }): Promise<Float32Array> {
  const restore = opts.restore;
  const world = await startPsWorld(servers, 2, {
    consistency: 'sync', optimizer: { kind: 'sgd', lr: 0.1, momentum: 0.9 },
    ...(opts.store ? { checkpoints: opts.store } : {}), ...(restore ? { restore } : {}),
  });
  try {
    const clients = world.trainerAgents.map((a) => {
      const params = Float32Array.from({ length: TOTAL }, (_, i) => i / 10);
      return new PsClient(a, world.serverAgents.map((s) => s.name), LAYOUT, params, new Float32Array(TOTAL));
    });
    await Promise.all(clients.map((c) => c.join()));
    for (const c of clients) if (c.version !== from) throw new Error(`joined at version ${c.version}, expected ${from}`);
    for (let s = from; s < to; s++) {
      await Promise.all(clients.map((c, k) => {
        gradient(c.grads, k, s);
        return c.pushPull(1, k === 0 && s + 1 === opts.checkpointAt ? s + 1 : -1);
      }));
    }
    await Promise.all(world.servers.map((p) => p.flushCheckpoints()));
    return clients[0]!.params.slice();
  } finally {
    await world.stop();
  }
}

test('a sync run resumed from its checkpoint on 3 servers (written by 2) ends with the parameters of the run never interrupted, bit for bit', async (t) => {
  const dir = await tempDir(t);
  const reference = await train(1, 0, 8, {});
  // the same run on 2 servers, checkpointed after step 3 (momentum buffers and all), then stopped
  await train(2, 0, 5, { store: new CheckpointStore(dir, { log: () => {} }), checkpointAt: 3 });
  const cp = await loadCheckpoint(join(dir, 'ckpt-000000003'));
  t.is(cp.manifest.shards.length, 2);
  t.true(cp.manifest.shards.every((s) => s.version === 3));
  // resumed on 3 servers: each reads its range from the two old shards
  const latest = (await new CheckpointStore(dir, { log: () => {} }).latest())!;
  t.is(latest.id, 3);
  const resumed = await train(3, 3, 8, { restore: latest });
  t.deepEqual([...resumed], [...reference]);
  // and the optimizer state mattered: the checkpoint's values without their momentum end elsewhere
  const valuesOnly: LoadedCheckpoint = { ...latest, read: (a, b) => ({ ...latest.read(a, b), state: null }) };
  t.notDeepEqual([...await train(3, 3, 8, { restore: valuesOnly })], [...reference]);
});

test('a checkpoint of another model is refused at the join, naming the difference, and the server stays uninitialised', async (t) => {
  const dir = await tempDir(t);
  const store = new CheckpointStore(dir, { log: () => {} });
  await store.writeShard(snap(4, 0, 1, 0, TOTAL, (i) => i));
  const restore = (await store.latest())!;
  const world = await startPsWorld(1, 1, { consistency: 'sync', optimizer: { kind: 'sgd', lr: 0.1 }, restore });
  t.teardown(() => world.stop());
  const other: ParameterSpec[] = [{ name: 'w', size: 12, shape: [3, 4] }, { name: 'b', size: 1, shape: [1] }];
  const c = new PsClient(world.trainerAgents[0]!, ['ps0'], other, new Float32Array(TOTAL), new Float32Array(TOTAL));
  await t.throwsAsync(c.join(), { message: /not the one checkpoint 4 .* was written for/ });
  t.is(world.servers[0]!.layout(), null);
});

test('a checkpoint of a job with another number of trainers is refused at the join (their epochs would not line up)', async (t) => {
  const dir = await tempDir(t);
  const store = new CheckpointStore(dir, { log: () => {} });
  await store.writeShard(snap(4, 0, 1, 0, TOTAL, (i) => i)); // written by a job of 1 trainer
  const world = await startPsWorld(1, 2, { consistency: 'sync', optimizer: { kind: 'sgd', lr: 0.1 }, restore: (await store.latest())! });
  t.teardown(() => world.stop());
  const c = new PsClient(world.trainerAgents[0]!, ['ps0'], LAYOUT, new Float32Array(TOTAL), new Float32Array(TOTAL));
  await t.throwsAsync(c.join(), { message: /checkpoint 4 was written by a job of 1 trainer\(s\); resume it with as many \(this one has 2; the number of servers may change\)/ });
  t.is(world.servers[0]!.layout(), null);
});
