#!/usr/bin/env node
// Run by `prepare` after `npm install` in a checkout: links this package's own commands (package.json
// "bin") into node_modules/.bin, where `npx` looks first. npm links the bins of dependencies only,
// so without this `npx psrun` in a fresh checkout would copy the package into npx's cache and
// rebuild its native addon there (about 30 s) before the first run. Never fails the install: a
// command that cannot be linked is reported and `npx` falls back to its own way.
'use strict';
const { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, unlinkSync } = require('node:fs');
const { join, relative } = require('node:path');

const root = join(__dirname, '..');
const modules = join(root, 'node_modules');
if (!existsSync(modules)) process.exit(0); // installed as a dependency: npm links the bins itself
const bins = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).bin ?? {};
const dir = join(modules, '.bin');
mkdirSync(dir, { recursive: true });
for (const [name, file] of Object.entries(bins)) {
  const link = join(dir, name);
  try {
    try {
      if (lstatSync(link).isSymbolicLink()) unlinkSync(link);
      else continue; // a real file of that name belongs to someone else: leave it
    } catch { /* not there yet */ }
    symlinkSync(relative(dir, join(root, file)), link);
  } catch (e) {
    process.stderr.write(`psrpc: could not link ${name} into node_modules/.bin (${e.message}); npx will install it on first use\n`);
  }
}
