// The `psdata` command: converts any dataset spec into the paged dataset file and inspects such
// files (docs/DATA.md). Bad flags exit 1 with one line naming the flag, before any work; a failed
// conversion or a corrupt file exits 1 with one line naming the file.
//   psdata convert --from fashion-mnist --out fashion.psds [--page-samples N] [--seed N]
//   psdata inspect fashion.psds [--verify]
import cliProgress from 'cli-progress';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import {
  DEFAULT_PAGE_SAMPLES, datasetRows, formatDatasetSpec, parseDatasetSpec, readDatasetFileHeader, verifyDatasetFile, writeDatasetFile,
  type DatasetFileHeader, type DatasetSpec,
} from '../data/index.js';

function integer(flag: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${flag} must be an integer in [${min}, ${max}], got '${value}'`);
    }
    return n;
  };
}

function datasetSpec(value: string): DatasetSpec {
  try {
    return parseDatasetSpec(value, '--from');
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

interface ConvertFlags {
  from: DatasetSpec;
  out: string;
  pageSamples: number;
  seed?: number;
  trainSamples?: number;
  cacheDir?: string;
  progress: 'auto' | 'bar' | 'none';
}

export function psdataCommand(): Command {
  const program = new Command('psdata')
    .description('Convert datasets to the paged psrpc dataset file, and inspect such files')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
  program.command('convert')
    .description('Write a dataset (a built-in name, idx:FOLDER, file:PATH or a dataset module) as a dataset file')
    .requiredOption('--from <dataset>', 'the dataset spec to read', datasetSpec)
    .requiredOption('--out <file>', 'the dataset file to write (replaced atomically)')
    .option('--page-samples <n>', 'samples per page: the unit of sharded reads and checksums',
      integer('--page-samples', 1, 2 ** 31 - 1), DEFAULT_PAGE_SAMPLES)
    .option('--seed <n>', 'built-in datasets: the split seed, as `trainer --seed` (default 0); a module: ctx.seed',
      integer('--seed', 0, 2 ** 32 - 1))
    .option('--train-samples <n>', 'synthetic only: training samples (default 60000)', integer('--train-samples', 0, 2 ** 31 - 1))
    .option('--cache-dir <dir>', 'built-in datasets: the binary cache directory')
    .addOption(new Option('--progress <mode>', 'a progress bar on a terminal (auto), always (bar) or never (none)')
      .choices(['auto', 'bar', 'none']).default('auto'))
    .allowExcessArguments(false);
  program.command('inspect')
    .description('Print a dataset file\'s header, one field a line')
    .argument('<file>', 'the dataset file')
    .option('--verify', 'also read every page and check its checksum and labels')
    .allowExcessArguments(false);
  return program;
}

/** The header as `inspect` prints it: one `field value` line each. */
export function formatHeader(path: string, h: DatasetFileHeader): string {
  const lines: Array<[string, string | number]> = [
    ['file', path],
    ['version', h.version],
    ['dtype', h.dtype],
    ['shape', `[${h.shape.join(', ')}]`],
    ['features', h.features],
    ['classes', h.classes],
    ['train', h.trainCount],
    ['test', h.testCount],
    ['page-samples', h.pageSamples],
    ['train-pages', h.trainPages],
    ['test-pages', h.testPages],
    ['normalize', h.dtype === 'uint8' ? `mean ${h.mean} std ${h.std}` : 'none (float32 values are stored as used)'],
    ['bytes', h.fileBytes],
  ];
  return lines.map(([k, v]) => `${k} ${v}`).join('\n');
}

/** Flags that the source cannot honour: said before anything is read. */
function flagConflict(flags: ConvertFlags): string | undefined {
  const from = formatDatasetSpec(flags.from);
  if (flags.trainSamples !== undefined && !(flags.from.kind === 'builtin' && flags.from.name === 'synthetic')) {
    return `--train-samples applies to --from synthetic only, got --from ${from}`;
  }
  if (flags.seed !== undefined && (flags.from.kind === 'idx' || flags.from.kind === 'file')) {
    return `--seed has no effect on --from ${from}: its files are the split`;
  }
  return undefined;
}

async function convert(flags: ConvertFlags): Promise<string> {
  const t0 = performance.now();
  const conflict = flagConflict(flags);
  if (conflict !== undefined) throw new Error(conflict);
  const rows = await datasetRows(flags.from, {
    ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
    ...(flags.trainSamples !== undefined ? { trainSamples: flags.trainSamples } : {}),
    ...(flags.cacheDir !== undefined ? { cacheDir: flags.cacheDir } : {}),
  });
  const showBar = flags.progress === 'bar' || (flags.progress === 'auto' && process.stderr.isTTY === true);
  const bar = showBar
    ? new cliProgress.SingleBar({
      stream: process.stderr,
      format: 'psdata convert [{bar}] {percentage}% | {value}/{total} pages | eta {eta_formatted}',
      barCompleteChar: '#', barIncompleteChar: '-', hideCursor: true,
      // --progress bar asks for it on a pipe too (cli-progress draws only on terminals by default)
      noTTYOutput: flags.progress === 'bar', notTTYSchedule: 200,
    })
    : undefined;
  let started = false;
  // the bar starts with the first page, so a source that fails to load leaves no empty bar behind
  try {
    const h = await writeDatasetFile(flags.out, rows, {
      pageSamples: flags.pageSamples,
      ...(bar ? {
        onPage: (done: number, total: number) => {
          if (!started) { bar.start(total, 0); started = true; }
          bar.update(done);
        },
      } : {}),
    });
    const mb = (h.fileBytes / 1e6).toFixed(1);
    return `wrote ${flags.out}: ${h.trainCount} train + ${h.testCount} test samples of [${h.shape.join(', ')}] ${h.dtype}, `
      + `${h.classes} classes, ${h.trainPages + h.testPages} pages of ${h.pageSamples} samples, ${mb} MB in ${((performance.now() - t0) / 1000).toFixed(2)} s`;
  } finally {
    if (started) bar?.stop();
  }
}

/** Runs the command; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = psdataCommand();
  let action: (() => Promise<string>) | undefined;
  program.commands.find((c) => c.name() === 'convert')!.action((flags: ConvertFlags) => {
    action = () => convert(flags);
  });
  program.commands.find((c) => c.name() === 'inspect')!.action((file: string, flags: { verify?: boolean }) => {
    action = async () => formatHeader(file, await (flags.verify ? verifyDatasetFile(file) : readDatasetFileHeader(file)))
      + (flags.verify ? '\nverified every page' : '');
  });
  try {
    program.parse(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    throw e;
  }
  if (action === undefined) {
    process.stderr.write(program.helpInformation());
    return 1;
  }
  try {
    process.stdout.write(`${await action()}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
