// Every error psrun raises, built in one place.
//
// A bad topology (flags or file) is the user's mistake and is reported before any process starts:
// `TopologyError` carries where the problem is (a flag, or `file:line:column` / a key path).
// `LaunchError` is a problem starting the job (a missing entry file, no free port); a process that
// fails while running is not an exception but a `ProcessFailure` record the launcher reports.

/** The topology (flags or file) cannot run; the message is the one line psrun prints. */
export class TopologyError extends Error {
  override readonly name = 'TopologyError';
  constructor(message: string, readonly where?: string) {
    super(where ? `${where}: ${message}` : message);
  }
}

/** The job could not be started (missing entry file, no port, temp dir). */
export class LaunchError extends Error {
  override readonly name = 'LaunchError';
  constructor(message: string, readonly path?: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Quotes a value for an error message: strings in quotes, the rest as JSON. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  try {
    const s = JSON.stringify(value) ?? typeof value;
    return s.length > 60 ? s.slice(0, 57) + '...' : s;
  } catch {
    return typeof value;
  }
}
