// Log multiplexing: whole lines only, each prefixed with its process's name, last lines kept.
import test from 'ava';
import { PassThrough } from 'node:stream';
import { LineSplitter, LineTail, LogMux, type StreamName } from '../../src/launch/log-mux.js';

class Sink {
  readonly lines: Array<[StreamName, string]> = [];
  line(stream: StreamName, text: string): void {
    this.lines.push([stream, text]);
  }
}

test('LineSplitter holds a partial line until its newline arrives', (t) => {
  const s = new LineSplitter();
  t.deepEqual(s.push('abc'), []);
  t.deepEqual(s.push('def\ngh'), ['abcdef']);
  t.deepEqual(s.push('\n\nxy\r\n'), ['gh', '', 'xy']);
  t.deepEqual(s.push('tail'), []);
  t.is(s.end(), 'tail');
  t.is(s.end(), undefined);
});

test('LineSplitter keeps a multi-byte character split across chunks whole', (t) => {
  const s = new LineSplitter();
  const bytes = Buffer.from('é→ok\n');
  const out = [];
  for (let i = 0; i < bytes.length; i++) out.push(...s.push(bytes.subarray(i, i + 1)));
  t.deepEqual(out, ['é→ok']);
});

test('LineTail keeps the last N lines, oldest first', (t) => {
  const tail = new LineTail(3);
  for (let i = 0; i < 5; i++) tail.add(`l${i}`);
  t.deepEqual(tail.get(), ['l2', 'l3', 'l4']);
});

test('LogMux prefixes every line with the padded name, keeps streams apart and never splits a line', async (t) => {
  const sink = new Sink();
  const mux = new LogMux(sink, { names: ['ps0', 'trainer12'] });
  const aOut = new PassThrough();
  const bErr = new PassThrough();
  const done = Promise.all([mux.attach('ps0', aOut, 'stdout'), mux.attach('trainer12', bErr, 'stderr')]);
  aOut.write('hel');
  bErr.write('first half ');
  aOut.write('lo\nwor');
  bErr.write('second half\n');
  aOut.end('ld');
  bErr.end();
  await done;
  t.deepEqual(sink.lines, [
    ['stdout', 'ps0       | hello'],
    ['stderr', 'trainer12 | first half second half'],
    ['stdout', 'ps0       | world'],
  ]);
  t.deepEqual(mux.tail('ps0'), ['hello', 'world']);
  t.deepEqual(mux.tail('nobody'), []);
});

test('LogMux filter swallows lines from the output but the tail still has them', async (t) => {
  const sink = new Sink();
  const mux = new LogMux(sink, { tailLines: 2 }, (_name, _stream, line) => !line.startsWith('progress'));
  const s = new PassThrough();
  const done = mux.attach('w', s, 'stderr');
  s.end('a\nprogress 1\nb\nprogress 2\n');
  await done;
  t.deepEqual(sink.lines.map((l) => l[1]), ['w | a', 'w | b']);
  t.deepEqual(mux.tail('w'), ['b', 'progress 2']);
});
