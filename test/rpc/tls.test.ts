// TLS (InitOptions.tls): a world with certificates from one CA works end to end (calls, RRefs,
// 4 MiB tensors over the side channel, which then runs on TLS sockets of the JS implementation,
// never the native one, and the shutdown barrier); a worker without TLS, or whose CA is another,
// cannot join or call (UNAVAILABLE naming the peer, nothing runs); the peer's advertised host is
// checked against its certificate; mutual TLS refuses a client without an accepted certificate;
// and a bad tls option is refused without showing the key.
//
// The certificates are made here with openssl, in a temporary directory removed at the end.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { Agent, init, RpcError, Status, type TlsOptions } from '../../src/rpc/index.js';
import { SideLink, SideOffer } from '../../src/rpc/bulk-socket.js';
import { encode, flatten } from '../../src/rpc/codec.js';
import { frameSegments, Kind } from '../../src/rpc/frame.js';
import { resolveOptions } from '../../src/rpc/options.js';
import type { RendezvousHost } from '../../src/rpc/rendezvous.js';
import { startWorld, stopWorld, WORLD_TIMEOUT_MS as LONG } from './world.js';

const run = promisify(execFile);
const OPENSSL = spawnSync('openssl', ['version']).status === 0;
const it = OPENSSL ? test : test.skip;
if (!OPENSSL) test.skip('TLS tests skipped: `openssl` is not on PATH (it makes the test certificates)', () => {});

/** A joiner that cannot connect gives up at its own deadline: short, and the outcome does not depend on it. */
const GIVE_UP_MS = 2000;

let dir = '';
const pem: Record<string, Buffer> = {};

/** A CA (key + self-signed cert) and `leaf` certificates it signs, each for the given subjectAltName. */
async function makeCa(ca: string, leaves: Array<[name: string, san: string]>): Promise<void> {
  const f = (n: string) => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', f(`${ca}.key`), '-out', f(`${ca}.pem`), '-days', '2', '-subj', `/CN=psrpc test ${ca}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  let serial = 1;
  for (const [name, san] of leaves) {
    writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n`);
    await run('openssl', ['req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=psrpc test ${name}`]);
    await run('openssl', ['x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.pem`), '-CAkey', f(`${ca}.key`), '-set_serial', String(++serial),
      '-days', '2', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`)]);
  }
}

test.before(async () => {
  if (!OPENSSL) return;
  dir = mkdtempSync(join(tmpdir(), 'psrpc-tls-'));
  await makeCa('ca', [['node', 'IP:127.0.0.1,DNS:localhost'], ['named', 'DNS:localhost']]);
  await makeCa('other-ca', [['stranger', 'IP:127.0.0.1,DNS:localhost']]);
  for (const n of ['ca', 'node', 'named', 'other-ca', 'stranger']) {
    pem[`${n}.pem`] = readFileSync(join(dir, `${n}.pem`));
    if (n !== 'ca' && n !== 'other-ca') pem[`${n}.key`] = readFileSync(join(dir, `${n}.key`));
  }
});

test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** TLS with a certificate `name` of CA `ca` (cert and key as Buffers, the CA as a string: both forms are accepted). */
const tlsOf = (name: string, ca: string, requireClientCert = false): TlsOptions => ({ cert: pem[`${name}.pem`]!, key: pem[`${name}.key`]!, ca: pem[`${ca}.pem`]!.toString('utf8'), requireClientCert });

type PeerView = { side?: SideLink; sideOut?: SideLink; sideLinksUp(): Promise<void>; call(fn: string, p: unknown, ms: number): Promise<Buffer> };
const peerOf = (a: Agent, to: string) => (a as unknown as { peers: Map<string, PeerView> }).peers.get(to)!;
/** A Peer of `a` to an agent of another world, reached at `address` (as in auth.test.ts). */
const peerTo = (a: Agent, name: string, address: string) =>
  (a as unknown as { peer(w: { name: string; rank: number; address: string }): PeerView }).peer({ name, rank: 0, address });
const socketOf = (link: SideLink) => (link as unknown as { socket: tls.TLSSocket }).socket;
const hostOf = (master: Agent) => (master as unknown as { host: RendezvousHost }).host;
const MiB4 = () => Float32Array.from({ length: 1024 * 1024 }, (_, i) => i % 4099); // 4 MiB

it('two agents with TLS: calls, an RRef, a 4 MiB Float32Array both ways over TLS side links (JS, not native), and the shutdown barrier', async (t) => {
  const [a, b] = await startWorld(2, { tls: tlsOf('node', 'ca') });
  try {
    b!.register('echo', (x: unknown) => x);
    b!.register('make', (n: number) => new Float32Array(n).fill(2.5));
    a!.register('echo', (x: unknown) => x);
    t.is(await a!.call('w1', 'echo', ['hello']), 'hello');
    const peer = peerOf(a!, 'w1');
    await peer.sideLinksUp();
    // both side links are the JS implementation on TLS sockets, whatever PSRPC_NATIVE_BULK says
    for (const link of [peer.side!, peer.sideOut!]) {
      t.true(link instanceof SideLink, 'JS side link under TLS');
      t.true(socketOf(link) instanceof tls.TLSSocket && socketOf(link).encrypted, 'a TLS socket');
    }
    // link A: this end connected and verified the callee's certificate; the reverse link's end
    // here is the server's, which asks for no client certificate without requireClientCert
    t.true(socketOf(peer.side!).authorized, 'the callee\'s certificate was verified');
    t.false(socketOf(peer.sideOut!).authorized);
    const big = MiB4();
    const sentBefore = socketOf(peer.sideOut!).bytesWritten;
    const readBefore = socketOf(peer.side!).bytesRead;
    t.deepEqual(await a!.call('w1', 'echo', [big]), big);
    // the request left on the reverse link and the answer came back on link A, not over gRPC Bulk
    t.true(socketOf(peer.sideOut!).bytesWritten - sentBefore >= big.byteLength);
    t.true(socketOf(peer.side!).bytesRead - readBefore >= big.byteLength);
    t.deepEqual(await b!.call('w0', 'echo', [big]), big, 'the other direction');
    const ref = a!.remote<Float32Array>('w1', 'make', [3]);
    t.deepEqual(await ref.toHere(), new Float32Array(3).fill(2.5));
  } finally {
    await stopWorld([a!, b!]); // graceful: the barrier runs through the master over TLS
  }
});

it('a worker without TLS, or whose CA is another, cannot join a TLS world (UNAVAILABLE, no slot taken); the right worker then completes it', async (t) => {
  const master = await Agent.start({ name: 'm', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: LONG, tls: tlsOf('node', 'ca') });
  const joined: string[] = [];
  hostOf(master).onJoin = (w) => { joined.push(w.name); };
  const world = master.rendezvous();
  let right: Agent | undefined;
  try {
    const intruders: Array<[string, TlsOptions | undefined, RegExp]> = [
      ['no TLS', undefined, /: Failed to connect before the deadline$/],
      ['another CA', tlsOf('stranger', 'other-ca'), /: Failed to connect before the deadline \(TLS is on: the master's certificate must chain to tls\.ca/],
    ];
    for (const [what, tlsOptions, detail] of intruders) {
      const e = await init({ name: 'intruder', rank: 1, worldSize: 2, master: master.address, timeoutMs: GIVE_UP_MS, ...(tlsOptions ? { tls: tlsOptions } : {}) }).catch((x: unknown) => x);
      t.true(e instanceof RpcError, `${what}: ${String(e)}`);
      t.is((e as RpcError).code, Status.UNAVAILABLE, what);
      t.true((e as RpcError).message.startsWith(`master ${master.address} unreachable from "intruder" within ${GIVE_UP_MS} ms`), (e as RpcError).message);
      t.regex((e as RpcError).message, detail);
    }
    t.deepEqual(joined, ['m'], 'no refused worker took a slot');
    right = await init({ name: 'w1', rank: 1, worldSize: 2, master: master.address, timeoutMs: LONG, tls: tlsOf('node', 'ca') });
    t.is(await world, master);
    t.deepEqual(master.workers().map((w) => w.name), ['m', 'w1']);
  } finally {
    await Promise.all([master.shutdown(), right?.shutdown() ?? world.then(() => {}, () => {})]);
  }
});

it('a worker without TLS, or whose CA is another, calling a TLS agent gets UNAVAILABLE naming it, and nothing runs; nor can a TLS agent call a plain one', async (t) => {
  const b = await init({ name: 'b', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG, tls: tlsOf('node', 'ca') });
  const plainB = await init({ name: 'plainB', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG });
  let counter = 0;
  b.register('count', () => ++counter);
  plainB.register('count', () => ++counter);
  const callers = await Promise.all([
    init({ name: 'plain', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG }),
    init({ name: 'stranger', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG, tls: tlsOf('stranger', 'other-ca') }),
    init({ name: 'good', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG, tls: tlsOf('node', 'ca') }),
  ]);
  const [plain, stranger, good] = callers as [Agent, Agent, Agent];
  try {
    const attempts: Array<[Agent, Agent, RegExp]> = [
      [plain, b, /lost: UNAVAILABLE: /],
      [stranger, b, /lost: UNAVAILABLE: .*self-signed certificate in certificate chain/],
      [good, plainB, /lost: UNAVAILABLE: /],
    ];
    for (const [from, to, detail] of attempts) {
      const peer = peerTo(from, to.name, to.address);
      const small = await t.throwsAsync(peer.call('count', encode([], { worker: from.name }), LONG), { instanceOf: RpcError });
      t.is(small!.code, Status.UNAVAILABLE);
      t.is(small!.worker, to.name);
      t.true(small!.message.startsWith(`connection from "${from.name}" to worker "${to.name}" lost: UNAVAILABLE: `), small!.message);
      t.regex(small!.message, detail);
      // a request too large for the Exchange stream takes a Bulk stream of its own: refused the same way
      const big = await t.throwsAsync(peer.call('count', encode([MiB4(), MiB4()], { worker: from.name }), LONG), { instanceOf: RpcError });
      t.is(big!.code, Status.UNAVAILABLE);
      t.is(big!.worker, to.name);
    }
    t.is(counter, 0, 'nothing ran');
    t.is(await peerTo(good, 'b', b.address).call('count', encode([], { worker: 'good' }), LONG).then(() => counter), 1, 'a worker of the same CA gets in');
  } finally {
    await Promise.all([b, plainB, ...callers].map((x) => x.shutdown()));
  }
});

it('the host a worker advertises is checked against its certificate: a certificate naming only localhost serves "localhost", not 127.0.0.1', async (t) => {
  // 'named' has subjectAltName DNS:localhost only
  const byIp = await init({ name: 'byIp', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG, tls: tlsOf('named', 'ca') });
  const byName = await init({ name: 'byName', rank: 0, worldSize: 1, master: '127.0.0.1:0', advertise: 'localhost', timeoutMs: LONG, tls: tlsOf('named', 'ca') });
  const caller = await init({ name: 'caller', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG, tls: tlsOf('node', 'ca') });
  let counter = 0;
  for (const x of [byIp, byName]) x.register('count', () => ++counter);
  try {
    t.is(byName.address.split(':')[0], 'localhost');
    const e = await t.throwsAsync(peerTo(caller, 'byIp', byIp.address).call('count', encode([], { worker: 'caller' }), LONG), { instanceOf: RpcError });
    t.is(e!.code, Status.UNAVAILABLE);
    t.is(e!.worker, 'byIp');
    t.regex(e!.message, /Hostname\/IP does not match certificate's altnames: IP: 127\.0\.0\.1 is not in the cert's list/);
    t.is(counter, 0);
    t.is(await peerTo(caller, 'byName', byName.address).call('count', encode([], { worker: 'caller' }), LONG).then(() => counter), 1);
  } finally {
    await Promise.all([byIp, byName, caller].map((x) => x.shutdown()));
  }
});

it('mutual TLS: a world whose workers all present certificates works; a client without a certificate, or with one of another CA, is refused and nothing runs', async (t) => {
  const [a, b] = await startWorld(2, { tls: tlsOf('node', 'ca', true) });
  let counter = 0;
  b!.register('count', () => ++counter);
  b!.register('echo', (x: unknown) => x);
  // trusts the right CA (so it accepts b's certificate) but presents one b does not accept
  const stranger = await init({ name: 'stranger', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG, tls: { ...tlsOf('stranger', 'ca') } });
  const raw = new grpc.Client(b!.address, grpc.credentials.createSsl(pem['ca.pem']!));
  try {
    t.is(await a!.call('w1', 'count'), 1);
    const peer = peerOf(a!, 'w1');
    await peer.sideLinksUp();
    t.true(socketOf(peer.side!).authorized && socketOf(peer.sideOut!).authorized, 'both ends of both side links verified each other');
    const big = MiB4();
    t.deepEqual(await a!.call('w1', 'echo', [big]), big, 'side links under mutual TLS');

    const e = await t.throwsAsync(peerTo(stranger, 'w1', b!.address).call('count', encode([], { worker: 'stranger' }), LONG), { instanceOf: RpcError });
    t.is(e!.code, Status.UNAVAILABLE);
    t.is(e!.worker, 'w1');
    t.true(e!.message.startsWith('connection from "stranger" to worker "w1" lost: UNAVAILABLE: '), e!.message);

    // a raw gRPC client that verifies b but has no certificate of its own
    const s = raw.makeBidiStreamRequest('/psrpc.Agent/Exchange', (x: Buffer) => x, (x: Buffer) => x, new grpc.Metadata());
    let messages = 0;
    s.on('data', () => { messages++; });
    s.on('error', () => {});
    const status = new Promise<grpc.StatusObject>((resolve) => s.on('status', resolve));
    s.write(Buffer.concat(frameSegments(Kind.Request, 1, 'count', flatten(encode([], { worker: 'raw' })))));
    t.is((await status).code, Status.UNAVAILABLE);
    t.is(messages, 0);

    // a side-channel offer under mutual TLS: a TLS client without a certificate never gets to send its hello
    let linked = 0;
    const offer = await SideOffer.listen('127.0.0.1', 'callee', () => { linked++; }, resolveOptions({ name: 'x', rank: 0, worldSize: 1, master: '127.0.0.1:0', tls: tlsOf('node', 'ca', true) }).tls);
    try {
      const c = tls.connect({ host: '127.0.0.1', port: offer.port, ca: pem['ca.pem']! });
      c.on('secureConnect', () => { c.write(Buffer.concat([Buffer.from([0x50, 0x53, 0x52, 0x53, 1, 0, 0, 0]), offer.token])); });
      await new Promise<void>((resolve) => { c.on('error', () => {}); c.on('close', () => resolve()); });
      t.is(linked, 0, 'refused during the handshake');
    } finally {
      offer.close();
    }
    t.is(counter, 1, 'nothing ran for the refused clients');
  } finally {
    raw.close();
    await Promise.all([stranger.shutdown(), stopWorld([a!, b!])]);
  }
});

it('a bad tls option is refused with an error naming the field, never showing the key', async (t) => {
  const base = { name: 'x', rank: 0, worldSize: 1, master: '127.0.0.1:0' };
  const good = tlsOf('node', 'ca');
  const keyText = pem['node.key']!.toString('utf8');
  const secret = keyText.split('\n')[1]!.slice(0, 16); // some base64 of the key
  const certBody = pem['node.pem']!.toString('utf8').split('\n')[1]!.slice(0, 16);
  const cases: Array<[unknown, RegExp]> = [
    ['cert.pem', /^invalid option tls \(value not shown\): expected an object/],
    [{ ...good, cert: '' }, /^invalid option tls\.cert \(value not shown\): expected PEM contents \(string or Buffer\), got an empty string/],
    [{ ...good, key: undefined }, /^invalid option tls\.key \(value not shown\): expected PEM contents/],
    [{ ...good, cert: '/etc/psrpc/cert.pem' }, /^invalid option tls\.cert \(value not shown\): not a PEM certificate/],
    [{ ...good, key: keyText.replace(secret, secret.split('').reverse().join('')) }, /^invalid option tls\.key \(value not shown\): /],
    [{ ...good, key: pem['stranger.key'] }, /^invalid option tls\.key \(value not shown\): does not belong to tls\.cert/],
    [{ ...good, ca: Buffer.alloc(0) }, /^invalid option tls\.ca \(value not shown\): expected PEM contents \(string or Buffer\), got an empty Buffer/],
    [{ ...good, ca: keyText }, /^invalid option tls\.ca \(value not shown\): not a PEM certificate/],
    [{ ...good, requireClientCert: 'yes' }, /^invalid option tls\.requireClientCert="yes": expected a boolean/],
    [{ ...good, cafile: 'x' }, /^invalid option tls\.cafile \(value not shown\): unknown option/],
  ];
  for (const [tlsOptions, why] of cases) {
    const e = t.throws(() => resolveOptions({ ...base, tls: tlsOptions as TlsOptions }), { instanceOf: RpcError });
    t.is(e!.code, Status.INVALID_ARGUMENT);
    t.regex(e!.message, why);
    t.false(e!.message.includes(secret), e!.message);
    t.false(e!.message.includes(certBody), e!.message);
  }
  // the agent's entry point refuses it before listening
  await t.throwsAsync(Agent.start({ ...base, tls: { ...good, key: pem['stranger.key']! } }), { instanceOf: RpcError, message: /tls\.key/ });
  t.is(resolveOptions(base).tls, undefined, 'default: no TLS');
  t.false(resolveOptions({ ...base, tls: good }).tls!.requireClientCert);
});
