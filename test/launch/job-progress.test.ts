// The job's progress: trainers' 'lines'-mode progress parsed, summed, and shown as one bar or lines.
import test from 'ava';
import { createProgress } from '../../src/trainer/progress.js';
import { formatJobLine, JobDisplay, JobProgress, parseProgressLine } from '../../src/launch/job-progress.js';
import { Capture } from './fixture.js';

test('parses the lines the trainer\'s own progress reporter writes in lines mode', (t) => {
  const out = new Capture();
  const p = createProgress({ mode: 'lines', total: 1000, label: 'trainer1', stream: out as unknown as NodeJS.WriteStream, intervalSeconds: 0 });
  p.tick(250, 0.75);
  p.stop();
  const [first, line] = out.lines();
  // The first line comes at once and carries the total, before any sample is trained.
  const start = parseProgressLine(first!);
  t.is(start?.done, 0, first);
  t.is(start?.total, 1000);
  const s = parseProgressLine(line!);
  t.truthy(s, line);
  t.is(s!.done, 250);
  t.is(s!.total, 1000);
  t.is(s!.loss, 0.75);
  t.true(s!.rate > 0);
});

test('other lines are not progress', (t) => {
  t.is(parseProgressLine('epoch 1 done, loss 0.4'), undefined);
  t.is(parseProgressLine('trainer1 50% 5/10 samples'), undefined);
  t.deepEqual(parseProgressLine('w ?% 0/0 samples loss=NaN samples/s=0'), { done: 0, total: 0, loss: NaN, rate: 0 });
});

test('JobProgress sums the trainers and estimates the total of those not yet heard from', (t) => {
  const job = new JobProgress(['t1', 't2', 't3']);
  job.update('t1', { done: 100, total: 1000, loss: 0.5, rate: 50 });
  let s = job.snapshot();
  t.deepEqual([s.done, s.total, s.rate, s.reported], [100, 3000, 50, 1]);
  job.update('t2', { done: 300, total: 1000, loss: 0.3, rate: 70 });
  job.update('t1', { done: 200, total: 1000, loss: 0.1, rate: 60 });
  job.update('stranger', { done: 999, total: 999, loss: 0, rate: 999 });
  s = job.snapshot();
  t.deepEqual([s.done, s.total, s.rate, s.reported], [500, 3000, 130, 2]);
  t.true(Math.abs(s.loss - 0.2) < 1e-12);
  t.is(formatJobLine(s), 'job 16.7% 500/3000 samples loss=0.2000 samples/s=130');
});

test('on a terminal, lines are printed whole above one bar that is redrawn below them', (t) => {
  const out = new Capture();
  const err = new Capture();
  err.isTTY = true;
  const d = new JobDisplay(new JobProgress(['t1']), { mode: 'bar', stdout: out, stderr: err });
  d.line('stderr', 'ps0 | before any progress');
  d.update('t1', { done: 50, total: 100, loss: 0.5, rate: 10 });
  t.regex(err.text, /job \[#{15}-{15}\] 50% \| 50\/100 \| loss 0\.5000 \| 10 samples\/s \| eta 5s$/);
  d.line('stdout', 'ps0 | hello');
  d.line('stderr', 'ps0 | warning');
  d.stop();
  t.is(out.text, 'ps0 | hello\n');
  // What a terminal shows: on each line, what follows the last clear-line sequence.
  const visible = err.text.split('\n').map((l) => l.split('\r\x1b[K').pop());
  t.is(visible.length, 4);
  t.deepEqual(visible.slice(0, 2), ['ps0 | before any progress', 'ps0 | warning']);
  t.regex(visible[2]!, /^job \[#{15}-{15}\] 50%/);
  t.is(visible[3], '', 'the bar is left on screen, ended by a newline');
});

test('lines mode prints job lines at most once per interval and the last state at the end', (t) => {
  const err = new Capture();
  const d = new JobDisplay(new JobProgress(['t1', 't2']), { mode: 'lines', stdout: new Capture(), stderr: err, intervalMs: 60_000 });
  d.update('t1', { done: 10, total: 100, loss: 1, rate: 5 });
  d.update('t2', { done: 20, total: 100, loss: 1, rate: 5 });
  d.update('t1', { done: 100, total: 100, loss: 1, rate: 5 });
  d.stop();
  t.deepEqual(err.lines(), ['job 5.0% 10/200 samples loss=1.0000 samples/s=5', 'job 60.0% 120/200 samples loss=1.0000 samples/s=10']);
});

test('a trainer that finished counts all its samples as done', (t) => {
  const job = new JobProgress(['t1', 't2']);
  job.update('t1', { done: 70, total: 100, loss: 1, rate: 5 });
  job.update('t2', { done: 10, total: 100, loss: 1, rate: 5 });
  job.finish('t1');
  job.finish('t3');
  t.is(job.snapshot().done, 110);
});

test('none mode shows no progress', (t) => {
  const err = new Capture();
  const d = new JobDisplay(new JobProgress(['t1']), { mode: 'none', stdout: new Capture(), stderr: err });
  d.update('t1', { done: 10, total: 100, loss: 1, rate: 5 });
  d.stop();
  t.is(err.text, '');
});

test('the bar shrinks to fit a narrow terminal', (t) => {
  const err = new Capture();
  err.isTTY = true;
  err.columns = 80;
  const d = new JobDisplay(new JobProgress(['t1']), { mode: 'bar', stdout: new Capture(), stderr: err });
  d.update('t1', { done: 123456, total: 200000, loss: 0.5, rate: 12345 });
  t.regex(err.text, /^job \[#+-+\] 61% \| 123456\/200000 \| loss 0\.5000 \| 12345 samples\/s \| eta 7s$/);
  t.true(err.text.length < 80, err.text);
});
