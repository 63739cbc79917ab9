// The strategy benchmark's charts: vega-lite specs compiled to Vega, rendered headless to SVG by
// Vega's own renderer and rasterised to PNG by resvg. Two charts: test accuracy against training
// time (one panel per worker count, one line per strategy, the target as a dashed rule) and
// samples/s against the number of workers.
import { Resvg } from '@resvg/resvg-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { STRATEGY_SPECS } from './strategies-matrix.js';
import type { RunRow } from './strategies-run.js';

export interface ChartFiles { svg: string; png: string }

const FONT = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';
const CONFIG = {
  font: FONT,
  title: { fontSize: 16, anchor: 'start' as const, subtitleFontSize: 12, subtitleColor: '#555' },
  axis: { labelFontSize: 12, titleFontSize: 13, gridColor: '#e5e5e5' },
  legend: { labelFontSize: 12, titleFontSize: 13, labelLimit: 400 },
  header: { labelFontSize: 13, titleFontSize: 13 },
  view: { stroke: '#ccc' },
};

// Tableau 10, one colour per strategy of the matrix, so a strategy has the same colour in every
// chart and every run whatever subset is drawn.
const PALETTE = ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#54a24b', '#eeca3b', '#b279a2', '#ff9da6', '#9d755d', '#bab0ac'];

function colorScale(rows: readonly RunRow[]) {
  const domain = [...new Set(rows.map((r) => r.strategy))];
  const ids = STRATEGY_SPECS.map((s) => s.id);
  const range = domain.map((d, i) => PALETTE[(ids.includes(d) ? ids.indexOf(d) : ids.length + i) % PALETTE.length]!);
  return { domain, range };
}

/** Accuracy over training time; local (one process) is drawn in every panel as the baseline. */
export function accuracySpec(rows: readonly RunRow[], target: number, evalSamples: number): TopLevelSpec {
  const ok = rows.filter((r) => r.status === 'ok' && r.curve && r.curve.length > 0);
  const panels = [...new Set(ok.filter((r) => r.strategy !== 'local').map((r) => r.workers))].sort((a, b) => a - b);
  if (panels.length === 0) panels.push(1);
  const failedIds = [...new Set(rows.filter((r) => r.status === 'failed').map((r) => r.strategy))];
  const missing = rows.filter((r) => r.status === 'ok' && !(r.curve && r.curve.length > 0)).map((r) => r.strategy);
  const values: Array<Record<string, unknown>> = [];
  for (const r of ok) {
    const into = r.strategy === 'local' ? panels : [r.workers];
    for (const w of into) for (const p of r.curve!) values.push({ strategy: r.strategy, panel: `${w} worker${w === 1 ? '' : 's'}`, order: w, seconds: p.seconds, accuracy: p.accuracy });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: {
      text: 'Test accuracy over training time',
      subtitle: [
        `accuracy on a fixed slice of ${evalSamples} test samples; evaluation time excluded; dashed line: target ${target}; time axis: symmetric log`,
        'local (one process) is repeated in every panel as the baseline',
        ...(missing.length > 0 ? [`no curve recorded (not drawn): ${[...new Set(missing)].join(', ')}`] : []),
        ...(failedIds.length > 0 ? [`failed (not drawn): ${failedIds.join(', ')}`] : []),
      ],
    },
    data: { values },
    facet: { column: { field: 'panel', type: 'nominal', title: null, sort: { field: 'order' } } },
    spec: {
      width: 300,
      height: 260,
      layer: [
        {
          mark: { type: 'line', strokeWidth: 2, clip: true, interpolate: 'linear' },
          encoding: {
            // runs span 0.1 s (local) to seconds (parameter servers): a linear axis would squash the fast ones
            x: { field: 'seconds', type: 'quantitative', title: 'training time (s)', scale: { type: 'symlog', constant: 0.01 }, axis: { values: [0, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300], format: '~g' } },
            y: { field: 'accuracy', type: 'quantitative', title: 'test accuracy (fraction correct)', scale: { domain: [0, 1] } },
            color: { field: 'strategy', type: 'nominal', title: 'strategy', scale: colorScale(ok) },
            detail: { field: 'strategy' },
          },
        },
        { mark: { type: 'rule', strokeDash: [6, 4], color: '#444' }, encoding: { y: { datum: target } } },
      ],
    },
    resolve: { scale: { x: 'shared' } },
    config: CONFIG,
  } as TopLevelSpec;
}

/** samples/s per worker count, one line per strategy (local: one point at 1). */
export function throughputSpec(rows: readonly RunRow[]): TopLevelSpec {
  const ok = rows.filter((r) => r.status === 'ok' && r.samplesPerSecond !== null);
  const failed = [...new Set(rows.filter((r) => r.status === 'failed').map((r) => r.strategy))];
  const values = ok.map((r) => ({ strategy: r.strategy, workers: r.workers, samplesPerSecond: r.samplesPerSecond }));
  const workers = [...new Set(values.map((v) => v.workers))].sort((a, b) => a - b);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: {
      text: 'Training throughput by number of workers',
      subtitle: [
        'training-loop samples/s, all trainers or workers together; both axes logarithmic',
        ...(failed.length > 0 ? [`failed (not drawn): ${failed.join(', ')}`] : []),
      ],
    },
    data: { values },
    width: 520,
    height: 340,
    mark: { type: 'line', point: { size: 60, filled: true }, strokeWidth: 2 },
    encoding: {
      x: { field: 'workers', type: 'quantitative', title: 'trainers or workers (processes or threads)', scale: { type: 'log', base: 2, domain: [Math.min(...workers, 1), Math.max(...workers, 2)] }, axis: { values: workers, format: 'd' } },
      y: { field: 'samplesPerSecond', type: 'quantitative', title: 'samples per second', scale: { type: 'log' }, axis: { format: '~s' } },
      color: { field: 'strategy', type: 'nominal', title: 'strategy', scale: colorScale(ok) },
    },
    config: CONFIG,
  } as TopLevelSpec;
}

/** Renders a vega-lite spec to SVG (Vega's headless renderer) and PNG (resvg, white background). */
export async function renderChart(spec: TopLevelSpec): Promise<{ svg: string; png: Buffer }> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
  }).render().asPng();
  return { svg, png };
}

/** Writes `<name>.svg` and `<name>.png` into `dir`. */
export async function writeChart(dir: string, name: string, spec: TopLevelSpec): Promise<ChartFiles> {
  await mkdir(dir, { recursive: true });
  const { svg, png } = await renderChart(spec);
  const files = { svg: join(dir, `${name}.svg`), png: join(dir, `${name}.png`) };
  await writeFile(files.svg, svg);
  await writeFile(files.png, png);
  return files;
}
