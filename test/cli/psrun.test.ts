// psrun's own flags, parsed without running a job: the grace periods and their one-line errors.
import test from 'ava';
import { CommanderError } from 'commander';
import { psrunCommand } from '../../src/cli/psrun.js';

function parse(args: string[]): Record<string, unknown> | string {
  let written = '';
  const cmd = psrunCommand().configureOutput({ writeErr: (s) => { written += s; }, writeOut: () => {} });
  try {
    cmd.parse(['node', 'psrun', ...args]);
    return cmd.opts();
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    return written.trim();
  }
}

test('the grace periods default to 5 s (kill) and 30 s (servers), and take seconds', (t) => {
  t.like(parse([]), { killGrace: 5, serverExitGrace: 30, strategy: 'centralized', progress: 'auto' });
  t.like(parse(['--kill-grace', '0.3', '--server-exit-grace', '0']), { killGrace: 0.3, serverExitGrace: 0 });
  t.like(parse(['--kill-grace', '3600']), { killGrace: 3600 });
});

for (const flag of ['--kill-grace', '--server-exit-grace']) {
  for (const value of ['-1', '3601', 'soon', '', 'NaN']) {
    test(`${flag} ${JSON.stringify(value)} is refused with one line`, (t) => {
      t.is(parse([flag, value]), `error: option '${flag} <seconds>' argument '${value}' is invalid. ${flag} must be a number of seconds in [0, 3600], got '${value}'`);
    });
  }
}

test('--shards takes name=fraction pairs', (t) => {
  t.like(parse(['--shards', 'ps0=0.75, ps1 = 0.25']), { shards: { ps0: 0.75, ps1: 0.25 } });
  t.regex(parse(['--shards', 'ps0=0.5,ps0=0.5']) as string, /--shards names 'ps0' twice$/);
  t.regex(parse(['--shards', 'ps0=half']) as string, /--shards must look like ps0=0\.75,ps1=0\.25, got 'ps0=half'$/);
});
