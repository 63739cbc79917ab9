#!/usr/bin/env node
// `psrun` command: runs the compiled CLI (built by `npm install` through the prepare script).
import { existsSync } from 'node:fs';
const cli = new URL('../dist/src/cli/psrun.js', import.meta.url);
if (!existsSync(cli)) {
  console.error(`psrpc: ${cli.pathname} is missing; build it with \`npm run build\` (npm install does this)`);
  process.exit(1);
}
const { main } = await import(cli.href);
// wallSeconds counts from the process start (performance.now() is 0 there).
process.exitCode = await main(process.argv, { startTime: 0 });
