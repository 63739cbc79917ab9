// Liveness: which peers have been silent for too long. The one rule behind every "this peer is
// gone" decision (ParameterServer drops trainers that a sync round or an ssp wait hangs on;
// RemoteModelHost stops waiting for trainers that never leave or never join):
//
//   a peer's silence clock starts when it is first seen (its join; for a peer that has not joined
//   yet, whatever moment its owner says it was expected from: the end of the rendezvous) and is
//   reset each time it is seen again; a peer is silent once its clock reaches `timeoutMs`.
//
// The watchdog fires exactly when the first watched peer reaches `timeoutMs` of silence (one timer,
// set for the earliest deadline and moved on lazily, so `seen` on the hot path only writes a
// number) and hands the silent peers to `onSilent`. What to do with them is the owner's policy: a
// peer the owner keeps stays silent and is handed over again every `checkEveryMs` (default
// timeoutMs / 4, between 10 ms and 1 s) until it is seen or forgotten, so a policy that depends on
// other state (is anybody waiting on it?) is applied once that state changes.
// Time comes from an injectable Clock (src/rpc/clock.ts), so tests move it by hand.
import { systemClock, type Clock, type ClockTimer } from './clock.js';

export interface LivenessOptions {
  /** Silence after which a peer counts as silent, in ms (> 0). */
  timeoutMs: number;
  /** How often peers that stay silent are handed over again, in ms (default timeoutMs / 4, clamped to [10, 1000]). */
  checkEveryMs?: number;
  /** Time source and timers (default: the system clock). */
  clock?: Clock;
  /** Called by the watchdog with the peers silent for timeoutMs or longer (never with none). */
  onSilent: (silent: string[]) => void;
}

export class Liveness {
  readonly timeoutMs: number;
  readonly checkEveryMs: number;
  readonly clock: Clock;
  private readonly lastSeen = new Map<string, number>();
  private readonly onSilent: (silent: string[]) => void;
  private running = false;
  private timer?: ClockTimer;
  /** When the pending timer fires (Infinity: none pending). */
  private timerAt = Infinity;

  constructor(options: LivenessOptions) {
    const { timeoutMs, onSilent } = options;
    if (!(typeof timeoutMs === 'number' && timeoutMs > 0)) throw new RangeError(`liveness: timeoutMs=${String(timeoutMs)}; expected a number > 0`);
    const checkEveryMs = options.checkEveryMs ?? Math.max(10, Math.min(1000, timeoutMs / 4));
    if (!(typeof checkEveryMs === 'number' && checkEveryMs > 0)) throw new RangeError(`liveness: checkEveryMs=${String(checkEveryMs)}; expected a number > 0`);
    if (typeof onSilent !== 'function') throw new TypeError('liveness: onSilent must be a function');
    this.timeoutMs = timeoutMs;
    this.checkEveryMs = checkEveryMs;
    this.clock = options.clock ?? systemClock;
    this.onSilent = onSilent;
  }

  /** Starts the watchdog (again after stop); peers seen before keep their clocks. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops the watchdog. */
  stop(): void {
    this.running = false;
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  /** `peer` was heard from now: starts its silence clock, or sets it back to zero. */
  seen(peer: string): void {
    const now = this.clock.now();
    this.lastSeen.set(peer, now);
    // a later deadline than the pending timer's is picked up when that timer fires
    if (this.running && this.timerAt === Infinity) this.arm(now + this.timeoutMs);
  }

  /** Stops watching `peer` (it left, or was dropped). */
  forget(peer: string): void {
    this.lastSeen.delete(peer);
  }

  has(peer: string): boolean {
    return this.lastSeen.has(peer);
  }

  /** Watched peers. */
  get size(): number {
    return this.lastSeen.size;
  }

  /** How long `peer` has been silent, in ms (undefined when it is not watched). */
  silentFor(peer: string): number | undefined {
    const at = this.lastSeen.get(peer);
    return at === undefined ? undefined : this.clock.now() - at;
  }

  /** The peers silent for timeoutMs or longer, in the order they were first seen. */
  silent(): string[] {
    const now = this.clock.now();
    const out: string[] = [];
    for (const [peer, at] of this.lastSeen) if (now - at >= this.timeoutMs) out.push(peer);
    return out;
  }

  /** Hands the silent peers (if any) to onSilent now. */
  check(): void {
    const silent = this.silent();
    if (silent.length > 0) this.onSilent(silent);
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    this.check();
    if (this.running) this.schedule(this.checkEveryMs);
  }

  /** Arms the timer for the next deadline: the earliest peer still talking, or a look at the silent ones `againMs` from now. */
  private schedule(againMs: number): void {
    const now = this.clock.now();
    let next = Infinity;
    for (const at of this.lastSeen.values()) {
      const due = at + this.timeoutMs;
      next = Math.min(next, due > now ? due : now + againMs);
    }
    if (next < Infinity) this.arm(next);
  }

  private arm(at: number): void {
    this.timer?.cancel();
    this.timerAt = at;
    this.timer = this.clock.after(Math.max(0, at - this.clock.now()), () => this.fire());
  }
}
