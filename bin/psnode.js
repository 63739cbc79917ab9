#!/usr/bin/env node
// `psnode` command: runs the compiled CLI (built by `npm install` through the prepare script).
import { existsSync } from 'node:fs';
const entry = new URL('../dist/src/cli/psnode-main.js', import.meta.url);
if (!existsSync(entry)) {
  console.error(`psrpc: ${entry.pathname} is missing; build it with \`npm run build\` (npm install does this)`);
  process.exit(1);
}
await import(entry.href);
