// Heartbeats: how an agent finds out that a peer is dead or silent (InitOptions.heartbeatMs,
// deadAfterMs).
//
// Every `heartbeatMs` the agent pushes a Ping frame on each Exchange stream it has with another
// worker, in either direction (the caller's Peer and the callee's service each ping the other end
// of the same stream). It hears from a peer whenever anything arrives from it: any frame on an
// Exchange stream (a ping, a response, a request), a side-channel message, a Bulk chunk. Anything,
// not only pings, because a peer streaming us a large tensor is plainly alive while its ping may
// wait behind that tensor on the same connection. A peer not heard from for `deadAfterMs` is lost:
// `onLost` runs once; anything heard from it later makes it found again (`onFound`). The silence
// rule and its watchdog are the Liveness class's (liveness.ts), on an injectable Clock.
//
// Our own stalls. A process whose event loop is blocked (a long synchronous step) reads nothing
// meanwhile: its peers' pings wait in socket buffers, and when the loop wakes up the overdue
// watchdog fires before the I/O that would deliver them (timers run before poll). So the judge
// watches its own beat timer: found more than a whole period late (by itself or by the watchdog),
// the silence is ours, not the peers'; no verdicts for one heartbeat period after it, time enough
// for the queued frames to be read and a fresh ping to arrive. A peer that is blocked itself sends
// nothing and is judged silent: deadAfterMs must exceed the longest synchronous stall of any worker
// of the world (or be turned off).
import { systemClock, type Clock, type ClockTimer } from './clock.js';
import { PING_FRAME } from './frame.js';
import { Liveness } from './liveness.js';

/** The writer of one Exchange stream, as heartbeats see it (a FrameBatcher). */
export interface PingSink {
  push(segments: readonly Uint8Array[]): void;
}

export interface HeartbeatOptions {
  /** Period of the pings, in ms (> 0). */
  heartbeatMs: number;
  /** Silence after which a peer is lost, in ms (>= 2 x heartbeatMs); Infinity: ping, never judge. */
  deadAfterMs: number;
  /** Time source and timers (default: the system clock). */
  clock?: Clock;
  /** A peer was declared lost (once per loss), silent for `silentMs`. */
  onLost: (peer: string, silentMs: number) => void;
  /** A lost peer was heard from again. */
  onFound?: (peer: string) => void;
  /**
   * Called every beat for each watched peer that has no Exchange stream linked right now (it broke,
   * or a peer was lost and its stream went): the owner may open one, so that pings flow again and
   * a peer that comes back is heard.
   */
  probe?: (peer: string) => void;
}

export class Heartbeat {
  readonly heartbeatMs: number;
  readonly deadAfterMs: number;
  readonly clock: Clock;
  /** Undefined when deadAfterMs is Infinity: this end pings but judges nobody. */
  private readonly liveness?: Liveness;
  private readonly onLost: (peer: string, silentMs: number) => void;
  private readonly onFound?: (peer: string) => void;
  private readonly probe?: (peer: string) => void;
  private readonly lostPeers = new Set<string>();
  /** Linked Exchange streams, and the peer at the other end of each. */
  private readonly links = new Map<PingSink, string>();
  /** Every peer ever linked (probed while it has no link). */
  private readonly watched = new Set<string>();
  private running = false;
  private beatTimer?: ClockTimer;
  /** When the pending beat is due (Infinity: none pending). */
  private dueAt = Infinity;
  /** The beat whose lateness was noted already (a stall counts once). */
  private notedDue = NaN;
  /** No verdicts before this moment: our own event loop was stalled just before. */
  private quietUntil = -Infinity;
  private stallCount = 0;

  constructor(options: HeartbeatOptions) {
    const { heartbeatMs, deadAfterMs } = options;
    if (!(typeof heartbeatMs === 'number' && heartbeatMs > 0 && Number.isFinite(heartbeatMs))) {
      throw new RangeError(`heartbeat: heartbeatMs=${String(heartbeatMs)}; expected a finite number > 0`);
    }
    if (!(typeof deadAfterMs === 'number' && deadAfterMs >= 2 * heartbeatMs)) {
      throw new RangeError(`heartbeat: deadAfterMs=${String(deadAfterMs)}; expected a number >= 2 x heartbeatMs = ${2 * heartbeatMs} (or Infinity)`);
    }
    if (typeof options.onLost !== 'function') throw new TypeError('heartbeat: onLost must be a function');
    this.heartbeatMs = heartbeatMs;
    this.deadAfterMs = deadAfterMs;
    this.clock = options.clock ?? systemClock;
    this.onLost = options.onLost;
    this.onFound = options.onFound;
    this.probe = options.probe;
    if (Number.isFinite(deadAfterMs)) {
      // silent peers are handed over again every beat: a verdict held back by our own stall is
      // taken at most one beat after the quiet period
      this.liveness = new Liveness({ timeoutMs: deadAfterMs, checkEveryMs: heartbeatMs, clock: this.clock, onSilent: (s) => this.judge(s) });
    }
  }

  /** Starts pinging and judging (again after stop); peers heard before keep their silence clocks. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.liveness?.start();
    this.arm();
  }

  stop(): void {
    this.running = false;
    this.beatTimer?.cancel();
    this.beatTimer = undefined;
    this.dueAt = Infinity;
    this.liveness?.stop();
  }

  /** Something arrived from `peer`: its silence starts over; a lost peer is found again. Hot path. */
  heard(peer: string): void {
    this.liveness?.seen(peer);
    if (this.lostPeers.size !== 0 && this.lostPeers.delete(peer)) this.onFound?.(peer);
  }

  /**
   * An Exchange stream with `peer` opened: `sink` gets a ping every beat until the returned
   * function unlinks it. A peer not watched yet is from now on: its silence counts from here, so
   * a peer that never answers at all is lost too.
   */
  link(peer: string, sink: PingSink): () => void {
    this.links.set(sink, peer);
    this.watched.add(peer);
    if (this.liveness && !this.liveness.has(peer)) this.liveness.seen(peer);
    return () => { this.links.delete(sink); };
  }

  /** Whether `peer` is lost (silent for deadAfterMs and not heard from since). */
  isLost(peer: string): boolean {
    return this.lostPeers.has(peer);
  }

  /** How long a lost `peer` has been silent, in ms; undefined when it is not lost. */
  lostFor(peer: string): number | undefined {
    if (this.lostPeers.size === 0 || !this.lostPeers.has(peer)) return undefined;
    return this.liveness?.silentFor(peer) ?? this.deadAfterMs;
  }

  /** The peers lost now. */
  lost(): string[] {
    return [...this.lostPeers];
  }

  /** How long `peer` has been silent, in ms (undefined: not watched, or this end judges nobody). */
  silentFor(peer: string): number | undefined {
    return this.liveness?.silentFor(peer);
  }

  /** Stalls of our own event loop noticed so far (each held verdicts back for a beat). */
  get stalls(): number {
    return this.stallCount;
  }

  private arm(): void {
    this.dueAt = this.clock.now() + this.heartbeatMs;
    this.beatTimer = this.clock.after(this.heartbeatMs, () => this.beat());
  }

  private beat(): void {
    this.beatTimer = undefined;
    this.noteStall(this.clock.now());
    for (const sink of this.links.keys()) sink.push(PING_FRAME);
    if (this.probe && this.watched.size > this.links.size) {
      const linked = new Set(this.links.values());
      for (const peer of this.watched) if (!linked.has(peer)) this.probe(peer);
    }
    if (this.running) this.arm();
  }

  /** The beat timer is overdue by more than a period: our event loop was blocked, not the peers. */
  private noteStall(now: number): void {
    if (now - this.dueAt <= this.heartbeatMs || this.notedDue === this.dueAt) return;
    this.notedDue = this.dueAt;
    this.stallCount++;
    this.quietUntil = now + this.heartbeatMs;
  }

  private judge(silent: string[]): void {
    const now = this.clock.now();
    this.noteStall(now);
    if (now < this.quietUntil) return;
    for (const peer of silent) {
      if (this.lostPeers.has(peer)) continue;
      this.lostPeers.add(peer);
      this.onLost(peer, this.liveness!.silentFor(peer) ?? this.deadAfterMs);
    }
  }
}
