// Processes on different hosts, for real: two network namespaces joined by a veth pair stand in for
// two machines (each has its own interfaces, and neither can reach the other's loopback). Agents
// listen on a namespace's address or on a wildcard with `advertise`; the addresses they publish,
// calls both ways, RRefs, 4 MiB payloads over the bulk side channel across the veth and the
// shutdown barrier are checked, and then a whole centralized training started with the commands'
// --listen / --advertise flags (and PSRPC_LISTEN / PSRPC_ADVERTISE).
//
// Needs root and `ip netns` (with veth): decided once at load by creating and deleting a probe
// namespace; without them the namespace tests are skipped with the reason in their titles. Every
// namespace, link and child process is removed in after.always, failures included.
import test from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, RpcError, Status } from '../../src/rpc/index.js';
import { nativeBulkEnabled } from '../../src/rpc/native-link.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = fileURLToPath(new URL('./fixtures/netns-agent.mjs', import.meta.url));
/** Whether two native ends on one host use shared memory (the children inherit this environment). */
const shmOn = nativeBulkEnabled() && process.env.PSRPC_SHM !== '0';
/** A child that has not finished by then is killed (and its test fails on the exit code). */
const CHILD_MS = 100_000;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const quiet = (...args: string[]) => { try { ip(...args); } catch { /* gone already */ } };

/** Why the namespace tests cannot run here, or undefined when they can. */
function unavailable(): string | undefined {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return 'not root (creating network namespaces needs root)';
  const probe = `psrpc-p${process.pid}`;
  try {
    ip('netns', 'add', probe);
    ip('-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1');
  } catch (e) {
    const why = String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim().split('\n')[0];
    return `ip netns with veth unavailable: ${why}`;
  } finally {
    quiet('netns', 'del', probe);
  }
  return undefined;
}

const skipped = unavailable();
const nsTest = skipped ? test.skip : test.serial;
const title = (what: string) => (skipped ? `${what} (skipped: ${skipped})` : what);

// Names fit IFNAMSIZ (15): psrpc-t + 6 hex + -a. The subnet is random too, so that concurrent runs
// on one machine do not collide.
const tag = randomBytes(3).toString('hex');
const NS_A = `psrpc-t${tag}-a`;
const NS_B = `psrpc-t${tag}-b`;
const NET = `10.231.${1 + (randomBytes(1)[0]! % 250)}`;
const IP_A = `${NET}.1`;
const IP_B = `${NET}.2`;

const children = new Set<ChildProcess>();

function removeAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
  quiet('netns', 'del', NS_A); // takes its end of the veth pair, and so the other end, with it
  quiet('netns', 'del', NS_B);
  quiet('link', 'del', NS_A); // the pair, if setup failed before moving it
}

test.before(() => {
  if (skipped) return;
  // a crash of the ava worker skips after.always; this still runs on an orderly exit
  process.once('exit', removeAll);
  ip('netns', 'add', NS_A);
  ip('netns', 'add', NS_B);
  ip('link', 'add', NS_A, 'type', 'veth', 'peer', 'name', NS_B);
  ip('link', 'set', NS_A, 'netns', NS_A);
  ip('link', 'set', NS_B, 'netns', NS_B);
  ip('-n', NS_A, 'addr', 'add', `${IP_A}/24`, 'dev', NS_A);
  ip('-n', NS_B, 'addr', 'add', `${IP_B}/24`, 'dev', NS_B);
  for (const ns of [NS_A, NS_B]) {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', ns, 'up');
  }
});

test.after.always(() => {
  if (!skipped) removeAll();
});

/** The environment without launcher variables, so that each test decides them. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'PSRPC_LISTEN', 'PSRPC_ADVERTISE', 'PSRPC_AUTH_TOKEN']) delete env[k];
  return { ...env, ...extra };
}

interface Ran { code: number | null; signal: string | null; stdout: string; stderr: string }

/** Runs `node ...args` inside namespace `ns`; resolves when it has exited. */
function runIn(ns: string, args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], { cwd: ROOT, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const lines = (r: Ran) => r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);

test('listening on a wildcard without advertise is refused; advertise is a host, never a port', async (t) => {
  const base = { name: 'w1', rank: 1, worldSize: 2, master: '127.0.0.1:1' };
  for (const listen of ['0.0.0.0:0', '[::]:0', '[0:0::0]:7000']) {
    const e = await t.throwsAsync(Agent.start({ ...base, listen }), { instanceOf: RpcError, message: /invalid option listen=.*wildcard.*needs advertise/ });
    t.is(e!.code, Status.INVALID_ARGUMENT);
  }
  await t.throwsAsync(Agent.start({ name: 'w0', rank: 0, worldSize: 2, master: '0.0.0.0:0' }), { message: /invalid option master="0\.0\.0\.0:0".*needs advertise/ });
  for (const [advertise, why] of [['10.0.0.1:5000', /without a port/], ['0.0.0.0', /wildcard/], ['[::]', /wildcard/], ['', /non-empty/], ['a b', /host name or IP/], ['[node1]', /IPv6 address only/]] as const) {
    await t.throwsAsync(Agent.start({ ...base, listen: '0.0.0.0:0', advertise }), { instanceOf: RpcError, message: why }, advertise);
  }
  // a wildcard listen with advertise publishes the advertised host with the bound port
  const a = await Agent.start({ name: 'w0', rank: 0, worldSize: 1, master: '0.0.0.0:0', advertise: '127.0.0.1' });
  const b = await Agent.start({ name: 'w1', rank: 1, worldSize: 2, master: '127.0.0.1:1', listen: '[::]:0', advertise: '::1' });
  try {
    t.regex(a.address, /^127\.0\.0\.1:[1-9]\d*$/);
    t.is(a.listenHost, '0.0.0.0');
    t.regex(b.address, /^\[::1\]:[1-9]\d*$/);
  } finally {
    await a.shutdown({ graceful: false });
    await b.shutdown({ graceful: false });
  }
});

nsTest(title('an agent world across two network namespaces: published addresses, calls both ways, RRefs, 4 MiB each way over the side channel, shutdown'), async (t) => {
  const common = { worldSize: 3, master: `${IP_A}:29500`, timeoutMs: 90_000 };
  const agent = (ns: string, o: Record<string, unknown>) => runIn(ns, ['--import', 'tsx', FIXTURE, JSON.stringify({ ...common, ...o })]);
  const [a0, b1, b2] = await Promise.all([
    agent(NS_A, { name: 'a0', rank: 0, peers: ['b1', 'b2'] }),
    agent(NS_B, { name: 'b1', rank: 1, listen: `${IP_B}:0`, peers: ['a0', 'b2'] }),
    agent(NS_B, { name: 'b2', rank: 2, listen: '0.0.0.0:0', advertise: IP_B, peers: ['a0', 'b1'] }),
  ]);
  const ips: Record<string, string> = { a0: IP_A, b1: IP_B, b2: IP_B };
  for (const [name, r] of [['a0', a0], ['b1', b1], ['b2', b2]] as const) {
    t.is(r.code, 0, `${name} exited ${r.code ?? r.signal}: ${r.stdout}${r.stderr}`);
    const out = lines(r);
    t.deepEqual(out.at(-1), { stopped: name }, `${name} passed the shutdown barrier`);
    const report = out.find((o) => o.report)?.report;
    if (!report) { t.fail(`${name} reported nothing: ${r.stdout}${r.stderr}`); continue; }
    // what was published at the rendezvous: the listen host, or the advertised one, with the bound port
    const addresses = Object.fromEntries(report.workers.map((w: { name: string; address: string }) => [w.name, w.address]));
    t.is(addresses.a0, `${IP_A}:29500`);
    t.regex(addresses.b1, new RegExp(`^${IP_B.replace(/\./g, '\\.')}:[1-9]\\d*$`));
    t.regex(addresses.b2, new RegExp(`^${IP_B.replace(/\./g, '\\.')}:[1-9]\\d*$`), 'the wildcard listener published its advertised host');
    for (const [peer, p] of Object.entries<Record<string, any>>(report.peers)) {
      const at = `${name} -> ${peer}`;
      t.deepEqual(p.whoami, { name: peer, address: addresses[peer] }, at);
      t.deepEqual(p.echo, { from: name, n: 7 }, at);
      t.deepEqual([p.rrefInc, p.rrefOwner, p.rrefToHere], [42, peer, { held: name }], `${at}: RRefs`);
      t.true(p.sideLinksUp, `${at}: both side links came up`);
      t.deepEqual(p.sent, { length: 1 << 20, sum: p.sentSum }, `${at}: 4 MiB request intact`);
      t.true(p.receivedIntact, `${at}: 4 MiB response intact`);
      t.true(p.echoIntact, `${at}: 4 MiB echo intact`);
      t.true(p.side.open && p.sideOut.open, `${at}: side links still open`);
      t.is(p.side.remoteAddress, ips[peer], `${at}: the side channel connects to the peer's published host`);
      if (ips[peer] !== ips[name]) {
        // another namespace counts as another host: TCP over the veth, no shared memory tried
        t.false(p.side.sharedMemory, `${at}: no shared memory across hosts`);
        t.false(p.sideOut.sharedMemory, `${at}: no shared memory across hosts (reverse link)`);
      } else {
        // one namespace is one host: the native transport's handshake decides, as between local processes
        t.is(p.side.sharedMemory && p.sideOut.sharedMemory, shmOn, `${at}: shared memory within one host`);
      }
    }
  }
});

nsTest(title('a centralized training across two network namespaces, started with --listen / --advertise (and PSRPC_LISTEN / PSRPC_ADVERTISE)'), async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-netns-'));
  try {
    const json = join(dir, 'result.json');
    const master = `${IP_A}:29501`;
    const common = ['--world-size', '3', '--servers', '1', '--master', master, '--strategy', 'centralized', '--dataset', 'synthetic',
      '--train-samples', '512', '--test-samples', '256', '--epochs', '1', '--hidden', '16', '--progress', 'none'];
    const [server, first, second] = await Promise.all([
      runIn(NS_A, ['bin/ps-server.js', '--name', 'ps0', '--rank', '0', ...common, '--listen', `${IP_A}:0`]),
      runIn(NS_B, ['bin/trainer.js', '--rank', '1', ...common, '--listen', `${IP_B}:0`, '--json', json]),
      runIn(NS_B, ['bin/trainer.js', '--rank', '2', ...common, '--json', join(dir, 'second.json')], { PSRPC_LISTEN: '0.0.0.0:0', PSRPC_ADVERTISE: IP_B }),
    ]);
    for (const [name, r] of [['ps-server', server], ['trainer rank 1', first], ['trainer rank 2', second]] as const) {
      t.is(r.code, 0, `${name} exited ${r.code ?? r.signal}: ${r.stderr.slice(-2000)}`);
    }
    const result = JSON.parse(readFileSync(json, 'utf8'));
    t.is(result.trainers, 2);
    t.true(result.samples > 0, `samples ${result.samples}`);
    t.is(typeof result.testAccuracy, 'number');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

nsTest(title('a trainer killed mid-run on one host is restarted on the other: it rejoins at its new address, and the run ends as the uninterrupted one, bit for bit'), async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-netns-'));
  try {
    // 2 trainers x 256 samples / 64 = 4 steps an epoch, 8 in all; the final checkpoint is number 8
    const job = (master: string, ckpt: string) => ['--world-size', '3', '--servers', '1', '--master', master, '--strategy', 'centralized', '--dataset', 'synthetic',
      '--train-samples', '512', '--test-samples', '256', '--epochs', '2', '--batch-size', '64', '--hidden', '16', '--momentum', '0.9', '--progress', 'none',
      '--checkpoint-dir', join(dir, ckpt), '--restart-timeout', '120'];
    const final = (ckpt: string) => readFileSync(join(dir, ckpt, 'ckpt-000000008', 'shard-0-of-1.safetensors'));
    const server = (master: string, ckpt: string) => runIn(NS_A, ['bin/ps-server.js', '--rank', '0', ...job(master, ckpt), '--listen', `${IP_A}:0`]);
    const trainer = (ns: string, ip: string, rank: number, master: string, ckpt: string, env: Record<string, string> = {}) =>
      runIn(ns, ['bin/trainer.js', '--rank', String(rank), ...job(master, ckpt), '--listen', `${ip}:0`, ...(rank === 1 ? ['--json', join(dir, `${ckpt}.json`)] : [])], env);
    const ref = await Promise.all([server(`${IP_A}:29502`, 'ref'), trainer(NS_B, IP_B, 1, `${IP_A}:29502`, 'ref'), trainer(NS_B, IP_B, 2, `${IP_A}:29502`, 'ref')]);
    for (const r of ref) t.is(r.code, 0, r.stderr.slice(-2000));
    // trainer1 (rank 2) dies on host B before its 5th push leaves it; the test starts it again, as
    // psrun --max-restarts would, but on host A: it rejoins the running world at a new address
    const master = `${IP_A}:29503`;
    const ps = server(master, 'kill');
    const first = trainer(NS_B, IP_B, 1, master, 'kill');
    const killed = await trainer(NS_B, IP_B, 2, master, 'kill', { PSRPC_FAULT_KILL_TRAINER_AT_STEP: 'trainer1:5' });
    t.is(killed.signal, 'SIGKILL', killed.stderr.slice(-2000));
    const again = await trainer(NS_A, IP_A, 2, master, 'kill', { PSRPC_REJOIN: '1', PSRPC_RESTART_COUNT: '1' });
    t.is(again.code, 0, again.stderr.slice(-2000));
    t.regex(again.stderr, /trainer1: rejoined the running job \(restart 1\): resuming at step 4 \(epoch 1, batch 0\)/);
    for (const r of await Promise.all([ps, first])) t.is(r.code, 0, r.stderr.slice(-2000));
    t.true(final('kill').equals(final('ref')), 'the final parameters and momentum equal the uninterrupted run\'s');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
