// The errors a Hogwild run throws, built in one place.

/** A worker thread failed: the run was stopped and the pool destroyed. `cause` is the worker's error. */
export class HogwildWorkerError extends Error {
  override readonly name = 'HogwildWorkerError';
  constructor(
    /** Rank of the worker that failed (its DistributedSampler partition). */
    readonly rank: number,
    cause: unknown,
  ) {
    super(`hogwild worker ${rank} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** A bad option of `hogwild.train`: names the option and the value. */
export class HogwildOptionError extends RangeError {
  override readonly name = 'HogwildOptionError';
  constructor(readonly option: string, readonly value: unknown, expected: string) {
    super(`hogwild option ${option} must be ${expected}, got ${typeof value === 'string' ? `'${value}'` : String(value)}`);
  }
}
