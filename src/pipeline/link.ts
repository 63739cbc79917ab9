// The two StageLinks: the process group's point-to-point messages (one process per stage), and an
// in-process one (all stages in one process: tests, and trying a split before launching it).
import type { ProcessGroup } from '../collective/index.js';
import type { StageLink } from './stage.js';

/**
 * Stage `s` is group rank `ranks[s]` of `pg`. Messages are the group's send / recv: raw float32
 * payloads on the agents' data plane, matched by tag in order; a dead or silent stage fails the
 * op naming its rank (the group's timeout), and the group's abort stops the other stages.
 */
export function groupLink(pg: ProcessGroup, ranks: readonly number[]): StageLink {
  return {
    send: (buf, stage, tag) => pg.send(buf, ranks[stage]!, tag).then(() => undefined),
    recv: (buf, stage, tag) => pg.recv(buf, ranks[stage]!, tag),
  };
}

interface Queue {
  messages: Float32Array[];
  waiting: ((m: Float32Array) => void)[];
}

/** Links between `stages` stages of one process: link i is stage i's. Messages are copied, as over a wire. */
export function localLinks(stages: number): StageLink[] {
  const queues = new Map<string, Queue>();
  const queue = (from: number, to: number, tag: number): Queue => {
    const key = `${from}>${to}#${tag}`;
    let q = queues.get(key);
    if (!q) queues.set(key, (q = { messages: [], waiting: [] }));
    return q;
  };
  return Array.from({ length: stages }, (_, self): StageLink => ({
    async send(buf, stage, tag) {
      const q = queue(self, stage, tag);
      const copy = buf.slice();
      const w = q.waiting.shift();
      if (w) w(copy);
      else q.messages.push(copy);
    },
    async recv(buf, stage, tag) {
      const q = queue(stage, self, tag);
      const m = q.messages.shift() ?? await new Promise<Float32Array>((resolve) => q.waiting.push(resolve));
      if (m.length !== buf.length) {
        throw new RangeError(`stage ${self}: recv from stage ${stage}, tag ${tag}: it sent ${m.length} elements, this stage's buffer holds ${buf.length}`);
      }
      buf.set(m);
      return buf;
    },
  }));
}
