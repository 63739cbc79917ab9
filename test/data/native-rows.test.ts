// The native row gathers the data layer uses, against plain TypeScript references.
import test from 'ava';
import { nativeRows } from '../../src/data/native-rows.js';

function randomIndex(n: number, rows: number, seed: number): Int32Array {
  let s = seed;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s % rows;
  });
}

for (const rowLen of [1, 3, 17, 784]) {
  test(`gatherRowsU8 equals a table lookup per byte (rows of ${rowLen})`, (t) => {
    const rows = 37;
    const src = Uint8Array.from({ length: rows * rowLen }, (_, i) => (i * 31 + 7) & 255);
    const lut = Float32Array.from({ length: 256 }, (_, v) => (v / 255 - 0.286) / 0.353);
    const index = randomIndex(50, rows, rowLen);
    const dst = new Float32Array(50 * rowLen + 3).fill(-7);
    nativeRows().gatherRowsU8(src, index, rowLen, lut, dst);
    const want = new Float32Array(50 * rowLen + 3).fill(-7);
    for (let r = 0; r < 50; r++) for (let j = 0; j < rowLen; j++) want[r * rowLen + j] = lut[src[index[r]! * rowLen + j]!]!;
    t.deepEqual(dst, want); // bit-identical, and the tail past the rows is untouched
  });

  test(`gatherRowsF32 copies whole rows, also out of a SharedArrayBuffer (rows of ${rowLen})`, (t) => {
    const rows = 29;
    const src = new Float32Array(new SharedArrayBuffer(rows * rowLen * 4));
    src.forEach((_, i) => { src[i] = i * 0.5 - 3; });
    const index = randomIndex(40, rows, 3 + rowLen);
    const dst = new Float32Array(40 * rowLen);
    nativeRows().gatherRowsF32(src, index, rowLen, dst);
    for (let r = 0; r < 40; r++) {
      t.deepEqual(dst.subarray(r * rowLen, (r + 1) * rowLen), src.subarray(index[r]! * rowLen, (index[r]! + 1) * rowLen));
    }
  });
}

test('a bad index, a short destination or a wrong table is refused before anything is written', (t) => {
  const src = new Float32Array(10 * 4);
  const dst = new Float32Array(3 * 4).fill(5);
  const rows = nativeRows();
  t.throws(() => rows.gatherRowsF32(src, Int32Array.of(0, 10, 1), 4, dst), { instanceOf: RangeError, message: /index\[1\] is 10, src has 10 rows of 4/ });
  t.throws(() => rows.gatherRowsF32(src, Int32Array.of(0, -1, 1), 4, dst), { instanceOf: RangeError, message: /index\[1\] is -1/ });
  t.throws(() => rows.gatherRowsF32(src, Int32Array.of(0, 1, 2, 3), 4, dst), { instanceOf: RangeError, message: /dst has 12 elements, needs at least 16/ });
  t.throws(() => rows.gatherRowsF32(src, Int32Array.of(0), 0, dst), { instanceOf: RangeError, message: /rowLen must be >= 1/ });
  t.throws(() => rows.gatherRowsF32(src, [0] as unknown as Int32Array, 4, dst), { instanceOf: TypeError, message: /index must be a Int32Array/ });
  t.throws(() => rows.gatherRowsU8(new Uint8Array(8), Int32Array.of(0), 4, new Float32Array(255), dst), { instanceOf: RangeError, message: /lut has 255 elements, needs 256/ });
  t.true(dst.every((v) => v === 5));
});
