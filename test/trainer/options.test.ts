// Training options without a process: the flags' parsers and their one-line errors, the defaults,
// resolveOptions for API callers, and the strategy/consistency pairs that are refused.
import test from 'ava';
import { Command, CommanderError } from 'commander';
import { addTrainFlags, consistencyConflict, DEFAULTS, resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
// the strategies as the commands see them: the table plus the layers above's registrations (hogwild)
import '../../src/cli/strategies.js';

/** Parses `args` with the training flags; the options, or the error line commander would print. */
function parse(args: string[]): Record<string, unknown> | string {
  let written = '';
  const cmd = addTrainFlags(new Command()).exitOverride().configureOutput({ writeErr: (s) => { written += s; }, writeOut: () => {} });
  try {
    cmd.parse(args, { from: 'user' });
    return cmd.opts();
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    return written.trim();
  }
}

test('without flags every option has its default', (t) => {
  t.deepEqual(parse([]), DEFAULTS);
});

test('flags map one to one onto TrainOptions, parsed to numbers', (t) => {
  t.like(parse(['--strategy', 'hogwild', '--epochs', '3', '--batch-size', '32', '--lr', '0.5', '--momentum', '0.9', '--eval-every', '0.25',
    '--seed', '4294967295', '--rank', '2', '--world-size', '5', '--master', 'h:1', '--servers', '0', '--name', 'x', '--json', 'r.json']), {
    strategy: 'hogwild', epochs: 3, batchSize: 32, lr: 0.5, momentum: 0.9, evalEvery: 0.25, seed: 2 ** 32 - 1, rank: 2, worldSize: 5,
    master: 'h:1', servers: 0, name: 'x', json: 'r.json',
  });
});

const bad: Array<[string[], string]> = [
  [['--epochs', '0'], "--epochs must be an integer >= 1, got '0'"],
  [['--epochs', '1.5'], "--epochs must be an integer >= 1, got '1.5'"],
  [['--epochs', ''], "--epochs must be an integer >= 1, got ''"],
  [['--hidden', '65537'], "--hidden must be an integer in [1, 65536], got '65537'"],
  [['--batch-size', '-3'], "--batch-size must be an integer in [1, 1048576], got '-3'"],
  [['--seed', '4294967296'], "--seed must be an integer in [0, 4294967295], got '4294967296'"],
  [['--staleness', '-1'], "--staleness must be an integer >= 0, got '-1'"],
  [['--workers', '0'], "--workers must be an integer in [1, 256], got '0'"],
  [['--rank', 'one'], "--rank must be an integer >= 0, got 'one'"],
  [['--world-size', '0'], "--world-size must be an integer >= 1, got '0'"],
  [['--servers', '4097'], "--servers must be an integer in [0, 4096], got '4097'"],
  [['--train-samples', '9007199254740993'], "--train-samples must be an integer >= 0, got '9007199254740993'"],
  [['--lr', '0'], "--lr must be a number > 0 and <= 1000000, got '0'"],
  [['--lr', 'fast'], "--lr must be a number > 0 and <= 1000000, got 'fast'"],
  [['--lr', ' '], "--lr must be a number > 0 and <= 1000000, got ' '"],
  [['--lr', 'Infinity'], "--lr must be a number > 0 and <= 1000000, got 'Infinity'"],
  [['--momentum', '1.5'], "--momentum must be a number >= 0 and <= 1, got '1.5'"],
  [['--weight-decay', '-0.1'], "--weight-decay must be a number >= 0 and <= 1000000, got '-0.1'"],
  [['--eval-every', '-1'], "--eval-every must be a number >= 0 and <= 1000000, got '-1'"],
  [['--eval-samples', '0'], "--eval-samples must be an integer >= 1, got '0'"],
];

for (const [args, message] of bad) {
  test(`a bad value is refused with one line naming the flag and the value: ${args.join(' ')}`, (t) => {
    t.is(parse(args), `error: option '${optionFlags(args[0]!)}' argument '${args[1]}' is invalid. ${message}`);
  });
}

/** The flag as commander names it in its message ('--lr <x>'). */
function optionFlags(long: string): string {
  return addTrainFlags(new Command()).options.find((o) => o.long === long)!.flags;
}

test('names outside a flag\'s choices are refused with the choices', (t) => {
  for (const [flag, value] of [['--strategy', 'magic'], ['--consistency', 'eventual'], ['--device', 'tpu'], ['--optimizer', 'lbfgs'], ['--progress', 'loud']]) {
    const line = parse([flag!, value!]);
    t.regex(line as string, new RegExp(`^error: option '${flag} <[a-z]+>' argument '${value}' is invalid\\. Allowed choices are `), `${flag} ${value}`);
  }
});

test('--dataset takes a built-in name, idx:FOLDER, file:PATH or a module, and names the forms when it is none of them', (t) => {
  for (const spec of ['mnist', 'idx:./data', 'file:fashion.psds', './my-data.mjs']) t.is((parse(['--dataset', spec]) as Record<string, unknown>).dataset, spec, spec);
  t.is(parse(['--dataset', 'cifar']), "error: option '--dataset <spec>' argument 'cifar' is invalid. --dataset must be one of fashion-mnist, mnist, synthetic, idx:FOLDER, file:PATH or a dataset module path (./my-data.mjs), got 'cifar'");
  t.regex(parse(['--dataset', 'idx:']) as string, /--dataset must be idx:FOLDER with a non-empty path, got 'idx:'$/);
});

test('resolveOptions fills in the defaults and keeps what the caller gave', (t) => {
  t.deepEqual(resolveOptions({}), DEFAULTS);
  t.deepEqual(resolveOptions({ epochs: 3, strategy: 'hogwild' }), { ...DEFAULTS, epochs: 3, strategy: 'hogwild' });
});

const badApi: Array<[Partial<TrainOptions>, string]> = [
  [{ hidden: 0 }, 'option hidden must be a positive integer, got 0'],
  [{ epochs: 1.5 }, 'option epochs must be a positive integer, got 1.5'],
  [{ batchSize: Number.NaN }, 'option batchSize must be a positive integer, got NaN'],
  [{ workers: '2' as unknown as number }, 'option workers must be a positive integer, got 2'],
  [{ lr: 0 }, 'option lr must be a positive number, got 0'],
  [{ lr: Infinity }, 'option lr must be a positive number, got Infinity'],
  [{ strategy: 'magic' as never }, "option strategy must be one of local, centralized, remote-forward, partitioned, ddp, zero, fsdp, pipeline, hogwild, got 'magic'"],
  [{ dataset: 'cifar' }, "option dataset: dataset must be one of fashion-mnist, mnist, synthetic, idx:FOLDER, file:PATH or a dataset module path (./my-data.mjs), got 'cifar'"],
];

for (const [o, message] of badApi) {
  test(`resolveOptions refuses a bad option with one line: ${message}`, (t) => {
    t.throws(() => resolveOptions(o), { instanceOf: RangeError, message });
  });
}

test('consistencyConflict: partitioned is sync only, remote-forward has no ssp, centralized takes all three', (t) => {
  t.is(consistencyConflict('partitioned', 'sync'), null);
  t.regex(consistencyConflict('partitioned', 'async')!, /^strategy partitioned is synchronous .*got consistency async: use centralized for async or ssp$/);
  t.regex(consistencyConflict('partitioned', 'ssp')!, /got consistency ssp/);
  t.is(consistencyConflict('remote-forward', 'sync'), null);
  t.is(consistencyConflict('remote-forward', 'async'), null);
  t.regex(consistencyConflict('remote-forward', 'ssp')!, /^strategy remote-forward applies each trainer's step as it comes .*got consistency ssp: use centralized for ssp$/);
  for (const c of ['sync', 'async', 'ssp']) t.is(consistencyConflict('centralized', c), null);
});
