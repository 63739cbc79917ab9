// The native transport in several environments of one process: agents in worker threads beside
// one on the main thread. Each environment's links, payloads and teardown are its own: a worker
// torn down with its links open leaves the others' links working.
import test from 'ava';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Agent } from '../../src/rpc/index.js';
import { WORLD_TIMEOUT_MS } from './world.js';

const script = fileURLToPath(new URL('./worker-agent.mjs', import.meta.url));
const ramp = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => i * k + 0.25);

test('agents in worker threads move large payloads, and tearing one worker down leaves the other links working', async (t) => {
  const main = await Agent.start({ name: 'w0', rank: 0, worldSize: 3, master: '127.0.0.1:0', timeoutMs: WORLD_TIMEOUT_MS });
  const workers = [1, 2].map((rank) => new Worker(script, {
    workerData: { name: `w${rank}`, rank, worldSize: 3, master: main.address, timeoutMs: WORLD_TIMEOUT_MS },
  }));
  try {
    const joined = workers.map((w) => once(w, 'message'));
    await main.rendezvous();
    await Promise.all(joined);
    for (const peer of ['w1', 'w2']) {
      const x = ramp(300_000, peer === 'w1' ? 1 : 2);
      t.deepEqual(await main.call(peer, 'echo', [x]), x, `echo through ${peer}`);
    }
    // w1's environment goes away with its links open (no shutdown): its teardown must stop its
    // own threads only
    await workers[0]!.terminate();
    const y = ramp(500_000, 3);
    t.deepEqual(await main.call('w2', 'echo', [y]), y, 'the other worker still answers, large payloads included');
    t.deepEqual(await main.call('w2', 'echo', [y]), y);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
    await main.shutdown({ graceful: false });
  }
});
