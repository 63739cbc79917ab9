// The strategy benchmark's run matrix: which commands run, with which worker counts and flags.
//
// Every run is a whole user command (`trainer` or `psrun`, from source) with the same data, model
// and training flags, so the figures are each strategy's own `--json` result.

/** A strategy as the benchmark names it (one consistency model of the centralized strategy each). */
export interface StrategySpec {
  id: string;
  /** The command that runs it. */
  command: 'trainer' | 'psrun';
  /** Flags naming the strategy (and consistency model). */
  args: string[];
  /** Whether it has workers/trainers to count; local runs once, as 1. */
  scales: boolean;
  /** How `--workers N` is spelled for this strategy. */
  workerArgs: (n: number) => string[];
  /** false: the strategy records no accuracy curve (it refuses --eval-every), so its runs get none. */
  curve?: false;
}

const trainers = (n: number) => ['--trainers', String(n)];

export const STRATEGY_SPECS: readonly StrategySpec[] = [
  { id: 'local', command: 'trainer', args: ['--strategy', 'local'], scales: false, workerArgs: () => [] },
  { id: 'centralized-sync', command: 'psrun', args: ['--strategy', 'centralized', '--servers', '1', '--consistency', 'sync'], scales: true, workerArgs: trainers },
  { id: 'centralized-async', command: 'psrun', args: ['--strategy', 'centralized', '--servers', '1', '--consistency', 'async'], scales: true, workerArgs: trainers },
  { id: 'centralized-ssp2', command: 'psrun', args: ['--strategy', 'centralized', '--servers', '1', '--consistency', 'ssp', '--staleness', '2'], scales: true, workerArgs: trainers },
  { id: 'centralized-ssp8', command: 'psrun', args: ['--strategy', 'centralized', '--servers', '1', '--consistency', 'ssp', '--staleness', '8'], scales: true, workerArgs: trainers },
  { id: 'remote-forward', command: 'psrun', args: ['--strategy', 'remote-forward', '--servers', '1'], scales: true, workerArgs: trainers },
  { id: 'partitioned', command: 'psrun', args: ['--strategy', 'partitioned', '--servers', '0'], scales: true, workerArgs: trainers },
  // fsdp records no accuracy curve (no rank holds the whole model between steps), which this bench's
  // time-to-accuracy needs: its figures are in docs/BENCHMARKS.md's "Data parallel" section
  { id: 'ddp', command: 'psrun', args: ['--strategy', 'ddp', '--servers', '0'], scales: true, workerArgs: trainers },
  { id: 'zero', command: 'psrun', args: ['--strategy', 'zero', '--servers', '0'], scales: true, workerArgs: trainers },
  // pipeline: 2 stages (2 processes whatever --workers says), M micro-batches; no curve (no process
  // holds the whole model between steps), so no time to target
  ...[1, 4, 8].map((m): StrategySpec => ({
    id: `pipeline-m${m}`, command: 'psrun', args: ['--strategy', 'pipeline', '--servers', '0', '--stages', '2', '--micro-batches', String(m)],
    scales: false, workerArgs: () => [], curve: false,
  })),
  { id: 'hogwild', command: 'trainer', args: ['--strategy', 'hogwild'], scales: true, workerArgs: (n) => ['--workers', String(n)] },
];

/** `--strategies` accepts the ids above, and `centralized` for its four consistency models. */
export function selectStrategies(list: string): StrategySpec[] {
  const ids = new Set<string>();
  for (const raw of list.split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    if (name === 'all') STRATEGY_SPECS.forEach((s) => ids.add(s.id));
    else if (name === 'centralized') STRATEGY_SPECS.filter((s) => s.id.startsWith('centralized-')).forEach((s) => ids.add(s.id));
    else if (STRATEGY_SPECS.some((s) => s.id === name)) ids.add(name);
    else throw new RangeError(`--strategies: unknown strategy '${name}' (known: all, centralized, ${STRATEGY_SPECS.map((s) => s.id).join(', ')})`);
  }
  if (ids.size === 0) throw new RangeError(`--strategies names no strategy, got '${list}'`);
  return STRATEGY_SPECS.filter((s) => ids.has(s.id));
}

/** `--workers 1,2,4`: distinct positive integers, ascending. */
export function parseWorkers(list: string): number[] {
  const out = new Set<number>();
  for (const raw of list.split(',')) {
    const n = Number(raw.trim());
    if (!/^\d+$/.test(raw.trim()) || n < 1 || n > 64) throw new RangeError(`--workers must be a comma-separated list of integers in [1, 64], got '${list}'`);
    out.add(n);
  }
  return [...out].sort((a, b) => a - b);
}

/** One cell of the matrix. */
export interface PlannedRun {
  strategy: StrategySpec;
  workers: number;
}

export function planRuns(strategies: readonly StrategySpec[], workers: readonly number[]): PlannedRun[] {
  const runs: PlannedRun[] = [];
  for (const s of strategies) {
    if (!s.scales) runs.push({ strategy: s, workers: 1 });
    else for (const w of workers) runs.push({ strategy: s, workers: w });
  }
  return runs;
}
