// Fault injection for tests (PyTorch tests its RPC layer the same way, with a faulty agent that
// delays or drops messages of chosen types): an agent given a FaultInjector passes every outgoing
// message (user calls and the reserved control messages of RRefs, distributed autograd and the
// optimizer alike) through it first. A rule holds matching messages until the test releases them,
// or fails them as a lost connection would; so a test can put the world in exactly the state it
// is about ("the child's fork has not reached the owner yet") instead of hoping the timing does.
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
