import test from 'ava';
import { decode, encode, flatten, type CodecContext } from '../../src/rpc/codec.js';
import { CodecError } from '../../src/rpc/errors.js';
import { Tensor } from '../../src/tensor/index.js';

const ctx: CodecContext = { worker: 'test' };
const roundTrip = (v: unknown) => decode(flatten(encode(v, ctx)), ctx);

test('JSON-able values round-trip, including undefined, NaN, bigint and $-keys', (t) => {
  const v = { a: 1, b: 'x', c: [true, null, { d: 2.5 }], u: undefined, n: NaN, inf: -Infinity, big: 12345678901234567890n, $t: 'not a tensor' };
  t.deepEqual(roundTrip(v), v);
});

test('a "__proto__" key stays data and does not switch the prototype', (t) => {
  const v = JSON.parse('{"__proto__": {"polluted": 1}}');
  const out = roundTrip(v) as Record<string, unknown>;
  t.is(Object.getPrototypeOf(out), Object.prototype);
  t.deepEqual(Object.getOwnPropertyDescriptor(out, '__proto__')?.value, { polluted: 1 });
  t.is(({} as Record<string, unknown>).polluted, undefined);
});

test('tensors of several dtypes and odd shapes round-trip exactly', (t) => {
  const cases = [
    { shape: [3, 5, 7], dtype: 'float32', data: Float32Array.from({ length: 105 }, (_, i) => i * 0.5 - 3) },
    { shape: [1, 1, 1, 3], dtype: 'float64', data: new Float64Array([Math.PI, -0, 1e-300]) },
    { shape: [7], dtype: 'int32', data: new Int32Array([1, -2, 3, -4, 5, -6, 2147483647]) },
    { shape: [3], dtype: 'int64', data: new BigInt64Array([1n, -2n, 9007199254740993n]) },
    { shape: [5], dtype: 'uint8', data: new Uint8Array([0, 1, 254, 255, 7]) },
    { shape: [], dtype: 'float32', data: new Float32Array([42]) },
  ];
  for (const c of cases) {
    const out = roundTrip({ x: c, pad: 'odd length string' }) as { x: typeof c };
    t.deepEqual(out.x.shape, c.shape);
    t.is(out.x.dtype, c.dtype);
    t.is(out.x.data.constructor, c.data.constructor);
    t.deepEqual(out.x.data, c.data);
  }
});

test('empty tensors and empty typed arrays round-trip', (t) => {
  const out = roundTrip([{ shape: [0, 4], dtype: 'float32', data: new Float32Array(0) }, new Int16Array(0)]) as [{ shape: number[]; data: Float32Array }, Int16Array];
  t.deepEqual(out[0].shape, [0, 4]);
  t.is(out[0].data.length, 0);
  t.true(out[1] instanceof Int16Array);
  t.is(out[1].length, 0);
});

test('bare typed arrays and Buffers keep their type', (t) => {
  const out = roundTrip([new Float32Array([1, 2]), Buffer.from('hi'), new Uint16Array([65535])]) as unknown[];
  t.true(out[0] instanceof Float32Array);
  t.true(Buffer.isBuffer(out[1]));
  t.is((out[1] as Buffer).toString(), 'hi');
  t.deepEqual(out[2], new Uint16Array([65535]));
});

test('tensor bytes are referenced, not copied, on encode; viewed in place on aligned decode', (t) => {
  const data = new Float32Array(1024).fill(3);
  const e = encode([{ shape: [1024], dtype: 'float32', data }], ctx);
  t.true(e.segments.some((s) => s.buffer === data.buffer), 'tensor data is one of the segments');
  const flat = Buffer.allocUnsafeSlow(e.byteLength);
  let at = 0;
  for (const s of e.segments) { flat.set(s, at); at += s.byteLength; }
  const out = decode(flat, ctx) as [{ data: Float32Array }];
  t.is(out[0].data.buffer, flat.buffer, 'decoded view shares the received buffer');
  t.is(out[0].data[1023], 3);
});

test('misaligned input is copied once and still decodes correctly', (t) => {
  const data = Float64Array.from({ length: 33 }, (_, i) => i / 3);
  const flat = flatten(encode([{ shape: [33], dtype: 'float64', data }], ctx));
  const shifted = Buffer.allocUnsafeSlow(flat.length + 3).subarray(3);
  flat.copy(shifted);
  const out = decode(shifted, ctx) as [{ data: Float64Array }];
  t.not(out[0].data.buffer, shifted.buffer);
  t.deepEqual(out[0].data, data);
});

test('a large tensor (64 MiB) round-trips', (t) => {
  const data = new Float32Array(16 * 1024 * 1024);
  data[0] = 1; data[data.length - 1] = 2;
  const out = roundTrip([{ shape: [4096, 4096], dtype: 'float32', data }]) as [{ data: Float32Array; shape: number[] }];
  t.deepEqual(out[0].shape, [4096, 4096]);
  t.is(out[0].data[0], 1);
  t.is(out[0].data[data.length - 1], 2);
});

test('wrong dtypes, storage and shapes are refused with the path named', (t) => {
  const e1 = t.throws(() => encode([{ shape: [2], dtype: 'complex64', data: new Float32Array(2) }], ctx), { instanceOf: CodecError });
  t.regex(e1!.message, /args\[0\].*unknown tensor dtype "complex64"/);
  const e2 = t.throws(() => encode({ w: { shape: [2], dtype: 'float32', data: new Int32Array(2) } }, ctx), { instanceOf: CodecError });
  t.regex(e2!.message, /args\.w.*needs Float32Array storage, got Int32Array/);
  const e3 = t.throws(() => encode([{ shape: [2, 2], dtype: 'float32', data: new Float32Array(3) }], ctx), { instanceOf: CodecError });
  t.regex(e3!.message, /\[2, 2\] needs 4 elements, storage has 3/);
  t.throws(() => encode([() => 1], ctx), { instanceOf: CodecError, message: /function cannot be sent/ });
  t.throws(() => encode([new Map()], ctx), { instanceOf: CodecError, message: /instances of Map/ });
});

test('truncated, garbage and tampered input gives a CodecError, never a crash', (t) => {
  const good = flatten(encode([{ shape: [4], dtype: 'float32', data: new Float32Array(4) }, 'x'], ctx));
  for (const cut of [0, 3, 15, 16, 20, good.length - 1]) {
    t.throws(() => decode(good.subarray(0, cut), ctx), { instanceOf: CodecError }, `cut at ${cut}`);
  }
  t.throws(() => decode(Buffer.from('definitely not a payload at all'), ctx), { instanceOf: CodecError, message: /bad magic/ });
  let seed = 7;
  for (let i = 0; i < 200; i++) {
    const junk = Buffer.from(good);
    for (let k = 0; k < 4; k++) { seed = (seed * 1103515245 + 12345) >>> 0; junk[seed % junk.length] ^= 0xff; }
    try { decode(junk, ctx); } catch (e) { t.true(e instanceof CodecError, String(e)); }
  }
  const header = JSON.stringify({ v: [{ $t: 0 }], t: [['tensor', 'float32', [8], 0, 32]] });
  const h = Buffer.from(header);
  const buf = Buffer.alloc(16 + h.length + ((8 - ((16 + h.length) % 8)) % 8) + 16);
  buf.writeUInt32LE(0x31525350, 0); buf.writeUInt32LE(h.length, 4); buf.writeDoubleLE(16, 8); h.copy(buf, 16);
  t.throws(() => decode(buf, ctx), { instanceOf: CodecError, message: /outside the 16-byte data section/ });
});

test('float32 and int32 tensors arrive as the tensor layer\'s Tensor, sharing the received bytes', (t) => {
  const x = new Tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
  const y = new Tensor<'int32'>(Int32Array.from([7, 8]), [2]);
  const [a, b] = roundTrip([x, y]) as [Tensor, Tensor<'int32'>];
  t.true(a instanceof Tensor);
  t.deepEqual([...a.shape], [2, 3]);
  t.is(a.dtype, 'float32');
  t.deepEqual(a.data, x.data);
  t.true(b instanceof Tensor);
  t.is(b.dtype, 'int32');
  t.deepEqual(b.data, y.data);
});
