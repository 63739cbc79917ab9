// BatchQueue: the batches of an elastic job, handed out one at a time by the first server.
//
// Elastic training (--min-trainers) cannot give each trainer a fixed share of the data: trainers
// join and leave mid-run. Instead every batch of every epoch has a number, `epoch * perEpoch +
// batch` (batch `batch` of the epoch's shuffled order over the whole training split, the same on
// every trainer: DataLoader.batchAt), and the first server hands the numbers out in order. A batch
// is done when the push that carries its number has been applied (sync: when the round steps). A
// trainer that leaves or is dropped gives its batch back, and the next trainer to ask takes it
// before any new one. So the rest of an epoch is always shared by the live trainers, and each
// batch is trained exactly once. Exception: with several servers, a trainer that dies between its
// pushes gives its batch back although some servers applied it. They then apply it a second time.
//
// A trainer asking while every batch is handed out but some are not done waits: one of them may
// come back. It is answered null once all are done (the job's end).
import { RpcError, Status } from '../rpc/index.js';

export interface BatchQueueShape {
  /** Batches per epoch (of the whole training split). */
  perEpoch: number;
  epochs: number;
}

export interface BatchQueueStats extends BatchQueueShape {
  /** Batches handed out (a batch given back and handed out again counts twice). */
  handed: number;
  done: number;
  /** Batches given back by trainers that left or were dropped before their push was applied. */
  requeued: number;
  /** Batches each trainer completed, by name. */
  byTrainer: Record<string, number>;
}

/** A queue as a checkpoint keeps it: every batch below `next` is done except those `pending`. */
export interface BatchQueueState extends BatchQueueShape {
  next: number;
  /** Handed out (or given back) but not done at the checkpoint's step: handed out again first. */
  pending: number[];
  handed: number;
  done: number;
  requeued: number;
  byTrainer: Record<string, number>;
}

export class BatchQueue {
  readonly total: number;
  private next = 0;
  /** Batches given back, taken before new ones (smallest first). */
  private readonly back: number[] = [];
  /** Batch out with each trainer. */
  private readonly out = new Map<string, number>();
  private readonly waiting: Array<{ trainer: string; resolve: (b: number | null) => void }> = [];
  private readonly counts = { handed: 0, done: 0, requeued: 0 };
  private readonly byTrainer: Record<string, number> = {};

  constructor(readonly server: string, readonly shape: BatchQueueShape) {
    this.total = shape.perEpoch * shape.epochs;
  }

  /** The queue at this moment, for a checkpoint: a batch out with a trainer counts as not done. */
  state(): BatchQueueState {
    const pending = [...this.back, ...this.out.values()].sort((x, y) => x - y);
    return { ...this.shape, next: this.next, pending, ...this.counts, byTrainer: { ...this.byTrainer } };
  }

  /** A queue going on from a checkpoint's `state` (the batches pending there are handed out first). */
  static restore(server: string, s: BatchQueueState): BatchQueue {
    const ok = (n: unknown, min: number) => Number.isSafeInteger(n) && (n as number) >= min;
    if (!s || !ok(s.perEpoch, 1) || !ok(s.epochs, 1) || !ok(s.next, 0) || s.next > s.perEpoch * s.epochs || !Array.isArray(s.pending) || s.pending.some((b) => !ok(b, 0) || b >= s.next)) {
      throw new RpcError(Status.FAILED_PRECONDITION, server, `parameter server "${server}": the checkpoint's batch queue (psrpc.batches) is malformed: ${JSON.stringify(s)?.slice(0, 200)}`);
    }
    const q = new BatchQueue(server, { perEpoch: s.perEpoch, epochs: s.epochs });
    q.next = s.next;
    q.back.push(...[...new Set(s.pending)].sort((x, y) => x - y));
    q.counts.handed = s.handed ?? 0;
    q.counts.done = s.done ?? 0;
    q.counts.requeued = s.requeued ?? 0;
    Object.assign(q.byTrainer, s.byTrainer ?? {});
    return q;
  }

  /** Refuses a trainer whose data or epochs differ from the queue's (it would number batches otherwise). */
  check(trainer: string, shape: BatchQueueShape): void {
    if (shape.perEpoch !== this.shape.perEpoch || shape.epochs !== this.shape.epochs) {
      throw new RpcError(Status.FAILED_PRECONDITION, this.server,
        `parameter server "${this.server}": trainer "${trainer}" counts ${shape.perEpoch} batches an epoch for ${shape.epochs} epochs; the job's batches were numbered for ${this.shape.perEpoch} x ${this.shape.epochs} (every trainer needs the same dataset, --train-samples, --batch-size and --epochs)`);
    }
  }

  /**
   * The next batch for `trainer`, or null when every batch is done. A trainer that asks while it
   * holds a batch is a restarted process: it gets its predecessor's batch again.
   */
  take(trainer: string): Promise<number | null> {
    const held = this.out.get(trainer);
    if (held !== undefined) return Promise.resolve(held);
    const b = this.pick();
    if (b !== undefined) return Promise.resolve(this.hand(trainer, b));
    if (this.out.size === 0) return Promise.resolve(null);
    return new Promise((resolve) => this.waiting.push({ trainer, resolve }));
  }

  /** Whether `take(trainer)` answers at once (it holds a batch, one is free, or all are done). */
  ready(trainer: string): boolean {
    return this.out.has(trainer) || this.back.length > 0 || this.next < this.total || this.out.size === 0;
  }

  /** Checks that `trainer` holds batch `b` (before its push changes anything). */
  checkHeld(trainer: string, b: number): void {
    const held = this.out.get(trainer);
    if (held !== b) {
      throw new RpcError(Status.INVALID_ARGUMENT, this.server,
        `parameter server "${this.server}": trainer "${trainer}" pushed for batch ${b}, but ${held === undefined ? 'holds none' : `holds batch ${held}`} (batches come from ps.batch)`);
    }
  }

  /** `trainer`'s push for its batch was applied. */
  complete(trainer: string): void {
    if (!this.out.delete(trainer)) return;
    this.counts.done++;
    this.byTrainer[trainer] = (this.byTrainer[trainer] ?? 0) + 1;
    this.wake();
  }

  /** `trainer` left or was dropped: its batch goes back to the queue. */
  release(trainer: string): void {
    // a trainer that leaves while it waits for a batch takes none
    for (let i = this.waiting.length - 1; i >= 0; i--) if (this.waiting[i]!.trainer === trainer) this.waiting.splice(i, 1)[0]!.resolve(null);
    const b = this.out.get(trainer);
    if (b === undefined) return;
    this.out.delete(trainer);
    this.counts.requeued++;
    this.back.push(b);
    this.back.sort((x, y) => x - y);
    this.wake();
  }

  stats(): BatchQueueStats {
    return { ...this.shape, ...this.counts, byTrainer: { ...this.byTrainer } };
  }

  /** Answers the waiting trainers: with a batch given back, or null once all are done. */
  private wake(): void {
    while (this.waiting.length > 0) {
      const b = this.pick();
      if (b === undefined) {
        if (this.out.size > 0) return;
        for (const w of this.waiting.splice(0)) w.resolve(null);
        return;
      }
      const w = this.waiting.shift()!;
      w.resolve(this.hand(w.trainer, b));
    }
  }

  private pick(): number | undefined {
    if (this.back.length > 0) return this.back.shift();
    if (this.next < this.total) return this.next++;
    return undefined;
  }

  private hand(trainer: string, b: number): number {
    this.out.set(trainer, b);
    this.counts.handed++;
    return b;
  }
}
