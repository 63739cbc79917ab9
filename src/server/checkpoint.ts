// Checkpoints of the parameter servers' shards, on disk.
//
//   DIR/ckpt-000000123/shard-0-of-2.safetensors   server 0's shard at checkpoint 123
//   DIR/ckpt-000000123/shard-1-of-2.safetensors
//   DIR/ckpt-000000123/manifest.json              written once every shard of the set is on disk
//
// A shard file is in the safetensors layout (src/tensor/safetensors.ts), readable by PyTorch's
// and numpy's readers: the tensor `parameters` (the shard's slice of the flat parameter vector,
// F32) and one `optimizer.<name>` per optimizer state array (momentum, Adam's moments), with
// `__metadata__` saying where the slice sits (start, length, total), the version and the layout.
// The metadata carries the sha256 of the data section, so a torn or corrupt file is recognised.
//
// Each file is written to a temporary name, fsynced, renamed into place, and the directory
// fsynced: a file under its final name is whole. After its rename, a server lists the set; the one
// that finds it complete writes the manifest the same way (two writing it at once write the same
// bytes), then removes the checkpoints older than the newest `keep` complete ones.
//
// The manifest lists every parameter's global offset and every shard's range, so a job resumes
// with another number of servers: each new shard reads its range from whichever old shards
// overlap it (read()).
//
// Reading (latest()): the newest checkpoint whose manifest and shards are all present and whose
// checksums match; each one skipped is said in one line, with the reason.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeSafetensorsHeader, encodeSafetensors, tensorData, type OptimizerState, type SafeHeader, type SafeTensorIn } from '../tensor/index.js';
import type { ParameterSpec } from './shard-plan.js';
import type { BatchQueueState } from './batch-queue.js';
import type { CheckpointSink } from './protocol.js';

export const CHECKPOINT_FORMAT = 'psrpc-checkpoint/1';

/** One server's shard at one checkpoint, copied out of the live buffers (see ParameterServer.snapshot). */
export interface ShardSnapshot {
  /** The checkpoint's number: the step of the trainer that asked for it (sync: the servers' version). */
  id: number;
  shard: number;
  shards: number;
  /** The slice [start, start + length) of the flat parameter vector of `total` elements. */
  start: number;
  length: number;
  total: number;
  /** Steps this shard had taken. */
  version: number;
  layout: ParameterSpec[];
  consistency: string;
  /** Trainers of the job (their data shares and steps depend on it: a resume must have as many). */
  trainers: number;
  /** The optimizer's kind (sgd, adam). */
  optimizer: string;
  values: Float32Array;
  /** The optimizer's state of the shard (null before its first step). */
  state: OptimizerState | null;
  /** Module buffers (batch-norm statistics) by name, written as `buffer.<name>` (a one-process model's checkpoint). */
  buffers?: Record<string, Float32Array>;
  /** Elastic jobs, on the server that hands out the batches: its queue at this step (metadata psrpc.batches). */
  batches?: BatchQueueState;
}

export interface ManifestShard {
  file: string;
  start: number;
  length: number;
  version: number;
  sha256: string;
  bytes: number;
}

export interface Manifest {
  format: string;
  id: number;
  total: number;
  consistency: string;
  trainers: number;
  optimizer: string;
  /** Every parameter, in flat order, with its global offset. */
  layout: Array<ParameterSpec & { offset: number }>;
  shards: ManifestShard[];
  createdAt: string;
}

/** A range of a loaded checkpoint, as one server's shard needs it. */
export interface RestoredRange {
  values: Float32Array;
  state: OptimizerState | null;
  /** The smallest version of the old shards the range was read from. */
  version: number;
}

/** A checkpoint read back and verified. */
export interface LoadedCheckpoint {
  id: number;
  dir: string;
  manifest: Manifest;
  /** The elements [start, start + length) of the parameters and optimizer state. */
  read(start: number, length: number): RestoredRange;
  /** The module buffers the checkpoint holds, by name (empty when none). */
  buffers(): Map<string, Float32Array>;
  /** Elastic jobs: the batch queue at the checkpoint's step (undefined: not an elastic job's). */
  batches(): BatchQueueState | undefined;
}

export interface WriteResult {
  file: string;
  bytes: number;
  /** Milliseconds from the start of the write to the rename. */
  ms: number;
  /** This write completed the set, and this server wrote the manifest. */
  completed: boolean;
}

export interface CheckpointStoreOptions {
  /** Complete checkpoints kept (default 3). */
  keep?: number;
  /** Where skipped checkpoints and removals are said (default stderr). */
  log?: (line: string) => void;
}

const DIR_RE = /^ckpt-(\d{9,})$/;
const SHARD_RE = /^shard-(\d+)-of-(\d+)\.safetensors$/;

export function checkpointDirName(id: number): string {
  return `ckpt-${String(id).padStart(9, '0')}`;
}

function shardFileName(shard: number, shards: number): string {
  return `shard-${shard}-of-${shards}.safetensors`;
}

/** Writes `parts` to `path` atomically: a temporary file, fsync, rename, fsync of the directory. */
async function writeAtomic(dir: string, name: string, parts: readonly Uint8Array[]): Promise<number> {
  // unique per writer: two servers of one process may write the same manifest at once
  const tmp = join(dir, `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'w', 0o644);
  let bytes = 0;
  try {
    for (const p of parts) bytes += p.byteLength;
    let written = 0;
    let pending = [...parts];
    while (pending.length > 0) {
      const { bytesWritten } = await fh.writev(pending);
      written += bytesWritten;
      // a short write: go on from where it stopped
      let skip = bytesWritten;
      const rest: Uint8Array[] = [];
      for (const p of pending) {
        if (skip >= p.byteLength) { skip -= p.byteLength; continue; }
        rest.push(skip > 0 ? p.subarray(skip) : p);
        skip = 0;
      }
      pending = rest;
      if (bytesWritten === 0 && pending.length > 0) throw new Error(`checkpoint: writing ${tmp} made no progress`);
    }
    if (written !== bytes) throw new Error(`checkpoint: wrote ${written} of ${bytes} bytes to ${tmp}`);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, join(dir, name));
  await syncDir(dir);
  return bytes;
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

function sha256(parts: readonly Uint8Array[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

const HASH_SLICE = 4 * 1024 * 1024;

/**
 * sha256 of `parts` in 4 MiB slices with a turn of the event loop between them: a large shard's
 * checksum (about 1 ms a MiB here) never holds the server's calls for more than a slice's time.
 */
async function sha256Yielding(parts: readonly Uint8Array[]): Promise<string> {
  const h = createHash('sha256');
  for (const p of parts) {
    for (let at = 0; at < p.byteLength; at += HASH_SLICE) {
      h.update(p.subarray(at, Math.min(p.byteLength, at + HASH_SLICE)));
      if (at + HASH_SLICE < p.byteLength || p !== parts[parts.length - 1]) await new Promise<void>((r) => setImmediate(r));
    }
  }
  return h.digest('hex');
}

interface ShardFile {
  file: string;
  bytes: Uint8Array;
  header: SafeHeader;
  meta: ShardMeta;
}

/** What a shard file's metadata says: the snapshot's description, its step counts and its data's checksum. */
type ShardMeta = Omit<ShardSnapshot, 'values' | 'state' | 'batches'> & {
  scalars: Record<string, number> | null;
  sha256: string;
  batches?: BatchQueueState;
};

function metaOf(file: string, m: Record<string, string>): ShardMeta {
  const num = (k: string): number => {
    const v = Number(m[`psrpc.${k}`]);
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${file}: metadata psrpc.${k} is ${JSON.stringify(m[`psrpc.${k}`])}, expected an integer >= 0`);
    return v;
  };
  if (m['psrpc.format'] !== CHECKPOINT_FORMAT) throw new Error(`${file}: metadata psrpc.format is ${JSON.stringify(m['psrpc.format'])}, expected "${CHECKPOINT_FORMAT}"`);
  let layout: ParameterSpec[];
  let scalars: Record<string, number> | null;
  let batches: BatchQueueState | undefined;
  try {
    layout = JSON.parse(m['psrpc.layout'] ?? '') as ParameterSpec[];
    scalars = JSON.parse(m['psrpc.scalars'] ?? 'null') as Record<string, number> | null;
    if (m['psrpc.batches'] !== undefined) batches = JSON.parse(m['psrpc.batches']) as BatchQueueState;
  } catch {
    throw new Error(`${file}: metadata psrpc.layout, psrpc.scalars or psrpc.batches is not JSON`);
  }
  return {
    id: num('id'), shard: num('shard'), shards: num('shards'), start: num('start'), length: num('length'), total: num('total'), version: num('version'), trainers: num('trainers'),
    layout, consistency: m['psrpc.consistency'] ?? '', optimizer: m['psrpc.optimizer'] ?? '', scalars, sha256: m['psrpc.sha256'] ?? '',
    ...(batches ? { batches } : {}),
  };
}

/** The checkpoints in `dir`, newest first (by number). */
async function listCheckpoints(dir: string): Promise<Array<{ id: number; path: string }>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: Array<{ id: number; path: string }> = [];
  for (const n of names) {
    const m = DIR_RE.exec(n);
    if (m) out.push({ id: Number(m[1]), path: join(dir, n) });
  }
  return out.sort((a, b) => b.id - a.id);
}

/**
 * Until the returned function is called, a SIGTERM (psrun stopping the survivors of a failure)
 * first lets `flush` finish, so the checkpoints already copied reach the disk, then ends the
 * process with that signal as it would have.
 */
export function flushOnSigterm(flush: () => Promise<unknown>): () => void {
  const onTerm = (sig: NodeJS.Signals) => {
    void flush().finally(() => process.kill(process.pid, sig));
  };
  process.once('SIGTERM', onTerm);
  return () => { process.off('SIGTERM', onTerm); };
}

/**
 * When a checkpoint is due: every `steps` steps (0: never) and once `everyMs` has passed since the
 * last one by time (0: never). One schedule for the trainer that asks the servers and for the
 * trainers that write their own.
 */
export class CheckpointSchedule {
  private due: number;

  constructor(private readonly steps: number, private readonly everyMs: number, private readonly now: () => number = () => performance.now()) {
    this.due = now() + everyMs;
  }

  /** Whether step `step` (a count of steps taken) is due; a due time-based one starts the next period. */
  isDue(step: number): boolean {
    const bySteps = this.steps > 0 && step % this.steps === 0;
    const byTime = this.everyMs > 0 && this.now() >= this.due;
    if (byTime) this.due = this.now() + this.everyMs;
    return bySteps || byTime;
  }
}

/**
 * A server's checkpoints: the store it writes to in `dir` and, with `resume`, the latest complete
 * checkpoint there to start from (none: it starts from the beginning, and says so).
 */
export async function openCheckpoints(dir: string, o: { keep: number; resume: boolean; name: string; log: (line: string) => void }): Promise<{ store: CheckpointStore; restore?: LoadedCheckpoint }> {
  const store = new CheckpointStore(dir, { keep: o.keep, log: o.log });
  if (!o.resume) return { store };
  const restore = await store.latest();
  o.log(restore ? `${o.name}: resuming from checkpoint ${restore.id} (${restore.dir})` : `${o.name}: --resume: no complete checkpoint in ${dir}; starting from the beginning`);
  return { store, ...(restore ? { restore } : {}) };
}

export class CheckpointStore {
  readonly keep: number;
  private readonly log: (line: string) => void;

  constructor(readonly dir: string, options: CheckpointStoreOptions = {}) {
    if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('checkpoint: the directory must be a non-empty path');
    this.keep = options.keep ?? 3;
    if (!Number.isSafeInteger(this.keep) || this.keep < 1) throw new RangeError(`checkpoint: keep must be an integer >= 1, got ${options.keep}`);
    this.log = options.log ?? ((line) => process.stderr.write(line + '\n'));
  }

  /** Writes one shard of checkpoint `snap.id`; the server that completes the set writes its manifest. */
  async writeShard(snap: ShardSnapshot): Promise<WriteResult> {
    const t0 = performance.now();
    const sub = join(this.dir, checkpointDirName(snap.id));
    await mkdir(sub, { recursive: true });
    const tensors: Array<[string, SafeTensorIn]> = [['parameters', { dtype: 'F32', shape: [snap.length], data: snap.values }]];
    for (const [k, v] of Object.entries(snap.state?.arrays ?? {})) tensors.push([`optimizer.${k}`, { dtype: 'F32', shape: [v.length], data: v }]);
    for (const [k, v] of Object.entries(snap.buffers ?? {})) tensors.push([`buffer.${k}`, { dtype: 'F32', shape: [v.length], data: v }]);
    const data = tensors.map(([, t]) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    const meta: Record<string, string> = {
      'psrpc.format': CHECKPOINT_FORMAT,
      'psrpc.id': String(snap.id),
      'psrpc.shard': String(snap.shard),
      'psrpc.shards': String(snap.shards),
      'psrpc.start': String(snap.start),
      'psrpc.length': String(snap.length),
      'psrpc.total': String(snap.total),
      'psrpc.version': String(snap.version),
      'psrpc.consistency': snap.consistency,
      'psrpc.trainers': String(snap.trainers),
      'psrpc.optimizer': snap.optimizer,
      'psrpc.layout': JSON.stringify(snap.layout),
      'psrpc.scalars': JSON.stringify(snap.state?.scalars ?? null),
      'psrpc.sha256': await sha256Yielding(data),
      ...(snap.batches ? { 'psrpc.batches': JSON.stringify(snap.batches) } : {}),
    };
    const name = shardFileName(snap.shard, snap.shards);
    const bytes = await writeAtomic(sub, name, encodeSafetensors(tensors, meta));
    const ms = performance.now() - t0;
    const completed = await this.completeSet(sub, snap.id, snap.shards);
    return { file: join(sub, name), bytes, ms, completed };
  }

  /** Writes the manifest of checkpoint `id` if all its shards are on disk; true when written. */
  private async completeSet(sub: string, id: number, shards: number): Promise<boolean> {
    const files = await readdir(sub);
    const present = new Set(files.filter((f) => SHARD_RE.test(f)));
    for (let k = 0; k < shards; k++) if (!present.has(shardFileName(k, shards))) return false;
    const parts: ManifestShard[] = [];
    let first: ShardMeta | undefined;
    for (let k = 0; k < shards; k++) {
      const file = shardFileName(k, shards);
      const { meta, size } = await readShardHeader(join(sub, file));
      first ??= meta;
      parts.push({ file, start: meta.start, length: meta.length, version: meta.version, sha256: meta.sha256, bytes: size });
    }
    let offset = 0;
    const layout = first!.layout.map((p) => { const o = { ...p, offset }; offset += p.size; return o; });
    const manifest: Manifest = {
      format: CHECKPOINT_FORMAT, id, total: first!.total, consistency: first!.consistency, trainers: first!.trainers, optimizer: first!.optimizer,
      layout, shards: parts, createdAt: new Date().toISOString(),
    };
    await writeAtomic(sub, 'manifest.json', [Buffer.from(JSON.stringify(manifest, null, 2) + '\n')]);
    await this.prune();
    return true;
  }

  /** Removes every checkpoint older than the newest `keep` complete ones (complete or not). */
  private async prune(): Promise<void> {
    const all = await listCheckpoints(this.dir);
    let kept = 0;
    let oldestKept = Infinity;
    for (const c of all) {
      if (kept >= this.keep) break;
      if (await exists(join(c.path, 'manifest.json'))) {
        kept++;
        oldestKept = c.id;
      }
    }
    if (kept < this.keep) return;
    for (const c of all) if (c.id < oldestKept) await rm(c.path, { recursive: true, force: true });
  }

  /** The newest complete, verified checkpoint, or null; every one skipped on the way is said. */
  async latest(): Promise<LoadedCheckpoint | null> {
    for (const c of await listCheckpoints(this.dir)) {
      try {
        return await loadCheckpoint(c.path, c.id);
      } catch (e) {
        this.log(`psrpc: skipping checkpoint ${c.path}: ${(e as Error).message}`);
      }
    }
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readShardHeader(path: string): Promise<{ meta: ShardMeta; size: number }> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const len = Buffer.alloc(8);
    await fh.read(len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    if (n > size) throw new Error(`${path}: header length ${n} does not fit the ${size}-byte file`);
    const head = Buffer.alloc(8 + n);
    await fh.read(head, 0, 8 + n, 0);
    const header = decodeSafetensorsHeader(head, size, path);
    return { meta: metaOf(path, header.metadata), size };
  } finally {
    await fh.close();
  }
}

async function readShard(path: string): Promise<ShardFile> {
  const bytes = new Uint8Array(await readFile(path));
  const header = decodeSafetensorsHeader(bytes, bytes.length, path);
  const meta = metaOf(path, header.metadata);
  const digest = sha256([bytes.subarray(header.dataStart)]);
  if (digest !== meta.sha256) throw new Error(`${path}: checksum mismatch (the data's sha256 is ${digest.slice(0, 12)}..., the header says ${meta.sha256.slice(0, 12)}...): corrupt`);
  return { file: path, bytes, header, meta };
}

/** Reads and verifies checkpoint `dir` (throws, saying why, when it is incomplete or corrupt). */
export async function loadCheckpoint(dir: string, id?: number): Promise<LoadedCheckpoint> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? 'incomplete (no manifest.json: not every shard was written)' : `manifest.json is unreadable (${(e as Error).message})`);
  }
  if (manifest.format !== CHECKPOINT_FORMAT) throw new Error(`manifest.json's format is ${JSON.stringify(manifest.format)}, expected "${CHECKPOINT_FORMAT}"`);
  if (id !== undefined && manifest.id !== id) throw new Error(`manifest.json says checkpoint ${manifest.id}, the directory ${id}`);
  const shards: ShardFile[] = [];
  let covered = 0;
  for (const s of [...manifest.shards].sort((a, b) => a.start - b.start)) {
    const f = await readShard(join(dir, s.file));
    if (f.meta.sha256 !== s.sha256 || f.meta.start !== s.start || f.meta.length !== s.length) throw new Error(`${s.file} does not match manifest.json (rewritten after the manifest?)`);
    if (f.meta.start !== covered) throw new Error(`the shards do not tile the parameters: ${s.file} starts at ${f.meta.start}, expected ${covered}`);
    covered += f.meta.length;
    shards.push(f);
  }
  if (covered !== manifest.total) throw new Error(`the shards hold ${covered} of ${manifest.total} parameters`);
  return {
    id: manifest.id,
    dir,
    manifest,
    read(start: number, length: number): RestoredRange {
      if (!(Number.isSafeInteger(start) && Number.isSafeInteger(length) && start >= 0 && length >= 0 && start + length <= manifest.total)) {
        throw new RangeError(`checkpoint ${dir}: elements [${start}, ${start + length}) are outside its ${manifest.total} parameters`);
      }
      const values = new Float32Array(length);
      let arrays: Record<string, Float32Array> | null = null;
      let scalars: Record<string, number> | null = null;
      let version = Infinity;
      for (const f of shards) {
        const lo = Math.max(start, f.meta.start);
        const hi = Math.min(start + length, f.meta.start + f.meta.length);
        if (lo >= hi) continue;
        version = Math.min(version, f.meta.version);
        const from = lo - f.meta.start;
        const to = lo - start;
        values.set((tensorData(f.bytes, f.header, 'parameters') as Float32Array).subarray(from, from + hi - lo), to);
        const names = [...f.header.tensors.keys()].filter((n) => n.startsWith('optimizer.'));
        if (f.meta.scalars !== null || names.length > 0) {
          arrays ??= {};
          scalars ??= { ...(f.meta.scalars ?? {}) };
          for (const n of names) {
            const k = n.slice('optimizer.'.length);
            const dst = arrays[k] ??= new Float32Array(length);
            dst.set((tensorData(f.bytes, f.header, n) as Float32Array).subarray(from, from + hi - lo), to);
          }
        }
      }
      return { values, state: arrays && scalars ? { arrays, scalars } : null, version: version === Infinity ? 0 : version };
    },
    buffers(): Map<string, Float32Array> {
      const out = new Map<string, Float32Array>();
      for (const f of shards) {
        for (const n of f.header.tensors.keys()) if (n.startsWith('buffer.')) out.set(n.slice('buffer.'.length), (tensorData(f.bytes, f.header, n) as Float32Array).slice());
      }
      return out;
    },
    batches(): BatchQueueState | undefined {
      return shards.find((f) => f.meta.batches !== undefined)?.meta.batches;
    },
  };
}

/** `sink`, killing this process once checkpoint PSRPC_FAULT_KILL_AFTER_CHECKPOINT is on disk (first run only); `sink` itself without the variable. */
export function faultAfterCheckpoint(sink: CheckpointSink, name: string, log: (line: string) => void): CheckpointSink {
  const killAt = process.env.PSRPC_FAULT_KILL_AFTER_CHECKPOINT;
  if (killAt === undefined || (process.env.PSRPC_RESTART_COUNT ?? '0') !== '0') return sink;
  return {
    async writeShard(snap) {
      const r = await sink.writeShard(snap);
      if (String(snap.id) === killAt) {
        log(`${name}: PSRPC_FAULT_KILL_AFTER_CHECKPOINT=${killAt}: killing this process`);
        process.kill(process.pid, 'SIGKILL');
      }
      return r;
    },
  };
}
