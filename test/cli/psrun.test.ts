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

test('--max-restarts takes a count; the auth token is made per job unless given or turned off', (t) => {
  t.like(parse([]), { maxRestarts: 0, auth: true });
  t.like(parse(['--max-restarts', '3', '--no-auth']), { maxRestarts: 3, auth: false });
  t.is(parse(['--max-restarts', 'x']), "error: option '--max-restarts <n>' argument 'x' is invalid. --max-restarts must be an integer in [0, 1000], got 'x'");
});

test('checkpoint and TLS flags psrun cannot honour are refused with one line before any process starts', async (t) => {
  const { main } = await import('../../src/cli/psrun.js');
  const cases: Array<[string[], RegExp]> = [
    [['--resume'], /^error: --resume needs --checkpoint-dir/],
    [['--trainers', '1:2', '--strategy', 'ddp'], /^error: --min-trainers \(elastic trainers\): only the centralized strategy takes trainers joining and leaving mid-run, got --strategy ddp/],
    [['--tls-cert', '/nonexistent/cert.pem', '--tls-key', '/nonexistent/key.pem'], /^error: --tls-cert \/nonexistent\/cert\.pem: cannot read the file \(ENOENT\)/],
  ];
  for (const [args, line] of cases) {
    let err = '';
    let spawned = 0;
    const code = await main(['node', 'psrun', ...args], {
      stdout: { write: () => true }, stderr: { write: (s: string) => { err += s; return true; } }, handleSignals: false,
      spawn: () => { spawned++; throw new Error('no process may start'); },
    });
    t.is(code, 1, args.join(' '));
    t.regex(err, line);
    t.is(spawned, 0);
  }
});

test('psrun hands every process of a job the same new auth token in the environment, never on a command line', async (t) => {
  const { main } = await import('../../src/cli/psrun.js');
  const seen: Array<{ args: readonly string[]; token: string | undefined }> = [];
  const run = async (extra: string[], env: NodeJS.ProcessEnv = {}) => {
    seen.length = 0;
    await main(['node', 'psrun', '--servers', '1', '--trainers', '2', '--kill-grace', '0', ...extra], {
      stdout: { write: () => true }, stderr: { write: () => true }, handleSignals: false, env,
      resolve: () => ({ command: process.execPath, args: [] }),
      spawn: (_c, args, o) => { seen.push({ args, token: o.env?.PSRPC_AUTH_TOKEN }); throw new Error('not started'); },
    });
    return seen.map((s) => s.token);
  };
  const first = await run([]);
  t.true(first.length >= 1);
  t.regex(first[0]!, /^[A-Za-z0-9_-]{32}$/);
  t.true(first.every((x) => x === first[0]));
  t.false(seen.some((s) => s.args.some((a) => a.includes(first[0]!))), 'not on a command line');
  t.not((await run([]))[0], first[0], 'a new one per job');
  t.is((await run(['--auth-token', 'given-token']))[0], 'given-token');
  t.is((await run([], { PSRPC_AUTH_TOKEN: 'from-env' }))[0], 'from-env');
  t.is((await run(['--no-auth']))[0], undefined);
});
