#!/usr/bin/env node
// `trainer` command: runs the compiled CLI (built by `npm install` through the prepare script).
import { existsSync } from 'node:fs';
const cli = new URL('../dist/src/trainer/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error(`psrpc: ${cli.pathname} is missing; build it with \`npm run build\` (npm install does this)`);
  process.exit(1);
}
const { main } = await import(cli.href);
process.exitCode = await main(process.argv);
