// Same-host shared memory on the native bulk transport (native/transport/, src/rpc/native-link.ts):
// chosen by a handshake between two processes, byte for byte the same as TCP, off with
// PSRPC_SHM=0, and nothing left mapped when the peer is killed in the middle of a transfer.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Agent } from '../../src/rpc/index.js';
import { RpcError, Status } from '../../src/rpc/errors.js';
import { nativeBulkEnabled, releaseReceived } from '../../src/rpc/native-link.js';
import { WORLD_TIMEOUT_MS } from './world.js';

const childScript = fileURLToPath(new URL('./child-worker.ts', import.meta.url));
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

type SideView = { open: boolean; sharedMemory?: boolean };
const sideOf = (a: Agent, peer: string) => (a as unknown as { peers: Map<string, { side?: SideView; sideOut?: SideView; sideLinksUp(): Promise<void> }> }).peers.get(peer)!;

/** Arena mappings and memfd descriptors of this process (the transport names its memfds psrpc-bulk). */
function arenasHeld(): { mapped: number; fds: number } {
  const mapped = readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('memfd:psrpc-bulk')).length;
  let fds = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try { if (readlinkSync(`/proc/self/fd/${fd}`).includes('memfd:psrpc-bulk')) fds++; } catch { /* closed meanwhile */ }
  }
  return { mapped, fds };
}

/** This process's agent and a child's; `childEnv` overrides the child's environment (else inherited). */
async function startPair(childEnv: NodeJS.ProcessEnv = {}): Promise<{ agent: Agent; kill: () => void; exited: Promise<unknown> }> {
  const agent = await Agent.start({ name: 'w0', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: WORLD_TIMEOUT_MS });
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, JSON.stringify({ name: 'kid', rank: 1, worldSize: 2, master: agent.address, timeoutMs: WORLD_TIMEOUT_MS })], { stdio: 'ignore', env: { ...process.env, ...childEnv } });
  const exited = new Promise((r) => child.on('exit', r));
  await agent.rendezvous();
  return { agent, kill: () => child.kill('SIGKILL'), exited };
}

/** Collects until no arena is mapped any more (payloads received into one keep it until then). */
async function collected(): Promise<{ mapped: number; fds: number }> {
  for (let i = 0; i < 20 && arenasHeld().mapped > 0; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return arenasHeld();
}

const ramp = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => i * k + 0.5);

const shmOn = nativeBulkEnabled() && process.env.PSRPC_SHM !== '0';

test.serial('between two processes on one host, large payloads take shared memory (unless PSRPC_SHM=0) and arrive intact', async (t) => {
  const { agent, exited } = await startPair();
  try {
    t.is(await agent.call('kid', 'echo', [1]), 1); // opens the side channel
    await sideOf(agent, 'kid').sideLinksUp();
    for (const n of [100, 70_000, 1 << 20, 3_000_001]) {
      const x = ramp(n, 3);
      t.deepEqual(await agent.call('kid', 'echo', [x]), x, `${n} floats`);
    }
    // the handshake decides; it is checked, not assumed (the JS transport never offers)
    t.is(Boolean(sideOf(agent, 'kid').side?.sharedMemory), shmOn);
    t.is(Boolean(sideOf(agent, 'kid').sideOut?.sharedMemory), shmOn);
    const many = await Promise.all([1, 2, 3, 4, 5, 6].map((k) => agent.call<Float32Array>('kid', 'echo', [ramp(400_000, k)])));
    t.deepEqual(many.map((m) => m[399_999]), [1, 2, 3, 4, 5, 6].map((k) => 399_999 * k + 0.5));
  } finally {
    await agent.shutdown({ graceful: true });
    await exited;
  }
});

test.serial('a peer killed during a large transfer fails the call with UNAVAILABLE and leaves no arena mapped', async (t) => {
  t.deepEqual(await collected(), { mapped: 0, fds: 0 }, 'nothing mapped before');
  const { agent, kill, exited } = await startPair();
  try {
    await agent.call('kid', 'echo', [1]);
    await sideOf(agent, 'kid').sideLinksUp();
    t.is(arenasHeld().mapped > 0, shmOn, 'an arena is mapped while the links are up');
    const big = ramp(16 << 20, 1); // 64 MB: the kill lands while it is being copied or echoed, or after
    const call = agent.call<Float32Array>('kid', 'echo', [big]);
    kill();
    try {
      const back = await call;
      t.is(back.length, big.length); // it won the race: then it must be intact
      t.is(back[12345], big[12345]);
    } catch (e) {
      t.true(e instanceof RpcError);
      t.is((e as RpcError).code, Status.UNAVAILABLE);
    }
    await exited;
  } finally {
    await agent.shutdown({ graceful: false });
  }
  // payloads received into an arena keep it mapped until they are collected; then nothing is left
  t.deepEqual(await collected(), { mapped: 0, fds: 0 });
});

test.serial('releaseReceived gives a received payload back at once and empties its views; anything else is left alone', async (t) => {
  const { agent, exited } = await startPair();
  try {
    await agent.call('kid', 'echo', [1]);
    await sideOf(agent, 'kid').sideLinksUp();
    const sent = ramp(1 << 20, 2);
    const got = await agent.call<Float32Array>('kid', 'echo', [sent]);
    t.deepEqual(got, sent);
    const again = await agent.call<Float32Array>('kid', 'echo', [sent]);
    const sameMessage = new Float32Array(again.buffer, again.byteOffset, 16); // another view of it
    // only memory that arrived on the native transport is released (the JS side channel's is not)
    t.is(releaseReceived(again), nativeBulkEnabled());
    if (nativeBulkEnabled()) {
      t.is(again.length, 0, 'the view is empty, not pointing at reused memory');
      t.is(sameMessage.length, 0);
      t.false(releaseReceived(again), 'a second release does nothing');
    } else {
      t.is(again[5], sent[5]);
    }
    t.false(releaseReceived(sent), 'memory this process made is never released');
    t.is(sent[7], 14.5);
    t.deepEqual(got, sent, 'the other message is untouched');
    // the released memory is reused by the next payloads, which arrive intact
    for (let k = 0; k < 3; k++) {
      const x = ramp(1 << 20, k + 3);
      const back = await agent.call<Float32Array>('kid', 'echo', [x]);
      t.is(back[999_999], x[999_999]);
      releaseReceived(back);
    }
  } finally {
    await agent.shutdown({ graceful: true });
    await exited;
  }
});

test.serial('a native end and a JS end (PSRPC_NATIVE_BULK=0 in the child) interoperate over TCP, the JS end skipping the shm offer', async (t) => {
  const { agent, exited } = await startPair({ PSRPC_NATIVE_BULK: '0' });
  try {
    t.is(await agent.call('kid', 'echo', [1]), 1);
    await sideOf(agent, 'kid').sideLinksUp();
    for (const n of [70_000, 1 << 20, 3_000_001]) {
      const x = ramp(n, 5);
      const back = await agent.call<Float32Array>('kid', 'echo', [x]);
      t.is(back.length, n);
      t.is(back[n - 1], x[n - 1]);
      t.is(back[n >> 1], x[n >> 1]);
    }
    t.false(Boolean(sideOf(agent, 'kid').side?.sharedMemory), 'the JS end never offers an arena');
    t.false(Boolean(sideOf(agent, 'kid').sideOut?.sharedMemory));
  } finally {
    await agent.shutdown({ graceful: true });
    await exited;
  }
});
