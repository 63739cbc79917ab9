// Clock: the time source and timers of every component that decides something on elapsed time
// (liveness watchdogs, join deadlines). Components take a Clock instead of calling
// performance.now() and setInterval themselves, so a test can hand them a ManualClock and move
// time on by hand: "silent for 2 s" then means "the test advanced the clock by 2 s", whatever the
// load on the machine, and "not yet" can be checked right before the step that makes it so.

/** A pending timer of a Clock. */
export interface ClockTimer {
  /** Stops the timer; calling it again does nothing. */
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic scale (only differences mean anything). */
  now(): number;
  /** Calls `fn` once, `ms` from now. The timer does not keep the process alive. */
  after(ms: number, fn: () => void): ClockTimer;
  /** Calls `fn` every `ms` until cancelled. The timer does not keep the process alive. */
  every(ms: number, fn: () => void): ClockTimer;
}

/**
 * The real clock: performance.now() and unref'd Node timers (watchdogs and deadlines guard work that
 * something else keeps alive, a server or a pending call; they must not hold a finished process).
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  every(ms, fn) {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};

interface ManualTimer {
  due: number;
  period: number; // 0: fires once
  fn: () => void;
  seq: number;
  cancelled: boolean;
}

/**
 * A clock that moves only when told to. `advance(ms)` runs every timer that falls due on the way,
 * in time order (ties in the order they were set), each with `now()` at its due time, then leaves
 * the clock at the target. Timers set by a firing timer run too if they fall due before the target.
 */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private timers: ManualTimer[] = [];

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  after(ms: number, fn: () => void): ClockTimer {
    return this.add(ms, 0, fn);
  }

  every(ms: number, fn: () => void): ClockTimer {
    if (!(ms > 0)) throw new RangeError(`ManualClock.every: period ${ms} ms; expected a number > 0`);
    return this.add(ms, ms, fn);
  }

  /** Timers not yet fired or cancelled (repeating ones count once). */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time on by `ms`, firing what falls due on the way. */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`ManualClock.advance: ${ms} ms; expected a number >= 0`);
    const target = this.current + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const t of this.timers) {
        if (t.cancelled || t.due > target) continue;
        if (!next || t.due < next.due || (t.due === next.due && t.seq < next.seq)) next = t;
      }
      if (!next) break;
      this.current = next.due;
      if (next.period > 0) {
        next.due += next.period;
        next.seq = this.seq++;
      } else {
        next.cancelled = true;
      }
      next.fn();
      this.timers = this.timers.filter((t) => !t.cancelled);
    }
    this.current = target;
  }

  private add(ms: number, period: number, fn: () => void): ClockTimer {
    if (!(ms >= 0)) throw new RangeError(`ManualClock: delay ${ms} ms; expected a number >= 0`);
    const t: ManualTimer = { due: this.current + ms, period, fn, seq: this.seq++, cancelled: false };
    this.timers.push(t);
    return { cancel: () => { t.cancelled = true; } };
  }
}
