// Keeps docs/BENCHMARKS.md's "latest figures" block in step with the latest default-location run:
// the text between the two markers is replaced; everything else in the file is left alone.
import { readFile, writeFile } from 'node:fs/promises';
import type { RunRow } from './strategies-run.js';

export const BEGIN = '<!-- strategies:begin (written by `npm run bench`; edits inside are overwritten) -->';
export const END = '<!-- strategies:end -->';

export interface DocFigures {
  date: string;
  machine: { cores: number; cpu: string; memoryGiB: number; node: string; platform: string };
  command: string;
  totalSeconds: number;
  targetAccuracy: number;
  settingsLine: string;
  rows: readonly RunRow[];
}

const n = (x: number | null, d: number) => (x === null ? 'n/a' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));

/** The block's markdown: when, where, how, and the table. */
export function docBlock(f: DocFigures): string {
  const m = f.machine;
  const lines = [
    BEGIN,
    '',
    `- **Date:** ${f.date}`,
    `- **Machine:** ${m.cores} cores, ${m.cpu}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.platform}`,
    `- **Command:** \`${f.command}\` (${f.settingsLine})`,
    `- **Whole run:** ${Math.round(f.totalSeconds)} s`,
    '',
    `| strategy | workers | samples/s | time to ${f.targetAccuracy} (s) | final accuracy | bytes/sample | command (s) |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of f.rows) {
    if (r.status === 'failed') {
      lines.push(`| ${r.strategy} | ${r.workers} | failed: ${(r.error ?? '').replace(/\|/g, '\\|')} | | | | |`);
      continue;
    }
    const ttt = r.curve ? (r.timeToTarget === null ? 'not reached' : n(r.timeToTarget, 3)) : 'n/a (no curve)';
    lines.push(`| ${r.strategy} | ${r.workers} | ${n(r.samplesPerSecond, 0)} | ${ttt} | ${n(r.finalAccuracy, 4)} | ${n(r.bytesPerSample, 0)} | ${n(r.commandSeconds, 1)} |`);
  }
  lines.push('', END);
  return lines.join('\n');
}

/** Replaces the block in `file`; throws if the markers are missing (the file is left as it was). */
export async function updateDoc(file: string, block: string): Promise<void> {
  const text = await readFile(file, 'utf8');
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${file} has no '${BEGIN}' ... '${END}' block to update`);
  await writeFile(file, text.slice(0, a) + block + text.slice(b + END.length));
}
