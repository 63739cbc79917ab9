// Plain progress lines: what psrun parses for its job display and what a person reads in a log.
import test from 'ava';
import { parseProgressLine } from '../../src/launch/job-progress.js';
import { createProgress } from '../../src/trainer/progress.js';

function sink() {
  const lines: string[] = [];
  let buf = '';
  const stream = { isTTY: false, write(s: string) { buf += s; const parts = buf.split('\n'); buf = parts.pop()!; lines.push(...parts); return true; } };
  return { stream: stream as unknown as NodeJS.WriteStream, lines };
}

test('lines: a first line before any batch says loss=-, later lines the last loss; psrun parses both', (t) => {
  const { stream, lines } = sink();
  const p = createProgress({ mode: 'lines', total: 300, label: 'w1', stream, intervalSeconds: 3600 });
  t.deepEqual(lines, ['w1 0.0% 0/300 samples loss=- samples/s=0']);
  p.tick(100, 0.75);
  p.tick(200, 0.5);
  p.stop();
  p.stop(); // idempotent
  t.is(lines.length, 2);
  t.regex(lines[1]!, /^w1 100\.0% 300\/300 samples loss=0\.5000 samples\/s=\d+$/);
  const first = parseProgressLine(lines[0]!)!;
  t.is(first.done, 0);
  t.is(first.total, 300);
  t.true(Number.isNaN(first.loss));
  t.is(parseProgressLine(lines[1]!)!.loss, 0.5);
});

test('lines: a loss that is not finite is shown as -, not NaN', (t) => {
  const { stream, lines } = sink();
  const p = createProgress({ mode: 'lines', total: 10, label: 'x', stream, intervalSeconds: 3600 });
  p.tick(10, Number.NaN);
  p.stop();
  t.regex(lines.at(-1)!, / loss=- /);
});
