// A model's parameters as processes and threads compare them (names, sizes and, where known,
// shapes, in order): each builds its own instance of the model, and all of them must agree.

/** One parameter of a model's layout. */
export interface ParameterLayout {
  name: string;
  size: number;
  shape?: readonly number[];
}

function describe(p: ParameterLayout, withShape: boolean): string {
  return withShape && p.shape ? `'${p.name}' [${p.shape.join(', ')}]` : `'${p.name}' (${p.size})`;
}

/**
 * The first parameter in which layout `got` differs from `want` (names and sizes, and shapes where
 * both carry them), in words; null when they agree.
 */
export function layoutDifference(want: readonly ParameterLayout[], got: readonly ParameterLayout[]): string | null {
  const n = Math.max(want.length, got.length);
  for (let i = 0; i < n; i++) {
    const a = want[i];
    const b = got[i];
    const shapes = Boolean(a?.shape && b?.shape);
    if (!a) return `${got.length} parameters instead of ${want.length}: parameter ${i} ${describe(b!, true)} is extra`;
    if (!b) return `${got.length} parameters instead of ${want.length}: parameter ${i} ${describe(a, true)} is missing`;
    const sameShape = !shapes || (a.shape!.length === b.shape!.length && a.shape!.every((d, k) => d === b.shape![k]));
    if (a.name !== b.name || a.size !== b.size || !sameShape) return `parameter ${i} is ${describe(b, shapes)} instead of ${describe(a, shapes)}`;
  }
  return null;
}

/** The layout of a module's parameters (names, sizes, shapes), in `namedParameters` order. */
export function layoutOf(m: { namedParameters(): [string, { size: number; shape: readonly number[] }][] }): ParameterLayout[] {
  return m.namedParameters().map(([name, p]) => ({ name, size: p.size, shape: [...p.shape] }));
}
