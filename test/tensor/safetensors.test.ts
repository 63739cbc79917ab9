// The safetensors layout: psrpc's writer and reader against each other, against numpy (where it
// is installed) and against files that break the layout.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeSafetensorsHeader, encodeSafetensors, tensorData } from '../../src/tensor/index.js';

const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;

function file(parts: Buffer[]): Buffer {
  return Buffer.concat(parts);
}

test('round trip: tensors of each dtype, views without copies, the metadata', (t) => {
  const a = Float32Array.from([1.5, -2, 3.25]);
  const b = Int32Array.from([7, -8]);
  const c = Uint8Array.from([1, 2, 3, 4, 5]);
  const d = Uint16Array.from([0x3c00, 0xbc00]);
  const bytes = new Uint8Array(file(encodeSafetensors([['a', { dtype: 'F32', shape: [3], data: a }], ['b', { dtype: 'I32', shape: [1, 2], data: b }], ['c', { dtype: 'U8', shape: [5], data: c }], ['d', { dtype: 'F16', shape: [2], data: d }]], { who: 'psrpc' })));
  const h = decodeSafetensorsHeader(bytes);
  t.deepEqual(h.metadata, { who: 'psrpc' });
  t.is(h.dataStart % 8, 0);
  t.deepEqual([...tensorData(bytes, h, 'a') as Float32Array], [...a]);
  t.deepEqual([...tensorData(bytes, h, 'b') as Int32Array], [...b]);
  t.deepEqual([...tensorData(bytes, h, 'c') as Uint8Array], [...c]);
  t.deepEqual([...tensorData(bytes, h, 'd') as Uint16Array], [...d]);
  t.deepEqual(h.tensors.get('b')!.shape, [1, 2]);
  t.throws(() => tensorData(bytes, h, 'nope'), { message: /no tensor "nope" \(has a, b, c, d\)/ });
});

test('the writer refuses what the layout cannot say', (t) => {
  t.throws(() => encodeSafetensors([['x', { dtype: 'F32', shape: [4], data: new Float32Array(3) }]]), { message: /shape \[4\] of F32 does not match 3 elements/ });
  t.throws(() => encodeSafetensors([['__metadata__', { dtype: 'U8', shape: [1], data: new Uint8Array(1) }]]), { message: /cannot name a tensor/ });
  t.throws(() => encodeSafetensors([['x', { dtype: 'U8', shape: [1], data: new Uint8Array(1) }], ['x', { dtype: 'U8', shape: [1], data: new Uint8Array(1) }]]), { message: /given twice/ });
});

test('a file that breaks the layout is refused, saying where', (t) => {
  const good = file(encodeSafetensors([['x', { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) }]]));
  t.throws(() => decodeSafetensorsHeader(good.subarray(0, 5)), { message: /shorter than the 8-byte header length/ });
  t.throws(() => decodeSafetensorsHeader(good.subarray(0, good.length - 1)), { message: /past the end|tensors end at byte/ });
  const huge = Buffer.from(good);
  huge.writeBigUInt64LE(1n << 40n, 0);
  t.throws(() => decodeSafetensorsHeader(huge), { message: /header length .* does not fit/ });
  const header = (h: unknown, data = 0) => {
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length), 0);
    return Buffer.concat([len, json, Buffer.alloc(data)]);
  };
  t.throws(() => decodeSafetensorsHeader(Buffer.concat([good.subarray(0, 8), Buffer.alloc(good.length - 8, 0x7b)])), { message: /not JSON/ });
  t.throws(() => decodeSafetensorsHeader(header({ x: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, 8)), { message: /dtype "F64" is not one of/ });
  t.throws(() => decodeSafetensorsHeader(header({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4)), { message: /4 bytes for shape \[2\] of F32/ });
  t.throws(() => decodeSafetensorsHeader(header({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, y: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 4)), { message: /gap or overlap/ });
  t.throws(() => decodeSafetensorsHeader(header({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 8)), { message: /the tensors end at byte .*the file has/ });
  t.throws(() => decodeSafetensorsHeader(header({ __metadata__: { a: 1 } })), { message: /__metadata__ must map strings to strings/ });
});

(hasNumpy ? test : test.skip)(`numpy reads psrpc's file from the layout's description${hasNumpy ? '' : ' (skipped: python3 has no numpy here)'}`, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'psrpc-st-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'x.safetensors');
  const w = Float32Array.from({ length: 6 }, (_, i) => i * 0.25 - 1);
  await writeFile(path, file(encodeSafetensors([['w', { dtype: 'F32', shape: [2, 3], data: w }]], { k: 'v' })));
  const py = `
import json, struct, sys, numpy as np
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
t = h['w']; s, e = t['data_offsets']
a = np.frombuffer(b[8 + n + s:8 + n + e], dtype='<f4').reshape(t['shape'])
print(json.dumps({'shape': list(a.shape), 'values': a.ravel().tolist(), 'meta': h['__metadata__']}))
`;
  const out = JSON.parse(execFileSync('python3', ['-c', py, path], { encoding: 'utf8' }));
  t.deepEqual(out, { shape: [2, 3], values: [...w], meta: { k: 'v' } });
});
