// The tensor layer's typed errors, all created here so that messages follow one pattern:
// the op, the shapes it got and what it expected.
//
// Every op validates before it touches a buffer or records a graph node, so a thrown error
// leaves tensors, gradients and the autograd graph exactly as they were.

/** A tensor had the wrong shape (or size) for an op. */
export class ShapeError extends Error {
  override readonly name = 'ShapeError';
  /** The op that rejected its inputs, e.g. 'linear'. */
  readonly op: string;
  /** The shapes the op was given, in argument order. */
  readonly shapes: readonly (readonly number[])[];
  constructor(op: string, shapes: readonly (readonly number[])[], expected: string) {
    super(`${op}: got shape${shapes.length === 1 ? '' : 's'} ${shapes.map(fmtShape).join(', ')}; expected ${expected}`);
    this.op = op;
    this.shapes = shapes;
  }
}

/** A tensor had the wrong dtype (e.g. float32 labels), or a device the op cannot use. */
export class DTypeError extends Error {
  override readonly name = 'DTypeError';
  readonly op: string;
  constructor(op: string, message: string) {
    super(`${op}: ${message}`);
    this.op = op;
  }
}

/** Autograd misuse: backward from a non-scalar without a gradient, through a freed graph, ... */
export class AutogradError extends Error {
  override readonly name = 'AutogradError';
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Factories: one per kind of mistake, so op code reads as the check it makes. */
export const errors = {
  shape(op: string, shapes: readonly (readonly number[])[], expected: string): ShapeError {
    return new ShapeError(op, shapes, expected);
  },
  dtype(op: string, what: string, got: string, expected: string): DTypeError {
    return new DTypeError(op, `${what} has dtype ${got}; expected ${expected}`);
  },
  device(op: string, devices: readonly string[], message?: string): DTypeError {
    return new DTypeError(op, message ?? `inputs are on devices ${devices.join(', ')}; all inputs must be on one device`);
  },
  argument(op: string, name: string, value: unknown, expected: string): RangeError {
    return new RangeError(`${op}: ${name} = ${String(value)} is invalid; expected ${expected}`);
  },
  /** A RangeError for a bad value that is not a single named argument. */
  range(op: string, message: string): RangeError {
    return new RangeError(`${op}: ${message}`);
  },
  /** A TypeError for an argument of the wrong kind. */
  type(op: string, message: string): TypeError {
    return new TypeError(`${op}: ${message}`);
  },
  autograd(message: string): AutogradError {
    return new AutogradError(message);
  },
};
