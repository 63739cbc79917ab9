// The liveness rule (src/rpc/liveness.ts) and the manual clock it is tested with (src/rpc/clock.ts).
import test from 'ava';
import { Liveness, ManualClock, systemClock } from '../../src/rpc/index.js';

function watch(timeoutMs: number, extra: { checkEveryMs?: number } = {}) {
  const clock = new ManualClock();
  const reports: Array<{ at: number; silent: string[] }> = [];
  const live = new Liveness({ timeoutMs, clock, onSilent: (silent) => reports.push({ at: clock.now(), silent }), ...extra });
  return { clock, live, reports };
}

test('ManualClock fires timers in due order (ties in the order set) with now() at their due time', (t) => {
  const clock = new ManualClock(100);
  const seen: string[] = [];
  clock.after(30, () => seen.push(`b@${clock.now()}`));
  clock.after(10, () => seen.push(`a@${clock.now()}`));
  clock.after(30, () => seen.push(`c@${clock.now()}`));
  const every = clock.every(20, () => seen.push(`e@${clock.now()}`));
  clock.after(5, () => clock.after(1, () => seen.push(`nested@${clock.now()}`)));
  clock.advance(29);
  t.deepEqual(seen, ['nested@106', 'a@110', 'e@120']);
  t.is(clock.now(), 129);
  clock.advance(1);
  t.deepEqual(seen.slice(3), ['b@130', 'c@130']);
  every.cancel();
  clock.advance(100);
  t.is(seen.length, 5, 'a cancelled timer does not fire');
  t.is(clock.pending, 0);
  t.throws(() => clock.advance(-1), { instanceOf: RangeError });
  t.throws(() => clock.every(0, () => {}), { instanceOf: RangeError });
});

test('systemClock timers fire and can be cancelled', async (t) => {
  const keepAlive = setInterval(() => {}, 1000); // its timers are unref'd: something must hold the process
  t.teardown(() => clearInterval(keepAlive));
  const before = systemClock.now();
  await new Promise<void>((resolve) => { systemClock.after(1, resolve); });
  t.true(systemClock.now() >= before);
  let fired = 0;
  const timer = systemClock.every(1, () => { fired++; if (fired === 3) { timer.cancel(); done(); } });
  let done!: () => void;
  await new Promise<void>((r) => { done = r; });
  t.is(fired, 3);
});

test('a peer is silent exactly timeoutMs after it was last seen, and is reported at that moment', (t) => {
  const { clock, live, reports } = watch(1000);
  live.start();
  clock.advance(5000);
  t.deepEqual(reports, [], 'nothing is watched before a peer is seen: the start is nobody\'s silence');
  live.seen('a');
  clock.advance(300);
  live.seen('b');
  clock.advance(699);
  t.deepEqual(reports, []);
  t.is(live.silentFor('a'), 999);
  clock.advance(1);
  t.deepEqual(reports, [{ at: 6000, silent: ['a'] }]);
  t.deepEqual(live.silent(), ['a']);
  live.forget('a');
  clock.advance(299);
  t.is(reports.length, 1);
  clock.advance(1);
  t.deepEqual(reports[1], { at: 6300, silent: ['b'] });
});

test('seen resets the silence clock; a kept silent peer is reported again every checkEveryMs until seen or forgotten', (t) => {
  const { clock, live, reports } = watch(1000, { checkEveryMs: 100 });
  live.seen('a');
  live.start();
  clock.advance(900);
  live.seen('a');
  clock.advance(999);
  t.deepEqual(reports, [], 'the call at 900 ms set the clock back');
  clock.advance(1);
  t.deepEqual(reports.map((r) => r.at), [1900]);
  clock.advance(250);
  t.deepEqual(reports.map((r) => r.at), [1900, 2000, 2100], 'still silent: handed over again');
  live.seen('a');
  clock.advance(999);
  t.is(reports.length, 3, 'heard from again: quiet until its next deadline');
  clock.advance(1);
  t.is(reports.length, 4);
  live.forget('a');
  clock.advance(10_000);
  t.is(reports.length, 4, 'forgotten: never reported again');
  t.is(live.silentFor('a'), undefined);
});

test('stop ends the watchdog; start again picks the peers up with their clocks', (t) => {
  const { clock, live, reports } = watch(1000);
  live.start();
  live.seen('a');
  clock.advance(500);
  live.stop();
  clock.advance(5000);
  t.deepEqual(reports, []);
  live.start();
  t.deepEqual(reports, [], 'reported by the watchdog, not by start');
  clock.advance(0);
  t.deepEqual(reports, [{ at: 5500, silent: ['a'] }]);
});

test('bad options are refused with the option named', (t) => {
  const onSilent = () => {};
  t.throws(() => new Liveness({ timeoutMs: 0, onSilent }), { message: /timeoutMs=0/ });
  t.throws(() => new Liveness({ timeoutMs: Number.NaN, onSilent }), { message: /timeoutMs=NaN/ });
  t.throws(() => new Liveness({ timeoutMs: 10, checkEveryMs: -1, onSilent }), { message: /checkEveryMs=-1/ });
  t.throws(() => new Liveness({ timeoutMs: 10, onSilent: 3 as unknown as () => void }), { message: /onSilent/ });
  t.is(new Liveness({ timeoutMs: 60_000, onSilent }).checkEveryMs, 1000);
  t.is(new Liveness({ timeoutMs: 8, onSilent }).checkEveryMs, 10);
});
