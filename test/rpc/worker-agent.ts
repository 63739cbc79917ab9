// An agent in a worker thread (test/rpc/worker-threads.test.ts, started through worker-agent.mjs): joins the world in workerData,
// echoes, and stays until the test terminates the thread (tearing its environment down).
import { parentPort, workerData } from 'node:worker_threads';
import { Agent } from '../../src/rpc/index.js';

const agent = await Agent.start(workerData as Parameters<typeof Agent.start>[0]);
agent.register('echo', (x: unknown) => x);
await agent.rendezvous();
parentPort!.postMessage('joined');
