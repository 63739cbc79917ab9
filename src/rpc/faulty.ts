// Fault injection for tests (PyTorch tests its RPC layer the same way, with a faulty agent that
// delays or drops messages of chosen types): an agent given a FaultInjector passes every outgoing
// message (user calls and the reserved control messages of RRefs, distributed autograd and the
// optimizer alike) through it first. A rule holds matching messages until the test releases them,
// or fails them as a lost connection would; so a test can put the world in exactly the state it
// is about ("the child's fork has not reached the owner yet") instead of hoping the timing does.
// Inbound rules see what the agent receives from one worker: `silence` drops all of it (pings,
// responses, requests, bulk data), so to this agent that worker has gone silent as a hung process
// or a dead link would, without pausing anything; `tap` only counts it, so a test can wait for
// the next heartbeat to arrive instead of sleeping.
import { RpcError, Status } from './errors.js';

/** Which messages a rule applies to: by function name (exact, or a pattern), and optionally by destination. */
export interface MessageMatch {
  fn: string | RegExp;
  to?: string;
}

/** A rule that holds matching messages until released. */
export interface HeldMessages {
  /** Messages held so far (released ones included). */
  readonly count: number;
  /** Resolves once `n` messages (default 1) have been held. */
  arrived(n?: number): Promise<void>;
  /** Lets every held message go (in the order they were held) and stops holding new ones. */
  release(): void;
}

/** A rule on the messages this agent receives from one worker. */
export interface InboundRule {
  /** Messages from the worker seen by this rule so far. */
  readonly count: number;
  /** Resolves once `n` messages (default 1) have been seen. */
  arrived(n?: number): Promise<void>;
  /** Resolves at the next message seen after this call. */
  next(): Promise<void>;
  /** Removes the rule: a silenced worker is heard again from its next message on. */
  restore(): void;
}

interface Inbound {
  from: string;
  drop: boolean;
  count: number;
  waiters: Array<{ n: number; resolve: () => void }>;
}

interface Rule {
  match: MessageMatch;
  kind: 'hold' | 'fail';
  /** fail: how many more to fail (Infinity: all). */
  left: number;
  held: Array<() => void>;
  count: number;
  waiters: Array<{ n: number; resolve: () => void }>;
  released: boolean;
}

function matches(m: MessageMatch, to: string, fn: string): boolean {
  if (m.to !== undefined && m.to !== to) return false;
  return typeof m.fn === 'string' ? m.fn === fn : m.fn.test(fn);
}

export class FaultInjector {
  private readonly rules: Rule[] = [];
  private readonly inbound: Inbound[] = [];

  /** Drops every message this agent receives from worker `from` until restored (see the header). */
  silence(from: string): InboundRule {
    return this.addInbound(from, true);
  }

  /** Counts the messages this agent receives from worker `from`, dropping none. */
  tap(from: string): InboundRule {
    return this.addInbound(from, false);
  }

  /** @internal Called by the agent for each message received from `from`; false: drop it. */
  receive(from: string): boolean {
    let keep = true;
    for (const r of this.inbound) {
      if (r.from !== from) continue;
      r.count++;
      if (r.drop) keep = false;
      for (const w of r.waiters.filter((x) => r.count >= x.n)) {
        r.waiters.splice(r.waiters.indexOf(w), 1);
        w.resolve();
      }
    }
    return keep;
  }

  private addInbound(from: string, drop: boolean): InboundRule {
    const rule: Inbound = { from, drop, count: 0, waiters: [] };
    this.inbound.push(rule);
    const arrived = (n = 1) => (rule.count >= n ? Promise.resolve() : new Promise<void>((resolve) => rule.waiters.push({ n, resolve })));
    return {
      get count() { return rule.count; },
      arrived,
      next: () => arrived(rule.count + 1),
      restore: () => {
        const at = this.inbound.indexOf(rule);
        if (at >= 0) this.inbound.splice(at, 1);
      },
    };
  }

  /** Holds the messages that match until `release()`. */
  hold(match: MessageMatch): HeldMessages {
    const rule: Rule = { match, kind: 'hold', left: Infinity, held: [], count: 0, waiters: [], released: false };
    this.rules.push(rule);
    return {
      get count() { return rule.count; },
      arrived: (n = 1) => (rule.count >= n ? Promise.resolve() : new Promise<void>((resolve) => rule.waiters.push({ n, resolve }))),
      release: () => {
        rule.released = true;
        this.rules.splice(this.rules.indexOf(rule), 1);
        for (const go of rule.held.splice(0)) go();
      },
    };
  }

  /** Fails the next `times` matching messages (default: all) with UNAVAILABLE, as a lost connection. */
  fail(match: MessageMatch, times = Infinity): void {
    this.rules.push({ match, kind: 'fail', left: times, held: [], count: 0, waiters: [], released: false });
  }

  /** @internal Called by the agent before a message to `to` calling `fn` leaves `from`. */
  intercept(from: string, to: string, fn: string): Promise<void> | undefined {
    const rule = this.rules.find((r) => matches(r.match, to, fn) && (r.kind === 'hold' || r.left > 0));
    if (!rule) return undefined;
    rule.count++;
    if (rule.kind === 'fail') {
      rule.left--;
      return Promise.reject(new RpcError(Status.UNAVAILABLE, to, `call "${fn}" from "${from}" to "${to}" dropped by the fault injector`));
    }
    const go = new Promise<void>((resolve) => rule.held.push(resolve));
    for (const w of rule.waiters.filter((x) => rule.count >= x.n)) {
      rule.waiters.splice(rule.waiters.indexOf(w), 1);
      w.resolve();
    }
    return go;
  }
}
