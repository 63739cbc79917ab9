// The `--dataset` flag's grammar, parsed in one place (docs/DATA.md):
//   fashion-mnist | mnist | synthetic   a built-in dataset
//   idx:FOLDER                          the four IDX files of the MNIST layout in FOLDER
//   file:PATH                           a paged dataset file written by `psdata convert`
//   ./x.mjs, /abs/x.js, y.ts, ...       a dataset module exporting createDataset(ctx)
// A module is anything that looks like a path: it starts with ./, ../, / (or a drive letter), or
// ends in .js, .mjs, .cjs, .ts, .mts or .cts; a file:// URL is a module too (file: without // is the
// dataset file).
import { fileURLToPath } from 'node:url';
import { DataOptionError } from './errors.js';

export const DATASET_NAMES = ['fashion-mnist', 'mnist', 'synthetic'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export type DatasetSpec =
  | { kind: 'builtin'; name: DatasetName }
  | { kind: 'idx'; path: string }
  | { kind: 'file'; path: string }
  | { kind: 'module'; path: string };

const MODULE_EXT = /\.(m|c)?(js|ts)$/;
const PATH_START = /^(\.{1,2}[\\/]|[\\/]|[A-Za-z]:[\\/])/;

const EXPECTED = `one of ${DATASET_NAMES.join(', ')}, idx:FOLDER, file:PATH or a dataset module path (./my-data.mjs)`;

/** True for the strings the flag reads as a dataset module. */
export function looksLikeModule(spec: string): boolean {
  return spec.startsWith('file://') || PATH_START.test(spec) || MODULE_EXT.test(spec);
}

/** Parses a `--dataset` value (or passes a parsed one through, checked). */
export function parseDatasetSpec(spec: string | DatasetSpec, option = 'dataset'): DatasetSpec {
  if (typeof spec === 'object' && spec !== null) return checkSpecObject(spec, option);
  if (typeof spec !== 'string' || spec === '') throw new DataOptionError(option, spec, EXPECTED);
  if ((DATASET_NAMES as readonly string[]).includes(spec)) return { kind: 'builtin', name: spec as DatasetName };
  for (const kind of ['idx', 'file'] as const) {
    if (spec.startsWith(`${kind}:`) && !spec.startsWith('file://')) {
      const path = spec.slice(kind.length + 1);
      if (path === '') throw new DataOptionError(option, spec, `${kind}:${kind === 'idx' ? 'FOLDER' : 'PATH'} with a non-empty path`);
      return { kind, path };
    }
  }
  if (looksLikeModule(spec)) {
    return { kind: 'module', path: spec.startsWith('file://') ? fileURLToPath(spec) : spec };
  }
  throw new DataOptionError(option, spec, EXPECTED);
}

function checkSpecObject(spec: DatasetSpec, option: string): DatasetSpec {
  switch (spec.kind) {
    case 'builtin':
      if ((DATASET_NAMES as readonly string[]).includes(spec.name)) return spec;
      break;
    case 'idx':
    case 'file':
    case 'module':
      if (typeof spec.path === 'string' && spec.path !== '') return spec;
      break;
  }
  throw new DataOptionError(option, spec, EXPECTED);
}

/** The flag's string form of a spec (the inverse of parseDatasetSpec for the string forms). */
export function formatDatasetSpec(spec: DatasetSpec): string {
  return spec.kind === 'builtin' ? spec.name : spec.kind === 'module' ? spec.path : `${spec.kind}:${spec.path}`;
}
