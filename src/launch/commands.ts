// How psrun turns a role (ps-server, trainer) into a command line: by default `node <package
// root>/bin/<role>.js`, the same entry points `npx ps-server` and `npx trainer` run. Tests and
// embedders inject their own resolver (fixture scripts, a tsx loader), so the launcher never
// depends on the training code.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LaunchError } from './errors.js';
import type { Role } from './topology.js';

export interface ResolvedCommand {
  command: string;
  /** Arguments before psrun's own (e.g. the entry script). */
  args: string[];
}

/** Returns the command for a role, or throws LaunchError naming what is missing. */
export type CommandResolver = (role: Role) => ResolvedCommand;

/** The directory of psrpc's package.json, found upward from this file (src/ or dist/src/). */
export function packageRoot(from = fileURLToPath(import.meta.url)): string {
  let dir = dirname(from);
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        if ((JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name === 'psrpc') return dir;
      } catch {
        // Not ours or unreadable: keep looking upward.
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new LaunchError(`cannot find psrpc's package.json above ${from}`);
    dir = up;
  }
}

/** The process entry files in the source tree, run through tsx when psrun itself runs from source. */
export const SOURCE_ENTRIES: Record<Role, string> = {
  'ps-server': 'src/cli/ps-server-main.ts',
  trainer: 'src/cli/trainer-main.ts',
};

/**
 * `node --import tsx <root>/src/.../main.ts`: what psrun uses when it runs from source (tests,
 * `node --import tsx src/cli/...`), where the bin scripts' compiled dist/ may be missing or stale.
 */
export function sourceResolver(root = packageRoot(), node = process.execPath): CommandResolver {
  // Resolved here, not by the child, so the child's working directory does not matter.
  const tsx = import.meta.resolve('tsx');
  return (role) => {
    const file = join(root, SOURCE_ENTRIES[role]);
    if (!existsSync(file)) throw new LaunchError(`the ${role} entry point ${file} does not exist; this version of psrpc cannot start ${role} processes`, file);
    return { command: node, args: ['--import', tsx, file] };
  };
}

/** The bin scripts when psrun runs compiled, the source entries when it runs from source. */
export function defaultResolver(): CommandResolver {
  return import.meta.url.endsWith('.ts') ? sourceResolver() : binResolver();
}

/** `node <root>/bin/<role>.js`; throws if the entry file does not exist. */
export function binResolver(root = packageRoot(), node = process.execPath): CommandResolver {
  return (role) => {
    const file = join(root, 'bin', `${role}.js`);
    if (!existsSync(file)) {
      throw new LaunchError(`the ${role} entry point ${file} does not exist; this version of psrpc cannot start ${role} processes`, file);
    }
    return { command: node, args: [file] };
  };
}
