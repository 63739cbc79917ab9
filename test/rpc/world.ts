// Starts a whole world of agents in this process on 127.0.0.1 with port 0 (test support).
import { Agent, type InitOptions } from '../../src/rpc/index.js';

/**
 * The default deadline of a test world (rendezvous, every call, the shutdown barrier): longer than
 * ava's test timeout, so that no deadline decides a test on a loaded machine unless the test sets
 * one itself (pass `timeoutMs` in `extra`, or per call). A hang then fails as a test timeout.
 */
export const WORLD_TIMEOUT_MS = 10 * 60_000;

export async function startWorld(n: number, extra: Partial<InitOptions> = {}): Promise<Agent[]> {
  const master = await Agent.start({ name: 'w0', rank: 0, worldSize: n, master: '127.0.0.1:0', timeoutMs: WORLD_TIMEOUT_MS, ...extra });
  const joins: Promise<Agent>[] = [master.rendezvous()];
  for (let r = 1; r < n; r++) {
    joins.push(Agent.start({ name: `w${r}`, rank: r, worldSize: n, master: master.address, timeoutMs: WORLD_TIMEOUT_MS, ...extra }).then((a) => a.rendezvous()));
  }
  return Promise.all(joins);
}

export async function stopWorld(agents: Agent[], graceful = true): Promise<void> {
  await Promise.all(agents.map((a) => a.shutdown({ graceful })));
}
