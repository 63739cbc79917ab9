// Failure detection by heartbeats (src/rpc/heartbeat.ts, wired into the agent): the rule on a
// ManualClock (exact deadlines, traffic resets, our own stalls discounted), then two real agents
// on 127.0.0.1 sharing one ManualClock, one of them made silent by a FaultInjector that drops
// what comes from it. No test sleeps: each waits for the event it is about (a ping arriving, a
// call failing, a listener running) and moves time by hand.
import test from 'ava';
import { Agent, FaultInjector, Heartbeat, ManualClock, RpcError, Status, type Clock, type ClockTimer, type InitOptions, type PingSink } from '../../src/rpc/index.js';
import { stopWorld, WORLD_TIMEOUT_MS } from './world.js';

function watch(clock: Clock, extra: { deadAfterMs?: number; probe?: (peer: string) => void } = {}) {
  const lost: Array<{ peer: string; silentMs: number; at: number }> = [];
  const found: string[] = [];
  const hb = new Heartbeat({
    heartbeatMs: 1000, deadAfterMs: extra.deadAfterMs ?? 5000, clock,
    onLost: (peer, silentMs) => lost.push({ peer, silentMs, at: clock.now() }),
    onFound: (peer) => found.push(peer),
    ...(extra.probe ? { probe: extra.probe } : {}),
  });
  return { hb, lost, found };
}

/**
 * A manual clock whose "event loop" can stall: `stall(ms)` moves time on with every timer held
 * back, then fires the overdue ones late, all seeing the new now(), as Node does when a blocked
 * loop wakes up (timers first, in due order, before any I/O).
 */
class StallClock implements Clock {
  private t = 0;
  private seq = 0;
  private timers: Array<{ due: number; seq: number; fn: () => void; cancelled: boolean }> = [];
  now(): number { return this.t; }
  after(ms: number, fn: () => void): ClockTimer {
    const timer = { due: this.t + ms, seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => { timer.cancelled = true; } };
  }
  every(): ClockTimer { throw new Error('StallClock: every() is not used by heartbeats'); }
  advance(ms: number): void { this.run(this.t + ms, true); }
  stall(ms: number): void {
    this.t += ms;
    this.run(this.t, false);
  }
  private run(until: number, onTime: boolean): void {
    for (;;) {
      const live = this.timers.filter((x) => !x.cancelled && x.due <= until);
      if (live.length === 0) break;
      const next = live.reduce((a, b) => (b.due < a.due || (b.due === a.due && b.seq < a.seq) ? b : a));
      next.cancelled = true;
      if (onTime) this.t = next.due;
      next.fn();
      this.timers = this.timers.filter((x) => !x.cancelled);
    }
    this.t = until;
  }
}

test('a peer silent for deadAfterMs is lost exactly then, once', (t) => {
  const clock = new ManualClock();
  const { hb, lost } = watch(clock);
  hb.start();
  hb.heard('ps0');
  clock.advance(4999);
  t.deepEqual(lost, [], 'not yet at 4999 ms');
  t.false(hb.isLost('ps0'));
  t.is(hb.lostFor('ps0'), undefined);
  clock.advance(1);
  t.deepEqual(lost, [{ peer: 'ps0', silentMs: 5000, at: 5000 }]);
  t.true(hb.isLost('ps0'));
  clock.advance(20_000);
  t.is(lost.length, 1, 'a peer that stays silent is reported once');
  t.is(hb.lostFor('ps0'), 25_000, 'lostFor keeps counting the silence');
  hb.stop();
});

test('anything heard from a peer starts its silence over', (t) => {
  const clock = new ManualClock();
  const { hb, lost } = watch(clock);
  hb.start();
  hb.heard('ps0');
  clock.advance(3000);
  hb.heard('ps0');
  clock.advance(4999);
  t.deepEqual(lost, [], 'silence counts from the last message, at 3000');
  clock.advance(1);
  t.deepEqual(lost, [{ peer: 'ps0', silentMs: 5000, at: 8000 }]);
  hb.stop();
});

test('a lost peer heard again is found: it is no longer lost, and a later silence is a new loss', (t) => {
  const clock = new ManualClock();
  const { hb, lost, found } = watch(clock);
  hb.start();
  hb.heard('ps0');
  clock.advance(6000);
  t.deepEqual(hb.lost(), ['ps0']);
  hb.heard('ps0');
  t.deepEqual(found, ['ps0']);
  t.deepEqual(hb.lost(), []);
  hb.heard('ps0');
  t.deepEqual(found, ['ps0'], 'found once');
  clock.advance(5000);
  t.deepEqual(lost.map((l) => [l.peer, l.at]), [['ps0', 5000], ['ps0', 11_000]]);
  hb.stop();
});

test('a watchdog that fires late (our own loop stalled) declares nobody lost', (t) => {
  const clock = new StallClock();
  const { hb, lost } = watch(clock);
  hb.start();
  hb.heard('ps0');
  clock.advance(4500);
  // the watchdog (due at 5000) and the beat (due at 5000) fire 2.5 s late, the watchdog first:
  // it finds the beat overdue, so the silence is ours
  clock.stall(3000);
  t.deepEqual(lost, [], 'no verdict from an overdue watchdog');
  t.is(hb.stalls, 1, 'one stall, noticed once (by the watchdog, then by the beat)');
  hb.heard('ps0'); // the pings that waited in the socket are read right after the timers
  for (let i = 0; i < 10; i++) {
    clock.advance(1000);
    hb.heard('ps0');
  }
  t.deepEqual(lost, [], 'a live peer stays up');
  hb.stop();
});

test('after a stall, a peer still silent is lost one beat later', (t) => {
  const clock = new StallClock();
  const { hb, lost } = watch(clock);
  hb.start();
  hb.heard('alive');
  hb.heard('dead');
  clock.advance(2000);
  hb.heard('alive');
  hb.heard('dead');
  // the loop blocks from 2000 to 8000: the beat (due 3000) fires first, then the watchdog (5000)
  clock.stall(6000);
  t.deepEqual(lost, []);
  t.is(hb.stalls, 1);
  hb.heard('alive');
  clock.advance(999);
  t.deepEqual(lost, [], 'no verdict within a beat of the stall');
  clock.advance(1);
  t.deepEqual(lost, [{ peer: 'dead', silentMs: 7000, at: 9000 }], 'the silent one is lost once the quiet beat is over');
  hb.stop();
});

test('every beat pings each linked stream; an unlinked watched peer is probed', (t) => {
  const clock = new ManualClock();
  const probed: string[] = [];
  const { hb } = watch(clock, { probe: (p) => probed.push(p) });
  const sink = (): PingSink & { pings: number } => {
    const s = { pings: 0, push: (segs: readonly Uint8Array[]) => { s.pings += segs.length; } };
    return s;
  };
  const a = sink();
  const b = sink();
  const unlinkA = hb.link('ps0', a);
  hb.link('ps1', b);
  hb.start();
  clock.advance(3000);
  t.is(a.pings, 3);
  t.is(b.pings, 3);
  t.deepEqual(probed, []);
  unlinkA();
  clock.advance(2000);
  t.is(a.pings, 3, 'an unlinked stream gets no pings');
  t.is(b.pings, 5);
  t.deepEqual(probed, ['ps0', 'ps0'], 'ps0 has no stream: probed each beat');
  hb.stop();
  clock.advance(5000);
  t.is(b.pings, 5, 'stopped: no more pings');
});

test('linking starts a silence clock: a peer that never answers is lost too', (t) => {
  const clock = new ManualClock();
  const { hb, lost } = watch(clock);
  hb.start();
  clock.advance(1000);
  hb.link('ps0', { push: () => {} });
  clock.advance(5000);
  t.deepEqual(lost, [{ peer: 'ps0', silentMs: 5000, at: 6000 }]);
  hb.stop();
});

test('deadAfterMs Infinity: pings go out, nobody is judged', (t) => {
  const clock = new ManualClock();
  const { hb, lost } = watch(clock, { deadAfterMs: Infinity });
  let pings = 0;
  hb.link('ps0', { push: () => { pings++; } });
  hb.start();
  clock.advance(60_000);
  t.is(pings, 60);
  t.deepEqual(lost, []);
  t.is(hb.silentFor('ps0'), undefined);
  hb.stop();
});

test('heartbeatMs and deadAfterMs are validated with messages that name them', async (t) => {
  const base = { name: 'w0', rank: 0, worldSize: 1, master: '127.0.0.1:0' };
  const refused = async (o: Partial<InitOptions>, message: RegExp) => {
    const e = await t.throwsAsync<RpcError>(Agent.start({ ...base, ...o }));
    t.is(e!.code, Status.INVALID_ARGUMENT);
    t.regex(e!.message, message);
  };
  await refused({ heartbeatMs: -1 }, /^invalid option heartbeatMs=-1: expected a number of ms in \[1, 2147483647\], or 0 for no heartbeats$/);
  await refused({ heartbeatMs: Infinity }, /heartbeatMs=Infinity: /);
  await refused({ heartbeatMs: 0.5 }, /heartbeatMs=0.5: /);
  await refused({ heartbeatMs: '1000' as unknown as number }, /heartbeatMs="1000": /);
  await refused({ deadAfterMs: 1500 }, /^invalid option deadAfterMs=1500: expected at least 2 x heartbeatMs = 2000 ms/);
  await refused({ deadAfterMs: NaN }, /deadAfterMs=NaN: expected a number of ms in \[2 x heartbeatMs, 2147483647\], or 0 or Infinity/);
  await refused({ deadAfterMs: -5 }, /deadAfterMs=-5: /);
  await refused({ heartbeatMs: 0, deadAfterMs: 5000 }, /deadAfterMs=5000: needs heartbeats, and heartbeatMs is 0/);
  for (const ok of [{}, { heartbeatMs: 0 }, { deadAfterMs: 0 }, { deadAfterMs: Infinity }, { heartbeatMs: 0, deadAfterMs: 0 }, { heartbeatMs: 100, deadAfterMs: 200 }]) {
    const a = await Agent.start({ ...base, ...ok });
    await a.shutdown({ graceful: false });
  }
  t.pass();
});

// ---- two agents ----

interface Gate { open(): void; readonly opened: Promise<void> }
function gate(): Gate {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => { open = resolve; });
  return { open, opened };
}

/** ps0 (the master) and trainer1, both on `clock`; ps0 serves ps.pushPull, which answers only once `release` opens. */
async function pair(clock: ManualClock, extra: Partial<InitOptions> = {}) {
  const o = { worldSize: 2, timeoutMs: WORLD_TIMEOUT_MS, clock, heartbeatMs: 1000, deadAfterMs: 5000, ...extra };
  const ps = await Agent.start({ name: 'ps0', rank: 0, master: '127.0.0.1:0', ...o });
  const [, trainer] = await Promise.all([ps.rendezvous(), Agent.start({ name: 'trainer1', rank: 1, master: ps.address, ...o }).then((a) => a.rendezvous())]);
  const started = gate();
  const release = gate();
  let handled = 0;
  ps.register('ps.pushPull', async (x: number) => { handled++; started.open(); await release.opened; return x; });
  const psFaults = new FaultInjector();
  const trainerFaults = new FaultInjector();
  ps.faults = psFaults;
  trainer.faults = trainerFaults;
  const events = { trainerLost: [] as string[], psLost: [] as string[] };
  trainer.onPeerLost((w) => events.trainerLost.push(w));
  ps.onPeerLost((w) => events.psLost.push(w));
  return { ps, trainer, started, release, handled: () => handled, psFaults, trainerFaults, events };
}

test('a silent peer is lost at deadAfterMs: its call in flight fails with UNAVAILABLE naming it, later calls fail at once, peer-lost fires once', async (t) => {
  const clock = new ManualClock();
  const w = await pair(clock);
  try {
    // ps0 hears trainer1 (we wait for its pings); trainer1 hears nothing from ps0
    const fromTrainer = w.psFaults.tap('trainer1');
    const mute = w.trainerFaults.silence('ps0');
    const beat = async (ms = 1000) => { const got = fromTrainer.next(); clock.advance(ms); await got; };
    const inFlight = t.throwsAsync<RpcError>(w.trainer.call('ps0', 'ps.pushPull', [1]));
    await w.started.opened;
    for (let i = 0; i < 4; i++) await beat();
    clock.advance(999);
    t.deepEqual(w.events.trainerLost, [], 'not lost at 4999 ms of silence');
    t.is(w.trainer.stats().outstandingCalls, 1);
    await beat(1);
    t.deepEqual(w.events.trainerLost, ['ps0'], 'lost at 5000 ms');
    const e = await inFlight;
    t.is(e!.code, Status.UNAVAILABLE);
    t.is(e!.worker, 'ps0');
    t.is(e!.message, 'worker "ps0" silent for 5.0 s (no heartbeat): call "ps.pushPull" from "trainer1" failed');
    t.deepEqual(w.trainer.lostPeers(), ['ps0']);
    for (let i = 0; i < 3; i++) await beat();
    const later = await t.throwsAsync<RpcError>(w.trainer.call('ps0', 'ps.pushPull', [2]));
    t.is(later!.code, Status.UNAVAILABLE);
    t.is(later!.message, 'worker "ps0" silent for 8.0 s (no heartbeat): call "ps.pushPull" from "trainer1" failed');
    t.is(w.handled(), 1, 'the later call never left');
    t.true(mute.count > 0, 'ps0 kept sending: its pings were dropped');
    t.deepEqual(w.events.trainerLost, ['ps0'], 'peer-lost fired once');
    t.deepEqual(w.events.psLost, [], 'ps0, which kept hearing trainer1, lost nobody');
    // recovery: ps0 is heard from again at its next ping, and calls go through again
    const back = new Promise<string>((resolve) => w.trainer.onPeerRecovered(resolve));
    mute.restore();
    clock.advance(1000);
    t.is(await back, 'ps0');
    t.deepEqual(w.trainer.lostPeers(), []);
    w.release.open();
    t.is(await w.trainer.call('ps0', 'ps.pushPull', [3]), 3);
  } finally {
    w.release.open();
    await stopWorld([w.ps, w.trainer]);
  }
});

test('a healthy pair stays up through many deadAfterMs while a long call is in flight', async (t) => {
  const clock = new ManualClock();
  const w = await pair(clock);
  try {
    const fromTrainer = w.psFaults.tap('trainer1');
    const fromPs = w.trainerFaults.tap('ps0');
    let settled = false;
    const call = w.trainer.call('ps0', 'ps.pushPull', [7]).finally(() => { settled = true; });
    await w.started.opened;
    // 20 s of manual time, four times deadAfterMs; each beat waits until both pings have arrived
    for (let i = 0; i < 20; i++) {
      const both = Promise.all([fromTrainer.next(), fromPs.next()]);
      clock.advance(1000);
      await both;
    }
    t.false(settled, 'the call is still in flight');
    t.deepEqual(w.events, { trainerLost: [], psLost: [] });
    t.deepEqual([w.trainer.lostPeers(), w.ps.lostPeers()], [[], []]);
    w.release.open();
    t.is(await call, 7);
  } finally {
    w.release.open();
    await stopWorld([w.ps, w.trainer]);
  }
});

test('a peer that died is lost at deadAfterMs even with no call to it in flight', async (t) => {
  const clock = new ManualClock();
  const w = await pair(clock);
  try {
    w.release.open();
    t.is(await w.trainer.call('ps0', 'ps.pushPull', [1]), 1);
    await w.ps.shutdown({ graceful: false });
    clock.advance(4999);
    t.deepEqual(w.events.trainerLost, []);
    clock.advance(1);
    t.deepEqual(w.events.trainerLost, ['ps0']);
    const e = await t.throwsAsync<RpcError>(w.trainer.call('ps0', 'ps.pushPull', [2]));
    t.is(e!.code, Status.UNAVAILABLE);
    t.regex(e!.message, /^worker "ps0" silent for 5\.0 s \(no heartbeat\)/);
  } finally {
    await stopWorld([w.ps, w.trainer], false);
  }
});
