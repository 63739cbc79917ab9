// The strategy benchmark's terminal table (docs/BENCHMARKS.md embeds the same text).
import type { RunRow } from './strategies-run.js';

const num = (x: number | null, digits: number) => (x === null ? 'n/a' : x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));

/** One row per run; a failed run shows its error line instead of figures. */
export function formatTable(rows: readonly RunRow[], target: number): string {
  const head = ['strategy', 'workers', 'samples/s', `time to ${target} (s)`, 'final accuracy', 'bytes/sample', 'command (s)'];
  const body = rows.map((r) => r.status === 'failed'
    ? [r.strategy, String(r.workers), `FAILED: ${r.error ?? 'unknown error'}`]
    : [
      r.strategy,
      String(r.workers),
      num(r.samplesPerSecond, 0),
      r.curve ? (r.timeToTarget === null ? 'not reached' : num(r.timeToTarget, 3)) : 'n/a (no curve)',
      num(r.finalAccuracy, 4),
      num(r.bytesPerSample, 0),
      num(r.commandSeconds, 1),
    ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.filter((b) => b.length === head.length).map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.length === head.length
    ? cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
    : `${cells[0]!.padEnd(widths[0]!)}  ${cells[1]!.padEnd(widths[1]!)}  ${cells[2]}`;
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
