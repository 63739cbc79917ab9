// The schedules as pure lists: their order, their activation bound, and (simulated with unit
// times) that the stages' lists fit together without deadlock and with the textbook bubble.
import test from 'ava';
import { peakInFlight, simulateSchedule, stageSchedule, theoreticalBubble } from '../../src/pipeline/index.js';

const text = (ops: ReturnType<typeof stageSchedule>) => ops.map((o) => `${o.kind[0]!.toUpperCase()}${o.micro}`).join(' ');

test('gpipe runs every forward, then every backward from the last micro-batch', (t) => {
  t.is(text(stageSchedule('gpipe', 3, 4, 1)), 'F0 F1 F2 F3 B3 B2 B1 B0');
});

test('1f1b warms up K - i - 1 forwards, alternates, then drains (PipeDream-flush)', (t) => {
  t.is(text(stageSchedule('1f1b', 3, 4, 0)), 'F0 F1 F2 B0 F3 B1 B2 B3');
  t.is(text(stageSchedule('1f1b', 3, 4, 1)), 'F0 F1 B0 F2 B1 F3 B2 B3');
  t.is(text(stageSchedule('1f1b', 3, 4, 2)), 'F0 B0 F1 B1 F2 B2 F3 B3');
  // fewer micro-batches than the warm-up: all forwards first
  t.is(text(stageSchedule('1f1b', 4, 2, 0)), 'F0 F1 B0 B1');
});

test('every schedule runs each forward and backward once, each backward after its forward', (t) => {
  for (const name of ['gpipe', '1f1b'] as const) {
    for (const K of [1, 2, 3, 5]) {
      for (const M of [1, 2, 4, 5, 8]) {
        for (let i = 0; i < K; i++) {
          const ops = stageSchedule(name, K, M, i);
          t.is(ops.length, 2 * M);
          const seen = new Set<string>();
          for (const op of ops) {
            if (op.kind === 'backward') t.true(seen.has(`forward${op.micro}`), `${name} K=${K} M=${M} stage ${i}: B${op.micro} before F${op.micro}`);
            seen.add(`${op.kind}${op.micro}`);
          }
          t.is(seen.size, 2 * M);
          t.is(peakInFlight(ops), name === 'gpipe' ? M : Math.min(K - i, M));
        }
      }
    }
  }
});

test('simulated with unit times, both schedules finish with the bubble (K - 1) / (M + K - 1)', (t) => {
  for (const name of ['gpipe', '1f1b'] as const) {
    for (const K of [1, 2, 3, 4]) {
      for (const M of [1, 2, 4, 8]) {
        const sim = simulateSchedule(name, K, M, 1, 2);
        t.is(sim.makespan, (M + K - 1) * 3, `${name} K=${K} M=${M}`);
        for (const b of sim.bubble) t.true(Math.abs(b - theoreticalBubble(K, M)) < 1e-12);
      }
    }
  }
});

test('bad schedule arguments are refused naming the value', (t) => {
  t.throws(() => stageSchedule('gpipe', 0, 4, 0), { message: /stages must be an integer >= 1, got 0/ });
  t.throws(() => stageSchedule('gpipe', 2, 0, 0), { message: /micro-batches must be an integer >= 1, got 0/ });
  t.throws(() => stageSchedule('1f1b', 2, 4, 2), { message: /stage must be in \[0, 2\), got 2/ });
  t.throws(() => stageSchedule('zigzag' as 'gpipe', 2, 4, 0), { message: /unknown schedule 'zigzag'/ });
});
