// The layering of docs/ARCHITECTURE.md: a file of src/<layer>/ imports (statically, dynamically or
// for types only) from its own layer and the layers below, never from one above; src/index.ts, the
// public face, may import anything.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bottom up. */
const LAYERS = ['tensor', 'data', 'rpc', 'server', 'trainer', 'hogwild', 'launch', 'cli'];
const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const IMPORT = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    return e.isDirectory() ? sources(path) : e.name.endsWith('.ts') ? [path] : [];
  });
}

test('no layer imports from a layer above it', (t) => {
  const upward: string[] = [];
  let seen = 0;
  for (const file of sources(SRC)) {
    const layer = LAYERS.indexOf(relative(SRC, file).split('/')[0]!);
    if (layer < 0) continue;
    for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const spec = (m[1] ?? m[2] ?? m[3])!;
      if (!spec.startsWith('.')) continue;
      seen++;
      const target = relative(SRC, resolve(dirname(file), spec)).split('/')[0]!;
      if (LAYERS.indexOf(target) > layer) upward.push(`${relative(SRC, file)} imports ${spec}`);
    }
  }
  t.true(seen > 100, 'the imports were found');
  t.deepEqual(upward, []);
});
